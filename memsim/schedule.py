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

The per-algorithm text lives with each algorithm's registry entry
(`memsim.algorithms.spec_for(algorithm, phase).description`; the five built-in
ones are in `memsim/algorithms_builtin.py`), beside the closed forms of the
same bytes.  `contract_text()` prints them all.

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

from . import algorithms as _registry

DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
# ALGORITHMS and PHASES (registered names, first-registered first) come from the registry: see __getattr__
GRID_ORDERS = ("q_fastest", "heads_fastest")
CAUSAL_ALIGNMENTS = ("top_left", "bottom_right")
#: head dims the Triton kernels are compiled for (the simulator accepts any d >= 1)
KERNEL_HEAD_DIMS = (16, 32, 64, 128, 256)
STAT_BYTES = 4  # lse, delta, m, l and the flash1 O workspace are fp32


class ScheduleError(ValueError):
    """A problem or schedule that cannot be run; the message says what is allowed."""


def __getattr__(name):  # module attributes read from the registry when asked for
    if name == "ALGORITHMS":  # the algorithms of AttentionProblem (decode has its own problem type)
        return tuple(a for a in _registry.algorithms() if _registry.spec_for(a, "fwd").problem_type is AttentionProblem)
    if name == "PHASES":
        return _registry.phases()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def contract_text() -> str:
    """The byte contract of every registered algorithm-phase, in words."""
    return "\n\n".join(_registry.spec_for(a, p).description for a, p in _registry.registered())


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def naive_rows_per_step(seq_kv: int, block_m: int) -> tuple[int, int]:
    """(rows, npow2): the naive row kernels (softmax, bwd dS) hold `rows` whole rows of next_pow2(seq_kv)
    columns in registers per loop trip (at most 8192 values per CTA), block_m / rows trips per CTA."""
    npow2 = 1 << max(0, (seq_kv - 1).bit_length())
    return max(1, min(block_m, 8192 // npow2)), npow2


def _is_pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def resolved_scale(owner: str, scale, head_dim: int) -> float:
    """A problem's softmax scale: None -> 1 / sqrt(head_dim); else a positive finite number (never a bool)."""
    if scale is None:
        return 1.0 / math.sqrt(head_dim)
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
        raise ScheduleError(f"{owner}.scale must be a positive finite number, got {scale!r}")
    return float(scale)


def require_bool(name: str, value) -> bool:
    """The one check for a flag argument of a public function (kernels and memsim): only True or False, never
    a string ("no" is truthy), an int or None.  Returns the value; raises TypeError naming the argument."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


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
            raise ScheduleError(f"AttentionProblem.causal must be a bool (True or False), got {self.causal!r}")
        if self.heads_q % self.heads_kv:
            raise ScheduleError(
                f"AttentionProblem.heads_q ({self.heads_q}) must be a multiple of heads_kv "
                f"({self.heads_kv}) for grouped-query attention")
        object.__setattr__(self, "scale", resolved_scale("AttentionProblem", self.scale, self.head_dim))

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
        _require_choice("nominal_flops", "phase", phase, ("fwd", "bwd"))
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
        _require_choice("Schedule", "algorithm", self.algorithm, __getattr__("ALGORITHMS"))
        _require_choice("Schedule", "phase", self.phase, _registry.phases())
        _registry.spec_for(self.algorithm, self.phase)  # "no registered (flash1, bwd); registered: ..."
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
            if self.algorithm != "naive":  # only naive materialises S and P; elsewhere it would mean nothing
                raise ScheduleError(
                    f"Schedule.sp_dtype is the element type of the S and P that naive writes to HBM; "
                    f"{self.algorithm} keeps S and P on chip, so its sp_dtype must be None, got {self.sp_dtype!r}")

    def sp_bytes(self, problem: AttentionProblem) -> int:
        return DTYPE_BYTES[self.sp_dtype or problem.dtype]

    def to_dict(self) -> dict:
        return asdict(self)


#: the grid axes that index a head (Launch.axes): a launch whose axis 0 is one of them dispatches heads fastest
HEAD_AXES = ("bh", "bh_kv")


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


def _spec(problem, schedule):
    spec = _registry.spec_for(schedule.algorithm, schedule.phase)
    if not isinstance(problem, spec.problem_type):
        raise ScheduleError(f"{schedule.algorithm} {schedule.phase} takes a {spec.problem_type.__name__}, "
                            f"got {type(problem).__name__}")
    return spec


def kernel_launches(problem: AttentionProblem, schedule: Schedule) -> tuple[Launch, ...]:
    """The launches of `schedule` on `problem`, in execution order (the algorithm's registry entry)."""
    return _spec(problem, schedule).launches(problem, schedule)


def sram_bytes_per_cta(problem: AttentionProblem, schedule: Schedule) -> int:
    """Shared memory the schedule's largest CTA keeps resident (bytes): resident tiles count once,
    streamed tiles once per pipeline stage (each algorithm's registry entry says which are which)."""
    return _spec(problem, schedule).sram_bytes_per_cta(problem, schedule)


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
