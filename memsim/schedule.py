"""The shared vocabulary of the simulator and the kernels (stdlib only).

`AttentionProblem` says *what* is computed, `Schedule` says *how*: which
algorithm, which phase, tile sizes, pipeline depth and grid order.  The
Triton kernels in `kernels/` launch exactly the grids returned by
`kernel_launches()` and move exactly the bytes described below; the SimPy
model in `memsim/` replays the same launches tile by tile.  A change to one
side that the other does not follow is a bug, and the verification suite
(measured traffic vs predicted) is what catches it.

Byte contract per launch (e = element bytes of the problem dtype, s = element
bytes of the naive S/P dtype, statistics are fp32 = 4 bytes; "rows" and "cols"
are the rows/columns of a tile that exist, so edge tiles move fewer bytes;
Mb = ceil(seq_q / block_m), Nb = ceil(seq_kv / block_n)):

flash2, fwd -- one launch ``flash2_fwd``, one CTA per (Q block, batch*head_q):
    Q_i (rows x d x e) read once and kept in SRAM; for each K/V block j that is
    not fully masked: K_j, V_j (cols x d x e each) read; O_i (rows x d x e) and
    the logsumexp (rows x 4) written once.  Extra memory: lse, B*Hq*Nq*4.
flash2, bwd -- three launches (deterministic, no atomics):
    ``flash2_bwd_preprocess`` one CTA per (Q block, batch*head_q): reads O_i,
    dO_i, writes delta_i = rowsum(dO*O) (rows x 4).
    ``flash2_bwd_dkdv`` one CTA per (K/V block, batch*head_kv): K_j, V_j kept
    in SRAM; for every q head of the GQA group and every unmasked Q block i:
    Q_i, dO_i (rows x d x e), lse_i, delta_i (rows x 4) read; dK_j, dV_j
    (cols x d x e) written once.
    ``flash2_bwd_dq`` one CTA per (Q block, batch*head_q): Q_i, dO_i, lse_i,
    delta_i read once; for each unmasked j: K_j, V_j read; dQ_i written once.
    Extra memory: lse (kept from fwd) + delta, B*Hq*Nq*4 each.
flash1, fwd -- one launch ``flash1_fwd``, one CTA per batch*head_q, running the
    2022 paper's Algorithm 1: K/V blocks j outer, Q blocks i inner.  K_j, V_j
    read once per j; for each unmasked (j, i): Q_i read; O_i (rows x d x 4),
    m_i, l_i (rows x 4 each) read back from an fp32 workspace unless this is the
    first visit of block i, and written back unless it is the last visit; on the
    last visit O_i (rows x d x e) and lse_i (rows x 4) are written instead.
    Extra memory: the fp32 workspace (B*Hq*Nq*(d+2)*4) plus lse.
naive, fwd -- three launches, S and P materialised in HBM (dtype ``sp_dtype``):
    ``naive_qk`` one CTA per (Q block, K block, batch*head_q): Q_i, K_j read,
    S_ij = scale * Q_i K_j^T (rows x cols x s) written.
    ``naive_softmax`` one CTA per (block_m rows, batch*head_q): the full rows of
    S read once, causal mask applied, P written once (masked entries are 0).
    ``naive_pv`` one CTA per (Q block, batch*head_q): for each j: P_ij, V_j read;
    O_i written.  Naive attention computes every tile, causal or not: the mask
    is applied in the softmax, as standard attention does.
    Extra memory: S and P, 2*B*Hq*Nq*Nkv*s.
naive, bwd -- five launches, P kept from the forward pass:
    ``naive_bwd_dv``  one CTA per (K block, batch*head_kv): for each q head of
    the group and each i: P_ij, dO_i read; dV_j written.
    ``naive_bwd_dp``  one CTA per (Q block, K block, batch*head_q): dO_i, V_j
    read; dP_ij (s) written.
    ``naive_bwd_ds``  one CTA per (block_m rows, batch*head_q): rows of P and dP
    read, dS = P*(dP - rowsum(P*dP)) written over dP.
    ``naive_bwd_dq``  one CTA per (Q block, batch*head_q): for each j: dS_ij,
    K_j read; dQ_i = scale * dS K written.
    ``naive_bwd_dk``  one CTA per (K block, batch*head_kv): for each q head of
    the group and each i: dS_ij, Q_i read; dK_j = scale * dS^T Q written.
    Extra memory: S/P from fwd plus the dP/dS buffer, B*Hq*Nq*Nkv*s.

Grid order: CUDA hands out CTAs with grid axis 0 varying fastest.  With
``q_fastest`` axis 0 is the Q (or K/V) block index and axis 1 the
batch*head index, so the blocks of one head run together and share K/V in L2;
``heads_fastest`` swaps the two axes.

Causal masking: query row r may attend key column c when c <= r + offset, with
offset = 0 for ``top_left`` alignment (what torch SDPA's ``is_causal`` does)
and offset = seq_kv - seq_q for ``bottom_right``.  A row with no visible key
(possible with bottom_right and seq_q > seq_kv) has output 0 and lse -inf.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
ALGORITHMS = ("naive", "flash1", "flash2")
PHASES = ("fwd", "bwd")
GRID_ORDERS = ("q_fastest", "heads_fastest")
CAUSAL_ALIGNMENTS = ("top_left", "bottom_right")
#: head dims the Triton kernels are compiled for (the simulator accepts any d >= 1)
KERNEL_HEAD_DIMS = (16, 32, 64, 128, 256)
STAT_BYTES = 4  # lse, delta, m, l and the flash1 O workspace are fp32


class ScheduleError(ValueError):
    """A problem or schedule that cannot be run; the message says what is allowed."""


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _is_pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def _require_positive_int(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScheduleError(f"{owner}.{name} must be an int, got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise ScheduleError(f"{owner}.{name} must be positive, got {value}")


def _require_choice(owner: str, name: str, value, allowed) -> None:
    if value not in allowed:
        raise ScheduleError(f"{owner}.{name} = {value!r} is not one of {', '.join(map(repr, allowed))}")


@dataclass(frozen=True)
class AttentionProblem:
    """softmax(scale * Q K^T [+ causal mask]) V for (batch, heads, seq, head_dim) tensors."""

    batch: int
    heads_q: int
    heads_kv: int
    seq_q: int
    seq_kv: int
    head_dim: int
    dtype: str = "fp16"
    causal: bool = False
    scale: float | None = None
    causal_align: str = "top_left"

    def __post_init__(self):
        for name in ("batch", "heads_q", "heads_kv", "seq_q", "seq_kv", "head_dim"):
            _require_positive_int("AttentionProblem", name, getattr(self, name))
        _require_choice("AttentionProblem", "dtype", self.dtype, tuple(DTYPE_BYTES))
        _require_choice("AttentionProblem", "causal_align", self.causal_align, CAUSAL_ALIGNMENTS)
        if not isinstance(self.causal, bool):
            raise ScheduleError(f"AttentionProblem.causal must be a bool, got {self.causal!r}")
        if self.heads_q % self.heads_kv:
            raise ScheduleError(
                f"AttentionProblem.heads_q ({self.heads_q}) must be a multiple of heads_kv "
                f"({self.heads_kv}) for grouped-query attention")
        if self.scale is None:
            object.__setattr__(self, "scale", 1.0 / math.sqrt(self.head_dim))
        elif not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise ScheduleError(f"AttentionProblem.scale must be a positive finite number, got {self.scale!r}")
        else:
            object.__setattr__(self, "scale", float(self.scale))

    # --- sizes -----------------------------------------------------------
    @property
    def element_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def group_size(self) -> int:
        """q heads sharing one k/v head (1 = MHA, heads_q = MQA)."""
        return self.heads_q // self.heads_kv

    @property
    def causal_offset(self) -> int:
        return self.seq_kv - self.seq_q if self.causal_align == "bottom_right" else 0

    def q_bytes(self) -> int:
        return self.batch * self.heads_q * self.seq_q * self.head_dim * self.element_bytes

    def kv_bytes(self) -> int:
        """K and V together."""
        return 2 * self.batch * self.heads_kv * self.seq_kv * self.head_dim * self.element_bytes

    def o_bytes(self) -> int:
        return self.q_bytes()

    # --- masking -----------------------------------------------------------
    def visible_cols(self, row: int) -> int:
        """How many key columns query row `row` attends to (0 .. seq_kv)."""
        if not self.causal:
            return self.seq_kv
        return max(0, min(self.seq_kv, row + self.causal_offset + 1))

    def visible_pairs(self) -> int:
        """Number of (query, key) pairs that are not masked, per batch*head."""
        if not self.causal:
            return self.seq_q * self.seq_kv
        off = self.causal_offset
        # rows r with 0 < r+off+1 < seq_kv see r+off+1 columns; later rows see all
        total = 0
        first_full = max(0, self.seq_kv - off - 1)  # first row that sees every column
        lo = max(0, -off)  # first row that sees anything
        hi = min(self.seq_q, first_full)
        if hi > lo:
            n = hi - lo
            total += n * (lo + off + 1) + n * (n - 1) // 2
        total += max(0, self.seq_q - max(first_full, lo)) * self.seq_kv
        return total

    def tile_visible(self, row_start: int, row_end: int, col_start: int) -> bool:
        """Whether any (row, col) in rows [row_start, row_end) x cols >= col_start is unmasked.

        A tile whose first column lies past the last visible column of its last
        row is fully masked and is skipped by the flash kernels."""
        if not self.causal:
            return True
        return col_start <= row_end - 1 + self.causal_offset

    def nominal_flops(self, phase: str = "fwd") -> float:
        """FLOPs as the benchmarks count them: 4*B*Hq*Nq*Nkv*d forward, 2.5x that
        backward, halved when causal (DESIGN.md)."""
        _require_choice("nominal_flops", "phase", phase, PHASES)
        f = 4.0 * self.batch * self.heads_q * self.seq_q * self.seq_kv * self.head_dim
        if self.causal:
            f /= 2
        return f if phase == "fwd" else 2.5 * f

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Schedule:
    """How a problem is computed: algorithm, phase, tiles, pipeline, grid order."""

    algorithm: str = "flash2"
    phase: str = "fwd"
    block_m: int = 128
    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 2
    grid_order: str = "q_fastest"
    #: element type of the materialised S and P (naive only); None = the problem dtype
    sp_dtype: str | None = None

    def __post_init__(self):
        _require_choice("Schedule", "algorithm", self.algorithm, ALGORITHMS)
        _require_choice("Schedule", "phase", self.phase, PHASES)
        _require_choice("Schedule", "grid_order", self.grid_order, GRID_ORDERS)
        for name in ("block_m", "block_n", "num_warps", "num_stages"):
            _require_positive_int("Schedule", name, getattr(self, name))
        for name in ("block_m", "block_n"):
            v = getattr(self, name)
            if not _is_pow2(v) or v < 16:
                raise ScheduleError(f"Schedule.{name} must be a power of two >= 16 (tensor-core tiles), got {v}")
        if not _is_pow2(self.num_warps) or self.num_warps > 32:
            raise ScheduleError(f"Schedule.num_warps must be a power of two in 1..32, got {self.num_warps}")
        if self.num_stages > 8:
            raise ScheduleError(f"Schedule.num_stages must be 1..8, got {self.num_stages}")
        if self.sp_dtype is not None:
            _require_choice("Schedule", "sp_dtype", self.sp_dtype, tuple(DTYPE_BYTES))
        if self.algorithm == "flash1" and self.phase == "bwd":
            raise ScheduleError("Schedule: flash1 has a forward pass only; use algorithm='flash2' for the backward")

    def sp_bytes(self, problem: AttentionProblem) -> int:
        return DTYPE_BYTES[self.sp_dtype or problem.dtype]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Launch:
    """One kernel launch of a schedule: its name and grid (axis 0 varies fastest)."""

    name: str
    grid: tuple[int, int, int]
    #: what each grid axis indexes: "q_block", "kv_block", "row_block", "bh" (batch*head_q), "bh_kv" (batch*head_kv), "one"
    axes: tuple[str, str, str]
    smem_bytes: int = field(default=0, compare=False)

    @property
    def num_ctas(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]


def _ordered(block_axis: str, nblocks: int, head_axis: str, nheads: int, order: str):
    if order == "q_fastest":
        return (nblocks, nheads, 1), (block_axis, head_axis, "one")
    return (nheads, nblocks, 1), (head_axis, block_axis, "one")


def kernel_launches(problem: AttentionProblem, schedule: Schedule) -> tuple[Launch, ...]:
    """The launches of `schedule` on `problem`, in execution order (see module doc)."""
    p, s = problem, schedule
    mb, nb = cdiv(p.seq_q, s.block_m), cdiv(p.seq_kv, s.block_n)
    bh, bhkv = p.batch * p.heads_q, p.batch * p.heads_kv
    smem = sram_bytes_per_cta(p, s)

    def mk(name, block_axis, nblocks, head_axis, nheads):
        grid, axes = _ordered(block_axis, nblocks, head_axis, nheads, s.grid_order)
        return Launch(name, grid, axes, smem)

    def mk2d(name):  # (Q block, K block, bh): the two block axes stay innermost
        if s.grid_order == "q_fastest":
            return Launch(name, (mb, nb, bh), ("q_block", "kv_block", "bh"), smem)
        return Launch(name, (bh, mb, nb), ("bh", "q_block", "kv_block"), smem)

    if s.algorithm == "flash2" and s.phase == "fwd":
        return (mk("flash2_fwd", "q_block", mb, "bh", bh),)
    if s.algorithm == "flash2":
        return (mk("flash2_bwd_preprocess", "q_block", mb, "bh", bh),
                mk("flash2_bwd_dkdv", "kv_block", nb, "bh_kv", bhkv),
                mk("flash2_bwd_dq", "q_block", mb, "bh", bh))
    if s.algorithm == "flash1":
        return (Launch("flash1_fwd", (bh, 1, 1), ("bh", "one", "one"), smem),)
    if s.phase == "fwd":
        return (mk2d("naive_qk"),
                mk("naive_softmax", "row_block", mb, "bh", bh),
                mk("naive_pv", "q_block", mb, "bh", bh))
    return (mk("naive_bwd_dv", "kv_block", nb, "bh_kv", bhkv),
            mk2d("naive_bwd_dp"),
            mk("naive_bwd_ds", "row_block", mb, "bh", bh),
            mk("naive_bwd_dq", "q_block", mb, "bh", bh),
            mk("naive_bwd_dk", "kv_block", nb, "bh_kv", bhkv))


def sram_bytes_per_cta(problem: AttentionProblem, schedule: Schedule) -> int:
    """Shared memory the schedule's largest CTA keeps resident (bytes).

    Resident tiles count once, streamed tiles once per pipeline stage:
    flash2 fwd: Q_i resident, stages x (K_j + V_j).
    flash2 bwd (dK/dV pass, the larger): K_j, V_j resident, stages x (Q_i + dO_i + lse + delta).
    flash1 fwd: K_j, V_j resident, stages x (Q_i + O_i fp32 + m_i + l_i).
    naive: the matmul tiles, stages x (A tile + B tile) with the d-deep (or block_n-deep) operand.
    """
    p, s = problem, schedule
    d, e, bm, bn, st = p.head_dim, p.element_bytes, s.block_m, s.block_n, s.num_stages
    if s.algorithm == "flash2" and s.phase == "fwd":
        return bm * d * e + st * 2 * bn * d * e
    if s.algorithm == "flash2":
        return 2 * bn * d * e + st * (2 * bm * d * e + 2 * bm * STAT_BYTES)
    if s.algorithm == "flash1":
        return 2 * bn * d * e + st * (bm * d * e + bm * d * STAT_BYTES + 2 * bm * STAT_BYTES)
    sp = s.sp_bytes(p)
    qk = st * (bm + bn) * d * e          # S = Q K^T: Q_i and K_j, d deep
    pv = st * (bm * bn * sp + bn * d * e)  # O = P V: P_ij and V_j, block_n deep
    return max(qk, pv)


def check_fits(problem: AttentionProblem, schedule: Schedule, smem_per_block_bytes: int,
               hardware_name: str = "this hardware") -> int:
    """Raise ScheduleError if the schedule's tiles need more shared memory than a CTA may have."""
    need = sram_bytes_per_cta(problem, schedule)
    if need > smem_per_block_bytes:
        raise ScheduleError(
            f"{schedule.algorithm} {schedule.phase} with block_m={schedule.block_m}, block_n={schedule.block_n}, "
            f"num_stages={schedule.num_stages}, head_dim={problem.head_dim}, dtype={problem.dtype} needs "
            f"{need} bytes of shared memory per CTA but {hardware_name} allows {smem_per_block_bytes}; "
            f"use smaller blocks or fewer stages")
    return need


def _from_dict(cls, d: dict):
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ScheduleError(f"unknown {cls.__name__} field(s) {sorted(unknown)}; allowed: {sorted(names)}")
    return cls(**d)


def problem_from_dict(d: dict) -> AttentionProblem:
    return _from_dict(AttentionProblem, d)


def schedule_from_dict(d: dict) -> Schedule:
    return _from_dict(Schedule, d)
