"""How coarse a simulation runs: the cost estimate before simulating, and the ``auto`` grain.

The SimPy model's cost is its Python work, not the GPU's: building every CTA's tile steps
(`memsim.workloads`) and walking them as events (`memsim.engine`).  Both are known before anything
is built, from the launch grids and the loop lengths of each launch (`launch_loops`):

* a CTA of ``flash2_fwd`` walks its visible K/V blocks in runs of ``run_blocks``, one step per run;
  ``flash2_bwd_dkdv`` the Q blocks from the first that sees its K/V block, once per q head of its
  group; ``flash1_fwd`` every (K/V block, run of Q blocks); the naive matmul launches one tile; the
  naive row launches their K/V blocks twice (read, then write).

Four knobs set the grain (all exact in global bytes, FLOPs and exps; see MODEL.md "Grain"):

* ``grain`` / ``run_blocks`` -- tiles per step (``tile`` = 1, ``run`` = R, ``cta`` = the longest loop);
* ``ctas_per_event`` (k) -- a CTA slot takes k consecutive CTAs of the dispatch order at once and walks
  them as one event chain with their steps merged (`memsim.engine.CtaBatches`): the accesses of the
  k CTAs to one L2 key become one access with their summed bytes, so the L2 sees every key and block
  exactly as the k CTAs would name them;
* ``heads_per_event`` (f) -- CTAs of f heads are identical but for their head (every built-in
  algorithm): one CTA stands for f side by side, its bytes, L2 lines, FLOPs and exps multiplied by f, on
  a GPU of round(num_sms / f) SMs each f times as wide (`fold_model`), so the waves, the CTAs in flight
  and the per-CTA latencies stay those of the real launch; the L2 holds what the real one holds per
  head in flight (`fold_l2_scale`).

``auto`` keeps today's choice (tile grain up to ``AUTO_TILE_LIMIT`` tiles, else runs of
``DEFAULT_RUN_BLOCKS``) when it is estimated to cost at most ``AUTO_BUDGET_S``; otherwise it coarsens,
cheapest-to-accuracy first: folds a few heads (while the folded GPU keeps ``ACCURATE_FOLD_MIN_SMS``
SMs), doubles the run length up to one step per CTA loop, batches CTAs of the launches with the most
events (never below ``MIN_EVENTS_PER_SLOT`` events per CTA slot, so the dispatch tail stays small), then
folds more heads.  What is still over ``REFUSE_EVENTS`` estimated events at
the coarsest grain is refused with the estimate (`SimulationTooLarge`).
"""
from __future__ import annotations

import math
import sys
import time
from bisect import bisect_left
from dataclasses import dataclass, field, replace

from .analytic import launch_counts
from .schedule import HEAD_AXES, AttentionProblem, Schedule, cdiv, kernel_launches, naive_rows_per_step

GRAINS = ("auto", "tile", "run", "cta")
#: default run length of the "run" grain (blocks per step), and the "auto" switch point from tile to run
DEFAULT_RUN_BLOCKS = 16
AUTO_TILE_LIMIT = 50_000
#: "auto" coarsens until the estimate is at most this (seconds on the reference 2-core VM)
AUTO_BUDGET_S = 1.0
#: "auto" never batches or folds below this many events (CTA batches) per CTA slot of a launch
MIN_EVENTS_PER_SLOT = 8
#: "auto" batches the CTAs of a launch whose fastest grid axis is a head only where the CTAs of one head are
#: dispatched within this share of a CTA slot round of each other (heads / slots: they run side by side, at about
#: the same trip) -- see `batch_keeps_reuse`
CONCURRENT_REUSE_SHARE = 0.05
#: progress (CLI: stderr; library: the `progress` callback) for runs estimated longer than this
PROGRESS_AFTER_S = 2.0
#: "auto" folds f heads only where c = round(num_sms / f) * f / num_sms (the folded SMs' compute is
#: scaled by c to keep the GPU's total rate) is within this of 1: latencies are not scaled
MAX_FOLD_SM_SLACK = 0.25
#: "auto" first folds heads while the folded GPU keeps at least this many SMs (measured agreement within
#: 5 %, tests/test_memsim_grain.py), then lengthens runs, batches CTAs, and folds further only if it must
ACCURATE_FOLD_MIN_SMS = 32
#: "auto" lengthens runs only while one step of every head in flight brings in at most this share of the L2
#: (`step_l2_share`): a step books its tiles' lines at once, so a CTA's partner (the same head's next CTA) reads a
#: line a whole step of every other head's lines later than it would tile by tile.  Convergence, not a fit: on the
#: live long walks the step plans agree with the tile-grain ones (DRAM within 2 %) up to a share of 0.24 and double
#: at 0.48 (held-out Z 011, 45 heads: 325 / 638 / 2176 MB at 32 / 64 / 128 tiles a step, 321 tile by tile; r2611_012:
#: 213 MB up to 0.2, 1702 at a whole walk a step, 4.1); MODEL.md "Grain"
MAX_STEP_L2_SHARE = 0.25
#: refused: more estimated events than this even at the coarsest grain (about a day of Python)
REFUSE_EVENTS = 10 ** 9
#: ``auto`` refuses, with the estimate, a problem its coarsest plan still estimates above this many seconds
#: (issue 11: any problem simulates in under 10 s or is refused up front); ``max_seconds=None`` runs it anyway
SLOW_LIMIT_S = 10.0

