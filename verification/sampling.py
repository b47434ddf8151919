"""Random validation cases: seeded draws over the whole space the kernels support (issue 8 item 3).

    python -m verification cases --random 24 --seed 1 [--json]

A draw picks, independently: the algorithm-phase (every attention entry of the registry,
`memsim.algorithms`), the dtype (fp16, bf16, fp32), the head dim (`KERNEL_HEAD_DIMS`), the
lengths (`_draw_len`: log-uniform in 64..32768, a third rounded to multiples of 128, 15 % tiny
in 1..63, so odd, aligned and tiny lengths all come up; seq_kv = seq_q half of the time, else
drawn on its own), B*H (log-uniform in 1..1024, split into batch and heads), the head
grouping (MHA, GQA, MQA), causal or not and its alignment (top_left, bottom_right), and the
schedule (block_m, block_n in 16..128, 1..8 warps, 1..4 stages, both grid orders; for naive the
S/P dtype).  A draw is rejected, and drawn again from the same stream, when:

* the registry refuses the schedule (`memsim.schedule.kernel_launches` raises: an algorithm's own rule, e.g.
  hopper_ws bwd's 128-byte TMA alignment of its 16-row lse/delta tiles, added 2026-11-26 -- notes/hopper.md
  "Session 7" names the commit; a draw that met such a schedule differs from before it, e.g. seed 26112612 from
  its case 002 on);
* its tiles do not fit the card's shared memory (`memsim.schedule.check_fits`) or the kernels'
  tensor-core shape rules, or it would hold more than 256 score values (a tile) or 512 row values (the naive
  row kernels) per thread (they then compile for many minutes) (`kernel_constraints`);
* it needs more device memory than `MEMORY_BUDGET_BYTES` (inputs, outputs, gradients and, for
  naive, S, P and dP: `Case.io_bytes`);
* its estimated kernel time is above `TIME_BUDGET_S`: `memsim.analytic.roofline_time` times a
  pessimism factor (`PESSIMISM`: fp32 dots run on the FMA pipes and may spill, flash1 re-reads
  its workspace) plus the host's launch cost, so a case measures in a few ncu replays;
* the set's summed estimate would pass `SET_BUDGET_S`.

The draw is a pure function of (n, seed, hardware preset): `random.Random(seed)` only, no clock, no
environment; the same arguments give the same cases on every machine (tests/test_verification_random.py).
Case names are ``r<seed>_<index>_<alg>_<phase>_<dtype>_d<d>_q<Nq>_k<Nkv>_bh<B*H>`` so a set's records sort
in draw order.  Stdlib only (memsim.schedule, memsim.algorithms, memsim.analytic, memsim.hardware).
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

from memsim.schedule import (DTYPE_BYTES, KERNEL_HEAD_DIMS, AttentionProblem, Schedule, ScheduleError,
                             check_fits, kernel_launches, naive_rows_per_step)

from .suite import DEFAULT_HW, Case

#: device memory a case may allocate (an 80 GB card, with room for ncu's save/restore of outputs)
MEMORY_BUDGET_BYTES = 12 << 30
#: estimated kernel time of one case's measured pass (seconds)
TIME_BUDGET_S = 0.05
#: summed estimate over a set (seconds); a 24-case set x 3 ncu repeats stays a few minutes
SET_BUDGET_S = 0.6
#: the measured time may exceed the roofline by this much (so the estimate is a pessimistic one)
PESSIMISM = {"fp32": 20.0, "flash1": 4.0, "naive": 2.0, "default": 2.0}
#: host time per launch when estimating (the H100 machine issued a Triton launch every ~30 us)
HOST_LAUNCH_S = 60e-6
MAX_LEN = 32768
MAX_BH = 1024
BLOCKS = (16, 32, 64, 128)
WARPS = (1, 2, 4, 8)
STAGES = (1, 2, 3, 4)
GROUPINGS = ("mha", "gqa", "mqa")


@dataclass(frozen=True)
class RandomSet:
    """A drawn set: its name (e.g. A-seed1), seed, hardware and the cases in draw order."""

    name: str
    seed: int
    hardware: str
    cases: tuple
    rejected: dict  # reason -> count (how the space was narrowed)
    estimate_s: float


def attention_keys() -> list[tuple[str, str]]:
    """(algorithm, phase) of every registered attention algorithm (the registry when present)."""
    try:
        from memsim import algorithms as A
        keys = [k for k in A.registered() if A.spec_for(*k).problem_type is AttentionProblem]
        if keys:
            return keys
    except ImportError:  # pragma: no cover - before the registry existed
        pass
    from memsim.schedule import ALGORITHMS, PHASES
    return [(a, p) for a in ALGORITHMS for p in PHASES if not (a == "flash1" and p == "bwd")]


def _log_uniform_int(rng: random.Random, lo: int, hi: int) -> int:
    return min(hi, max(lo, int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))))


def _draw_len(rng: random.Random) -> int:
    """A sequence length: mostly log-uniform in 64..32768 (a third of those rounded to a multiple of
    128, as real workloads are), sometimes tiny (1..63)."""
    if rng.random() < 0.15:
        return _log_uniform_int(rng, 1, 63)
    n = _log_uniform_int(rng, 64, MAX_LEN)
    if rng.random() < 1 / 3:
        n = min(MAX_LEN, max(128, round(n / 128) * 128))
    return n


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def kernel_constraints(problem: AttentionProblem, schedule: Schedule) -> str | None:
    """Why the Triton kernels cannot run this schedule (None if they can).  Tensor-core dots need
    at least 4 warps' worth of a 16-row tile: a block of 16 rows with 8 warps leaves warps idle, which
    Triton refuses for some shapes; these rules keep to what the kernels' tests cover."""
    s = schedule
    if s.block_m * s.block_n < 32 * 8 * s.num_warps:
        return "tile too small for the warps"
    if s.block_m * s.block_n > 32 * 256 * s.num_warps:
        # more than 256 score values per thread: ptxas needs minutes and over 10 GB (a 1-warp 128 x 128 fp32 tile
        # did not finish in 5 min on a CPU), longer than a measurement call allows
        return "tile too large for the warps"
    if s.algorithm == "flash1" and s.num_warps > 4 and s.block_m < 64:
        return "flash1 small tile with many warps"
    if s.algorithm == "naive":
        # the row kernels hold whole rows (next power of two of seq_kv) in registers: past 512 values per thread
        # per row array the compiler runs for many minutes (a 1-warp 32k-wide backward did not finish in 5 min
        # on a CPU), longer than a measurement call allows
        rows, npow2 = naive_rows_per_step(problem.seq_kv, s.block_m)
        if rows * npow2 > 512 * 32 * s.num_warps:
            return "naive rows too wide for the warps"
    return None


