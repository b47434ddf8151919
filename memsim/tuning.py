"""Model-steered tuning: the candidate schedules of a problem, and the model's ranking of them.

A kernel autotuner that times every candidate makes the user wait (tens of compiles and timings per
problem).  Here the model ranks the candidates first and the device measures only its top few
(`kernels.autotune`):

* `candidates(problem, algorithm, phase, hardware)` -- every schedule of the algorithm's search space
  (`SPACES`: tiles, warps, stages) that fits a CTA's shared memory on the hardware (the registry's
  `check_fits`) and whose fp32 accumulators fit the register budget (`acc_regs_per_thread`, at most
  `MAX_ACC_REGS_PER_THREAD`: beyond it the compiler spills the accumulators every iteration);
* `rank(problem, candidates, hardware)` -- `memsim.simulate` on each, fastest predicted first, each with
  its predicted time and the bound that decides it (the longest launch's binding limit: tensor, exp, dram,
  l2, issue, ...);
* `spearman(xs, ys)` and `regret(...)` -- how good a ranking was, once the candidates have been measured.

The ranking is only as good as the compiled facts behind it (registers, spills and the tile loop's SASS
decide occupancy and the issue limit, `memsim.costs`): the committed table (`memsim.compiled`) is read
first, and `facts` adds entries for candidates it lacks (`python -m kernels.compiled_facts` format,
``{key: entry}``; `benchmarks/tune_rank.py --compile-facts` writes one for a candidate set).  Where
neither has a launch, the model assumes the preset's registers and says so in `Ranked.facts_source`.

Nothing here is fitted to measured times: the ranking is `memsim.simulate` as it stands.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from .limits import LATENCY_SHARE
from .schedule import AttentionProblem, Schedule, ScheduleError, check_fits, kernel_launches

__all__ = ["SearchSpace", "SPACES", "Ranked", "candidates", "rank", "spearman", "regret",
           "acc_regs_per_thread", "MAX_ACC_REGS_PER_THREAD", "problem_key"]

#: fp32 accumulator registers per thread a candidate may need (half the 255 a thread can have: the S/P
#: tile, pointers and the softmax statistics need the rest); beyond it the accumulators spill
MAX_ACC_REGS_PER_THREAD = 128


@dataclass(frozen=True)
class SearchSpace:
    """The tile choices tried for one (algorithm, phase): every combination is a candidate."""

    block_m: tuple[int, ...]
    block_n: tuple[int, ...]
    num_warps: tuple[int, ...]
    num_stages: tuple[int, ...]

    def __iter__(self):
        return itertools.product(self.block_m, self.block_n, self.num_warps, self.num_stages)

    def __len__(self) -> int:
        return len(self.block_m) * len(self.block_n) * len(self.num_warps) * len(self.num_stages)


#: the search space of each tunable (algorithm, phase): what Triton's tutorials and the earlier tuning
#: runs (benchmarks/attention_tune.py) tried on Hopper; small enough to time exhaustively for validation
SPACES: dict[tuple[str, str], SearchSpace] = {
    ("flash2", "fwd"): SearchSpace((64, 128), (32, 64, 128), (4, 8), (2, 3)),
    ("flash2", "bwd"): SearchSpace((32, 64, 128), (64, 128), (4, 8), (2, 3)),
    ("hopper", "fwd"): SearchSpace((64, 128), (64, 128), (4, 8), (2, 3)),
}


def acc_regs_per_thread(problem: AttentionProblem, schedule: Schedule) -> int:
    """fp32 accumulator registers one thread holds: O (block_m x d) in the forward; the larger of dK + dV
    (2 x block_n x d, the dK/dV pass) and dQ (block_m x d) in the backward.  The warp-specialised hopper
    loop runs two consumer warpgroups per 4 launched warps (kernels/hopper.py), so its accumulators spread
    over 8 warps."""
    p, s = problem, schedule
    d = p.head_dim
    elems = max(2 * s.block_n * d, s.block_m * d) if s.phase == "bwd" else s.block_m * d
    warps = s.num_warps
    if s.algorithm == "hopper":
        from .algorithms_hopper import warp_specialised
        if warp_specialised(p, s):
            warps = 2 * s.num_warps
    return -(-elems // (32 * warps))


def candidates(problem: AttentionProblem, algorithm: str, phase: str, hardware, *,
               space: SearchSpace | None = None, grid_order: str = "q_fastest") -> tuple[Schedule, ...]:
    """Every schedule of `space` (default `SPACES[(algorithm, phase)]`) that fits `hardware`'s shared memory
    per CTA and the accumulator register budget, in the space's order.  A ScheduleError says what is
    allowed when there is no space for the key or nothing fits."""
    from .hardware import Hardware, load_hardware
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    if space is None:
        space = SPACES.get((algorithm, phase))
        if space is None:
            raise ScheduleError(f"no search space for ({algorithm}, {phase}); tunable: "
                                f"{', '.join(f'({a}, {p})' for a, p in SPACES)} (or pass space=SearchSpace(...))")
    out = []
    for bm, bn, w, st in space:
        s = Schedule(algorithm, phase, bm, bn, w, st, grid_order=grid_order)
        try:
            check_fits(problem, s, hw.smem_per_block_bytes, hw.name)
        except ScheduleError:
            continue
        if acc_regs_per_thread(problem, s) > MAX_ACC_REGS_PER_THREAD:
            continue
        out.append(s)
    if not out:
        raise ScheduleError(f"no ({algorithm}, {phase}) candidate of {len(space)} fits {hw.name} for head_dim "
                            f"{problem.head_dim} {problem.dtype} (shared memory {hw.smem_per_block_bytes} B per "
                            f"CTA, {MAX_ACC_REGS_PER_THREAD} accumulator registers per thread)")
    return tuple(out)


@dataclass(frozen=True)
class Ranked:
    """One candidate as the model sees it."""

    rank: int
    schedule: Schedule
    #: predicted time of all its launches, seconds (inf where it could not be simulated)
    predicted_s: float
    #: the binding limit of its longest launch (memsim.limits: tensor, exp, tensor+exp, dram, l2,
    #: latency/occupancy; "issue" where the SASS issue time (memsim.costs) exceeds every unit's and explains
    #: most of the time), and that launch's name
    bound: str
    bound_launch: str
    #: how the compiled facts were found, per launch ("compiled: ..." / "assumed: ...")
    facts_source: tuple[str, ...] = ()
    #: why it could not be simulated ("" when it was)
    error: str = ""
    #: per launch: {"name", "time_s", "binding_limit", "ctas_per_sm", "occupancy_limit", "regs_per_thread"}
    launches: tuple[dict, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict:
        return {"rank": self.rank, "schedule": self.schedule.to_dict(),
                "predicted_s": None if math.isinf(self.predicted_s) else self.predicted_s,
                "bound": self.bound, "bound_launch": self.bound_launch, "facts_source": list(self.facts_source),
                "error": self.error, "launches": list(self.launches)}


def _facts_for(problem, schedule, facts: dict | None) -> dict | None:
    if not facts:
        return None
    from .compiled import facts_from_entry, key
    out = {}
    for L in kernel_launches(problem, schedule):
        e = facts.get(key(L.name, problem, schedule))
        if e is not None:
            out[L.name] = facts_from_entry(e)
    return out or None


def _issue_s(problem, schedule, hw, k: dict, facts) -> float:
    """Seconds the SMs' warp schedulers need to issue the launch's tile loops (memsim.costs: SASS instructions
    per iteration x warps / issue rate, per tile, over the SMs the grid fills); 0 where the compiled facts have no loop."""
    from .calibration import calibration_for
    from .costs import launch_cost
    smem = check_fits(problem, schedule, hw.smem_per_block_bytes, hw.name)
    cost = launch_cost(hw, calibration_for(hw), k["name"], problem, schedule, smem, facts=facts)
    return (k["tiles"] * cost.issue_s_per_tile + k["num_ctas"] * cost.cta_fixed_s) / max(1, min(hw.num_sms, k["num_ctas"]))


def rank(problem: AttentionProblem, cands, hardware, *, facts: dict | None = None,
         max_seconds: float | None = 10.0, progress=None) -> list[Ranked]:
    """The candidates, fastest predicted first (ties keep the candidates' order).

    facts: extra compiled-facts entries ``{memsim.compiled.key: entry}`` for launches the committed table
    lacks (they win over the table's nearest entry).  max_seconds: the simulation-cost limit of one
    candidate (`memsim.grain`; `simulate`'s auto grain keeps each near a second); a candidate refused or
    failing is ranked last with its error.  progress: callable(done, total)."""
    from .hardware import Hardware, load_hardware
    from .sim import simulate
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    cands = list(cands)
    rows = []
    for i, s in enumerate(cands):
        try:
            r = simulate(problem, s, hw, compiled_facts=_facts_for(problem, s, facts), max_seconds=max_seconds)
            d = r.to_dict()
            ks = d["kernels"]
            launches = []
            for k in ks:
                L = {k2: k[k2] for k2 in ("name", "time_s", "binding_limit", "ctas_per_sm", "occupancy_limit",
                                          "regs_per_thread")}
                L["issue_s"] = _issue_s(problem, s, hw, k, (_facts_for(problem, s, facts) or {}).get(k["name"]))
                if L["issue_s"] >= max(k["bounds_s"].values()) and L["issue_s"] >= LATENCY_SHARE * k["time_s"]:
                    L["binding_limit"] = "issue"
                launches.append(L)
            longest = max(launches, key=lambda k: k["time_s"])
            rows.append((float(d["total"]["time_s"]), i, s, longest["binding_limit"], longest["name"],
                         tuple(k["compiled_facts"] for k in ks), "", tuple(launches)))
        except (ScheduleError, ValueError) as e:
            rows.append((math.inf, i, s, "", "", (), f"{type(e).__name__}: {e}", ()))
        if progress is not None:
            progress(i + 1, len(cands))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [Ranked(rank=j + 1, schedule=s, predicted_s=t, bound=b, bound_launch=bl, facts_source=fs, error=err,
                   launches=ls)
            for j, (t, _, s, b, bl, fs, err, ls) in enumerate(rows)]


def _ranks(xs) -> list[float]:
    """1-based ranks of xs, ties sharing their mean rank."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for t in range(i, j + 1):
            out[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs, ys) -> float:
    """Spearman's rank correlation of two equally long sequences (ties get mean ranks): the Pearson
    correlation of their ranks.  NaN when either is constant or shorter than 2."""
    xs, ys = list(xs), list(ys)
    if len(xs) != len(ys):
        raise ValueError(f"spearman: {len(xs)} values against {len(ys)}")
    if len(xs) < 2:
        return math.nan
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return math.nan
    return sxy / math.sqrt(sxx * syy)


def regret(predicted_s, measured_s, top: int = 3) -> float:
    """How much slower the best measured of the model's `top` fastest-predicted candidates is than the best
    measured of all: min(measured[top by predicted]) / min(measured) - 1 (0.0 = the tuner finds the best).
    Candidates without a measurement (None or inf: did not compile, failed the exactness gate) are dropped
    from both sides first -- a tuner skips them and measures the next."""
    pairs = [(p, m) for p, m in zip(predicted_s, measured_s) if m is not None and math.isfinite(m)]
    if not pairs:
        raise ValueError("regret: no candidate has a measured time")
    if top < 1:
        raise ValueError(f"regret: top must be >= 1, got {top}")
    best = min(m for _, m in pairs)
    chosen = sorted(range(len(pairs)), key=lambda i: (pairs[i][0], i))[:top]
    return min(pairs[i][1] for i in chosen) / best - 1.0


def _pow2_ceil(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def problem_key(problem: AttentionProblem) -> str:
    """The problem class a tuned schedule is kept for: dtype, head dim, mask, GQA group and the sequence
    lengths and batch x heads rounded up to powers of two (what changes the winner: the compiled code and
    the grid's waves).  Stdlib; `kernels.autotune` keys its cache and default table by it."""
    p = problem
    mask = f"causal-{p.causal_align}" if p.causal else "full"
    return (f"{p.dtype}|d{p.head_dim}|{mask}|g{p.group_size}|sq{_pow2_ceil(p.seq_q)}|skv{_pow2_ceil(p.seq_kv)}"
            f"|bh{_pow2_ceil(p.batch * p.heads_q)}")