#: seconds of Python (CPU) per unit of work on the reference machine (2-core VM, python 3.11, simpy 4.1):
#: per CTA built, per step built, per access built (key lookups, merging), per event step walked, per loop
#: iteration of building (flash1); least squares over 30 runs at six grains of the five algorithm-phases,
#: ``python benchmarks/sim_speed.py --fit`` on 2026-11-25 (median error 15 %, worst 39 %; the step term
#: came out negative and is carried by the others)
SEC_PER_CTA = 18e-6
SEC_PER_STEP = 0.0
SEC_PER_ACCESS = 1.8e-6
SEC_PER_EVENT = 13e-6
SEC_PER_ITER = 0.42e-6


class SimulationTooLarge(ValueError):
    """A problem whose simulation would take absurdly long even at the coarsest grain."""


def check_max_seconds(max_seconds) -> None:
    """max_seconds is None (no limit) or a positive number of CPU seconds: nan would turn the limit off
    (every comparison with nan is False) and a negative one would refuse everything."""
    if max_seconds is None:
        return
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or math.isnan(max_seconds) \
            or max_seconds <= 0:
        raise ValueError(f"max_seconds must be a positive number of CPU seconds, or None to run however long it "
                         f"takes; got {max_seconds!r}")


@dataclass(frozen=True)
class LaunchLoop:
    """One launch's CTAs and the steps / accesses one of them builds at run length R (per CTA, averages)."""

    name: str
    num_ctas: int
    #: CTAs per group of identical heads (CTAs of one kv head's group); num_ctas / this = foldable heads
    ctas_per_head: int
    tiles: float
    steps: float
    accesses: float
    #: Python loop iterations of building one CTA beyond its accesses (flash1 walks every Q block of a run)
    iters: float = 0.0