def estimate_s(problem: AttentionProblem, schedule: Schedule, hw_name: str) -> float:
    """Pessimistic measured-time estimate of the case's pass (see the module doc)."""
    from memsim.analytic import roofline_time
    from memsim.schedule import kernel_launches
    t = roofline_time(problem, schedule, hw_name)
    f = max(PESSIMISM["default"], PESSIMISM.get(schedule.algorithm, 0.0), PESSIMISM.get(problem.dtype, 0.0))
    return f * t + HOST_LAUNCH_S * len(kernel_launches(problem, schedule))


def _draw_one(rng: random.Random, keys, hw) -> tuple[AttentionProblem, Schedule]:
    alg, phase = keys[rng.randrange(len(keys))]
    dtype = rng.choice(("fp16", "bf16", "fp32"))
    d = rng.choice(KERNEL_HEAD_DIMS)
    nq = _draw_len(rng)
    nkv = nq if rng.random() < 0.5 else _draw_len(rng)
    bh = _log_uniform_int(rng, 1, MAX_BH)
    heads = rng.choice([h for h in _divisors(bh) if h <= 128])
    batch = bh // heads
    grouping = rng.choice(GROUPINGS)
    if grouping == "mha" or heads == 1:
        hkv = heads
    elif grouping == "mqa":
        hkv = 1
    else:
        hkv = rng.choice([g for g in _divisors(heads) if 1 < g < heads] or [heads])
    causal = rng.random() < 0.5
    align = rng.choice(("top_left", "bottom_right"))
    prob = AttentionProblem(batch=batch, heads_q=heads, heads_kv=hkv, seq_q=nq, seq_kv=nkv, head_dim=d,
                            dtype=dtype, causal=causal, causal_align=align if causal else "top_left")
    sp = None
    if alg == "naive" and dtype != "fp32" and rng.random() < 0.3:
        sp = "fp32"
    sched = Schedule(algorithm=alg, phase=phase, block_m=rng.choice(BLOCKS), block_n=rng.choice(BLOCKS),
                     num_warps=rng.choice(WARPS), num_stages=rng.choice(STAGES),
                     grid_order=rng.choice(("q_fastest", "heads_fastest")), sp_dtype=sp)
    return prob, sched


