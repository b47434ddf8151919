"""Inference attention vocabulary: decode and prefill-with-cache over a (paged) KV cache. Stdlib only.

`DecodeProblem` says what is computed: per-sequence query lengths (1 for decode, a few for
speculative decode, a chunk for chunked prefill) attending to per-sequence cached lengths, GQA
(``heads_q`` a multiple of ``heads_kv``), an optional page size (a paged cache named by a block
table, as in vLLM).  Queries are aligned bottom-right against each sequence's cache: query row r of
sequence b (0 <= r < nq_b) sits at cache position L_b - nq_b + r and sees keys c <= L_b - nq_b + r.
A row that sees no key (nq_b > L_b, or an empty cache) has output 0.

`DecodeSchedule` says how: the split count (flash-decoding), whether all query heads of one KV head
share a CTA (GQA packing), the K/V tile, warps and pipeline stages.  `decode_launches()` gives the
launches; the Triton kernels (kernels/decode_kv.py) launch exactly them and the model
(memsim/workloads_decode.py) replays them.

Byte contract (e = element bytes, d = head_dim, S = num_splits, G = heads_q / heads_kv, g = query
heads per CTA (G packed, 1 not), rows = g * nq_b; statistics fp32 = 4 bytes).  Per sequence b the
keys are cut into S chunks of ``chunk_b = ceil(ceil(L_b / S) / block_n) * block_n`` keys; split s
covers keys [s * chunk_b, min((s + 1) * chunk_b, L_b)) and is *non-empty* when that range is;
n_b = ceil(L_b / chunk_b) splits are non-empty (0 when L_b = 0).

decode_split -- grid (S, B * units), units = heads_kv (packed) or heads_q; one CTA per
    (split, sequence, unit).  A non-empty split reads its query rows once (rows x d x e), and for
    every key of its range K and V once (d x e each); a paged cache also reads the block-table
    entry (4 bytes) of every page the range touches (with page_prefetch, the entries of the tile after
    the last one are not loaded: masked).  With S = 1 it writes O (rows x d x e) -- also
    for an empty cache (zeros, nothing read).  With S > 1 it writes a partial result: O_s (rows x d
    x 4, normalised) and its log2-sum-exp (rows x 4) into a workspace; an empty split moves nothing.
decode_combine -- only when S > 1; grid (rows, B * units), rows = g * max nq: one CTA per output row.
    It reads the row's n_b partials ((d + 1) x 4 bytes each; up to 32 per round trip) and writes the
    row of O (d x e); n_b = 0 writes zeros.  A combine CTA of a row past g * nq_b (a sequence with fewer query
    tokens than the longest: kernels.decode with cu_seqlens_q) moves nothing.
    With `combine_fused` there is no combine launch: the same reads and writes are made by the split CTA of each
    (sequence, unit) that arrives last (the S split CTAs count themselves in on a per-unit int32 counter: S atomic
    adds and one reset per unit, 4 bytes each), for all rows of that unit at once.
A sequence with no query token (nq_b = 0, allowed when another sequence has one) moves nothing in either launch:
its keys are not read (`DecodeProblem.read_seqlens_kv`).
Extra device memory: the workspace, B * units * S * g * max_nq * (d + 1) * 4 bytes (S > 1).

GQA packing is the IO lever at decode: packed, K/V are read once per KV head; unpacked, once per
query head (G times as many bytes).  Paging changes no byte count of K/V: a cache row of one head is
d x e contiguous bytes at a stride of heads_kv x d x e in both layouts; it adds the block table.

The split count: `auto_num_splits` ranks candidate counts with the closed-form time of
`estimate_time_graph_s` (the launches inside a CUDA graph: a fluid model of the split launch over the GPCs -- CTAs
placed one per SM first, the DRAM rate of Little's law on the measured loaded-latency curve or the decode loop's own
even-load rate, shared by GPC up to a cap, each CTA at most its own limit; the last partial wave on the SMs that
free first; 0.97 us per kernel -- and the combine launch of `estimate_time_mechanisms_s`).  `estimate_time_s` (one
mean-field stream, the rule until session 12) stays for comparison.  memsim's SimPy model ranks them by simulation
(`memsim.workloads_decode.rank_num_splits`); the kernels use this stdlib rule (no simpy there).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .schedule import DTYPE_BYTES, KERNEL_HEAD_DIMS, STAT_BYTES, Launch, ScheduleError, cdiv, resolved_scale

__all__ = ["DecodeProblem", "DecodeSchedule", "decode_launches", "decode_sram_bytes_per_cta", "split_ranges",
           "split_chunk", "nonempty_splits", "block_m_for", "decode_extra_device_bytes", "DeviceFacts",
           "estimate_time_s", "estimate_time_mechanisms_s", "estimate_time_graph_s", "auto_num_splits", "SPLIT_CANDIDATES", "decode_problem_from_dict",
           "decode_schedule_from_dict", "DECODE_LAUNCH_NAMES", "cta_limit_Bps", "inflight_bytes_per_cta",
           "pipeline_buffers", "round_trips_per_tile", "loop_instructions", "decode_loop_key",
           "dependent_loads_before_stream", "split_regs_per_thread", "split_shared_bytes",
           "combine_block_s", "decode_combine_key", "combine_regs_per_thread", "fused_combine", "fused_block_splits",
           "fused_arrive_s", "fused_combine_tail_s", "FUSED_COMBINE_ELEMENTS", "check_early_tile", "read_keys", "early_bubble_s", "EARLY_BUBBLE_ONE_PER_SM"]

DECODE_LAUNCH_NAMES = ("decode_split", "decode_combine")
#: split counts the rules rank (bounded per problem by the longest cache in K/V tiles)
SPLIT_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def _pos_int(owner, name, v, allow_zero=False):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ScheduleError(f"{owner}.{name} must be an int, got {v!r} ({type(v).__name__})")
    if v < 0 or (v == 0 and not allow_zero):
        raise ScheduleError(f"{owner}.{name} must be {'>= 0' if allow_zero else 'positive'}, got {v}")


def _pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


@dataclass(frozen=True)
class DecodeProblem:
    """Attention of a few new query tokens per sequence over each sequence's KV cache (bottom-right)."""

    heads_q: int
    heads_kv: int
    head_dim: int
    #: query tokens per sequence (>= 0, at least one >= 1; a sequence with no query token reads nothing)
    seqlens_q: tuple
    #: cached tokens per sequence (>= 0); the keys each sequence attends to
    seqlens_kv: tuple
    dtype: str = "bf16"
    #: tokens per page of a paged cache; None = contiguous (B, capacity, heads_kv, d)
    page_size: int | None = None
    scale: float | None = None
    #: tokens the cache can hold per sequence (Ncache, or pages per sequence x page_size); None = max(seqlens_kv)
    capacity_kv: int | None = None

    def __post_init__(self):
        o = "DecodeProblem"
        for n in ("heads_q", "heads_kv", "head_dim"):
            _pos_int(o, n, getattr(self, n))
        if self.heads_q % self.heads_kv:
            raise ScheduleError(f"{o}.heads_q ({self.heads_q}) must be a multiple of heads_kv ({self.heads_kv})")
        for n in ("seqlens_q", "seqlens_kv"):
            v = getattr(self, n)
            if isinstance(v, list):
                v = tuple(v)
                object.__setattr__(self, n, v)
            if not isinstance(v, tuple) or not v:
                raise ScheduleError(f"{o}.{n} must be a non-empty tuple of ints (one per sequence), got {v!r}")
            for x in v:
                _pos_int(o, n + " entry", x, allow_zero=True)
        if max(self.seqlens_q) == 0:
            raise ScheduleError(f"{o}.seqlens_q has no query token (all 0): nothing to compute")
        if len(self.seqlens_q) != len(self.seqlens_kv):
            raise ScheduleError(f"{o}: seqlens_q has {len(self.seqlens_q)} sequences but seqlens_kv has "
                                f"{len(self.seqlens_kv)}; give one length of each per sequence")
        if self.dtype not in DTYPE_BYTES:
            raise ScheduleError(f"{o}.dtype = {self.dtype!r} is not one of {', '.join(map(repr, DTYPE_BYTES))}")
        if self.page_size is not None:
            _pos_int(o, "page_size", self.page_size)
        if self.capacity_kv is None:
            object.__setattr__(self, "capacity_kv", max(self.seqlens_kv))
        else:
            _pos_int(o, "capacity_kv", self.capacity_kv, allow_zero=True)
            if self.capacity_kv < max(self.seqlens_kv):
                raise ScheduleError(f"{o}: a cache length {max(self.seqlens_kv)} exceeds capacity_kv {self.capacity_kv}")
        object.__setattr__(self, "scale", resolved_scale(o, self.scale, self.head_dim))

    @classmethod
    def uniform(cls, batch: int, heads_q: int, heads_kv: int, head_dim: int, seq_kv: int, seq_q: int = 1,
                **kw) -> "DecodeProblem":
        """Every sequence with the same query and cache length."""
        _pos_int("DecodeProblem.uniform", "batch", batch)
        return cls(heads_q, heads_kv, head_dim, (seq_q,) * batch, (seq_kv,) * batch, **kw)

    @property
    def batch(self) -> int:
        return len(self.seqlens_kv)

    @property
    def group_size(self) -> int:
        return self.heads_q // self.heads_kv

    @property
    def element_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def max_seq_q(self) -> int:
        return max(self.seqlens_q)

    @property
    def paged(self) -> bool:
        return self.page_size is not None

    @property
    def read_seqlens_kv(self) -> tuple:
        """The cached keys each sequence's launches read: its cache length, 0 for a sequence with no query token
        (the kernels skip it: no split and no combine row of it moves a byte)."""
        return tuple(L if nq else 0 for L, nq in zip(self.seqlens_kv, self.seqlens_q))

    def kv_bytes(self) -> int:
        """K and V of every cached token a query attends to (what any decode must read once)."""
        return 2 * self.heads_kv * sum(self.read_seqlens_kv) * self.head_dim * self.element_bytes

    def q_bytes(self) -> int:
        return self.heads_q * sum(self.seqlens_q) * self.head_dim * self.element_bytes

    def visible_keys(self, b: int, r: int) -> int:
        """Keys query row r of sequence b sees (bottom-right alignment)."""
        return max(0, min(self.seqlens_kv[b], self.seqlens_kv[b] - self.seqlens_q[b] + r + 1))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seqlens_q"], d["seqlens_kv"] = list(self.seqlens_q), list(self.seqlens_kv)
        return d


@dataclass(frozen=True)
class DecodeSchedule:
    """How a DecodeProblem is computed: splits, GQA packing, K/V tile, warps, stages."""

    algorithm: str = "decode"
    phase: str = "fwd"
    #: chunks the keys of each sequence are cut into (flash-decoding); 1 = no combine launch
    num_splits: int = 1
    #: all query heads of one KV head in one CTA (K/V read once per KV head); False = one CTA per query head
    pack_gqa: bool = True
    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 3
    #: paged cache: load the next tile's block-table entries one iteration ahead (same bytes)
    page_prefetch: bool = False
    #: the combine launch as a programmatic dependent launch of the split launch (sm_90; same launches and bytes):
    #: its CTAs start while the split's last CTAs run, load their sequence length, and wait (griddepcontrol.wait)
    #: for the split grid's writes before they read the partials; the split CTAs signal at their start
    combine_pdl: bool = False
    #: the combine folded into the split launch (S > 1): no combine launch; each split CTA writes its partial, then
    #: counts itself in on its (sequence, unit)'s counter (an int32 atomic, acq_rel at GPU scope, after a CTA barrier);
    #: the CTA that arrives last of the S merges the n_b partials of its rows (in the L2) and writes them to O, and
    #: sets the counter back to 0 (so a CUDA graph replays it).  combine_pdl is moot then
    combine_fused: bool = False
    #: CTAs per (split, unit) that share its keys and divide the head dim of V and O between them (a power of two; each
    #: CTA reads the unit's whole K tile -- the scores need every column -- and head_dim / split_d columns of V, and
    #: writes those columns of O or of its partial): split_d x the CTAs with no combine launch or partial; K is read
    #: split_d times from the L2 and once from DRAM (the CTAs of a unit run side by side; session 14)
    split_d: int = 1
    #: one split on a contiguous cache: the first K/V tile's loads go out at the CTA's start, beside its sequence
    #: length's, instead of after it (their addresses do not depend on the length, only their mask does): one round
    #: trip less before the stream (`dependent_loads_before_stream`).  The first tile is read whole -- block_n keys of
    #: K and of the CTA's V columns, even for a sequence shorter than that, and Q for an empty one (the byte contract,
    #: `read_keys`); needs the cache's capacity >= block_n (`check_early_tile`; session 19)
    early_tile: bool = False

    def __post_init__(self):
        o = "DecodeSchedule"
        if self.algorithm != "decode":
            raise ScheduleError(f"{o}.algorithm must be 'decode', got {self.algorithm!r}")
        if self.phase != "fwd":
            raise ScheduleError(f"{o}.phase must be 'fwd' (decode has no backward), got {self.phase!r}")
        for n in ("num_splits", "block_n", "num_warps", "num_stages", "split_d"):
            _pos_int(o, n, getattr(self, n))
        for n in ("pack_gqa", "page_prefetch", "combine_pdl", "combine_fused", "early_tile"):
            if not isinstance(getattr(self, n), bool):
                raise ScheduleError(f"{o}.{n} must be a bool, got {getattr(self, n)!r}")
        if not _pow2(self.block_n) or self.block_n < 16:
            raise ScheduleError(f"{o}.block_n must be a power of two >= 16, got {self.block_n}")
        if not _pow2(self.num_warps) or self.num_warps > 32:
            raise ScheduleError(f"{o}.num_warps must be a power of two in 1..32, got {self.num_warps}")
        if self.num_stages > 8:
            raise ScheduleError(f"{o}.num_stages must be 1..8, got {self.num_stages}")
        if not _pow2(self.split_d) or self.split_d > 8:
            raise ScheduleError(f"{o}.split_d must be 1, 2, 4 or 8, got {self.split_d}")

    def to_dict(self) -> dict:
        d = asdict(self)
        for n in ("combine_pdl", "combine_fused", "early_tile"):  # (added in sessions 12 / 13 / 19: the committed
            if not d[n]:                                           # records' schedules, which lack them, still compare)
                del d[n]
        if d["split_d"] == 1:  # (session 14, likewise)
            del d["split_d"]
        return d