def _jmax(p: AttentionProblem, bm: int, bn: int, mb: int, nb: int) -> list:
    if not p.causal:
        return [nb - 1] * mb
    out = []
    off = p.causal_offset
    for i in range(mb):
        last_col = min((i + 1) * bm, p.seq_q) - 1 + off
        out.append(-1 if last_col < 0 else min(nb - 1, last_col // bn))
    return out


def _nruns(b0: int, b1: int, R: int) -> int:
    """Steps of a loop over blocks [b0, b1) cut at multiples of R (memsim.workloads._runs)."""
    return 0 if b1 <= b0 else (b1 - 1) // R - b0 // R + 1


def launch_loops(problem: AttentionProblem, schedule: Schedule, run_blocks: int) -> list[LaunchLoop]:
    """Per launch: CTAs and the average tiles, steps and accesses one CTA builds at `run_blocks`.

    From the grids (`kernel_launches`) and closed-form loop lengths; nothing is built.  A launch this
    module does not know gets the longest loop (an upper bound)."""
    p, s, R = problem, schedule, run_blocks
    mb, nb = cdiv(p.seq_q, s.block_m), cdiv(p.seq_kv, s.block_n)
    G = p.group_size
    BH, BHkv = p.batch * p.heads_q, p.batch * p.heads_kv
    jmax = _jmax(p, s.block_m, s.block_n, mb, nb)
    vis = [j + 1 for j in jmax]
    out = []
    for L in kernel_launches(p, s):
        n = L.num_ctas
        name = L.name
        iters = 0
        if name in ("flash2_fwd", "flash2_bwd_dq", "hopper_fwd"):  # hopper_fwd walks flash2_fwd's tiles
            fwd = name != "flash2_bwd_dq"
            st = [max(1, _nruns(0, v, R)) for v in vis]
            steps, tiles = sum(st) / mb, sum(max(1, v) for v in vis) / mb
            acc = 2 * steps + (2 if fwd else 4) + (2 if fwd else 1)
        elif name in ("flash2_bwd_preprocess", "hopper_bwd_preprocess", "hopper_bwd_dq_convert"):
            steps, tiles, acc = 1, 1, 3  # no tile loop
        elif name == "flash2_bwd_dkdv" or (name in ("hopper_bwd_dkdvdq", "hopper_bwd_dkdv_ws")
                                           and s.algorithm != "hopper_fa3"):  # one K/V block, its Q walk
            # (hopper_fa3's pass splits each step and walks a persistent order: the longest-loop bound below)
            imin = [bisect_left(jmax, j) for j in range(nb)]
            st = [max(1, G * _nruns(i0, mb, R)) for i0 in imin]
            steps, tiles = sum(st) / nb, sum(max(1, G * (mb - i0)) for i0 in imin) / nb
            acc = 4 * steps + 4
        elif name == "flash1_fwd":
            imin = [bisect_left(jmax, j) for j in range(nb)]
            st = sum(max(1, _nruns(i0, mb, R)) for i0 in imin) + (1 if vis and vis[0] == 0 else 0)
            steps, tiles = st, sum(max(1, mb - i0) for i0 in imin)
            acc = 2 * nb + 5 * st
            iters = 3 * tiles
        elif name in ("naive_qk", "naive_bwd_dp"):
            steps, tiles, acc = 1, 1, 3
        elif name in ("naive_softmax", "naive_bwd_ds"):
            k = 1 if name == "naive_softmax" else 2
            # the kernel's loop trips (memsim.workloads._naive_rows): rows per trip from the kernels' rule
            # one read step of the real trips, one of the idle trips past seq_q (if any), the stores per column run
            per_trip = naive_rows_per_step(p.seq_kv, s.block_m)[0]
            trips = cdiv(s.block_m, per_trip)
            real = [cdiv(min(s.block_m, p.seq_q - i * s.block_m), per_trip) for i in range(mb)]
            steps = 1 + sum(r < trips for r in real) / mb + _nruns(0, nb, R)
            tiles = trips
            acc = (k + 1) * _nruns(0, nb, R)
        elif name in ("naive_pv", "naive_bwd_dq"):
            steps, tiles = _nruns(0, nb, R), nb
            acc = 2 * steps + 1
        elif name in ("naive_bwd_dv", "naive_bwd_dk"):
            steps, tiles = G * _nruns(0, mb, R), G * mb
            acc = G * mb + steps + 1
        else:  # an algorithm added later: the longest loop, one access per tile (an upper bound)
            tiles = max(mb, nb)
            steps, acc = _nruns(0, tiles, R), 3 * tiles
        heads = BHkv if L.num_ctas % BHkv == 0 else 1
        out.append(LaunchLoop(name, n, n // heads, tiles, steps, acc, iters))
    return out


def foldable_heads(problem: AttentionProblem) -> int:
    """How many heads' CTAs can stand for each other: whole kv heads (their q heads with them)."""
    return problem.batch * problem.heads_kv


def folded_problem(problem: AttentionProblem, heads_per_event: int) -> AttentionProblem:
    """The problem with ceil(B*Hkv / f) kv heads (same group size): each of its heads stands for f, the
    last for what is left (`fold_scale`)."""
    f = heads_per_event
    bhkv = foldable_heads(problem)
    if f == 1:
        return problem
    if f > bhkv:
        raise ValueError(f"heads_per_event must be at most batch*heads_kv = {bhkv}, got {f}")
    hkv = cdiv(bhkv, f)
    return replace(problem, batch=1, heads_kv=hkv, heads_q=hkv * problem.group_size)


def fold_scale(problem: AttentionProblem, heads_per_event: int, folded_launch):
    """callable(CTA index of the folded launch) -> real kv heads that CTA stands for: f, or the rest for
    the last kv head when f does not divide B*Hkv; None when every CTA stands for f."""
    f = heads_per_event
    bhkv = foldable_heads(problem)
    n_groups = cdiv(bhkv, f)
    rest = bhkv - (n_groups - 1) * f
    if rest == f:
        return None
    axes, grid = folded_launch.axes, folded_launch.grid
    pos = next(i for i, a in enumerate(axes) if a in HEAD_AXES)
    inner = 1
    for n in grid[:pos]:
        inner *= n
    n_axis, per = grid[pos], (problem.group_size if axes[pos] == "bh" else 1)
    last = n_groups - 1

    def scale(idx: int) -> int:
        return rest if (idx // inner) % n_axis // per == last else f
    return scale


@dataclass(frozen=True)
class GrainPlan:
    """The grain a simulation runs at and what it is estimated to cost."""

    grain: str
    run_blocks: int
    heads_per_event: int
    #: CTAs per event, per launch (launch name -> k)
    ctas_per_event: dict
    #: estimated CTAs built, steps built, accesses built, and event steps walked (all launches)
    built_ctas: int
    built_steps: int
    built_accesses: int
    events: int
    estimated_s: float
    #: why auto chose it ("today's rule", "coarsened: over budget", or "given")
    reason: str = ""
    slots: int = field(default=0, compare=False)

    def describe(self) -> str:
        ks = sorted(set(self.ctas_per_event.values()))
        kt = "/".join(map(str, ks)) if ks else "1"
        return (f"grain {self.grain} ({self.run_blocks} tiles/step), {kt} CTAs/event, {self.heads_per_event} "
                f"heads/event: about {self.events:.3g} events, {self.estimated_s:.2g} s estimated")

    def to_dict(self) -> dict:
        return {"grain": self.grain, "run_blocks": self.run_blocks, "heads_per_event": self.heads_per_event,
                "ctas_per_event": dict(self.ctas_per_event), "built_ctas": self.built_ctas,
                "built_steps": self.built_steps, "built_accesses": self.built_accesses, "events": self.events,
                "estimated_s": self.estimated_s, "reason": self.reason}


def _cost(loops: list[LaunchLoop], f: int, ks: dict) -> tuple[int, int, int, int, float]:
    c = st = ac = ev = it = 0
    for L in loops:
        n = L.num_ctas // f if L.num_ctas % f == 0 else cdiv(L.num_ctas, f)
        c += n
        st += n * L.steps
        ac += n * L.accesses
        it += n * L.iters
        ev += cdiv(n, ks.get(L.name, 1)) * (L.steps + 1)
    secs = c * SEC_PER_CTA + st * SEC_PER_STEP + ac * SEC_PER_ACCESS + ev * SEC_PER_EVENT + it * SEC_PER_ITER
    return int(c), int(st), int(ac), int(ev), secs


def fold_model(hw, cost, heads_per_event: int):
    """(hardware, launch cost, per-SM port scale) for a model whose CTAs each stand for f identical CTAs
    running side by side: ns = max(1, round(num_sms / f)) SMs, each standing for f real SMs; the steps
    carry f times the FLOPs and c = ns * f / num_sms keeps the GPU's total dot/exp rate exact (seconds per
    FLOP become c / f of the real ones)."""
    f = heads_per_event
    if f == 1:
        return hw, cost, 1.0
    ns = max(1, round(hw.num_sms / f))
    c = ns * f / hw.num_sms
    return (hw.with_overrides(num_sms=ns),
            replace(cost, sec_per_flop=cost.sec_per_flop * c / f, sec_per_exp=cost.sec_per_exp * c / f,
                    issue_s_per_tile=cost.issue_s_per_tile * c / f, local_s_per_tile=cost.local_s_per_tile * c / f,
                    cta_fixed_s=cost.cta_fixed_s * c / f, issue_s_per_tile_dram=cost.issue_s_per_tile_dram * c / f,
                    tile_fixed_s=cost.tile_fixed_s * c / f,
                    issue_s_per_tile_noload=cost.issue_s_per_tile_noload * c / f),
            hw.num_sms / ns)


def launch_heads(launch) -> int:
    """The heads a launch's grid spans: the product of its head axes."""
    heads = 1
    for n, a in zip(launch.grid, launch.axes):
        if a in HEAD_AXES:
            heads *= n
    return heads


def heads_in_flight(launch, slots: int) -> int:
    """Heads whose CTAs run at once: every slot a different head when a head axis varies fastest (or a
    head is one CTA), else the heads that `slots` consecutive CTAs of the dispatch order cover."""
    heads = launch_heads(launch)
    if launch.axes[0] in HEAD_AXES:
        return max(1, min(heads, slots))
    per_head = max(1, launch.num_ctas // heads)
    return max(1, min(heads, cdiv(slots, per_head)))


def batch_keeps_reuse(launch, k: int, heads_per_event: int, slots: int) -> bool:
    """Whether batching k consecutive CTAs per event keeps when the launch's CTAs re-read one another's lines.

    A batch walks its k CTAs' steps merged, in one slot, so the model has slots x k CTAs in flight, each k times
    slower: two CTAs `d` apart in the dispatch order start d / (slots x k) of a CTA's lifetime apart instead of
    d / slots.  Where the grid's fastest axis is a head, the CTAs that share a head's K/V (or Q) are d = heads
    apart: with d / slots a good part of a lifetime (held-out X 000: 661 heads, 1716 slots: 0.39) the card's
    second CTA reads the K/V blocks after the other heads' in-flight blocks have gone through the L2 -- a
    thrashing L2 misses -- while 64-CTA batches put it at 0.006, beside the first, and hit (DRAM reads 75 GB
    measured, 74-84 at k = 1, 15 at k = 64 with 20 heads folded).  So such a launch is batched only where its
    heads run side by side (d / slots <= CONCURRENT_REUSE_SHARE) or stay at least a lifetime apart even batched
    (d / (slots x k) >= 1).  A Q-block-fastest grid keeps a head's CTAs adjacent (d = 1): always kept."""
    if k <= 1 or launch.axes[0] not in HEAD_AXES:
        return True
    heads = launch_heads(launch)
    if heads >= launch.num_ctas:
        return True  # one CTA per head: nothing re-read by a later CTA of the same head
    r = (heads / max(1, heads_per_event)) / max(1, slots)
    return r <= CONCURRENT_REUSE_SHARE or r >= k


def step_l2_share(loop: LaunchLoop, launch, counts: dict, run_blocks: int, slots: int, l2_bytes: int) -> float:
    """The share of the L2 one step of `run_blocks` tiles brings in across the heads in flight: each in-flight head's
    CTAs walk the same blocks (a dK/dV walk's Q blocks, a forward's K/V blocks), so the lines new to the L2 in a step
    are those of one CTA's step per head -- `heads_in_flight` x run_blocks x the launch's global bytes per trip
    (`counts`: memsim.analytic.launch_counts' entry).  0 for a launch without a tile loop."""
    trips = loop.num_ctas * loop.tiles
    if loop.tiles <= 1 or trips <= 0 or l2_bytes <= 0:
        return 0.0
    per_trip = (counts["global_read_bytes"] + counts["global_write_bytes"]) / trips
    return heads_in_flight(launch, slots) * min(run_blocks, loop.tiles) * per_trip / l2_bytes


def fold_keeps_reuse(launch, heads_per_event: int, num_sms: int, whole_heads: bool = True) -> bool:
    """Whether folding f heads keeps which CTAs of one head share an SM (and an L2 merge group).

    Where the grid's fastest axis is a head, a head's CTAs are `heads` apart in the dispatch order and land
    `heads` mod num_sms SMs apart; the CTAs resident on one SM are num_sms apart, so mostly of other heads.  The
    folded launch puts event i on model SM i mod ns (ns = round(num_sms / f), each standing for f real SMs): its
    co-residents are ns x f real CTAs apart -- the real ones' num_sms only where f divides num_sms.  Otherwise
    co-resident events are the same folded head where the real SM holds different heads, and their requests merge:
    held-out Z 011 (45 heads, runs of 32): L2 reads 7924 MB unfolded, 8438 / 7855 / 8502 / 7867 at f = 2 / 3 / 4 / 6
    (divisors of 132), 6174 / 2067 at f = 9 / 45 (15 x 9 and 3 x 45 = 135 real SMs).  And f must divide the heads:
    otherwise the last folded head stands for fewer, its events end early (less work on an f-wide model SM), its
    slot starts every later CTA early, and the waves in which a head's CTAs walk its lines together break --
    held-out AA 000 (41 heads fastest, a thrashing 15117-row dK/dV walk): DRAM reads 3951 MB unfolded (ncu 3966),
    10.7-19.3 GB at f 2-11; its one-q-head twin 1988 unfolded, 3189 / 8868 at f 2 / 4, and with 40 heads 1821 at
    f 1 / 2 / 4 alike.  (Making the short event take a full event's time fixes the waves but charges the model SM for
    f CTAs where the card runs `rest`: a 3-head launch at f 2 went +10 -> +42 % in time -- not kept.)  A
    Q-block-fastest grid keeps a head's CTAs adjacent whatever the fold: always kept.  `whole_heads` False drops the
    second condition (`plan_grain`'s first fallback when the plan is too slow to run: a head count with no divisor
    of num_sms -- X 000's 661 -- would otherwise go straight to the batched plan that hid its L2 thrash)."""
    f = heads_per_event
    if f <= 1 or launch.axes[0] not in HEAD_AXES:
        return True
    heads = launch_heads(launch)
    if heads >= launch.num_ctas:
        return True  # one CTA per head: nothing of a head is shared
    return num_sms % f == 0 and (heads % f == 0 or not whole_heads)


def fold_l2_scale(launch, slots: int, heads_per_event: int) -> float:
    """L2 capacity factor of a folded launch: f heads side by side hold the lines of f heads, where the real
    launch holds those of `heads_in_flight`; each real head keeps the L2 share it has on the GPU."""
    return max(1.0, heads_per_event / heads_in_flight(launch, slots))


def _check_int(name, v, lo=1):
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
        raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _base_grain(problem, schedule, grain, run_blocks, max_loop):
    """Today's rule (the grain the validated suite ran at)."""
    if grain == "auto":
        if run_blocks is not None:
            grain = "run"
        else:
            tiles = sum(L.num_ctas * L.tiles for L in launch_loops(problem, schedule, 1))
            grain = "tile" if tiles <= AUTO_TILE_LIMIT else "run"
    if grain == "tile":
        return grain, 1
    if grain == "cta":
        return grain, max_loop
    if run_blocks is None and schedule.algorithm == "flash1":
        # flash1 revisits its workspace block i one inner loop (all Q blocks) later: a run must be a small
        # part of that loop, or write-then-read of the workspace becomes adjacent in the LRU and the L2
        # seems to hold what really thrashes (gpt2m flash1: DRAM read 2.4 GB at one run per loop,
        # 6.57 GB at tile grain and measured)
        return grain, max(1, min(DEFAULT_RUN_BLOCKS, cdiv(problem.seq_q, schedule.block_m) // 4))
    return grain, run_blocks or DEFAULT_RUN_BLOCKS


def plan_grain(problem: AttentionProblem, schedule: Schedule, hardware, grain: str = "auto",
               run_blocks: int | None = None, ctas_per_event: int | None = None,
               heads_per_event: int | None = None, ctas_per_sm: int = 1,
               budget_s: float = AUTO_BUDGET_S, refuse: bool = True,
               max_seconds: float | None = SLOW_LIMIT_S, keep_reuse: bool = True,
               whole_heads: bool = True) -> GrainPlan:
    """Choose (or check) the grain; estimate its cost.  Raises `SimulationTooLarge` for the absurd.

    Explicit arguments are kept; with ``grain="auto"`` the knobs left as None are chosen (see the
    module doc).  `ctas_per_sm` is the occupancy used to count CTA slots (num_sms x ctas_per_sm).
    `keep_reuse`: batch only where `batch_keeps_reuse`; where that plan would be refused as too slow, the plan
    without it is taken (its reason says so) -- a coarser answer rather than none."""
    if grain not in GRAINS:
        raise ValueError(f"grain must be one of {', '.join(GRAINS)}, got {grain!r}")
    check_max_seconds(max_seconds)
    _check_int("run_blocks", run_blocks)
    _check_int("ctas_per_event", ctas_per_event)
    _check_int("heads_per_event", heads_per_event)
    mb, nb = cdiv(problem.seq_q, schedule.block_m), cdiv(problem.seq_kv, schedule.block_n)
    max_loop = max(mb, nb)
    g, R = _base_grain(problem, schedule, grain, run_blocks, max_loop)
    bhkv = foldable_heads(problem)
    if heads_per_event is not None and heads_per_event > bhkv:
        raise ValueError(f"heads_per_event must be at most batch*heads_kv = {bhkv}, got {heads_per_event}")
    cps = max(1, ctas_per_sm)
    slots = max(1, hardware.num_sms * cps)
    f = heads_per_event or 1
    loops = launch_loops(problem, schedule, R)
    ks = {L.name: ctas_per_event or 1 for L in loops}
    cost = _cost(loops, f, ks)
    reason = "given" if grain != "auto" else "today's rule"
    free_R = grain == "auto" and run_blocks is None
    free_k = grain == "auto" and ctas_per_event is None
    free_f = grain == "auto" and heads_per_event is None
    if cost[4] > budget_s and (free_R or free_k or free_f):
        reason = f"coarsened: today's rule estimated {cost[4]:.2g} s > {budget_s} s"
        kl = {L.name: L for L in kernel_launches(problem, schedule)}
        counts = launch_counts(problem, schedule)

        def share(L, R_):
            return step_l2_share(L, kl[L.name], counts[L.name], R_, slots, hardware.l2_bytes)

        def k_ok(L, k, f):
            sl = max(1, round(hardware.num_sms / f)) * cps
            if cdiv(cdiv(L.num_ctas, f), k) < MIN_EVENTS_PER_SLOT * sl:
                return False
            if not keep_reuse:
                return True
            # a batch of k walks k times the CTAs of each head in flight: harmless only where a head's whole walk
            # stays in the L2 across them anyway (Z 011: DRAM 325 -> 201 / 140 MB at k = 2 / 4)
            return batch_keeps_reuse(kl[L.name], k, f, sl) and (
                kl[L.name].axes[0] not in HEAD_AXES or share(L, L.tiles) <= MAX_STEP_L2_SHARE)

        def next_fold(limit_sms):
            for d in range(f + 1, bhkv + 1):
                ns = max(1, round(hardware.num_sms / d))
                if (abs(ns * d / hardware.num_sms - 1) <= MAX_FOLD_SM_SLACK and ns >= limit_sms
                        and (not keep_reuse
                             or all(fold_keeps_reuse(L, d, hardware.num_sms, whole_heads) for L in kl.values()))):
                    return d
            return None

        def longer_run_ok(R_):
            # runs of R_ tiles keep the partners' reuse (`step_l2_share`), or the plan may batch across heads
            return not keep_reuse or all(share(L, R_) <= MAX_STEP_L2_SHARE for L in launch_loops(problem, schedule, R_))

        while cost[4] > budget_s:
            small = next_fold(ACCURATE_FOLD_MIN_SMS) if free_f else None
            if small is not None:  # a few heads side by side: the most faithful coarsening (MODEL.md "Grain")
                f = small
            elif free_R and R < max_loop and longer_run_ok(min(2 * R, max_loop)):
                R = min(2 * R, max_loop)
                g = "cta" if R >= max_loop else "run"
                loops = launch_loops(problem, schedule, R)
            else:
                # the launch with the most event time that may still be batched
                cand = [L for L in loops if free_k and k_ok(L, 2 * ks[L.name], f)]
                if cand:
                    L = max(cand, key=lambda L: cdiv(L.num_ctas // f, ks[L.name]) * (L.steps + 1))
                    ks[L.name] *= 2
                elif free_f:
                    nxt = next_fold(1)
                    if nxt is None:
                        break
                    f = nxt
                    if free_k:  # the batches the new fold still allows
                        for L in loops:
                            while ks[L.name] > 1 and not k_ok(L, ks[L.name], f):
                                ks[L.name] //= 2
                else:
                    break
            cost = _cost(loops, f, ks)
    plan = GrainPlan(grain=g, run_blocks=R, heads_per_event=f, ctas_per_event=ks, built_ctas=cost[0],
                     built_steps=cost[1], built_accesses=cost[2], events=cost[3], estimated_s=cost[4],
                     reason=reason, slots=slots)
    n_ev = plan.built_ctas + plan.built_accesses + plan.events
    if keep_reuse and whole_heads and (free_k or free_f) and max_seconds is not None and plan.estimated_s > max_seconds:
        # too slow with whole heads to a fold: folds that leave a short last head (fold_keeps_reuse), then the rest
        loose = plan_grain(problem, schedule, hardware, grain, run_blocks, ctas_per_event, heads_per_event,
                           ctas_per_sm, budget_s, refuse, max_seconds, keep_reuse=True, whole_heads=False)
        return replace(loose, reason=loose.reason + "; heads folded with a short last group (the plan with whole "
                                                    f"groups was estimated at {plan.estimated_s:.2g} s)")
    if keep_reuse and free_k and max_seconds is not None and plan.estimated_s > max_seconds:
        loose = plan_grain(problem, schedule, hardware, grain, run_blocks, ctas_per_event, heads_per_event,
                           ctas_per_sm, budget_s, refuse, max_seconds, keep_reuse=False)
        return replace(loose, reason=loose.reason + "; batched across a head's CTAs (the plan that keeps them "
                                                    f"apart was estimated at {plan.estimated_s:.2g} s)")
    if refuse and n_ev > REFUSE_EVENTS:
        what = f"{schedule.algorithm} {schedule.phase} B={problem.batch} H={problem.heads_q} N={problem.seq_q}"
        if problem.seq_kv != problem.seq_q:
            what += f" Nkv={problem.seq_kv}"
        if free_R and free_k and free_f:
            raise SimulationTooLarge(
                f"refusing to simulate {what}: about {n_ev:.2g} events even at the coarsest grain "
                f"({plan.describe()}), over the limit of {REFUSE_EVENTS:.0e}")
        coarse = plan_grain(problem, schedule, hardware, ctas_per_sm=ctas_per_sm, budget_s=budget_s, refuse=False)
        raise SimulationTooLarge(
            f"refusing to simulate {what} at the grain asked for: about {n_ev:.2g} events ({plan.describe()}), over "
            f"the limit of {REFUSE_EVENTS:.0e}; grain='auto' with no other grain option would take about "
            f"{coarse.estimated_s:.2g} s ({coarse.describe()})")
    if refuse and max_seconds is not None and free_R and free_k and free_f and plan.estimated_s > max_seconds:
        what = f"{schedule.algorithm} {schedule.phase} B={problem.batch} H={problem.heads_q} N={problem.seq_q}"
        raise SimulationTooLarge(
            f"refusing to simulate {what}: about {plan.estimated_s:.0f} s of CPU even at the coarsest grain "
            f"({plan.describe()}), over the {max_seconds:.0f} s limit; larger tiles or fewer, longer CTAs make it "
            f"cheaper, or pass max_seconds=None (--allow-slow) to run it anyway")
    if refuse and max_seconds is not None and not (free_R and free_k and free_f) and plan.estimated_s > max_seconds:
        # a grain or event option given: the plan asked for is kept, so it is the one refused (issue 11 item 7)
        what = f"{schedule.algorithm} {schedule.phase} B={problem.batch} H={problem.heads_q} N={problem.seq_q}"
        coarse = plan_grain(problem, schedule, hardware, ctas_per_sm=ctas_per_sm, budget_s=budget_s, refuse=False)
        raise SimulationTooLarge(
            f"refusing to simulate {what} at the grain asked for: about {plan.estimated_s:.0f} s of CPU "
            f"({plan.describe()}), over the {max_seconds:.0f} s limit; grain='auto' with no other grain option "
            f"(drop --grain/--run-blocks/--ctas-per-event/--heads-per-event) would take about "
            f"{coarse.estimated_s:.2g} s ({coarse.describe()}), or pass max_seconds=None (--allow-slow) to run "
            f"this grain anyway")
    return plan


def estimate(problem: AttentionProblem, schedule: Schedule, hardware="h100-sxm", grain: str = "auto",
             run_blocks: int | None = None, ctas_per_event: int | None = None,
             heads_per_event: int | None = None) -> GrainPlan:
    """The plan `simulate(problem, schedule, hardware, ...)` would run, with its estimated cost (nothing is
    built or simulated); raises `SimulationTooLarge` where simulate would."""
    from .costs import ctas_per_sm
    from .hardware import Hardware, load_hardware
    from .schedule import check_fits
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    smem = check_fits(problem, schedule, hw.smem_per_block_bytes, hw.name)
    cps = ctas_per_sm(hw, smem, schedule.num_warps, hw.regs_per_thread)[0]
    return plan_grain(problem, schedule, hw, grain, run_blocks, ctas_per_event, heads_per_event, ctas_per_sm=cps)


class Progress:
    """Throttled progress: calls ``callback(done_ctas, total_ctas)`` at most every `every_s` seconds
    and once at the end."""

    def __init__(self, callback, total_ctas: int, every_s: float = 0.5):
        self.cb, self.total, self.every = callback, total_ctas, every_s
        self.done = 0
        self.next_t = time.perf_counter() + every_s
        callback(0, total_ctas)

    def tick(self, n: int) -> None:
        self.done += n
        t = time.perf_counter()
        if t >= self.next_t:
            self.next_t = t + self.every
            self.cb(self.done, self.total)

    def finish(self) -> None:
        self.cb(self.total, self.total)


def stderr_progress(label: str = "memsim", use_tqdm: bool | None = None):
    """A progress callback for command lines: tqdm's bar on stderr when tqdm is installed (the `progress`
    extra; use_tqdm=False forces the plain line), else one updating line on stderr."""
    if use_tqdm is not False:
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            state = {}

            def bar_cb(done, total):
                bar = state.get("bar")
                if bar is None:
                    bar = state["bar"] = tqdm(total=total, desc=f"{label}: simulated", unit="CTA", file=sys.stderr,
                                              dynamic_ncols=True, leave=True)
                bar.update(done - bar.n)
                if done >= total:
                    bar.close()
            return bar_cb
    t0 = time.perf_counter()

    def cb(done, total):
        el = time.perf_counter() - t0
        frac = done / total if total else 1.0
        eta = el / frac - el if frac > 0 else math.inf
        end = "\n" if done >= total else ""
        left = f", about {eta:.0f} s left" if 0 < done < total else ""
        sys.stderr.write(f"\r{label}: simulated {done}/{total} CTAs ({100 * frac:.0f} %), {el:.1f} s{left} " + end)
        sys.stderr.flush()
    return cb