def case_name(seed: int, i: int, p: AttentionProblem, s: Schedule) -> str:
    return (f"r{seed}_{i:03d}_{s.algorithm}_{s.phase}_{p.dtype}_d{p.head_dim}_q{p.seq_q}_k{p.seq_kv}"
            f"_bh{p.batch * p.heads_q}")


def draw(n: int, seed: int, *, hardware: str = DEFAULT_HW, set_name: str | None = None,
         max_tries: int = 200000) -> RandomSet:
    """`n` random cases for `hardware`, a pure function of (n, seed, hardware)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"--random needs a positive number of cases, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    from memsim.hardware import load_hardware
    hw = load_hardware(hardware)
    keys = attention_keys()
    rng = random.Random(seed)
    cases, rejected, total = [], {}, 0.0
    set_budget = SET_BUDGET_S * max(1.0, n / 24)

    def reject(why):
        rejected[why] = rejected.get(why, 0) + 1

    tries = 0
    while len(cases) < n:
        tries += 1
        if tries > max_tries:
            raise RuntimeError(f"drew only {len(cases)} of {n} cases in {max_tries} tries ({rejected})")
        try:
            p, s = _draw_one(rng, keys, hw)
        except ScheduleError:
            reject("invalid")
            continue
        try:
            kernel_launches(p, s)  # the registry's own schedule rules (hopper_ws bwd: TMA alignment of 16-row tiles)
        except ScheduleError:
            reject("refused by the registry")
            continue
        try:
            check_fits(p, s, hw.smem_per_block_bytes, hw.name)
            if s.phase == "bwd" and (s.algorithm, "fwd") in keys:
                # measuring a backward runs the forward with the same schedule first (its O and lse)
                check_fits(p, dataclasses.replace(s, phase="fwd"), hw.smem_per_block_bytes, hw.name)
        except ScheduleError:
            reject("shared memory")
            continue
        why = kernel_constraints(p, s)
        if why:
            reject(why)
            continue
        c = Case(case_name(seed, len(cases), p, s), p, s, hardware, tags=("random",),
                 note=f"random draw {len(cases)} of seed {seed}")
        if c.io_bytes() > MEMORY_BUDGET_BYTES:
            reject("memory")
            continue
        t = estimate_s(p, s, hardware)
        if t > TIME_BUDGET_S:
            reject("time")
            continue
        if total + t > set_budget:
            reject("set time")
            continue
        total += t
        cases.append(c)
    return RandomSet(set_name or f"seed{seed}", seed, hardware, tuple(cases), rejected, total)


def set_name_for(label: str | None, seed: int) -> str:
    """'A' -> 'A-seed1'; None -> 'seed1'."""
    if label is None:
        return f"seed{seed}"
    if not label.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"--set must be letters, digits, '-' or '_', got {label!r}")
    return f"{label}-seed{seed}"


def describe(c: Case) -> str:
    p, s = c.problem, c.schedule
    grp = "mha" if p.heads_kv == p.heads_q else ("mqa" if p.heads_kv == 1 else f"gqa{p.group_size}")
    mask = f"causal-{'tl' if p.causal_align == 'top_left' else 'br'}" if p.causal else "full"
    sp = f" sp={s.sp_dtype}" if s.sp_dtype else ""
    return (f"{c.name:52s} B={p.batch:<4d} H={p.heads_q}/{p.heads_kv} ({grp}) Nq={p.seq_q:<5d} Nkv={p.seq_kv:<5d} "
            f"d={p.head_dim:<3d} {p.dtype} {mask:9s} {s.algorithm}/{s.phase} {s.block_m}x{s.block_n} "
            f"w{s.num_warps} st{s.num_stages} {s.grid_order}{sp}")


__all__ = ["draw", "RandomSet", "attention_keys", "estimate_s", "kernel_constraints", "case_name", "describe",
           "set_name_for", "DTYPE_BYTES"]