def _from_dict(cls, d: dict):
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ScheduleError(f"unknown {cls.__name__} field(s) {sorted(unknown)}; allowed: {sorted(names)}")
    d = dict(d)
    for k in ("seqlens_q", "seqlens_kv"):
        if k in d and isinstance(d[k], list):
            d[k] = tuple(d[k])
    return cls(**d)


def decode_problem_from_dict(d: dict) -> DecodeProblem:
    return _from_dict(DecodeProblem, d)


def decode_schedule_from_dict(d: dict) -> DecodeSchedule:
    return _from_dict(DecodeSchedule, d)


# --- sizes of the launches ------------------------------------------------------------------------
def heads_per_cta(p: DecodeProblem, s: DecodeSchedule) -> int:
    return p.group_size if s.pack_gqa else 1


def units_per_seq(p: DecodeProblem, s: DecodeSchedule) -> int:
    """CTAs per (split, sequence): KV heads when packed, query heads when not."""
    return p.heads_kv if s.pack_gqa else p.heads_q


def block_m_for(rows: int) -> int:
    """Row tile of a CTA: the next power of two >= rows, at least 16 (tensor-core dots)."""
    return max(16, 1 << max(0, math.ceil(math.log2(max(1, rows)))))


def split_chunk(seq_kv: int, num_splits: int, block_n: int) -> int:
    """Keys per split of one sequence (a multiple of block_n; 0 for an empty cache)."""
    return cdiv(cdiv(seq_kv, num_splits), block_n) * block_n if seq_kv > 0 else 0


def nonempty_splits(seq_kv: int, num_splits: int, block_n: int) -> int:
    c = split_chunk(seq_kv, num_splits, block_n)
    return cdiv(seq_kv, c) if c else 0


def split_ranges(seq_kv: int, num_splits: int, block_n: int) -> list:
    """[(k0, k1)] of the non-empty splits of a sequence with `seq_kv` cached keys."""
    c = split_chunk(seq_kv, num_splits, block_n)
    return [(k0, min(k0 + c, seq_kv)) for k0 in range(0, seq_kv, c)] if c else []


def decode_sram_bytes_per_cta(p: DecodeProblem, s: DecodeSchedule) -> int:
    """Shared memory of a split CTA: the query tile resident, num_stages x (K tile + V tile) streamed."""
    e, d = p.element_bytes, p.head_dim
    bm = block_m_for(heads_per_cta(p, s) * p.max_seq_q)
    return bm * d * e + s.num_stages * s.block_n * (d + v_columns(p, s)) * e


def decode_launches(p: DecodeProblem, s: DecodeSchedule) -> tuple:
    """The launches of `s` on `p` in execution order (module doc)."""
    if not isinstance(p, DecodeProblem) or not isinstance(s, DecodeSchedule):
        raise TypeError("decode_launches takes a DecodeProblem and a DecodeSchedule")
    n_units = p.batch * units_per_seq(p, s)
    smem = decode_sram_bytes_per_cta(p, s)
    check_split_d(p, s)
    check_early_tile(p, s)
    # split_d > 1: the CTAs of one unit are adjacent on the grid's second axis (unit x split_d + part)
    out = [Launch("decode_split", (s.num_splits, n_units * s.split_d, 1), ("split", "unit", "one"), smem)]
    if s.num_splits > 1 and not fused_combine(s):
        rows = heads_per_cta(p, s) * p.max_seq_q
        out.append(Launch("decode_combine", (rows, n_units, 1), ("row", "unit", "one"), 0))
    return tuple(out)


