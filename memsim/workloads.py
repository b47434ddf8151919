"""Per-CTA streams of tile operations that mirror the byte contract in `memsim.schedule`.

Every launch of `kernel_launches(problem, schedule)` becomes a `LaunchWork`: its
CTAs in dispatch order (grid axis 0 fastest) and, for each CTA, a list of
*steps*.  A step is ``[reads, writes, flops, exps, tiles]``:

* ``reads`` / ``writes``: tuples of *accesses* ``(key, mask, nbytes, full, lastbit, lastbytes)``.
  ``key = (tensor, head, [row block,] run)`` names a run of ``run_blocks``
  consecutive blocks of one tensor of one head (the L2 keeps its lines at that
  granularity); ``mask`` has one bit per block of the run that is touched;
  ``nbytes`` is exactly what the byte contract says those blocks move (ragged
  edge blocks move fewer bytes: ``lastbit`` marks the ragged block of the run,
  ``lastbytes`` its size, ``full`` the size of the others).
* ``flops``: tensor-core matmul FLOPs the step executes (2 per multiply-add);
  ``exps``: exponentials (SFU); ``tiles``: loop iterations (tile operations) the step covers.

A launch may also have ``cta_l1_bytes(idx)``: global-load bytes the compiled kernel issues *beyond* the
byte contract that the CTA's own L1 serves (data the same CTA loaded a moment earlier): they count at the
global level (ncu ``l1tex__t_bytes_pipe_lsu_mem_global_op_ld``), never reach L2 and cost no time.  Only
flash1 has them (`flash1_l1_reread_bytes_per_row`); ``memsim.analytic.l1_reread_bytes`` is their closed form.

The *grain* is how many loop iterations (tiles) one step covers:
``run_blocks = 1`` is one step per tile; larger runs make fewer, bigger steps
with the same bytes.  ``run_blocks >= the longest loop`` gives one step per CTA
loop (per CTA for flash2, per K/V block for flash1).  Bytes never depend on the grain.

FLOP counts per (rows x cols) tile, d = head_dim: flash fwd 4·r·c·d (S = QKᵀ, O += PV);
flash2 bwd dK/dV pass 8·r·c·d (S, dV, dP, dK), dQ pass 6·r·c·d (S, dP, dQ);
naive: 2·r·c·d per matmul launch.  Exps: r·c per computed score tile plus r
per online-softmax rescale (flash fwd).
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Callable

from .algorithms import spec_for
from .sectors import row_partial_share, row_sector_factor
from .schedule import STAT_BYTES, AttentionProblem, Launch, Schedule, ScheduleError, cdiv, kernel_launches, naive_rows_per_step

Access = tuple  # (key, mask, nbytes, full, lastbit, lastbytes)
Step = list     # [reads, writes, flops, exps, tiles]


class Tensor:
    """A tensor cut into blocks of `rows_per_block` rows of `row_bytes` bytes along one axis."""

    __slots__ = ("name", "rpb", "n", "row_bytes", "nblocks", "full", "last_bytes", "R", "_memo", "sector_factor")
    MEMO_LIMIT = 200_000  # accesses are immutable: CTAs of one head share them

    def __init__(self, name, rows_per_block, nrows, row_bytes, run_blocks, sector_factor: float = 1.0):
        self.name, self.rpb, self.n, self.row_bytes, self.R = name, rows_per_block, nrows, row_bytes, run_blocks
        #: sector bytes moved per byte (memsim.sectors): an access's traffic, not what the L2 holds
        self.sector_factor = sector_factor
        self.nblocks = cdiv(nrows, rows_per_block)
        self.full = rows_per_block * row_bytes
        self.last_bytes = (nrows - (self.nblocks - 1) * rows_per_block) * row_bytes
        self._memo = {}

    def block_bytes(self, b: int) -> int:
        return self.last_bytes if b == self.nblocks - 1 else self.full

    def range_bytes(self, b0: int, b1: int) -> int:
        if b1 <= b0:
            return 0
        n = (b1 - b0) * self.full
        if b1 == self.nblocks:
            n += self.last_bytes - self.full
        return n

    def rows_in(self, b0: int, b1: int) -> int:
        """Rows (or columns) that exist in blocks [b0, b1)."""
        return max(0, min(b1 * self.rpb, self.n) - b0 * self.rpb)

    def _acc(self, prefix, run, mask, nbytes):
        lastbit = (self.nblocks - 1) - run * self.R
        if not (0 <= lastbit < self.R) or self.last_bytes == self.full:
            lastbit = -1
        if self.sector_factor != 1.0:
            nbytes = int(round(nbytes * self.sector_factor))
        return ((self.name, *prefix, run), mask, nbytes, self.full, lastbit, self.last_bytes)

    def range(self, prefix: tuple, b0: int, b1: int) -> list:
        """Accesses for blocks [b0, b1), split at run boundaries (do not mutate the list)."""
        memo = self._memo
        k = (prefix, b0, b1)
        r = memo.get(k)
        if r is None:
            r = self._range(prefix, b0, b1)
            if len(memo) < self.MEMO_LIMIT:
                memo[k] = r
        return r

    def _range(self, prefix: tuple, b0: int, b1: int) -> list:
        R = self.R
        if b1 == b0 + 1:  # one block: the common case at tile grain
            run = b0 // R
            return [self._acc(prefix, run, 1 << (b0 - run * R), self.block_bytes(b0))]
        out = []
        b = b0
        while b < b1:
            run = b // R
            e = min(b1, (run + 1) * R)
            lo = b - run * R
            mask = ((1 << (e - b)) - 1) << lo
            out.append(self._acc(prefix, run, mask, self.range_bytes(b, e)))
            b = e
        return out

    def blocks(self, prefix: tuple, bs) -> list:
        """Accesses for an increasing sequence of (not necessarily contiguous) blocks."""
        out = []
        R = self.R
        cur_run, mask, nb = None, 0, 0
        for b in bs:
            run = b // R
            if run != cur_run:
                if cur_run is not None:
                    out.append(self._acc(prefix, cur_run, mask, nb))
                cur_run, mask, nb = run, 0, 0
            mask |= 1 << (b - run * R)
            nb += self.block_bytes(b)
        if cur_run is not None:
            out.append(self._acc(prefix, cur_run, mask, nb))
        return out


@dataclass(frozen=True)
class LaunchWork:
    launch: Launch
    num_ctas: int
    #: steps of the CTA with dispatch index `idx` (grid axis 0 fastest)
    cta_steps: Callable[[int], list]
    num_warps: int
    #: global-load bytes of the CTA served by its own L1 beyond the contract (None: none)
    cta_l1_bytes: Callable[[int], int] | None = None
    #: the CTA's tile loop reads what its previous visit wrote (flash1's workspace, behind a barrier):
    #: the compiler cannot prefetch the next tile's loads, each tile waits for its own round trip
    dependent_loop: bool = False
    #: the launch loads its tiles as TMA boxes whose rows are this many bytes (None: LSU loads); the L2 request
    #: coalescer takes a box row narrower than `Calibration.tma_coalesce_min_row_bytes` as a partial-line request
    #: it never merges (memsim.engine, memsim/MODEL.md "TMA box rows and the L2 request coalescer")
    tma_row_bytes: int | None = None
    #: {tensor name: share of the sectors its stores cover in part} for the tensors this launch stores at a pitch off
    #: the sector (the naive kernels' S / P / dP rows); the engine books them on the L2 write link at
    #: `Calibration.partial_store_cost` (memsim/MODEL.md "stores of partial sectors")
    write_partial_share: dict | None = None
    #: of the CTA's tile-loop trips, those the kernel runs in its masked copy of the loop (the causal band, a ragged
    #: tail; None: the launch has one loop); the engine prices them at that loop's replay (memsim/MODEL.md "the
    #: masked copy of the tile loop")
    cta_masked_tiles: Callable[[int], int] | None = None
    #: (tensor name, mean CTAs that add into each block of it) where the launch's writes of that tensor are fp32
    #: reduce-adds done in the L2 (tl.atomic_add: RED.E.ADD.F32; hopper's dQacc); the engine books them at the
    #: rate the L2 takes reduce-adds shared by that many CTAs (memsim/MODEL.md "reduce-adds in the L2")
    reduce_adds: tuple | None = None
    #: {tensor name: (row pitch, segment an access covers, element, tile row bytes, valid rows of a tile)} of the
    #: tensors whose register loads the
    #: compiler may split into element-wide pieces (the SASS says whether it does: `LaunchCost.l1_split_factor`):
    #: rows at a pitch in elements Triton cannot prove a multiple of 16 (the naive kernels' S / P / dP rows of
    #: seq_kv elements).  The engine sums the bytes the launch reads of each
    #: (LaunchStats.split_read_bytes) and memsim.sim counts them `memsim.sectors.split_load_count` times at the
    #: global level (memsim/MODEL.md "global loads as L1's tag stage counts them").  None: no split tensor
    split_load_tensors: dict | None = None
    #: {tensor name: (row pitch in elements, rows)} of the per-row statistics the tile loop loads as rank-1 vectors (flash2's
    #: dK/dV pass: lse and delta, rows of seq_q fp32 values, a block_m slice a trip), which every warp loads for the
    #: columns it holds (the compiled facts say how: `LaunchCost.stat_loads`).  The engine sums the bytes read of each
    #: (LaunchStats.split_read_bytes) and memsim.sim counts them `memsim.sectors.stat_load_count` times at the global
    #: level (memsim/MODEL.md "statistics every warp loads").  None: none
    stat_load_tensors: dict | None = None
    #: the launch's tile loop is software-pipelined `num_stages` deep (a loop of `tl.range(..., num_stages=)` or a
    #: TMA ring of that many buffers): at one stage tile j+1's loads go out only once tile j's compute has freed the
    #: buffer, so each tile waits its own round trip (memsim.engine; MODEL.md "Grain").  False: no such loop (a
    #: loopless or row kernel, a persistent walk, a warp-specialised ring whose depth is not `num_stages`)
    stage_loop: bool = False

    @property
    def name(self) -> str:
        return self.launch.name


def _runs(b0: int, b1: int, R: int):
    b = b0
    while b < b1:
        e = min(b1, (b // R + 1) * R)
        yield b, e
        b = e


def sp_rows(p: AttentionProblem, s: Schedule, whole_rows: bool = False) -> tuple:
    """(pitch, bytes of a row an access covers, element bytes) of the S/P/dP rows: whole rows or block_n-wide."""
    sp = s.sp_bytes(p)
    pitch = p.seq_kv * sp
    return pitch, (pitch if whole_rows else min(s.block_n, p.seq_kv) * sp), sp


class _Ctx:
    """Sizes, tensors and masking helpers shared by the launches of one (problem, schedule, grain)."""

    def __init__(self, p: AttentionProblem, s: Schedule, run_blocks: int, sectors: bool = True):
        self.p, self.s, self.R, self.sectors = p, s, run_blocks, sectors
        d, e = p.head_dim, p.element_bytes
        self.d, self.e, self.sp = d, e, s.sp_bytes(p)
        self.bm, self.bn = s.block_m, s.block_n
        self.mb, self.nb = cdiv(p.seq_q, s.block_m), cdiv(p.seq_kv, s.block_n)
        self.G = p.group_size
        R = run_blocks
        qt = lambda name, rb: Tensor(name, s.block_m, p.seq_q, rb, R)  # noqa: E731
        kt = lambda name: Tensor(name, s.block_n, p.seq_kv, d * e, R)  # noqa: E731
        self.Q, self.O, self.dO, self.dQ = qt("Q", d * e), qt("O", d * e), qt("dO", d * e), qt("dQ", d * e)
        self.LSE, self.DELTA = qt("lse", STAT_BYTES), qt("delta", STAT_BYTES)
        self.WS = qt("ws", (d + 2) * STAT_BYTES)  # flash1 fp32 workspace: O (d x 4) + m + l per row
        self.f1_reread = flash1_l1_reread_bytes_per_row(p, s)
        self.K, self.V, self.dK, self.dV = kt("K"), kt("V"), kt("dK"), kt("dV")
        # naive S/P/dP tiles: one Tensor per distinct row count of a Q block (blocks along kv)
        self._sp = {}
        # causal: last visible K/V block of each Q block (-1 = none)
        self.jmax = []
        for i in range(self.mb):
            r1 = min((i + 1) * self.bm, p.seq_q)
            if not p.causal:
                self.jmax.append(self.nb - 1)
            else:
                last_col = r1 - 1 + p.causal_offset
                self.jmax.append(-1 if last_col < 0 else min(self.nb - 1, last_col // self.bn))
                assert self.jmax[-1] < 0 or p.tile_visible(i * self.bm, r1, self.jmax[-1] * self.bn)

    def sp_tensor(self, name, i, whole_rows: bool = False):
        """The S/P/dP matrix of Q block i in K/V blocks; `whole_rows`: as the row kernels read and write it
        (a row at a time, not a block_n-wide tile)."""
        rows = self.Q.rows_in(i, i + 1)
        key = (name, rows, whole_rows)
        t = self._sp.get(key)
        if t is None:
            # rows of seq_kv x sp bytes: at a pitch that is not a multiple of the sector, each warp
            # instruction touches more sectors than its bytes (memsim.sectors)
            f = (row_sector_factor(*self._sp_rows(whole_rows), rows_share_instructions=whole_rows)
                 if self.sectors else 1.0)
            t = self._sp[key] = Tensor(name, self.bn, self.p.seq_kv, rows * self.sp, self.R, sector_factor=f)
        return t

    def stat_rows(self) -> dict:
        """The per-row statistics a backward pass loads (lse_i, delta_i: the dK/dV loop's each trip, the dQ pass's once
        per CTA): batch x heads_q rows of seq_q fp32 values each, (row pitch, rows) (LaunchWork.stat_load_tensors)."""
        rows = (self.p.seq_q, self.p.batch * self.p.heads_q)
        return {"lse": rows, "delta": rows}

    def sp_split(self, *names) -> dict | None:
        """The S / P / dP tensors among `names` whose loads the compiler splits: their rows are seq_kv elements apart,
        and where seq_kv is not a multiple of 16 Triton (which specialises integer arguments on divisibility by 16)
        cannot prove a row's 16-byte alignment, so each thread's chunk is loaded one element (or 4 bytes) at a time
        (kernels.sass.l1_split_factor).  None where seq_kv is a multiple of 16."""
        geom = sp_rows(self.p, self.s) + (self.bn * self.sp, min(self.bm, self.p.seq_q))
        return {n: geom for n in names} if self.p.seq_kv % 16 else None

    def sp_partial_share(self, whole_rows: bool = False) -> float:
        """Of the sectors a store of the S/P/dP rows moves, the share it covers only in part (`sp_tensor`'s
        layouts; memsim.sectors.row_partial_share): 0.0 without sector granularity."""
        if not self.sectors:
            return 0.0
        return row_partial_share(*self._sp_rows(whole_rows), rows_share_instructions=whole_rows)

    def _sp_rows(self, whole_rows: bool) -> tuple:
        return sp_rows(self.p, self.s, whole_rows)

    def masked_q(self, i: int) -> int:
        """Trips of the masked K/V loop of Q block i (flash2's forward and dQ pass, hopper's forward:
        `kernels._tl._kv_split`): the blocks from the last one every row sees whole to the last visible one --
        the causal diagonal band, or a ragged last block."""
        p, bn = self.p, self.bn
        if self.jmax[i] < 0:
            return 0
        if p.causal:
            full_end = min(max(i * self.bm + p.causal_offset + 1, 0), p.seq_kv) // bn
        else:
            full_end = p.seq_kv // bn
        return max(0, self.jmax[i] + 1 - full_end)

    def masked_kv(self, j: int) -> int:
        """Trips of the masked Q loop of K/V block j, per query head (flash2's and hopper's dK/dV pass:
        `kernels.flash2._dkdv_setup`): the Q blocks [lo, mid) whose rows see part of the block; none without a
        causal mask (ragged rows need none)."""
        p, bm = self.p, self.bm
        if not p.causal:
            return 0
        start_n = j * self.bn
        first_row = max(start_n - p.causal_offset, 0)
        lo = first_row // bm if first_row < p.seq_q else self.mb
        row_full = min(start_n + self.bn, p.seq_kv) - 1 - p.causal_offset
        mid = max(cdiv(min(max(row_full, lo * bm), p.seq_q), bm), lo)
        return mid - lo

    def imin(self, j: int) -> int:
        """First Q block that sees K/V block j (mb if none)."""
        return bisect_left(self.jmax, j)

    def kv_head(self, bh: int) -> int:
        p = self.p
        return (bh // p.heads_q) * p.heads_kv + (bh % p.heads_q) // self.G

    def q_heads(self, bhkv: int):
        p = self.p
        b, hk = divmod(bhkv, p.heads_kv)
        return [b * p.heads_q + hk * self.G + g for g in range(self.G)]


def flash1_l1_reread_bytes_per_row(p: AttentionProblem, s: Schedule) -> int:
    """Global-load bytes per workspace row per revisit that the Triton 3.6 flash1 kernel issues beyond the
    contract, all served by the CTA's L1 (measured on the H100, ncu, every flash1 case of
    verification/data: LSU global loads - contract = exactly this, L2 reads = contract):

    * fp16 / bf16 kernels: the fp32 O workspace tile counts twice at the L1 tag stage (d x 4 bytes per row; L2
      sees it once).  It is ONE load instruction per 16 B of a thread, whose warp instructions each touch ~30
      32-B sectors where 16 would hold their 512 B: ncu's per-instruction "L2 Theoretical Sectors Global
      Excessive" puts 245 760 of the kernel's 646 656 load sectors on those LDG.E.128s (fp16 d=64 64x64 w4,
      `ldg_sectors` run 2026-11-26 18:04 UTC, H100 80GB HBM3, benchmarks/ldg_sectors_gpu.sh).  The fp32 kernel
      loads the same tile in a layout with no excessive sector (0 of 548 352): no extra bytes (all 10 live fp32
      flash1 cases within 3 % with it, +2..+49 % with the fp16 term);
    * the per-row m and l loads are replicated over the warps that share a row: the MMA layout puts
      16 rows per warp, so ``num_warps * 16 / block_m`` warps read each row's statistics (64-row tiles:
      none extra with 4 warps, one extra copy with 8).

    Why the O tile counts twice (seventeenth session): the workspace tile takes the layout of the kernel's fp16 / bf16
    tiles, 8 elements a thread, so each thread's 32-byte fp32 chunk comes as two LDG.E.128 at +0 and +0x10, and each
    touches every sector of its lanes' chunks.  Where Triton gives the tile 4 elements a thread (d16 with 32-row
    tiles: live r26112702_015, +27.6 % global under the dtype rule) one load brings each chunk and nothing is counted
    twice.  The compiled kernel says which (`kernels.sass.l1_wide_pieces`, table field `l1_wide_pieces`): the O tile
    counts (pieces - 1) extra times; the dtype rule where the table has no such entry.
    """
    rep = max(1, (s.num_warps * 16) // s.block_m)
    pieces = _flash1_o_pieces(p, s)
    o_tile = p.head_dim * STAT_BYTES * (pieces - 1)
    return o_tile + 2 * STAT_BYTES * (rep - 1)


def _flash1_o_pieces(p: AttentionProblem, s: Schedule) -> int:
    """The pieces flash1's tile loop loads a thread's O-workspace chunk in (`flash1_l1_reread_bytes_per_row`): the
    compiled table's `l1_wide_pieces` of the launch (or of the entry compiling the same tile code: the lookup
    memsim.costs prices the launch with), else 2 for fp16 / bf16 and 1 for fp32."""
    from .costs import _lookup_facts
    f = _lookup_facts("flash1_fwd", p, s)
    pieces = getattr(f, "l1_wide_pieces", None) if f is not None else None
    if pieces:
        return int(pieces)
    return 2 if p.dtype != "fp32" else 1


def _coords(launch: Launch, idx: int) -> dict:
    g0, g1, _ = launch.grid
    x, rest = idx % g0, idx // g0
    y, z = rest % g1, rest // g1
    a = launch.axes
    return {a[0]: x, a[1]: y, a[2]: z}


# --- flash2 ------------------------------------------------------------------------
def _flash2_fwd(c: _Ctx, co: dict) -> list:
    i, h = co["q_block"], co["bh"]
    hk = c.kv_head(h)
    rows = c.Q.rows_in(i, i + 1)
    steps = []
    pro = c.Q.range((h,), i, i + 1)
    for j0, j1 in _runs(0, c.jmax[i] + 1, c.R):
        cols = c.K.rows_in(j0, j1)
        reads = pro + c.K.range((hk,), j0, j1) + c.V.range((hk,), j0, j1)
        steps.append([reads, [], 4 * rows * cols * c.d, rows * cols + rows * (j1 - j0), j1 - j0])
        pro = []
    if not steps:  # every K/V block masked: Q still read, O = 0 and lse = -inf written; no tile-loop trip
        steps.append([pro, [], 0, 0, 0])
    steps[-1][1] = c.O.range((h,), i, i + 1) + c.LSE.range((h,), i, i + 1)
    return steps


def _flash2_bwd_pre(c: _Ctx, co: dict) -> list:
    i, h = co["q_block"], co["bh"]
    reads = c.O.range((h,), i, i + 1) + c.dO.range((h,), i, i + 1)
    return [[reads, c.DELTA.range((h,), i, i + 1), 0, 0, 1]]


def _flash2_bwd_dkdv(c: _Ctx, co: dict) -> list:
    j, hk = co["kv_block"], co["bh_kv"]
    cols = c.K.rows_in(j, j + 1)
    steps = []
    pro = c.K.range((hk,), j, j + 1) + c.V.range((hk,), j, j + 1)
    i_first = c.imin(j)
    for h in c.q_heads(hk):
        for i0, i1 in _runs(i_first, c.mb, c.R):
            rows = c.Q.rows_in(i0, i1)
            reads = (pro + c.Q.range((h,), i0, i1) + c.dO.range((h,), i0, i1)
                     + c.LSE.range((h,), i0, i1) + c.DELTA.range((h,), i0, i1))
            steps.append([reads, [], 8 * rows * cols * c.d, rows * cols, i1 - i0])
            pro = []
    if not steps:  # every block masked: the operands still read, no trip of the tile loop (0 tiles)
        steps.append([pro, [], 0, 0, 0])
    steps[-1][1] = c.dK.range((hk,), j, j + 1) + c.dV.range((hk,), j, j + 1)
    return steps


def _flash2_bwd_dq(c: _Ctx, co: dict) -> list:
    i, h = co["q_block"], co["bh"]
    hk = c.kv_head(h)
    rows = c.Q.rows_in(i, i + 1)
    pro = (c.Q.range((h,), i, i + 1) + c.dO.range((h,), i, i + 1)
           + c.LSE.range((h,), i, i + 1) + c.DELTA.range((h,), i, i + 1))
    steps = []
    for j0, j1 in _runs(0, c.jmax[i] + 1, c.R):
        cols = c.K.rows_in(j0, j1)
        steps.append([pro + c.K.range((hk,), j0, j1) + c.V.range((hk,), j0, j1), [], 6 * rows * cols * c.d, rows * cols,
                      j1 - j0])
        pro = []
    if not steps:  # every block masked: the operands still read, no trip of the tile loop (0 tiles)
        steps.append([pro, [], 0, 0, 0])
    steps[-1][1] = c.dQ.range((h,), i, i + 1)
    return steps


# --- flash1 (2022 paper, Algorithm 1) -----------------------------------------------
def _flash1_fwd(c: _Ctx, co: dict) -> list:
    h = co["bh"]
    hk = c.kv_head(h)
    steps = []
    never = [i for i in range(c.mb) if c.jmax[i] < 0]  # rows that see no key: O = 0, lse = -inf, written first
    if never:  # written before the loops: no trip of the tile loop (0 tiles)
        steps.append([[], c.O.blocks((h,), never) + c.LSE.blocks((h,), never), 0, 0, 0])
    for j in range(c.nb):
        cols = c.K.rows_in(j, j + 1)
        pro = c.K.range((hk,), j, j + 1) + c.V.range((hk,), j, j + 1)  # read for every j, as the kernel does
        for i0, i1 in _runs(c.imin(j), c.mb, c.R):
            rows = c.Q.rows_in(i0, i1)
            ws_r = range(i0, i1) if j > 0 else range(0)
            ws_w = [i for i in range(i0, i1) if c.jmax[i] > j]
            last = [i for i in range(i0, i1) if c.jmax[i] == j]
            reads = pro + c.Q.range((h,), i0, i1) + c.WS.blocks((h,), ws_r)
            writes = c.WS.blocks((h,), ws_w) + c.O.blocks((h,), last) + c.LSE.blocks((h,), last)
            steps.append([reads, writes, 4 * rows * cols * c.d, rows * cols + rows, i1 - i0])
            pro = []
        if pro:  # no Q block sees K/V block j: loaded, but the Q-block loop (the tile loop) makes no trip
            steps.append([pro, [], 0, 0, 0])
    return steps


# --- naive ---------------------------------------------------------------------------
def _naive_matmul_tile(c: _Ctx, co: dict, a, b, out_name) -> list:
    i, j, h = co["q_block"], co["kv_block"], co["bh"]
    hk = c.kv_head(h)
    rows, cols = c.Q.rows_in(i, i + 1), c.K.rows_in(j, j + 1)
    reads = a.range((h,), i, i + 1) + b.range((hk,), j, j + 1)
    writes = c.sp_tensor(out_name, i).range((h, i), j, j + 1)
    return [[reads, writes, 2 * rows * cols * c.d, 0, 1]]


def _naive_rows(c: _Ctx, co: dict, in_names, out_name, exps_per_elem) -> list:
    """CTA per row block: whole rows in registers, `naive_rows_per_step` rows per loop trip
    (kernels.naive._naive_softmax, _naive_bwd_ds: `for r0 in range(0, BLOCK_M, ROWS)`).  The loop makes
    cdiv(block_m, rows_per_trip) trips whatever the block's real rows: the trips past seq_q load and store nothing
    (their masks are all false) but run the loop's code.  Each trip loads its rows and waits for them (the replay
    of the loop times the wait: `issue_s_per_tile_dram`), so the reads are one step of `trips` tiles -- not one step
    per column run, whose latency each the engine would charge (set U's 005: 104 column runs, 2.1x too slow) --
    then the idle trips (no load, no wait), then the stores."""
    i, h = co["row_block"], co["bh"]
    rows = c.Q.rows_in(i, i + 1)
    per_trip, _ = naive_rows_per_step(c.p.seq_kv, c.bm)
    trips = cdiv(rows, per_trip)
    idle = cdiv(c.bm, per_trip) - trips
    reads = []
    for n in in_names:
        reads += c.sp_tensor(n, i, whole_rows=True).range((h, i), 0, c.nb)
    steps = [[reads, [], 0, exps_per_elem * rows * c.p.seq_kv, trips]]
    if idle:
        steps.append([[], [], 0, 0, idle])
    out = c.sp_tensor(out_name, i, whole_rows=True)
    for j0, j1 in _runs(0, c.nb, c.R):
        steps.append([[], out.range((h, i), j0, j1), 0, 0, 0])
    return steps


def _naive_rowstream(c: _Ctx, co: dict, sp_name, b, out) -> list:
    """CTA per (Q block, bh): for each j read SP_ij and B_j; write out_i."""
    i, h = co["q_block"], co["bh"]
    hk = c.kv_head(h)
    rows = c.Q.rows_in(i, i + 1)
    t = c.sp_tensor(sp_name, i)
    steps = []
    for j0, j1 in _runs(0, c.nb, c.R):
        steps.append([t.range((h, i), j0, j1) + b.range((hk,), j0, j1), [], 2 * rows * c.K.rows_in(j0, j1) * c.d, 0,
                      j1 - j0])
    steps[-1][1] = out.range((h,), i, i + 1)
    return steps


def _naive_colstream(c: _Ctx, co: dict, sp_name, b, out) -> list:
    """CTA per (K block, bh_kv): for each q head of the group and each i read SP_ij and B_i; write out_j."""
    j, hk = co["kv_block"], co["bh_kv"]
    cols = c.K.rows_in(j, j + 1)
    steps = []
    for h in c.q_heads(hk):
        for i0, i1 in _runs(0, c.mb, c.R):
            reads = []
            for i in range(i0, i1):
                reads += c.sp_tensor(sp_name, i).range((h, i), j, j + 1)
            reads += b.range((h,), i0, i1)
            steps.append([reads, [], 2 * c.Q.rows_in(i0, i1) * cols * c.d, 0, i1 - i0])
    steps[-1][1] = out.range((hk,), j, j + 1)
    return steps


# --- the model's half of each registry entry (memsim.algorithms): launch name -> one CTA's steps -------
_WORKLOADS: dict[tuple[str, str], Callable[[_Ctx], dict]] = {}


def workload(algorithm: str, phase: str):
    """Register the model's workload builder of (algorithm, phase): a function of the context `_Ctx`
    returning {launch name: steps(coords) or LaunchModelSpec} for every launch of the registry entry."""
    def deco(fn):
        key = (algorithm, phase)
        if key in _WORKLOADS:
            raise ValueError(f"a workload for {key} is already registered")
        _WORKLOADS[key] = fn
        return fn
    return deco


def registered_workloads() -> tuple[tuple[str, str], ...]:
    return tuple(_WORKLOADS)


@dataclass(frozen=True)
class LaunchModelSpec:
    """A launch's CTA steps plus what the model needs beyond them (see LaunchWork)."""

    steps: Callable[[dict], list]
    cta_l1_bytes: Callable[[int], int] | None = None
    dependent_loop: bool = False
    tma_row_bytes: int | None = None
    write_partial_share: dict | None = None
    #: coordinates -> the CTA's trips of the masked loop copy (LaunchWork.cta_masked_tiles)
    masked_tiles: Callable[[dict], int] | None = None
    #: (tensor name, CTAs that add into each of its blocks) of a launch's register reduce-adds (LaunchWork)
    reduce_adds: tuple | None = None
    #: the tensors whose loads are split into element-wide pieces, with their geometry (LaunchWork.split_load_tensors)
    split_load_tensors: dict | None = None
    #: the per-row statistics the tile loop loads as rank-1 vectors, with their rows (LaunchWork.stat_load_tensors)
    stat_load_tensors: dict | None = None
    #: the launch's tile loop is pipelined num_stages deep (LaunchWork.stage_loop)
    stage_loop: bool = False


def masked_by_q_block(c: _Ctx) -> Callable[[dict], int]:
    """A Q-block CTA's masked K/V trips (flash2 forward and dQ, hopper forward)."""
    return lambda co: c.masked_q(co["q_block"])


def masked_by_kv_block(c: _Ctx) -> Callable[[dict], int]:
    """A K/V-block CTA's masked Q trips over the query heads it serves (flash2's and hopper's dK/dV)."""
    return lambda co: c.G * c.masked_kv(co["kv_block"])


@workload("flash2", "fwd")
def _flash2_fwd_work(c: _Ctx) -> dict:
    return {"flash2_fwd": LaunchModelSpec(lambda co: _flash2_fwd(c, co), masked_tiles=masked_by_q_block(c),
                                          stage_loop=True)}


@workload("flash2", "bwd")
def _flash2_bwd_work(c: _Ctx) -> dict:
    return {"flash2_bwd_preprocess": lambda co: _flash2_bwd_pre(c, co),
            "flash2_bwd_dkdv": LaunchModelSpec(lambda co: _flash2_bwd_dkdv(c, co), masked_tiles=masked_by_kv_block(c),
                                               stat_load_tensors=c.stat_rows(), stage_loop=True),
            "flash2_bwd_dq": LaunchModelSpec(lambda co: _flash2_bwd_dq(c, co), masked_tiles=masked_by_q_block(c),
                                             stat_load_tensors=c.stat_rows(), stage_loop=True)}


@workload("flash1", "fwd")
def _flash1_fwd_work(c: _Ctx) -> dict:
    # every (j > 0, i) visit re-reads the workspace rows of Q block i: the same for every CTA
    per_cta = sum(c.Q.rows_in(i, i + 1) * max(c.jmax[i], 0) for i in range(c.mb)) * c.f1_reread
    return {"flash1_fwd": LaunchModelSpec(lambda co: _flash1_fwd(c, co), cta_l1_bytes=lambda idx: per_cta,
                                          dependent_loop=True)}


@workload("naive", "fwd")
def _naive_fwd_work(c: _Ctx) -> dict:
    tile, rows = c.sp_partial_share(), c.sp_partial_share(whole_rows=True)
    return {"naive_qk": LaunchModelSpec(lambda co: _naive_matmul_tile(c, co, c.Q, c.K, "S"),
                                        write_partial_share={"S": tile}),
            "naive_softmax": LaunchModelSpec(lambda co: _naive_rows(c, co, ("S",), "P", 1),
                                             write_partial_share={"P": rows}, split_load_tensors=c.sp_split("S")),
            "naive_pv": LaunchModelSpec(lambda co: _naive_rowstream(c, co, "P", c.V, c.O),
                                        split_load_tensors=c.sp_split("P"), stage_loop=True)}


@workload("naive", "bwd")
def _naive_bwd_work(c: _Ctx) -> dict:
    return {"naive_bwd_dv": LaunchModelSpec(lambda co: _naive_colstream(c, co, "P", c.dO, c.dV),
                                            split_load_tensors=c.sp_split("P"), stage_loop=True),
            "naive_bwd_dp": LaunchModelSpec(lambda co: _naive_matmul_tile(c, co, c.dO, c.V, "dP"),
                                            write_partial_share={"dP": c.sp_partial_share()}),
            "naive_bwd_ds": LaunchModelSpec(lambda co: _naive_rows(c, co, ("P", "dP"), "dP", 0),
                                            write_partial_share={"dP": c.sp_partial_share(whole_rows=True)},
                                            split_load_tensors=c.sp_split("P", "dP")),
            "naive_bwd_dq": LaunchModelSpec(lambda co: _naive_rowstream(c, co, "dP", c.K, c.dQ),
                                            split_load_tensors=c.sp_split("dP"), stage_loop=True),
            "naive_bwd_dk": LaunchModelSpec(lambda co: _naive_colstream(c, co, "dP", c.Q, c.dK),
                                            split_load_tensors=c.sp_split("dP"), stage_loop=True)}


def max_loop_blocks(problem: AttentionProblem, schedule: Schedule) -> int:
    """The longest tile loop of any CTA (a run this long = one step per CTA loop)."""
    return max(cdiv(problem.seq_q, schedule.block_m), cdiv(problem.seq_kv, schedule.block_n))


def build_launches(problem: AttentionProblem, schedule: Schedule, run_blocks: int = 1, *,
                   sectors: bool = True) -> list[LaunchWork]:
    """The launches of the schedule with their CTA tile streams at the given grain (`sectors`: traffic of
    misaligned rows in 32-byte sectors, memsim.sectors; False: the byte contract)."""
    if run_blocks < 1:
        raise ValueError(f"run_blocks must be >= 1, got {run_blocks}")
    key = (schedule.algorithm, schedule.phase)
    if key not in _WORKLOADS:
        raise ScheduleError(f"memsim has no workload for the registered ({key[0]}, {key[1]}); "
                            f"workloads: {', '.join(f'({a}, {p})' for a, p in _WORKLOADS)}")
    per_launch = _WORKLOADS[key](_Ctx(problem, schedule, run_blocks, sectors) if isinstance(problem, AttentionProblem)
                                 else (problem, schedule, run_blocks))  # other problem types: their own builder
    out = []
    for L in kernel_launches(problem, schedule):
        w = per_launch.get(L.name)
        if w is None:
            raise ScheduleError(f"the {key[0]} {key[1]} workload has no launch {L.name!r}; it has {list(per_launch)}")
        if not isinstance(w, LaunchModelSpec):
            w = LaunchModelSpec(w)
        out.append(LaunchWork(L, L.num_ctas, (lambda idx, L=L, fn=w.steps: fn(_coords(L, idx))), schedule.num_warps,
                              cta_l1_bytes=w.cta_l1_bytes, dependent_loop=w.dependent_loop,
                              tma_row_bytes=w.tma_row_bytes, write_partial_share=w.write_partial_share,
                              cta_masked_tiles=(None if w.masked_tiles is None else
                                                (lambda idx, L=L, fn=w.masked_tiles: fn(_coords(L, idx)))),
                              reduce_adds=w.reduce_adds, split_load_tensors=w.split_load_tensors,
                              stat_load_tensors=w.stat_load_tensors, stage_loop=w.stage_loop))
    return out


def extra_device_bytes(problem: AttentionProblem, schedule: Schedule) -> int:
    """Device memory the schedule allocates beyond inputs and outputs (its registry entry)."""
    return spec_for(schedule.algorithm, schedule.phase).extra_device_bytes(problem, schedule)


from . import workloads_decode  # noqa: E402,F401  (registers the decode workload)
from . import workloads_hopper  # noqa: E402,F401  (registers the Hopper workloads)