def check_split_d(p: DecodeProblem, s: DecodeSchedule) -> None:
    """split_d must leave each CTA at least 16 columns of V (a tensor-core dot's n) and divide the head dim."""
    if s.split_d > 1 and (p.head_dim % s.split_d or p.head_dim // s.split_d < 16):
        raise ScheduleError(f"split_d {s.split_d} leaves {p.head_dim / s.split_d:g} columns of head_dim {p.head_dim} "
                            f"per CTA; it must divide head_dim into parts of at least 16")


def check_early_tile(p: DecodeProblem, s: DecodeSchedule) -> None:
    """early_tile loads keys 0..block_n-1 of every sequence before its length is known: one split, a contiguous cache
    and a capacity of at least block_n keys."""
    if not s.early_tile:
        return
    if s.num_splits != 1 or p.paged or p.capacity_kv < s.block_n:
        raise ScheduleError(f"early_tile needs one split on a contiguous cache of capacity >= block_n ({s.block_n}); "
                            f"got num_splits {s.num_splits}, {'paged' if p.paged else 'contiguous'}, capacity "
                            f"{p.capacity_kv}")


def read_keys(p: DecodeProblem, s: DecodeSchedule, b: int) -> int:
    """Cached keys of sequence b whose K (and V columns) each CTA of a unit reads: its read length
    (`DecodeProblem.read_seqlens_kv`), at least block_n with early_tile (the first tile is read whole)."""
    L = p.read_seqlens_kv[b]
    return max(L, s.block_n) if s.early_tile else L


def v_columns(p: DecodeProblem, s: DecodeSchedule) -> int:
    """Columns of V (and O) one split CTA reads (writes): head_dim / split_d."""
    return p.head_dim // s.split_d


def kv_tile_bytes(p: DecodeProblem, s: DecodeSchedule) -> int:
    """Bytes of one K/V tile of a split CTA: block_n keys of K (every column) and of V (its `v_columns`)."""
    return s.block_n * (p.head_dim + v_columns(p, s)) * p.element_bytes


def split_d_dram_share(p: DecodeProblem, s: DecodeSchedule) -> float:
    """The DRAM share of the K/V bytes a split CTA copies in when split_d CTAs share a unit's keys: they run side by
    side (adjacent on the grid, one wave), so one of them misses each K line and the L2 serves the others, and V is
    read once: 2 d / (split_d (d + d / split_d)) -- 2/3 at split_d 2 (1 without).  Session 14, H100: 8 x 8k at S = 1
    ran in 89.5 us with split_d 2 (bn128), 98 % of the card's read rate over the unique bytes -- K is not read twice
    from DRAM."""
    d = p.head_dim
    return 2 * d / (s.split_d * (d + v_columns(p, s)))


def decode_extra_device_bytes(p: DecodeProblem, s: DecodeSchedule) -> int:
    """The workspace of the partials (S > 1); the fused combine's counters (one int32 per (sequence, unit)) are a
    buffer kernels.decode keeps per device, not counted here."""
    if s.num_splits == 1:
        return 0
    rows = heads_per_cta(p, s) * p.max_seq_q
    return p.batch * units_per_seq(p, s) * s.num_splits * rows * (p.head_dim + 1) * STAT_BYTES


def check_kernel_head_dim(p: DecodeProblem) -> None:
    if p.head_dim not in KERNEL_HEAD_DIMS:
        raise ScheduleError(f"head_dim {p.head_dim} is not supported by the kernels; supported: {KERNEL_HEAD_DIMS}")


# --- the split-count rule (closed form of the model's mechanism) --------------------------------------
@dataclass(frozen=True)
class DeviceFacts:
    """The figures the split rule needs (from a memsim hardware preset: `from_hardware`).

    With a dram_stream calibration (memsim/calibration.py) the memory system is the measured loaded-latency
    curve ``latency_curve`` ((achieved B/s, latency s), ...), the per-CTA streaming limit ``cta_max_Bps`` and
    the highest rate reached ``dram_Bps``; ``mem_latency_s`` is then the unloaded end of the curve.  Without
    one (other presets): one latency, the preset's ``mem_latency_s``, and the datasheet DRAM rate."""

    num_sms: int
    dram_Bps: float
    mem_latency_s: float
    launch_overhead_s: float
    smem_per_sm_bytes: int
    smem_reserved_per_block_bytes: int
    max_ctas_per_sm: int
    max_warps_per_sm: int
    name: str = ""
    latency_curve: tuple = ()
    cta_max_Bps: float | None = None
    source: str = ""
    #: SM clock, and the SASS instructions per byte of the dram_stream microbenchmark's loop (its _mb_stream loop:
    #: 85 per 16 KB tile; kernels.compiled_facts): what its measured per-CTA limit already includes
    clock_Hz: float = 1.98e9
    stream_instructions_per_byte: float = 0.0
    #: the block scheduler starts one CTA every this many seconds on the whole GPU (launch_gpu microbenchmark,
    #: empty kernels of 1k-68k CTAs; `Calibration.cta_dispatch_s`); 0 without a calibration
    cta_dispatch_s: float = 0.0
    #: 32-bit registers per SM (the preset's regs_per_sm; 0: registers do not limit residency)
    regs_per_sm: int = 0

    @property
    def stream_tile_compute_s(self) -> float:
        """Seconds the dram_stream microbenchmark's own loop computes per 16 KB tile (its tile at its per-CTA maximum:
        0.35 us on the H100).  Its curve's "latency" (in-flight bytes / rate, Little's law) holds it, since its loop
        issues a tile's loads only after computing an earlier one (the `pipeline` points of
        benchmarks/decode_mechanisms_gpu.py: one-buffer loops wait 0.42-0.49 us per tile at one CTA where the curve
        says 0.86).  NOT taken off in the decode model: tried once the loop's own compute was measured (the `loop`
        microbenchmark, third decode session), it made the model too fast on 67 of the 82 measured decode cases
        (memsim/MODEL.md decode, "Tried, NOT adopted").  0 without a curve."""
        return STREAM_TILE_BYTES / self.cta_max_Bps if (self.cta_max_Bps and self.latency_curve) else 0.0

    @classmethod
    def from_hardware(cls, hw, num_sms: int | None = None) -> "DeviceFacts":
        """The preset's figures, with its dram_stream calibration (microbenchmark curves) where it has one."""
        from .calibration import calibration_for
        cal = calibration_for(hw)
        common = dict(launch_overhead_s=hw.launch_overhead_s, smem_per_sm_bytes=hw.smem_per_sm_bytes,
                      regs_per_sm=hw.regs_per_sm,
                      smem_reserved_per_block_bytes=hw.smem_reserved_per_block_bytes,
                      max_ctas_per_sm=hw.max_ctas_per_sm, max_warps_per_sm=hw.max_warps_per_sm, name=hw.name)
        if cal.dram_latency_curve:
            curve = tuple((float(b), float(t)) for b, t in cal.dram_latency_curve)
            return cls(num_sms or hw.num_sms, float(cal.dram_stream_peak_Bps or curve[-1][0]), curve[0][1],
                       latency_curve=curve, cta_max_Bps=cal.cta_stream_max_Bps,
                       source=f"dram_stream microbenchmark: {cal.source}", clock_Hz=cal.sm_clock_Hz or hw.clock_Hz,
                       stream_instructions_per_byte=STREAM_LOOP_INSTRUCTIONS_PER_BYTE,
                       cta_dispatch_s=cal.cta_dispatch_s, **common)
        return cls(num_sms or hw.num_sms, hw.dram_bw_Bps * hw.dram_efficiency, hw.mem_latency_s,
                   source=f"{hw.name} datasheet: mem_latency_s, dram_bw_Bps x dram_efficiency (no dram_stream "
                          f"calibration)", **common)

    def ctas_per_sm(self, smem: int, warps: int, regs_per_thread: int | None = None) -> int:
        """Resident CTAs per SM: shared memory, warps, CTA cap, and -- given the compiled kernel's registers -- the
        register file (allocated in units of 8 per thread, as memsim/MODEL.md's occupancy row)."""
        n = min(self.max_ctas_per_sm, self.smem_per_sm_bytes // (smem + self.smem_reserved_per_block_bytes),
                self.max_warps_per_sm // warps)
        if regs_per_thread and self.regs_per_sm:
            n = min(n, self.regs_per_sm // (-(-regs_per_thread // 8) * 8 * 32 * warps))
        return max(1, n)

    def stream(self, resident_ctas: float, inflight_bytes: float, limit_Bps: float | None = None) -> tuple:
        """(bandwidth B/s, per-CTA rate B/s, latency s) when `resident_ctas` CTAs each keep `inflight_bytes` in
        flight: with a latency curve, the fixed point B = n x min(F / latency(B), cta_max_Bps) <= dram_Bps
        (Little's law at the load it makes); without, n x F / mem_latency_s capped at dram_Bps."""
        if resident_ctas <= 0:
            return 0.0, 0.0, self.mem_latency_s
        if self.latency_curve:
            from .calibration import stream_fixed_point
            b, lat = stream_fixed_point(self.latency_curve, self.dram_Bps, limit_Bps or self.cta_max_Bps,
                                        resident_ctas, inflight_bytes)
        else:
            lat = self.mem_latency_s
            b = min(self.dram_Bps, resident_ctas * inflight_bytes / lat)
        return b, b / resident_ctas, lat


COMPILED_FILE = __import__("pathlib").Path(__file__).resolve().parent / "decode_compiled_sm90.json"


def int_spec(v: int) -> str:
    """How Triton 3.6 specialises an integer kernel argument (its binder): "1" (== 1: a constant), "d" (divisible
    by 16, 0 included), "x" (neither).  Two launches differing here are two compiled kernels."""
    return "1" if v == 1 else ("d" if v % 16 == 0 else "x")


def _loop_key_base(p: DecodeProblem, s: DecodeSchedule) -> str:
    rows = block_m_for(heads_per_cta(p, s) * p.max_seq_q)
    return (f"bn{s.block_n}-st{s.num_stages}-w{s.num_warps}-d{p.head_dim}-{p.dtype}-page{p.page_size or 0}"
            f"-pf{int(bool(s.page_prefetch and p.paged))}-m{rows}" + (f"-sd{s.split_d}" if s.split_d > 1 else ""))


def decode_loop_key(p: DecodeProblem, s: DecodeSchedule) -> str:
    """Key of a split-kernel variant in the compiled-facts table: everything that makes `kernels.decode_kv`'s
    launch another compiled kernel -- the constexprs (tile, stages, warps, head dim, dtype, page size, prefetch,
    rows, query heads per CTA GROUP of G_TOTAL, SPLIT) and the integer arguments' specialisation (`int_spec` of
    NQ, UNITS, NUM_SPLITS and a paged cache's block-table row stride, its pages per sequence).  Until 2026-11-26
    (third decode session) the key ended at the rows, and one key held kernels of different specialisations
    (split vs not: 92 vs 78 registers for one key on the card)."""
    key = (f"{_loop_key_base(p, s)}-g{heads_per_cta(p, s)}of{p.group_size}-q{int_spec(p.max_seq_q)}"
           f"-u{int_spec(units_per_seq(p, s))}-s{int_spec(s.num_splits)}")
    if p.paged:
        key += f"-bt{int_spec(cdiv(max(p.capacity_kv, 1), p.page_size))}"
    if s.early_tile:  # (the EARLY constexpr: the first tile peeled before the loop)
        key += "-e1"
    return key


def combine_block_s(num_splits: int) -> int:
    """Partials the combine kernel loads per round trip (its BLOCK_S): the next power of two >= S, 16 to 32."""
    return min(32, block_m_for(num_splits))


def _combine_key_base(p: DecodeProblem, s: DecodeSchedule) -> str:
    return f"combine-bs{combine_block_s(s.num_splits)}-d{p.head_dim}-{p.dtype}"


def decode_combine_key(p: DecodeProblem, s: DecodeSchedule) -> str:
    """Key of a combine-kernel variant in the compiled-facts table: BLOCK_S, head dim, dtype, the constexprs GROUP
    and BLOCK_N, and the specialisation (`int_spec`) of NQ, UNITS and NUM_SPLITS."""
    return (f"{_combine_key_base(p, s)}-g{heads_per_cta(p, s)}-bn{s.block_n}-q{int_spec(p.max_seq_q)}"
            f"-u{int_spec(units_per_seq(p, s))}-s{int_spec(s.num_splits)}")


def combine_regs_per_thread(p: DecodeProblem, s: DecodeSchedule) -> int | None:
    """Registers per thread of the compiled combine kernel (None: not in the table)."""
    e = _lookup(decode_combine_key(p, s), _combine_key_base(p, s))
    return e.get("regs_per_thread") if e else None


_COMPILED: dict = {}


def _compiled_table() -> dict:
    if "entries" not in _COMPILED:
        import json
        try:
            doc = json.loads(COMPILED_FILE.read_text())
            _COMPILED["entries"] = doc["entries"]
            _COMPILED["measured"] = doc.get("measured_loop") or {}
        except (OSError, ValueError, KeyError):
            _COMPILED["entries"], _COMPILED["measured"] = {}, {}
    return _COMPILED["entries"]


def _lookup(key: str, base: str) -> dict | None:
    """The table's entry of `key`; without one, the entry of another specialisation of the same loop (`base`: the
    key's tile/layout part), the one sharing the most specialisation fields (ties: the first key in sorted order)
    -- the loop body is the same code, its registers and instruction counts may differ a little (none: None)."""
    tab = _compiled_table()
    if key in tab:
        return tab[key]
    fields = key[len(base):].split("-")
    cands = [k for k in tab if k.startswith(base + "-")]
    if not cands:
        return tab.get(base)  # a table written before the specialisation was in the key
    return tab[min(cands, key=lambda k: (-len(set(k[len(base):].split("-")) & set(fields)), k))]


def _compiled_entry(p: DecodeProblem, s: DecodeSchedule) -> dict | None:
    return _lookup(decode_loop_key(p, s), _loop_key_base(p, s))


def loop_instructions(p: DecodeProblem, s: DecodeSchedule) -> int | None:
    """SASS instructions per warp per K/V tile of the compiled split kernel (memsim/decode_compiled_sm90.json,
    made by `python -m kernels.decode_compiled` without a GPU); None for a variant not in the table."""
    e = _compiled_entry(p, s)
    return e.get("loop_instructions") if e else None


def split_regs_per_thread(p: DecodeProblem, s: DecodeSchedule) -> int | None:
    """Registers per thread of the compiled split kernel (memsim/decode_compiled_sm90.json); None if not in it."""
    e = _compiled_entry(p, s)
    return e.get("regs_per_thread") if e else None


def split_shared_bytes(p: DecodeProblem, s: DecodeSchedule) -> int:
    """Shared memory one split CTA holds on the SM: the compiled kernel's (memsim/decode_compiled_sm90.json: what
    Triton passes at launch, which the SM allocates), else the schedule's nominal `decode_sram_bytes_per_cta`.
    They differ: Triton buffers num_stages - 1 K/V tiles of a pipelined loop and ONE of a loop it does not
    pipeline (the default bn64/st3/d128 kernel holds 71680 B, not 102400: 3 CTAs per SM, not 2)."""
    e = _compiled_entry(p, s)
    return int(e["shared_bytes"]) if e and e.get("shared_bytes") else decode_sram_bytes_per_cta(p, s)


def cta_limit_Bps(p: DecodeProblem, s: DecodeSchedule, f: "DeviceFacts", ctas_on_sm: int = 1) -> float | None:
    """The most one split CTA streams whatever the memory system does: per K/V tile, its copies at the
    microbenchmark stream's pure copy rate, then the warps issue the tile loop's instructions (a warp issues at
    most one per clock; the stream microbenchmark's own loop -- f.stream_loop_instructions per byte -- is taken
    out of its measured limit).  None without a per-CTA limit; the copy rate alone when the variant's loop is
    not in the compiled table."""
    if not f.cta_max_Bps:
        return None
    tile = kv_tile_bytes(p, s)
    per_byte = 1.0 / f.cta_max_Bps - f.stream_instructions_per_byte / f.clock_Hz
    n = loop_instructions(p, s)
    # each warp issues at most one instruction per clock; the SM's 4 schedulers are shared by the warps of all
    # `ctas_on_sm` CTAs resident on it (the issue limit is the SM's, memsim/MODEL.md "issue limit")
    warps = s.num_warps * max(1, ctas_on_sm)
    t = tile * per_byte + (n * warps / (min(ISSUE_LANES_PER_SM, warps) * f.clock_Hz) if n else 0.0)
    return tile / t


def cta_tile_costs(p: DecodeProblem, s: DecodeSchedule, f: "DeviceFacts", ctas_on_sm: int = 1,
                   measured: bool = True) -> tuple | None:
    """(seconds per copied byte, issue seconds per tile) of one split CTA (a tile of b bytes busies the CTA b x the
    first + the second); None without a per-CTA limit.  A partial tile copies fewer bytes but issues the whole loop
    body (masked lanes).  The parts are the stream microbenchmark's copy rate and the loop's issue (what
    `cta_limit_Bps`, the split rule's, uses); with `measured` and a `loop_compute_s` for the variant, both are
    scaled so that a whole tile takes that measured compute (the decode loop's own, `loop` microbenchmark)."""
    if not f.cta_max_Bps:
        return None
    per_byte = 1.0 / f.cta_max_Bps - f.stream_instructions_per_byte / f.clock_Hz
    n = loop_instructions(p, s)
    warps = s.num_warps * max(1, ctas_on_sm)
    issue = n * warps / (min(ISSUE_LANES_PER_SM, warps) * f.clock_Hz) if n else 0.0
    c = loop_compute_s(p, s, f, ctas_on_sm) if measured else None
    if c:
        k = c / (inflight_bytes_per_cta(p, s) * per_byte + issue)
        return per_byte * k, issue * k
    return per_byte, issue


#: the layout classes of the tile loop whose measured compute / replay ratio stands for the variants not measured
LOOP_CLASSES = ("contiguous", "paged_page_rows", "paged_per_key", "paged_per_tile", "paged_serial")


def page_rows(p: DecodeProblem, s: DecodeSchedule) -> bool:
    """Whether the split kernel's per-key page walk has loop-invariant page and row terms (kernels/decode_kv.py's
    PAGE_ROWS: a power-of-two page below the tile that divides it, so key n of every tile is row n % page of the
    tile's page n // page; since 2026-11-26, session 10): a loop of its own (page16 bn64: 454 SASS instructions per
    iteration, the general per-key walk 647)."""
    ps = p.page_size or 0
    return 0 < ps < s.block_n and s.block_n % ps == 0 and ps & (ps - 1) == 0


def loop_layout_class(p: DecodeProblem, s: DecodeSchedule) -> str:
    """Which loop body the compiled kernel has: contiguous; paged without page_prefetch (one buffer, not pipelined:
    `paged_serial`); paged with page_prefetch and one table entry per tile (page_size a multiple of block_n), one
    per key with loop-invariant page and row terms (`page_rows`), or one per key in general."""
    if not p.paged:
        return "contiguous"
    if not s.page_prefetch:
        return "paged_serial"
    if page_rows(p, s):
        return "paged_page_rows"
    return "paged_per_tile" if p.page_size % s.block_n == 0 else "paged_per_key"


def measured_loop_compute(hw_name: str) -> dict | None:
    """The `loop` microbenchmark's compute per tile of the decode loop on this preset, as merged into
    memsim/decode_compiled_sm90.json ("measured_loop"; `python benchmarks/decode_mechanisms_gpu.py --merge-loop
    RUN`): {"variants": {loop key: {"period_s", "replay_s", "class", ...}}, "class_ratio": {class: ratio}, ...};
    None for a preset without one."""
    _compiled_table()
    return (_COMPILED.get("measured") or {}).get(hw_name)


def _measured_combine(f: "DeviceFacts") -> dict:
    """The `pc` probes' combine figures of the facts' preset ("combine" of "measured_loop" in
    memsim/decode_compiled_sm90.json; `python benchmarks/decode_probes.py --merge-combine RUN`); {} without."""
    return ((measured_loop_compute(f.name) or {}).get("combine") or {}) if f.name else {}


def combine_interval_s(p: DecodeProblem, f: "DeviceFacts") -> float:
    """Seconds an SM spends per combine CTA when several CTAs share it, beyond the DRAM's share of their bytes: the
    `pc` probes (the real `_decode_combine`, one 64-key tile per split, 32 .. 8448 CTAs; H100 80GB HBM3, 2026-11-26
    11:16 UTC) add the same time per extra CTA per SM from 4 to 64 CTAs per SM, resident or not -- the slope of ncu
    time over CTAs per SM at 4 partials per CTA (1-4 KB, 0.6 TB/s: not DRAM): d = 64 / 128 / 256 -> 0.23 / 0.39 /
    0.29 us; interpolated in log2 d, clamped; 0 without the probes.  Not the issue count either (d = 256 has more
    SASS instructions than d = 128 and the smaller figure): the cause is not identified.  The model applies it as
    the rate at which the SMs take combine CTAs (the launch's `cta_dispatch_s` = it / SMs); the bytes go on the DRAM
    link as before (at 32 partials the card's slope, 0.85 / 1.47 us at d = 128 / 256, is about this + the bytes at
    an SM's share of the DRAM bandwidth -- the model takes the larger of the two, not their sum: 8448 CTAs of d =
    128 -18 %, tried as one curve over bytes: the 67 measured combines 5.4 -> 7.2 % median)."""
    pts = sorted((float(k), v) for k, v in (_measured_combine(f).get("interval_s") or {}).items())
    if not pts:
        return 0.0
    return max(0.0, _interp(math.log2(p.head_dim), [(math.log2(d), v) for d, v in pts]))


def combine_first_round_s(f: "DeviceFacts", nbytes: float) -> float | None:
    """Seconds a lone combine CTA's first round of partials takes, load to fold, by the bytes it reads: the `pc`
    probes at one CTA per SM or fewer (32 / 128 CTAs), measured ncu time - launch - the sequence-length load before
    it (0.93 us at 2-4 KB, 3.0 at 16.5 KB, 4.1 at 33 KB on the H100), linear in bytes between them, clamped.  The
    old form (one unloaded latency for a 32-partial round) missed the d = 256 / 32-partial rounds by 2-3 us.
    None without the probes."""
    pts = sorted((float(b), float(t)) for b, t in (_measured_combine(f).get("first_round") or []))
    if not pts:
        return None
    return max(0.0, _interp(float(nbytes), pts))


def loop_compute_s(p: DecodeProblem, s: DecodeSchedule, f: "DeviceFacts", ctas_on_sm: int = 1) -> float | None:
    """Seconds one split CTA computes a whole K/V tile, `ctas_on_sm` CTAs sharing its SM: the measured compute at one
    CTA per SM -- the warp-issue replay of the compiled loop at one CTA (`tile_cycles[0]`) times the measured /
    replayed ratio of the `loop` microbenchmark, the variant's own where it was measured, else the median of its
    layout class (`loop_layout_class`) -- plus what the replay adds for the other CTAs on the SM
    (`tile_cycles[n - 1] - tile_cycles[0]`; the `loop2` set's shared points: the ratio applied to the whole replay
    over-states c at 2-3 CTAs per SM by 7-13 % on the default and d64 loops, this form is within 5 %).  The microbenchmark runs the real `_decode_split` with K/V views of stride 0 (every
    copy an L2 hit, hidden behind the tiles in flight): H100, the replay is 11-28 % under the measured compute of
    7 contiguous variants (median 22 %).  None without a replay or a measurement for the class, and for one-buffer
    loops (`pipeline_buffers` 1: num_stages 2, paged without page_prefetch), whose hidden period is the L2 latency of
    a tile + c, not c (callers keep the copy + issue costs)."""
    meas = measured_loop_compute(f.name) if f.name else None
    e = _compiled_entry(p, s)
    cyc = (e or {}).get("tile_cycles")
    if not meas or not cyc or pipeline_buffers(p, s) <= 1:  # measured on pipelined loops only (see the docstring)
        return None
    own = meas.get("variants", {}).get(decode_loop_key(p, s))
    ratio = own["period_s"] / own["replay_s"] if own else meas.get("class_ratio", {}).get(loop_layout_class(p, s))
    if not ratio:
        return None
    n = max(1, ctas_on_sm)
    cycles = cyc[min(n, len(cyc)) - 1] * (n / len(cyc) if n > len(cyc) else 1.0)
    # the measured c at one CTA per SM, plus what the replay adds for the other CTAs sharing the SM: the part of c
    # the replay misses is the CTA's own latency, not issue the others compete for (`loop2` shared points, H100
    # 2026-11-26 08:40: c at 2 / 3 CTAs per SM within 5 % this way, 7-13 % over with the ratio applied to all)
    return (ratio * cyc[0] + (cycles - cyc[0])) / f.clock_Hz


def loop_epilogue_s(p: DecodeProblem, s: DecodeSchedule, f: "DeviceFacts") -> float:
    """Seconds a split CTA of a pipelined loop spends after its loop and its last tile's dots (normalising O, storing
    O or its partial and statistics, ending): the `loop` microbenchmark's intercepts -- the median over its contiguous
    pipelined variants at 4 CTAs (one per SM, streaming: the 06:48 and 08:40 runs) of the measured intercept of time
    over cache length minus the model's without it ("epilogue_s" of memsim/decode_compiled_sm90.json's
    "measured_loop", `python benchmarks/decode_mechanisms_gpu.py --merge-epilogue RUN ...`).  0 for one-buffer loops
    (not measured there: their hidden period is an L2 latency + c) and for presets without a measurement."""
    if pipeline_buffers(p, s) <= 1 or not f.name:
        return 0.0
    return float((measured_loop_compute(f.name) or {}).get("epilogue_s") or 0.0)


def pipeline_buffers(p: DecodeProblem, s: DecodeSchedule) -> int:
    """K+V tiles the compiled split kernel keeps in flight while it computes one: the table's `tiles_in_flight`
    (read off the loop's SASS by `kernels.decode_compiled.tiles_in_flight`: ``DEPBAR.LE SB0, N`` over the commit
    groups of an iteration, + 1); for an entry without it, shared bytes // tile bytes; without an entry,
    num_stages - 1, and 1 for a paged loop without page_prefetch, which Triton does not pipeline (its K/V addresses
    come from a table load of the same iteration).  num_stages 2 gives 1 whatever the shared memory holds (its loop
    waits for every copy: DEPBAR.LE SB0, 0x0)."""
    tile = kv_tile_bytes(p, s)
    e = _compiled_entry(p, s)
    if e and e.get("tiles_in_flight"):
        return int(e["tiles_in_flight"])
    if e and e.get("shared_bytes"):
        return max(1, e["shared_bytes"] // tile)
    return 1 if (p.paged and not s.page_prefetch) else max(1, s.num_stages - 1)


def inflight_bytes_per_cta(p: DecodeProblem, s: DecodeSchedule) -> int:
    """Bytes of one K+V tile: the unit the split loop keeps in flight (`pipeline_buffers` of them in the SimPy model,
    memsim.workloads_decode.loop_step_s; the closed form `estimate_time_s` keeps one per round trip); with split_d,
    the K tile and the CTA's columns of the V tile (`kv_tile_bytes`)."""
    return kv_tile_bytes(p, s)


def dependent_loads_before_stream(p: DecodeProblem, s: DecodeSchedule, launch_name: str) -> int:
    """Memory round trips a CTA waits for, one after the other, before it can issue its first K/V (or partial)
    load -- read off the kernels' code (kernels/decode_kv.py), not fitted:

    * `_decode_split`: ``L = tl.load(SEQLENS + b)``; its key range (k0, k1) and every address follow from it (1);
      a paged cache then needs the first tile's block-table entry before the first K/V address (+1: loaded before
      the loop with page_prefetch, in the pipeline's prologue by Triton without -- later tiles' entries are
      prefetched either way);
    * `_decode_combine`: ``L = tl.load(SEQLENS + b)`` gives n_b, the partials it reads (1).
    Each costs the unloaded DRAM latency (`DeviceFacts.mem_latency_s`: the dram_stream curve's low end): the
    loads are issued at the CTA's start, before the launch loads the memory system."""
    if launch_name not in DECODE_LAUNCH_NAMES:
        raise ScheduleError(f"unknown decode launch {launch_name!r}; known: {', '.join(DECODE_LAUNCH_NAMES)}")
    if launch_name == "decode_combine":
        return 1
    if s.early_tile:  # the first tile's loads go out beside the length's (session 19)
        return 0
    return 1 + int(p.paged)


def round_trips_per_tile(p: DecodeProblem, s: DecodeSchedule) -> int:
    """2 when the loop is not pipelined (one buffer: the tile's load, then its math -- or its block-table entry,
    then its load), else 1."""
    return 2 if pipeline_buffers(p, s) <= 1 else 1


def estimate_time_s(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts) -> dict:
    """Closed-form GPU time of the launches (no host time), and the terms that decide it.

    Split launch: the CTAs run in waves over num_sms x ctas_per_sm slots; the resident ones each keep
    `inflight_bytes_per_cta` in flight (a paged cache without page_prefetch waits for the table entry before
    each tile's loads: two round trips, half of it on average) and stream at the rate the memory system gives
    at the load they make (`DeviceFacts.stream`: the measured loaded-latency curve, Little's law);
    a CTA of N bytes takes N / r + max(0, latency - min(F, N) / r) (its first bytes one latency after its start);
    time = overhead + the slowest slot's chain of CTAs.
    Combine: overhead + one unloaded latency per 32 partials + (partials read + O written) / DRAM rate."""
    e, d = p.element_bytes, p.head_dim
    g = heads_per_cta(p, s)
    units = units_per_seq(p, s)
    rounds = round_trips_per_tile(p, s)
    slots = f.num_sms * f.ctas_per_sm(decode_sram_bytes_per_cta(p, s), s.num_warps)
    cta_b, total = [], 0
    for b in range(p.batch):
        q = g * p.seqlens_q[b] * d * e
        for k0, k1 in split_ranges(read_keys(p, s, b), s.num_splits, s.block_n):
            nb = q + (k1 - k0) * (d + v_columns(p, s)) * e
            total += nb * units * s.split_d
            cta_b += [nb] * (units * s.split_d)
    inflight = inflight_bytes_per_cta(p, s) / rounds
    import heapq
    first = heapq.nlargest(slots, cta_b)  # the first wave, longest first: the load the CTAs make
    load = sum(min(inflight, x) for x in first)
    bw, _, lat = f.stream(load / inflight if inflight else 0, inflight, cta_limit_Bps(p, s, f))
    limit = cta_limit_Bps(p, s, f) or float("inf")
    times, memo = [], {}
    for x in cta_b:  # pipelined: the first min(F, x) bytes arrive one latency after the start, the rest at r
        if x:
            t = memo.get(x)
            if t is None:
                r = min(limit, min(inflight, x) / lat)
                t = memo[x] = x / r + max(0.0, lat - min(inflight, x) / r)
            times.append(t)
    rate = max(cta_b) / max(times) if times else 0.0
    t_chain = _slot_makespan(times, slots)
    t_split = f.launch_overhead_s + t_chain
    t_comb = 0.0
    if s.num_splits > 1:
        part = sum(nonempty_splits(L, s.num_splits, s.block_n) * g * nq * (d + 1) * STAT_BYTES
                   for L, nq in zip(p.read_seqlens_kv, p.seqlens_q)) * units
        out = sum(p.seqlens_q) * p.heads_q * d * e
        rounds_c = cdiv(s.num_splits, 32)
        t_comb = f.launch_overhead_s + f.mem_latency_s * rounds_c + (part + out) / f.dram_Bps
    return {"time_s": t_split + t_comb, "split_s": t_split, "combine_s": t_comb, "ctas": len(cta_b),
            "slots": slots, "cta_rate_Bps": rate, "stream_Bps": bw, "latency_s": lat, "kv_bytes": total}


def estimate_time_mechanisms_s(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts) -> dict:
    """Closed-form GPU time of the launches (no host time), and the terms that decide it -- the SimPy model's
    mechanisms (memsim/workloads_decode.py, memsim/MODEL.md decode) at the load of the first wave, without events:

    Split launch: residency by the compiled kernel's shared memory and registers (`split_shared_bytes`,
    `split_regs_per_thread`); the resident CTAs each keep `pipeline_buffers` K/V tiles in flight (the loop's SASS
    order: tile i + B issued once tile i is computed) and see the memory latency of that load's fixed point on
    the measured curve (`buffered_stream_latency_s`; + the scattered-page latency of a pipelined paged loop,
    `paged_latency_extra_s`); a CTA of n tiles takes its dependent loads (`dependent_loads_before_stream`, one
    unloaded latency each), then the loop (`loop_step_s`: its first `buffers` tiles one latency after the start,
    then one tile per max(compute, (latency + compute) / B)), then what its last tile's dots take beyond the loop's
    compute (`last_tile_drain_s`); the CTAs are handed out longest first over the slots, one every
    `cta_dispatch_s`; + the launch overhead.
    Combine: one CTA per output row over its own slots (compiled registers); each waits for its sequence length,
    then its first round of partials one latency after (one latency more to arrive; partials in the L2), then every
    further round `combine_round_s` (the rounds microbenchmark); the SMs take one CTA per `combine_interval_s`
    each; + the launch overhead; at least the partials and O over the DRAM rate.  The SimPy model follows the load as CTAs end (ragged tails); this form keeps the first wave's."""
    e, d = p.element_bytes, p.head_dim
    g = heads_per_cta(p, s)
    units = units_per_seq(p, s)
    smem = split_shared_bytes(p, s)
    per_sm = f.ctas_per_sm(smem, s.num_warps, split_regs_per_thread(p, s))
    slots = f.num_sms * per_sm
    cta_b, total = [], 0
    for b in range(p.batch):
        q = g * p.seqlens_q[b] * d * e
        for k0, k1 in split_ranges(read_keys(p, s, b), s.num_splits, s.block_n):
            kv = (k1 - k0) * (d + v_columns(p, s)) * e  # split_d: K whole, its columns of V
            total += (q + kv) * units * s.split_d
            cta_b += [(q, kv)] * (units * s.split_d)
    tile = inflight_bytes_per_cta(p, s)
    B = pipeline_buffers(p, s)
    resident = min(len(cta_b), slots)
    on_sm = max(1, cdiv(resident, f.num_sms))
    costs = cta_tile_costs(p, s, f, ctas_on_sm=on_sm)
    limit = tile / (tile * costs[0] + costs[1]) if costs else cta_limit_Bps(p, s, f, ctas_on_sm=on_sm)
    import heapq
    first = heapq.nlargest(resident, cta_b, key=lambda x: x[1])  # the first wave, longest first
    # unpacked GQA: the G CTAs of one KV head read the same K/V; one of them misses, the L2 serves the others (and
    # split_d: `split_d_dram_share`)
    miss = (1.0 / p.group_size if (not s.pack_gqa and p.group_size > 1) else 1.0) * split_d_dram_share(p, s)
    per_byte, issue = costs if costs else ((1.0 / limit) if limit else 0.0, 0.0)
    drain = _drain_s(p, s, f, on_sm)
    head = dependent_loads_before_stream(p, s, "decode_split") * f.mem_latency_s
    memo_lat = {}

    def latency(load):
        n = load / (B * tile) if tile else 0.0
        k = round(n, 1)
        if k not in memo_lat:
            if f.latency_curve and limit:
                lt = buffered_stream_latency_s(f, n, tile, B, limit)
            else:
                lt = f.stream(n, tile, limit)[2]
            if B > 1 and p.paged and f.name:  # scattered pages: pipelined loops only (the gather microbenchmark)
                lt += paged_latency_extra_s(f.name, p.page_size, n)
            memo_lat[k] = lt
        return memo_lat[k]

    def cta_time(q, kv, lt):
        c = min(tile, q + kv) * per_byte + issue
        loop = loop_step_s(miss * (q + kv), tile, B, lt, c, True) + (1 - miss) * (q + kv) * per_byte
        return head + loop + max(0.0, drain - c), loop

    # the load a CTA streams against: the first wave's CTAs, each for the share of its life it streams and of this
    # CTA's life it lasts (a ragged batch's long splits end alone); three rounds of that fixed point
    sizes = sorted({x for x in cta_b if x[1]}, key=lambda x: -x[1])
    wave = [x for x in first if x[1]]
    duty = {x: 1.0 for x in sizes}
    span = {x: float(x[1]) for x in sizes}
    lat = latency(sum(min(B * tile, kv) for _, kv in wave) * miss)
    lat_of = {}
    for _ in range(3):
        for x in sizes:
            load = sum(min(B * tile, y[1]) * miss * duty[y] * min(1.0, span[y] / span[x]) for y in wave)
            lat_of[x] = latency(load)
        for x in sizes:
            tt, loop = cta_time(*x, lat_of[x])
            duty[x], span[x] = (loop / tt if tt else 1.0), tt
    if sizes:
        lat = lat_of[sizes[0]]
    times = [span[x] for x in cta_b if x[1]]
    rate = max(kv for _, kv in cta_b) / max(times) if times else 0.0
    t_chain = _slot_makespan(times, slots) + (min(len(times), slots) - 1) * f.cta_dispatch_s if times else 0.0
    if len(sizes) == 1 and len(times) > slots and len(times) % slots:
        # identical CTAs: full waves at the full load, then the last, partial wave at its own (smaller) load
        x = sizes[0]
        rest = len(times) % slots
        tail = cta_time(*x, latency(min(B * tile, x[1]) * miss * duty[x] * rest))[0]
        t_chain = (len(times) // slots) * span[x] + tail + (slots - 1) * f.cta_dispatch_s
    # the memory system's own rates bound it: DRAM (what misses) and the L2 (every byte, re-reads too)
    l2_bw = _l2_bandwidth_Bps(f)
    t_split = f.launch_overhead_s + max(t_chain, total * miss / f.dram_Bps, total / l2_bw if l2_bw else 0.0)
    if fused_combine(s):  # (each CTA's arrival on the counter: here once, not in this form's chains)
        t_comb = fused_arrive_s(s, f) + fused_combine_tail_s(p, s, f)
    else:
        t_comb = f.launch_overhead_s + combine_body_s(p, s, f) if s.num_splits > 1 else 0.0
    return {"time_s": t_split + t_comb, "split_s": t_split, "combine_s": t_comb, "ctas": len(cta_b),
            "slots": slots, "cta_rate_Bps": rate, "latency_s": lat, "tiles_in_flight": B, "kv_bytes": total}


#: SMs per GPC and the in-flight bytes at which a GPC's share of the DRAM rate stops growing, per hardware preset.
#: H100 SXM (132 SMs): the session-11 traces of the real `_decode_split` (benchmarks/decode_tail_gpu.py, H100 80GB HBM3,
#: 2026-11-26 16:37 UTC, reports/h100-sxm/decode/tail-session11/): at 3 CTAs on every SM the CTAs of 24 SMs end the
#: wave at 0.67x the time of the other 108 (770 vs 1150 us): each GPC gets the same rate, 12 and 18 SMs to a GPC
#: (2 x 12 + 6 x 18 = 132); at one CTA per SM (128 CTAs) every CTA ends within 0.4 %: shares by bytes in flight.
#: So a GPC's share grows with its bytes in flight up to a cap between the 1-per-SM 18-SM GPC's (1.18 MB) and the
#: 3-per-SM 12-SM GPC's (2.36 MB); 1.8 MB is the 2-per-SM trace's reading (per-GPC rates 367 / 324 GB/s at 2.36 /
#: 1.57 MB in flight: 1.57 MB x 1.13).
GPC_ARBITRATION = {"h100-sxm": ((18,) * 6 + (12,) * 2, 1.8e6)}


def gpc_sm_map(sizes) -> list:
    """GPC of each SM: SMs dealt to the GPCs round-robin, skipping full ones (so a launch of fewer CTAs than slots,
    placed one per SM first, spreads over the GPCs as the card's block scheduler does)."""
    left = list(sizes)
    out = []
    while any(left):
        for g in range(len(left)):
            if left[g]:
                out.append(g)
                left[g] -= 1
    return out


#: seconds a kernel costs inside a CUDA graph, per preset (simulate_decode(context="graph") uses it in place of
#: launch_overhead_s, ncu's empty-kernel duration, 2.18 us on the H100): H100 80GB HBM3, 2026-11-26 17:15 UTC,
#: benchmarks/decode_graph_gpu.py, 1 / 2 / 4 / 8 / 32 empty Triton kernels back to back in one graph, do_bench_cudagraph
#: medians 0.80-0.97 / 1.93 / 3.88 / 7.75 / 31.12 us: the slope, 0.97 us per kernel
#: (reports/h100-sxm/decode/graph-session11/graph.json)
GRAPH_KERNEL_S = {"h100-sxm": 0.97e-6}


#: the decode loop's own DRAM read rate in one wave when every SM that holds CTAs holds the same number, and the
#: fewest bytes in flight at which the card reached it, per preset.  H100 80GB HBM3, 2026-11-26 17:27 UTC (session 11,
#: call 5: benchmarks/decode_tail_gpu.py --contexts 32768, the real `_decode_split`, S = 1, 64 KB in flight per CTA;
#: reports/h100-sxm/decode/tail-session11/streams.json): 112 / 128 / 264 / 392 CTAs (1 / 1 / 2 / 3 per SM) read
#: 3.11 / 3.14 / 3.13 / 3.11 TB/s; 96 CTAs 2.95 (too few bytes in flight); 160 / 200 / 328 CTAs (some SMs one CTA
#: more than others) 3.07 / 3.00 / 3.05 -- the dram_stream curve's 3.05 TB/s peak.  So: the least even-load rate,
#: from 112 x 64 KB in flight up; uneven loads and fewer bytes keep the curve.
EVEN_LOAD_READ = {"h100-sxm": (3.11e12, 112 * 65536)}

#: the DRAM read rate of a decode launch whose pages lie in a random order (as a serving allocator and
#: kernels.decode_testing hand them out) over the same launch with the pages in order, per preset and page rows: the
#: SAME kernel, bytes and split, only the block table differs.  H100 80GB HBM3, 2026-11-26 22:07 UTC (session 13,
#: call 2: benchmarks/decode_cold.py --page-order shuffled,ordered, reports/h100-sxm/decode/bench-session13-run7/
#: paged-order.json): 8 x 32k, S = 2 (128 CTAs, one per SM, even load): 16-row pages 356.2 us in order / 371.5
#: shuffled, 64-row 349.3 / 358.4 (contiguous 347.4).  Page rows between / beyond: the nearer figure (log2).
PAGE_SCATTER_READ = {"h100-sxm": ((16, 356.23 / 371.54), (64, 349.33 / 358.43))}


#: the spread of the DRAM rate between the SMs of one GPC class within one launch, per preset: (coefficient of
#: variation, speed classes).  H100 80GB HBM3, 2026-11-27 05:11 UTC (session 17, benchmarks/decode_fixed_gpu.py,
#: reports/h100-sxm/decode/s17-call1/): per-CTA %globaltimer traces of ONE-wave launches (16 x 1k and 16 x 4k, 128 CTAs
#: of the 128-key tile, one per SM, rotated caches, back to back in a CUDA graph): the durations of the CTAs on the
#: 18-SM GPCs differ by a coefficient of variation of 0.027-0.042 per launch (median 0.033 / 0.036; the 12-SM GPCs'
#: CTAs are 16 % faster, `GPC_ARBITRATION`); within a launch an SM's next CTA keeps most of its speed (correlation 0.85
#: of consecutive CTAs' durations at 64 x 1k / 2k).  In the graph form each GPC's SMs are dealt over `speed classes`
#: normal quantiles (i + 0.5) / n, an SM keeps its class for the launch, and a GPC's share goes to its CTAs in
#: proportion to bytes in flight x (1 + cv x z); with it a CTA's last bytes keep its share (they were requested with
#: its window; a share shrinking with the bytes left never ends, and with speed classes left groups streaming their
#: last KB for 20-30 us).  Only where the launch has one CTA per SM (measured there).  What it shows: a multi-wave launch at one CTA per SM ends with its
#: slowest SMs, after the median CTA (64 x 1k: the last wave's CTAs end from 82.8 to 92.8 us, median 88.0, the launch
#: 91.6; the form without the spread ended every CTA of a GPC together at 88.5).  The classes are a discretisation:
#: 3 / 5 / 9 give 64 x 1k -2.2 / -1.9 / -3.0 % (without: -4.1 %); memsim/MODEL.md decode, "the launch ends with its
#: slowest SMs".  The split rule does not rank with it yet (`RULE_RATE_SPREAD`).
CTA_RATE_SPREAD = {"h100-sxm": (0.034, 5)}

#: early_tile (session 19) where an SM holds one CTA at a time: the first tile's pipeline bubble as dead time -- a CTA
#: waits `early_bubble_s` before its stream instead of the length's round trip.  ON since session 20 (the model of
#: record): derived from the code, checked after the fact on the one-CTA-per-SM 16 x 1k rows (bn32 / bn64: +0.24 /
#: +0.51 us measured, +0.19 / +0.48 derived; the 128-key peel +2.38 vs +0.87), then HELD OUT on session 20's call 1
#: (predictions committed in session 19, reports/h100-sxm/decode/s20-*-bubble.json): it ranked early_tile slower at all
#: four new one-CTA-per-SM pairs as the card ran them (12 x 1k +12 %, 8 x 2k +3-4 %, 16 x 2k +1.1 %, the traced 16 x 1k
#: bn64 +1.7 %; off: 0 of 4), the sweep's graph-form worst error 19.6 -> 12.3 %, 26 -> 28 / 30 within 10 %.  Where an
#: SM holds several CTAs the form keeps early_tile's one round trip less (hidden bubble), which the card showed at 3-4
#: per SM but not at 2 (32 x 1k: a tie) nor at 64 x 2k (+0.3 %): those two pairs it still ranks wrong.
EARLY_BUBBLE_ONE_PER_SM = True


def early_bubble_s(p: DecodeProblem, s: DecodeSchedule, f: "DeviceFacts", tile_compute_s: float) -> float:
    """What a CTA of an early_tile launch waits before its stream where nothing else on its SM hides it, read off the
    compiled code: Triton puts the loop's pipeline prologue right before the loop, after the peeled tile's math, so
    the CTA receives its first tile one round trip after its start (issued beside the length's load), computes it
    (`tile_compute_s`, one tile of the loop), and only then requests tiles 1..B (`pipeline_buffers`): measured from
    the start of the stream as the form times it (the first round trip inside the rate, B tiles in flight), that is
    lat (1 - 1 / B) + c against the plain kernel's lat -- early_tile costs c - lat / B per CTA.  0 without it."""
    if not s.early_tile:
        return 0.0
    return f.mem_latency_s * (1.0 - 1.0 / max(1, pipeline_buffers(p, s))) + tile_compute_s


def _normal_quantiles(n: int) -> list:
    """The n quantiles (i + 0.5) / n of the standard normal (0 for n = 1)."""
    from statistics import NormalDist
    return [NormalDist().inv_cdf((i + 0.5) / n) if n > 1 else 0.0 for i in range(n)]


def page_scatter_factor(name: str, page_size: int | None) -> float:
    """`PAGE_SCATTER_READ`'s factor for a paged cache of `page_size` rows on preset `name` (1 contiguous or unknown)."""
    pts = PAGE_SCATTER_READ.get(name)
    if not page_size or not pts:
        return 1.0
    return min(pts, key=lambda x: abs(math.log2(x[0]) - math.log2(page_size)))[1]


def _waterfill(demand: list, weight: list, total: float) -> list:
    """Shares of `total` in proportion to `weight`, none above its `demand`; what a capped one leaves goes to the
    others in the same proportion."""
    out = [0.0] * len(demand)
    live = [i for i in range(len(demand)) if demand[i] > 0 and weight[i] > 0]
    left = total
    while live and left > 1e-9 * total:
        w = sum(weight[i] for i in live)
        capped = [i for i in live if out[i] + left * weight[i] / w >= demand[i]]
        if not capped:
            for i in live:
                out[i] += left * weight[i] / w
            break
        for i in capped:
            left -= demand[i] - out[i]
            out[i] = demand[i]
        live = [i for i in live if i not in capped]
    return out


def estimate_time_graph_s(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts, kernel_s: float | None = None,
                          max_waves: int | None = 8, coalesce: float = 0.002, events: list | None = None,
                          rate_spread: bool = True) -> dict:
    """Closed-form GPU time of the launches inside a CUDA graph (what serving stacks replay; the kernels' split rule
    ranks with it): a fluid model of the split launch over the GPCs, without SimPy, with the mechanisms the card
    showed in session 11 (memsim/MODEL.md decode, "the last partial wave"; notes/decode.md):

    * placement: the first wave's CTA i on SM i mod num_sms (the block scheduler spreads a launch of fewer CTAs than
      slots one per SM first), SMs dealt to the GPCs round-robin (`gpc_sm_map`); a finished group of CTAs hands its
      slots to the next CTAs of the launch, on the same SMs (the traces: the tail CTAs of a multi-wave launch start on
      the early SMs, three to an SM);
    * the DRAM rate: the streaming CTAs' Little's-law fixed point on the dram_stream curve (`DeviceFacts.stream`,
      `pipeline_buffers` tiles in flight per CTA, at most its per-CTA limit `cta_tile_costs` at its SM's CTAs), or
      while every SM holding CTAs holds the same number and they keep enough bytes in flight, the decode loop's own
      even-load rate (`EVEN_LOAD_READ`);
    * shared by GPC: a GPC's share grows with its bytes in flight up to the cap (`GPC_ARBITRATION`), its CTAs share it
      in proportion to theirs; what a CTA cannot take (its own limit) goes to the others;
    * a CTA first waits its dependent loads (`dependent_loads_before_stream`), and after its last bytes computes its
      last tile, its dots' drain and the loop's epilogue (`last_tile_drain_s`, `loop_epilogue_s`);
    * each kernel costs `GRAPH_KERNEL_S` (kernel_s; the preset's launch overhead where none was measured); the
      combine launch as `estimate_time_mechanisms_s` has it (`combine_body_s`).
    Events are groups of identical CTAs that start together on one GPC (a few per GPC and wave), so it costs
    milliseconds where the SimPy model (`memsim.workloads_decode.rank_num_splits`) takes seconds.  The grain: a launch
    of more than `max_waves` waves runs as CTAs of `mult` consecutive CTAs each (their bytes summed, their dependent
    loads and tails `mult` times: a slot's chain of CTAs), at most `max_waves` waves (None: every CTA);
    tests/test_decode_split_rule.py shows both grains agree.

    * the SMs of a GPC differ in speed within a launch (`CTA_RATE_SPREAD`; `rate_spread=False` leaves it out);
    * early_tile: no dependent load before the stream (`dependent_loads_before_stream`); the pipeline bubble after
      its peeled first tile is NOT in the form (session 19: a named miss, notes/decode.md);

    `events` (a list): each group of CTAs that ends appends (start_s, end_s, CTAs of the launch) -- launch time from the
    split launch's first CTA (`kernel_s` not included), for comparison with a %globaltimer trace
    (benchmarks/decode_fixed_gpu.py)."""
    import heapq
    e, d = p.element_bytes, p.head_dim
    if kernel_s is None:
        kernel_s = GRAPH_KERNEL_S.get(f.name, f.launch_overhead_s)
    g = heads_per_cta(p, s)
    units = units_per_seq(p, s)
    per_sm = f.ctas_per_sm(split_shared_bytes(p, s), s.num_warps, split_regs_per_thread(p, s))
    slots = f.num_sms * per_sm
    sizes = []  # bytes per CTA, launch order (grid (S, B x units): the splits of one row of CTAs first)
    row_len = 1
    for b in range(p.batch):
        q = g * p.seqlens_q[b] * d * e
        row = [q + (k1 - k0) * (d + v_columns(p, s)) * e
               for k0, k1 in split_ranges(read_keys(p, s, b), s.num_splits, s.block_n)]
        # (empty splits -- past the last key -- load only their sequence length: not modelled)
        sizes += row * (units * s.split_d)  # split_d: the unit's CTAs, K whole and their columns of V each
        row_len = max(row_len, len(row))
    total = sum(sizes)
    # unpacked GQA: the G CTAs of one KV head read the same K/V; one of them misses, the L2 serves the others (as
    # `estimate_time_mechanisms_s`): the model streams the DRAM share of a CTA's bytes, its hits cost their copies
    # split_d: one CTA of a unit misses each K line, the L2 serves the others (`split_d_dram_share`)
    sd_share = split_d_dram_share(p, s)
    miss = (1.0 / p.group_size if (not s.pack_gqa and p.group_size > 1) else 1.0) * sd_share
    if miss != 1.0:
        sizes = [x * miss for x in sizes]
    # CTAs within 1/16 of each other's bytes as one size, their mean (a split count that does not divide the tiles
    # evenly leaves one split a little short: two sizes would double the groups, and desynchronise them)
    from collections import Counter
    counts = Counter(sizes)
    alias, cluster = {}, []
    for x in sorted(counts, reverse=True):
        if cluster and x >= cluster[0] * (1 - 1 / 16):
            cluster.append(x)
            continue
        if cluster:
            m = sum(y * counts[y] for y in cluster) / sum(counts[y] for y in cluster)
            alias.update((y, m) for y in cluster)
        cluster = [x]
    if cluster:
        m = sum(y * counts[y] for y in cluster) / sum(counts[y] for y in cluster)
        alias.update((y, m) for y in cluster)
    if any(alias[x] != x for x in counts):
        sizes = [alias[x] for x in sizes]
    n_ctas = p.batch * units * s.num_splits * s.split_d
    mult = max(1, math.ceil(len(sizes) / (max_waves * slots))) if max_waves else 1
    if mult > 1:  # whole rows of splits, or a divisor of a row (within 2x): merged CTAs of fewer sizes (fewer events)
        if row_len <= mult:
            mult = math.ceil(mult / row_len) * row_len
        else:
            mult = next((m for m in range(mult, 2 * mult + 1) if row_len % m == 0), mult)
    # (bytes, CTAs it stands for) per CTA of the model, launch order
    sizes = [(sum(sizes[i:i + mult]), len(sizes[i:i + mult])) for i in range(0, len(sizes), mult)]
    tile = inflight_bytes_per_cta(p, s)
    B = pipeline_buffers(p, s)
    arb = GPC_ARBITRATION.get(f.name)
    gpc_sizes, cap = arb if (arb and sum(arb[0]) == f.num_sms) else ((f.num_sms,), float("inf"))
    gpc_of = gpc_sm_map(gpc_sizes)
    even_rate, even_load = EVEN_LOAD_READ.get(f.name, (0.0, float("inf")))
    scatter = page_scatter_factor(f.name, p.page_size)  # a paged cache's pages in a random order: the rate, any load
    head = dependent_loads_before_stream(p, s, "decode_split") * f.mem_latency_s
    epi = loop_epilogue_s(p, s, f)
    hw = _preset(f.name)
    costs_memo, tail_memo, rate_memo = {}, {}, {}
    # split_d: every CTA's K comes through the L2 (split_d x the K bytes the DRAM sends): its read rate bounds the
    # DRAM rate the launch can use at the DRAM share of the bytes the SMs take in (none without split_d)
    l2_bw = _l2_bandwidth_Bps(f) if s.split_d > 1 else None
    l2_cap = l2_bw * sd_share if l2_bw else float("inf")

    # a pipelined variant whose loop compute was not measured (no compiled entry: e.g. num_stages 4 / 5 at these
    # specialisations) takes the same loop's at the default depth where that was: the loop body per tile is the same
    # code, and copy + issue alone (no measured compute) let few CTAs look fast (session 12, stages-session12: the
    # rule then picked S = 8 / 1 at num_stages 5, 13-45 % slower than S = 16 / 2)
    cost_s = s
    if B > 1 and loop_compute_s(p, s, f) is None:
        from dataclasses import replace as _replace
        alt = _replace(s, num_stages=3)
        if loop_compute_s(p, alt, f) is not None:
            cost_s = alt

    def costs(k):
        if k not in costs_memo:
            c = cta_tile_costs(p, cost_s, f, ctas_on_sm=k)
            if c is None:
                lim = cta_limit_Bps(p, s, f, ctas_on_sm=k)
                c = ((1.0 / lim) if lim else 0.0, 0.0)
            costs_memo[k] = c
        return costs_memo[k]

    qb = g * p.max_seq_q * d * e
    arrive = fused_arrive_s(s, f)

    def tail_s(k, x):
        """After a CTA's last bytes: its last tile's compute -- every tile's, where the CTA's whole K/V fits its
        in-flight window (all its tiles are requested at the start and arrive as the launch's bytes drain) --, what
        its dots take beyond that, the epilogue."""
        m = max(1, math.ceil((x / miss - qb) / tile - 1e-9))
        m = m if m <= B else 1
        if (k, m) not in tail_memo:
            per_byte, issue = costs(k)
            c = tile * per_byte + issue
            tail_memo[k, m] = m * c + max(0.0, (last_tile_drain_s(p, s, hw, k) if hw else 0.0) - c) + epi + arrive
        return tail_memo[k, m]

    def limit_Bps(k, x):
        """The most DRAM bytes one CTA streams: its tiles' compute (copy + the loop's issue) -- only the copies where
        its whole K/V fits its in-flight window (its compute comes after, `tail_s`); a one-buffer loop waits its
        round trips (`round_trips_per_tile`, unloaded) every tile; the DRAM share of its bytes (`miss`)."""
        per_byte, issue = costs(k)
        if (x / miss - qb) <= B * tile:
            issue = 0.0
        wait = round_trips_per_tile(p, s) * f.mem_latency_s if B <= 1 else 0.0
        t = tile * per_byte + issue + wait
        return miss * tile / t if t else float("inf")

    def dram_rate(n, inflight, lim, even):
        key = (round(n), int(inflight // 16384), round(lim, -7), even)
        if key not in rate_memo:
            r = f.stream(n, inflight / n, lim if lim != float("inf") else None)[0] if n else 0.0
            if even and inflight >= even_load:
                r = max(r, min(even_rate, n * lim))
            rate_memo[key] = min(r * scatter, l2_cap)
        return rate_memo[key]

    # early_tile where an SM holds one CTA at a time (its occupancy, or a launch of at most one CTA per SM): the first
    # tile's bubble as dead time instead of no wait (`EARLY_BUBBLE_ONE_PER_SM`, on since session 20)
    if s.early_tile and EARLY_BUBBLE_ONE_PER_SM and (per_sm == 1 or sum(c for _, c in sizes) <= f.num_sms):
        per_byte1, issue1 = costs(1)
        head = early_bubble_s(p, s, f, tile * per_byte1 + issue1)

    # groups: [gpc, sms, per_sm (CTAs on each of its SMs), n CTAs, bytes left per CTA, phase, t of next phase,
    # bytes per CTA, CTAs of the launch per CTA of the model]
    # phase 0: waiting its dependent loads until t; 1: streaming; 2: computing its tail until t
    rest = list(reversed(sizes))

    # (measured at one CTA per SM; where an SM holds several CTAs the spread is not applied -- not measured there)
    spread_cv, spread_q = CTA_RATE_SPREAD.get(f.name, (0.0, 1)) if rate_spread and per_sm == 1 else (0.0, 1)
    zq = _normal_quantiles(spread_q)

    def place(sms, t, spread=False):
        """The next CTAs of the launch on these SMs' free slots ((GPC, speed class) per SM), one per SM first, then a
        second...
        spread: CTAs of a later wave, which start as slots free, so that their dependent loads and tails overlap the
        streaming of others (their overhead is folded into their rate: `overhead`); the first wave starts together
        (its dependent loads are dead time for all)."""
        k = min(len(sms) * per_sm, len(rest))
        on = [[] for _ in sms]
        for j in range(k):
            on[j % len(sms)].append(rest.pop())
        groups = {}
        for (gi, qi), xs in zip(sms, on):
            for x, cnt in xs:
                key = (gi, qi, len(xs), x, cnt)
                if key not in groups:
                    one = head + tail_s(len(xs), x / cnt)
                    ovh = cnt * one if spread else (cnt - 1) * one
                    lim = limit_Bps(len(xs), x / cnt)
                    # [.., folded overhead, dead time after its bytes, its limit, its cap (bytes over its folded
                    # overhead + its bytes at its limit), bytes in flight]: spread, all of its CTAs' overhead is
                    # folded; the first wave waits one dependent load and ends with one tail, the rest is folded
                    groups[key] = [gi, 0, len(xs), 0, float(x), int(spread), t if spread else t + head, x, cnt, ovh,
                                   0.0 if spread else tail_s(len(xs), x / cnt), lim, x / (ovh + x / lim) if x else lim,
                                   min(B * tile * miss, x / cnt), 1.0, t, 1.0 + spread_cv * zq[qi], qi]
                    if ovh and x:  # its duty at its cap, to start with
                        groups[key][14] = max(0.05, 1.0 - ovh * groups[key][12] / x)
                groups[key][3] += 1
        for gr in groups.values():
            gr[1] = -(-gr[3] // gr[2])
        return list(groups.values())

    # each SM's speed class (`CTA_RATE_SPREAD`): the SMs of a GPC dealt over the classes in turn
    seen = {}
    sm_keys = []
    for gi in gpc_of:
        sm_keys.append((gi, seen.get(gi, 0) % spread_q))
        seen[gi] = seen.get(gi, 0) + 1
    live = place(sm_keys, 0.0)
    now, end = 0.0, 0.0
    while live:
        for gr in live:  # empty CTAs: nothing to stream
            if gr[5] == 1 and gr[4] <= 0:
                gr[5], gr[6] = 2, now + gr[9] + gr[10]
        streaming = [gr for gr in live if gr[5] == 1]
        rates = []
        if streaming:
            lim_min = min(gr[11] for gr in streaming)
            # a CTA streams at most its bytes over (its folded overhead + its bytes at its limit), and keeps its
            # bytes in flight for the share of its life it streams (gr[14], from its rate at the previous event)
            even = len({gr[2] for gr in live}) == 1
            # (a CTA's in flight: its window while it streams -- its last bytes were requested with it and arrive at
            # their place in the queue, not at a share that shrinks with the bytes left, which never ends)
            # (rate_spread=False keeps the session-16 form, the shrinking share included: the rule ranks with it)
            fl = [gr[3] * (gr[13] if rate_spread else min(gr[13], gr[4])) * gr[14] for gr in streaming]
            R = dram_rate(sum(gr[3] * gr[14] for gr in streaming), sum(fl), lim_min, even)
            gl, glw = {}, {}
            for gr, x in zip(streaming, fl):
                gl[gr[0]] = gl.get(gr[0], 0.0) + x
                glw[gr[0]] = glw.get(gr[0], 0.0) + x * gr[16]
            # per group: demand = its CTAs at their own cap; weight = its GPC's capped share x its part of it
            dem = [gr[3] * gr[12] for gr in streaming]
            wts = [min(gl[gr[0]], cap) * x * gr[16] / glw[gr[0]] if x else 0.0 for gr, x in zip(streaming, fl)]
            rates = [r / gr[3] for r, gr in zip(_waterfill(dem, wts, R), streaming)]
            for gr, r in zip(streaming, rates):
                if gr[9]:
                    gr[14] = max(0.05, 1.0 - gr[9] * r / gr[7])
        dt = min([gr[6] - now for gr in live if gr[5] != 1] + [gr[4] / r for gr, r in zip(streaming, rates) if r > 0]
                 + [float("inf")])
        if dt == float("inf"):
            break
        dt = max(dt, 0.0)
        now += dt
        nxt, freed = [], []
        # the grain in time: groups within `coalesce` of the launch's time from their next event take it now
        near = coalesce * now
        for gr, r in zip(streaming, rates):
            gr[4] -= r * dt
            if gr[4] <= r * near:
                gr[4] = 0.0
        for gr in live:
            if gr[5] != 1 and gr[6] <= now + near:
                gr[6] = now
            if gr[5] == 1 and gr[4] <= 1e-6 * tile:
                gr[4], gr[5], gr[6] = 0.0, 2, now + gr[10]
            elif gr[5] == 0 and gr[6] <= now + 1e-15:
                gr[5] = 1
            if gr[5] == 2 and gr[6] <= now + 1e-15:
                end = max(end, now)
                if events is not None:
                    events.append((gr[15], now, gr[3] * gr[8]))
                freed += [(gr[0], gr[17])] * gr[1]  # its SMs, all free now (its CTAs are alike and end together)
            else:
                nxt.append(gr)
        if freed and rest:
            # the freed SMs interleaved over their GPCs: the block scheduler deals CTAs one per SM first
            by = {}
            for gi in freed:
                by[gi] = by.get(gi, 0) + 1
            order = []
            while any(by.values()):
                for gi in by:
                    if by[gi]:
                        order.append(gi)
                        by[gi] -= 1
            nxt += place(order, now, spread=True)
        live = nxt
    t_split = kernel_s + end
    if fused_combine(s):
        t_comb = fused_combine_tail_s(p, s, f)
    else:
        t_comb = kernel_s + combine_body_s(p, s, f) if s.num_splits > 1 else 0.0
    return {"time_s": t_split + t_comb, "split_s": t_split, "combine_s": t_comb, "ctas": n_ctas, "slots": slots,
            "kv_bytes": total, "kernel_s": kernel_s, "model_ctas": len(sizes)}


@__import__("functools").lru_cache(maxsize=8)
def _preset(name: str):
    """The hardware preset of that name, read once (None: no such preset) -- for `estimate_time_graph_s`, which
    the kernels call once per split candidate."""
    from .hardware import HardwareError, load_hardware
    try:
        return load_hardware(name) if name else None
    except HardwareError:
        return None


def combine_body_s(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts) -> float:
    """GPU time of the combine launch of `estimate_time_mechanisms_s` without its launch cost (0 for S = 1): one CTA
    per output row over its own slots (compiled registers); each waits for its sequence length, then its first
    round of partials one latency after (one latency more to arrive; partials in the L2), then every further round
    `combine_round_s`; the SMs take one CTA per `combine_interval_s` each; at least the partials and O over the
    DRAM rate."""
    if s.num_splits <= 1:
        return 0.0
    e, d = p.element_bytes, p.head_dim
    g = heads_per_cta(p, s)
    units = units_per_seq(p, s)
    rows = g * p.max_seq_q
    n_c = rows * p.batch * units
    slots_c = f.num_sms * f.ctas_per_sm(0, COMBINE_NUM_WARPS, combine_regs_per_thread(p, s))
    part = sum(nonempty_splits(L, s.num_splits, s.block_n) * g * nq * (d + 1) * STAT_BYTES
               for L, nq in zip(p.read_seqlens_kv, p.seqlens_q)) * units
    out = sum(p.seqlens_q) * p.heads_q * d * e
    rounds_c = cdiv(s.num_splits, COMBINE_SPLITS_PER_ROUND)
    round_b = combine_block_s(s.num_splits) * (d + 1) * STAT_BYTES
    r_s = (combine_round_s(f.name, round_b, min(n_c, slots_c)) if f.name else None) or f.mem_latency_s
    # its sequence length, the first round one latency after (its bytes at 32 partials per latency: the partials
    # are in the L2, as simulate_decode(flush_l2=False) takes them; `combine_first_round_s` is for partials from
    # DRAM), the rest; the SMs take CTAs one per `combine_interval_s` each
    per_cta = 2 * f.mem_latency_s + min(s.num_splits, COMBINE_SPLITS_PER_ROUND) / COMBINE_SPLITS_PER_ROUND * \
        f.mem_latency_s + (rounds_c - 1) * r_s
    paced = (n_c - 1) * max(f.cta_dispatch_s, combine_interval_s(p, f) / f.num_sms) + per_cta
    return max(cdiv(n_c, slots_c) * per_cta, paced, (part + out) / f.dram_Bps)


def fused_combine(s: DecodeSchedule) -> bool:
    """Whether `s` folds the combine into its split launch (combine_fused with S > 1: no combine launch)."""
    return s.combine_fused and s.num_splits > 1


#: partial elements (fp32) the fused combine of kernels/decode_kv.py holds per round: rows (the next power of two)
#: x splits x head_dim (64 registers per thread at 4 warps)
FUSED_COMBINE_ELEMENTS = 8192


def fused_block_splits(p: DecodeProblem, s: DecodeSchedule) -> tuple:
    """(RP, BLOCK_SF) of the fused combine: the unit's rows padded to a power of two, and the partials per round."""
    rp = 1 << max(0, math.ceil(math.log2(max(1, heads_per_cta(p, s) * p.max_seq_q))))
    return rp, max(1, min(1 << max(0, math.ceil(math.log2(s.num_splits))), FUSED_COMBINE_ELEMENTS // (rp * p.head_dim)))


def fused_arrive_s(s: DecodeSchedule, f: DeviceFacts) -> float:
    """What the fused combine adds to every split CTA: after its partial, a CTA barrier and one thread's atomic add on
    its unit's counter (acq_rel, GPU scope): the release waits for the CTA's partial stores to reach the L2 (one
    round trip), then the atomic's own answer (another) -- two unloaded memory latencies (0 unfused)."""
    return 2 * f.mem_latency_s if fused_combine(s) else 0.0


def fused_combine_tail_s(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts) -> float:
    """GPU time the fused combine adds after the split launch's last CTA has counted itself in: that CTA reads its
    unit's partials (in the L2) in ceil(S / BLOCK_SF) dependent rounds, the first as the combine launch's first round
    (`combine_body_s`: one latency, the round's partials at 32 per latency), each further round one latency more, and
    writes its rows of O.  No kernel of its own, no sequence-length load, no CTA dispatch (0 unfused)."""
    if not fused_combine(s):
        return 0.0
    _, bsf = fused_block_splits(p, s)
    rounds = cdiv(s.num_splits, bsf)
    return f.mem_latency_s * (1 + min(bsf, COMBINE_SPLITS_PER_ROUND) / COMBINE_SPLITS_PER_ROUND) + \
        (rounds - 1) * f.mem_latency_s


#: partials the combine kernel loads per round (kernels/decode_kv.py: BLOCK_S = min(32, ...))
COMBINE_SPLITS_PER_ROUND = 32
#: warps of a combine CTA on the GPU (`kernels.decode_kv` launches it so; the interpreter runs one)
COMBINE_NUM_WARPS = 4


def _l2_bandwidth_Bps(f: DeviceFacts) -> float | None:
    """The L2 bandwidth of the preset the facts came from (None without one)."""
    from .hardware import HardwareError, load_hardware
    try:
        return load_hardware(f.name).l2_bw_Bps if f.name else None
    except HardwareError:
        return None


def _drain_s(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts, ctas_on_sm: int) -> float:
    """`last_tile_drain_s` on the preset the facts came from (0 when it has no dot_chain calibration)."""
    if not f.name:
        return 0.0
    from .hardware import HardwareError, load_hardware
    try:
        hw = load_hardware(f.name)
    except HardwareError:
        return 0.0
    return last_tile_drain_s(p, s, hw, ctas_on_sm)


#: _mb_stream's tile loop (verification/microbench/kernels.py, block_n 64, d 128, fp16, 4 warps, sm_90 SASS via
#: kernels.compiled_facts): 85 instructions per warp per 16 KB tile
STREAM_LOOP_INSTRUCTIONS_PER_BYTE = 85 / 16384
#: the dram_stream microbenchmark's tile (_mb_stream: BLOCK_N 64 x D 128 fp16)
STREAM_TILE_BYTES = 16384
#: warp schedulers per SM (Hopper: 4, the presets' warp_issue_per_sm_per_cycle)
ISSUE_LANES_PER_SM = 4


def _slot_makespan(times: list, slots: int) -> float:
    """When the last of CTAs with these durations ends, handed out longest first to the first free of
    `slots` slots (identical CTAs: whole waves)."""
    if not times:
        return 0.0
    if min(times) == max(times):
        return cdiv(len(times), slots) * times[0]
    import heapq
    heap = [0.0] * min(slots, len(times))
    for t in sorted(times, reverse=True):
        heapq.heapreplace(heap, heap[0] + t)
    return max(heap)


def candidate_splits(p: DecodeProblem, s: DecodeSchedule) -> list:
    longest = cdiv(max(p.capacity_kv, 1), s.block_n)
    return [c for c in SPLIT_CANDIDATES if c <= max(1, longest)]


def auto_num_splits_mean_field(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts) -> int:
    """The split rule until session 12: the candidate with the least `estimate_time_s` (ties: fewer splits).  Kept
    because verification's decode suite and random draws (`verification.suite_decode`) name and define committed,
    measured cases by it: their "auto" split counts must not move with the kernels' rule."""
    from dataclasses import replace
    rows = [(estimate_time_s(p, replace(s, num_splits=c), f)["time_s"], c) for c in candidate_splits(p, s)]
    best = min(t for t, _ in rows)
    return next(c for t, c in rows if t <= best * (1 + 1e-9))


#: ties between split counts: the fewest splits within this fraction of the least predicted time.  Tried at 2 % (the
#: graph form's median error) after run 6 (64 x 1k paged16: S = 1 and S = 4 predicted within 0.2 %, S = 4 picked,
#: 106.4 us where S = 1 ran 98.1 in run 5): it then picked S = 1 at 8 x 1k (+6.3 % on run 6): NOT adopted.
SPLIT_TIE_TOLERANCE = 1e-9

#: whether the split rule (and kernels.decode's tile choice, `kernels.decode_kv._rank_time_s`) ranks with the session-17
#: form (`CTA_RATE_SPREAD` and a CTA's last bytes at its share): not yet -- with it 47 of 648 picks of a grid (batch
#: 1-128 x 512-128k x 3 head configs x contiguous / 16- / 64-row pages) move, none of them timed, many by under 1 % of
#: predicted time (e.g. 64 x 32k, a goal shape measured at 1.004x cuDNN with S = 1: S = 3 by 0.1 %); the spread is
#: validated on launches of 1-4 waves of <= 180 us (`reports/h100-sxm/decode/s17-call2/`), most moved picks are
#: longer.  Time predictions (`estimate_time_graph_s`, rate_spread=True by default) include it.  Session 18 timed 7 of
#: the moved picks against the current ones, interleaved (reports/h100-sxm/decode/s18-call1/, H100): 3 ran slower --
#: 32 x 16k +3.8 %, 32 x 32k +2.7 %, 64 x 32k +0.4 % -- and 4 faster (2 x 1k -3.3 %, three paged by 0.1-0.3 %): still
#: False (tests/test_decode_fixed.py::test_the_moved_picks_session_18).
RULE_RATE_SPREAD = False


def auto_num_splits(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts) -> tuple:
    """(best split count, why): the candidate with the least `estimate_time_graph_s` (the launches inside a CUDA
    graph; ties, within SPLIT_TIE_TOLERANCE: fewer splits).  Until session 12 it ranked with `estimate_time_s` (one
    mean-field stream over all SMs, the dram_stream curve's peak): that preferred 256 CTAs to 128 at batch <= 8
    (S = 32 / 4 where S = 16 / 2, one CTA per SM, is 2-6 % faster on the card; benchmarks/results/decode.md run 5).

    The kernels call it with the cache *capacity* as every sequence's length (no device sync)."""
    from dataclasses import replace
    # candidates in the order of a lower bound of their time (the launches' kernel costs, one dependent load, every
    # byte at the highest rate the form allows, the combine); one whose bound exceeds the best time found is not run
    kernel_s = GRAPH_KERNEL_S.get(f.name, f.launch_overhead_s)
    miss = 1.0 / p.group_size if (not s.pack_gqa and p.group_size > 1) else 1.0
    rate = max(EVEN_LOAD_READ.get(f.name, (0.0,))[0], f.dram_Bps)
    g, units, e, d = heads_per_cta(p, s), units_per_seq(p, s), p.element_bytes, p.head_dim
    head = dependent_loads_before_stream(p, s, "decode_split") * f.mem_latency_s
    bounds = []
    for c in candidate_splits(p, s):
        sc = replace(s, num_splits=c)
        nbytes = units * miss * sum(nonempty_splits(L, c, s.block_n) * g * nq * d * e + 2 * L * d * e
                                    for L, nq in zip(p.read_seqlens_kv, p.seqlens_q))
        lb = kernel_s + head + nbytes / rate + (fused_combine_tail_s(p, sc, f) if fused_combine(sc) else
                                                (kernel_s + combine_body_s(p, sc, f) if c > 1 else 0.0))
        bounds.append((lb, c, sc))
    rows = []
    best_t = float("inf")
    for lb, c, sc in sorted(bounds, key=lambda x: (x[1] != 1, x[0], x[1])):  # S = 1 first (the `why` compares it)
        if lb > best_t * (1 + SPLIT_TIE_TOLERANCE):
            continue
        est = estimate_time_graph_s(p, sc, f, rate_spread=RULE_RATE_SPREAD)
        rows.append((est["time_s"], c, est))
        best_t = min(best_t, est["time_s"])
    rows.sort(key=lambda r: r[1])
    t, c, est = next(r for r in rows if r[0] <= best_t * (1 + SPLIT_TIE_TOLERANCE))
    one = rows[0][0]
    why = (f"num_splits={c}: {est['ctas']} CTAs on {est['slots']} slots; predicted {t * 1e6:.1f} us in a CUDA graph "
           f"(split {est['split_s'] * 1e6:.1f} + combine {est['combine_s'] * 1e6:.1f}) vs {one * 1e6:.1f} us with 1 "
           f"split ({f.name or 'device'})")
    return c, why


# --- the split loop's mechanisms (shared by the SimPy model and the closed form) ------------------------------
def loop_step_s(nbytes: float, tile_bytes: float, buffers: int, latency_s: float, compute_s: float,
                first: bool) -> float:
    """Seconds the compiled tile loop takes for `nbytes` of K/V tiles (sm_90 SASS of `_decode_split`: DEPBAR.LE at
    the top of an iteration waits for tile i, the dots compute it, and only then are the loads of tile i + buffers
    issued into the buffer just freed).  Tile k is issued at e(k - buffers) (the first `buffers` at the start),
    ready one latency later, computed (compute_s) after the previous one: e(k) = max(issue + latency, e(k-1)) +
    compute.  Its closed form: with latency + compute <= buffers x compute the loop is compute-bound, e(m - 1) =
    latency + m x compute; else tiles come in groups of `buffers` every latency + compute.  first: the step starts
    the stream (the latency of its first tiles is paid); later steps run at the steady period max(compute,
    (latency + compute) / buffers) per tile.  buffers = 1 is the serial loop: m x (latency + compute)."""
    b = max(1, buffers)
    m = max(1, math.ceil(nbytes / tile_bytes - 1e-9)) if nbytes > 0 else 0
    if not m:
        return 0.0
    period = max(compute_s, (latency_s + compute_s) / b)
    if not first:
        return m * period * min(1.0, nbytes / (m * tile_bytes))
    if latency_s + compute_s <= b * compute_s:
        return latency_s + m * compute_s
    return (m - 1) // b * (latency_s + compute_s) + latency_s + ((m - 1) % b + 1) * compute_s


def queue_free_latency_s(facts: "DeviceFacts") -> float | None:
    """The loaded-latency curve's latency before its queue: the point before the largest relative latency jump
    between consecutive points (H100 `dram_stream`: 1.47 us at 2.92 TB/s, then 5.4 us at 3.00 TB/s -- beyond the
    knee the latency is the wait in the DRAM's queue).  None without a curve."""
    c = sorted(facts.latency_curve or ())
    if len(c) < 2:
        return None
    i = max(range(len(c) - 1), key=lambda j: c[j + 1][1] / c[j][1])
    return c[i][1]


def buffered_stream_latency_s(facts: "DeviceFacts", ctas: float, tile_bytes: float, buffers: int,
                              limit_Bps: float) -> float:
    """Loaded latency when `ctas` CTAs each run the compiled tile loop with `buffers` K/V tiles in flight: tile i +
    buffers is issued once tile i is computed (tile / limit), so a CTA streams buffers x tile / (latency + tile /
    limit), at most `limit`: the fixed point of B = ctas x that on the measured curve (Little's law on the curve
    shifted by the compute time, `calibration.stream_fixed_point`), the shift taken back off.  buffers = 1 is the
    serial loop (wait, then copy + compute)."""
    from .calibration import stream_fixed_point
    busy = tile_bytes / limit_Bps
    shifted = tuple((b, lat + busy) for b, lat in facts.latency_curve)
    return stream_fixed_point(shifted, facts.dram_Bps, limit_Bps, ctas, max(1, buffers) * tile_bytes)[1] - busy


def last_tile_drain_s(p: DecodeProblem, s: DecodeSchedule, hw, ctas_on_sm: int) -> float:
    """Seconds a split CTA computes after its last K/V bytes arrived: the last tile's two dots (S = Q K^T and
    O += P V, each 2 x block_m x block_n x d FLOPs) cannot overlap any load.  Their rate is the `dot_chain`
    microbenchmark's (`calibration.dot_flops_per_sm_s`: register-resident chains of that tile shape by warps per
    SM), shared by the `ctas_on_sm` CTAs resident on the SM.  0 on a preset without dot_chain points."""
    from .calibration import calibration_for, dot_flops_per_sm_s
    cal = calibration_for(hw)
    if not getattr(cal, "dot_chain", None):
        return 0.0
    bm = block_m_for(heads_per_cta(p, s) * p.max_seq_q)
    c = max(1, ctas_on_sm)
    rate = dot_flops_per_sm_s(cal, p.dtype, block_m=bm, block_n=s.block_n, head_dim=p.head_dim,
                              num_warps=s.num_warps, warps_per_sm=s.num_warps * c)
    return 2 * 2.0 * bm * s.block_n * p.head_dim * c / rate


# --- decode mechanism microbenchmarks (benchmarks/decode_mechanisms_gpu.py; not decode cases) --------------------
def mechanism_points_of(doc: dict, where: str) -> list:
    """The usable points of a `benchmarks/decode_mechanisms_gpu.py` run (its "points", or a calibration fact's
    list); ValueError for a run without points."""
    pts = doc.get("points") if isinstance(doc, dict) else doc
    if not pts:
        raise ValueError(f"{where}: no 'points' (a benchmarks/decode_mechanisms_gpu.py run file has them)")
    return [p for p in pts if "error" not in p and p.get("time_s")]


def decode_mechanism_points(hw_name: str) -> list | None:
    """The measured points of the preset's decode mechanisms: its calibration's `decode_mechanisms` fact (merged
    from benchmarks/decode_mechanisms_gpu.py runs, memsim/presets/<hw>.calibration.json); None without one."""
    from .calibration import calibration_for, calibration_path
    from .hardware import HardwareError, load_hardware
    try:
        hw = load_hardware(hw_name)
    except HardwareError:
        return None
    if not calibration_path(hw).is_file():  # a preset without its own calibration (scaled copies measured none)
        return None
    facts = (calibration_for(hw).raw or {}).get("facts", {})
    if "decode_mechanisms" not in facts:
        return None
    return mechanism_points_of(facts["decode_mechanisms"], f"{hw_name} calibration fact decode_mechanisms")


def _slope(xs, ys) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def _interp(x: float, pts: list) -> float:
    """Linear interpolation over sorted (x, y), clamped at the ends."""
    pts = sorted(pts)
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


def combine_round_s(hw_name: str, round_bytes: float, ctas: float) -> float | None:
    """Seconds each round after the first costs a CTA of a non-pipelined load-then-fold loop (the combine's: 32
    partial rows of d fp32 + their weights per round, loaded into registers, folded, then the next round's loads
    issued): the slope of time over rounds (1, 2, 4) of the `rounds` microbenchmark (weighted fold, rows 16 apart),
    interpolated in log2(bytes per round) between its head dims and in log2(CTAs) between its CTA counts (1 and
    one per SM), clamped at the ends.  H100: 1.9 / 2.1 / 4.5 us per round at 8 / 16 / 32 KB (1 CTA), about twice
    one unloaded DRAM latency and more.  None without the microbenchmark."""
    pts = decode_mechanism_points(hw_name)
    if not pts:
        return None
    groups: dict = {}
    for p in pts:
        if p["kind"] == "rounds" and p.get("weighted") and p.get("stride_rows", 1) > 1:
            groups.setdefault((p["head_dim"], p["ctas"]), []).append((p["rounds"], p["time_s"]))
    if not groups:
        return None
    by_ctas: dict = {}
    for (d, c), rs in groups.items():
        if len(rs) >= 2:
            by_ctas.setdefault(c, []).append((math.log2(32 * (d + 1) * 4), _slope(*zip(*rs))))
    if not by_ctas:
        return None
    lb = math.log2(max(1.0, round_bytes))
    per_c = [(math.log2(c), _interp(lb, v)) for c, v in by_ctas.items()]
    return max(0.0, _interp(math.log2(max(1.0, ctas)), per_c))


def paged_latency_extra_s(hw_name: str, page_size: int | None, ctas: float) -> float:
    """Seconds a paged cache's scattered pages add to each K/V tile's memory latency (DRAM locality, not the
    gather's instructions), from the `gather` microbenchmark: a pipelined stream (2 tiles of 64 x 128 fp16 in
    flight, table prefetched a tile ahead) over pages scattered in a 256 MB pool vs the same stream contiguous;
    (t_paged - t_contiguous) / tiles x tiles in flight, interpolated in log2(CTAs) between 8, 32 and 132 and in
    log2(page rows) between 16 and 64, clamped at the ends (larger pages get the 64-row figure).  The per-key
    and per-page tables of 64-row pages run alike (33.98 vs 33.50 us at 8 CTAs): the instructions do not matter;
    16-row pages add ~0.38 us at 8 CTAs, 64-row ~0.15.  0 for a contiguous cache or a preset without it."""
    if not page_size:
        return 0.0
    pts = decode_mechanism_points(hw_name)
    if not pts:
        return 0.0
    g = [p for p in pts if p["kind"] == "gather"]
    contig = {p["ctas"]: p for p in g if not p["page_rows"]}
    by_rows: dict = {}
    for p in g:
        c = contig.get(p["ctas"])
        if p["page_rows"] and p.get("per_key") and c:
            extra = (p["time_s"] - c["time_s"]) / p["tiles"] * (p["num_stages"] - 1)
            by_rows.setdefault(p["page_rows"], []).append((math.log2(p["ctas"]), extra))
    if not by_rows:
        return 0.0
    lc = math.log2(max(1.0, ctas))
    per_rows = [(math.log2(r), _interp(lc, v)) for r, v in by_rows.items()]
    return max(0.0, _interp(math.log2(page_size), per_rows))
