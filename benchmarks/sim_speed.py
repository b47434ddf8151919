"""How fast is the simulator, and what does the grain cost in agreement?  (issue 11 item 7, issue 8 "Also")

Three parts, each writing data (never timed assertions):

* **spread** (default): the issue's problems -- flash2 N=1M with 1024 heads, naive N=32768, a GPU with
  1e8 SMs, naive N=8192, flash2 N=16384 d=128 B*H=32, ... -- each simulated with ``grain="auto"`` (after)
  and, where today's rule is estimated under ``--before-cap`` seconds, at today's rule (before: tile grain
  up to 50 000 tiles, else runs of 16, one CTA per event, no folded heads).  Wall and CPU seconds, the
  plan (`memsim.grain`), its estimate, and for cases run both ways the agreement of the levels.
* **random** (``--random N --seed S``): the N cases `verification.sampling.draw` gives (the random sets
  of issue 8: every algorithm-phase, B*H 1..1024, lengths 1..32768, GQA, causal alignments, tiles,
  warps, stages, grid orders, within the GPU's memory and time budgets), simulated with ``auto``:
  seconds per case, mean and worst.
* **fit** (``--fit``): the cost constants of `memsim.grain` (seconds per CTA, step, access, event,
  iteration) by least squares over runs at several grains; printed, and stored with the data.

The file is benchmarks/results/sim_speed-<host>[-N].json (a new name when one exists: never over an old one).

    python benchmarks/sim_speed.py                    # spread, about 1-2 minutes on the 2-core VM
    python benchmarks/sim_speed.py --random 40 --seed 1
    python benchmarks/sim_speed.py --fit
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memsim import grain as G  # noqa: E402
from memsim.hardware import load_hardware  # noqa: E402
from memsim.io import base_provenance, unique_path, write_json  # noqa: E402
from memsim.schedule import AttentionProblem, Schedule, ScheduleError  # noqa: E402
from memsim.sim import resolve_grain, simulate  # noqa: E402

LEVELS = ("global_read_bytes", "global_write_bytes", "l2_read_bytes", "l2_write_bytes", "dram_read_bytes",
          "dram_write_bytes", "flops", "exp_count", "time_s")


def spread(hw):
    """(label, problem, schedule, hardware) of the issue's examples and a few more."""
    P, S = AttentionProblem, Schedule
    return [
        ("issue11: flash2 fwd N=1048576 H=1024 B=1 d=64", P(1, 1024, 1024, 1048576, 1048576, 64), S("flash2"), hw),
        ("issue11: naive fwd N=32768 B=4 H=16 d=64", P(4, 16, 16, 32768, 32768, 64), S("naive"), hw),
        ("issue11: num_sms=1e8, flash2 fwd N=4096 B=4 H=16", P(4, 16, 16, 4096, 4096, 64), S("flash2"),
         hw.with_overrides(num_sms=100_000_000)),
        ("issue8: naive fwd N=8192 B=4 H=16 d=64", P(4, 16, 16, 8192, 8192, 64), S("naive"), hw),
        ("issue8: naive fwd N=8192 B=1 H=4 d=64", P(1, 4, 4, 8192, 8192, 64), S("naive"), hw),
        ("design: flash2 fwd N=16384 d=128 B*H=32", P(1, 32, 32, 16384, 16384, 128), S("flash2"), hw),
        ("flash2 fwd N=16384 d=128 B*H=32 heads_fastest", P(1, 32, 32, 16384, 16384, 128),
         S("flash2", grid_order="heads_fastest"), hw),
        ("flash2 bwd N=8192 B=4 H=16 d=64", P(4, 16, 16, 8192, 8192, 64), S("flash2", "bwd"), hw),
        ("flash2 bwd N=32768 B*H=1024 d=128", P(1, 1024, 1024, 32768, 32768, 128), S("flash2", "bwd"), hw),
        ("flash1 fwd N=8192 B=4 H=16 d=64", P(4, 16, 16, 8192, 8192, 64), S("flash1"), hw),
        ("flash1 fwd N=32768 B*H=1024 d=64", P(1, 1024, 1024, 32768, 32768, 64), S("flash1"), hw),
        ("naive bwd N=4096 B=4 H=16 d=64", P(4, 16, 16, 4096, 4096, 64), S("naive", "bwd"), hw),
        ("naive fwd N=32768 H=1 16x16 tiles", P(1, 1, 1, 32768, 32768, 64), S("naive", block_m=16, block_n=16), hw),
    ]


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    r = fn()
    return r, time.perf_counter() - w, time.process_time() - c


def cpu_speed() -> float:
    """Seconds for a fixed pure-Python loop (how loaded/fast the machine was)."""
    t = time.process_time()
    s = 0
    for i in range(2_000_000):
        s += i & 7
    return time.process_time() - t


def compare(a: dict, b: dict) -> dict:
    return {k: (a[k] / b[k] if b[k] else (1.0 if a[k] == 0 else math.inf)) for k in LEVELS}


def run_spread(hw, before_cap_s: float, only):
    rows = []
    for label, p, s, h in spread(hw):
        if only and not any(o in label for o in only):
            continue
        row = {"case": label, "problem": p.to_dict(), "schedule": s.to_dict(),
               "num_sms": h.num_sms}
        try:
            plan = G.estimate(p, s, h)
        except G.SimulationTooLarge as e:
            row["after"] = {"refused": str(e)}
            rows.append(row)
            print(f"{label}: refused: {e}", flush=True)
            continue
        r, wall, cpu = timed(lambda: simulate(p, s, h))
        row["after"] = {"plan": plan.to_dict(), "wall_s": wall, "cpu_s": cpu, "sim_steps": r.sim_steps,
                        "total": {k: r.total[k] for k in LEVELS}}
        g0, R0 = resolve_grain(p, s)
        before = G.plan_grain(p, s, h, g0, R0 if g0 == "run" else None, 1, 1, ctas_per_sm=2, refuse=False)
        row["before_estimate_s"] = before.estimated_s
        line = (f"{label}: after {wall:.2f} s wall / {cpu:.2f} s cpu ({plan.describe()}); before: today's rule "
                f"{g0} R={R0} estimated {before.estimated_s:.3g} s")
        if before.estimated_s <= before_cap_s:
            # an explicit grain estimated over max_seconds (default 10) is refused since 9e008dd; the cap here
            # is --before-cap, so run it with no limit
            b, bwall, bcpu = timed(lambda: simulate(p, s, h, grain=g0, run_blocks=R0 if g0 == "run" else None,
                                                    ctas_per_event=1, heads_per_event=1, max_seconds=None))
            row["before"] = {"grain": g0, "run_blocks": R0, "wall_s": bwall, "cpu_s": bcpu,
                             "sim_steps": b.sim_steps, "total": {k: b.total[k] for k in LEVELS}}
            row["after_over_before"] = compare(r.total, b.total)
            line += (f", ran {bwall:.2f} s wall / {bcpu:.2f} s cpu; after/before dram_read "
                     f"{row['after_over_before']['dram_read_bytes']:.3f} time {row['after_over_before']['time_s']:.3f}")
        else:
            line += " (not run)"
        print(line, flush=True)
        rows.append(row)
    return rows


def run_random(hw, n: int, seed: int):
    from verification.sampling import draw  # the project's random-case space (issue 8 item 3)
    rs = draw(n, seed, hardware=hw.name)
    rows = []
    for case in rs.cases:
        p, s = case.problem, case.schedule
        try:
            plan = G.estimate(p, s, hw)
            r, wall, cpu = timed(lambda: simulate(p, s, hw))
        except ScheduleError as e:  # e.g. a CTA that cannot be resident: refused before simulating
            print(f"skip {p} {s}: {e}", flush=True)
            continue
        rows.append({"problem": p.to_dict(), "schedule": s.to_dict(), "plan": plan.to_dict(), "wall_s": wall,
                     "cpu_s": cpu, "sim_steps": r.sim_steps})
        print(f"{len(rows):3d} {s.algorithm}/{s.phase} B={p.batch} H={p.heads_q}/{p.heads_kv} N={p.seq_q}/{p.seq_kv} "
              f"d={p.head_dim} {s.block_m}x{s.block_n}: {wall:.2f} s wall, {cpu:.2f} s cpu, est {plan.estimated_s:.2f} s "
              f"[{plan.grain} R={plan.run_blocks} f={plan.heads_per_event}]", flush=True)
    walls = sorted(r["wall_s"] for r in rows)
    cpus = sorted(r["cpu_s"] for r in rows)
    summary = {"cases": len(rows), "mean_wall_s": sum(walls) / len(walls), "max_wall_s": walls[-1],
               "median_wall_s": walls[len(walls) // 2], "mean_cpu_s": sum(cpus) / len(cpus), "max_cpu_s": cpus[-1]}
    print(f"random set: {summary}")
    return rows, summary


def run_suite(hw):
    """Every validation-suite case whose plan auto coarsens: today's rule against auto (CPU s, level ratios)."""
    from verification import suite
    rows = []
    for c in suite.SUITE:
        p, s = c.problem, c.schedule
        plan = G.estimate(p, s, hw)
        if plan.reason == "today's rule":
            continue
        g0, R0 = resolve_grain(p, s)
        b, _, tb = timed(lambda: simulate(p, s, hw, grain=g0, run_blocks=R0 if g0 == "run" else None,
                                          ctas_per_event=1, heads_per_event=1, max_seconds=None))  # explicit grain: no limit
        a, _, ta = timed(lambda: simulate(p, s, hw))
        row = {"case": c.name, "plan": plan.describe(), "cpu_before": tb, "cpu_after": ta,
               **{k: (a.total[k] / b.total[k] if b.total[k] else None)
                  for k in ("dram_read_bytes", "dram_write_bytes", "l2_read_bytes", "time_s")}}
        rows.append(row)
        print(row, flush=True)
    return rows


def run_fit(hw):
    """Least-squares cost constants from runs at several grains (CPU seconds)."""
    import numpy as np
    P, S = AttentionProblem, Schedule
    probs = [(P(2, 8, 8, 4096, 4096, 64), S("flash2")), (P(2, 8, 8, 4096, 4096, 64), S("flash2", "bwd")),
             (P(2, 8, 8, 2048, 2048, 64), S("naive")), (P(2, 8, 8, 2048, 2048, 64), S("naive", "bwd")),
             (P(2, 8, 8, 4096, 4096, 64), S("flash1"))]
    knobs = [dict(grain="tile"), dict(grain="run"), dict(grain="cta"), dict(grain="cta", ctas_per_event=8),
             dict(grain="run", heads_per_event=4), dict(grain="cta", heads_per_event=16, ctas_per_event=4)]
    X, y, rows = [], [], []
    for p, s in probs:
        for kw in knobs:
            kw = dict(kw)
            kw.setdefault("ctas_per_event", 1)
            kw.setdefault("heads_per_event", 1)
            plan = G.plan_grain(p, s, hw, kw["grain"], None, kw["ctas_per_event"], kw["heads_per_event"],
                                max_seconds=None)
            loops = G.launch_loops(G.folded_problem(p, plan.heads_per_event), s, plan.run_blocks)
            it = sum(L.num_ctas * L.iters for L in loops)
            _, wall, cpu = timed(lambda: simulate(p, s, hw, **kw, max_seconds=None))  # explicit grains: no limit
            X.append([plan.built_ctas, plan.built_steps, plan.built_accesses, plan.events, it])
            y.append(cpu)
            rows.append({"problem": p.to_dict(), "schedule": s.to_dict(), "knobs": kw, "plan": plan.to_dict(),
                         "cpu_s": cpu, "wall_s": wall})
            print(f"{s.algorithm}/{s.phase} {kw}: {cpu:.2f} s cpu, estimate {plan.estimated_s:.2f} s", flush=True)
    X, y = np.array(X, float), np.array(y)
    # relative least squares (every run weighs the same), non-negative by dropping negative terms
    w = 1.0 / y
    keep = list(range(X.shape[1]))
    while True:
        coef, *_ = np.linalg.lstsq(X[:, keep] * w[:, None], y * w, rcond=None)
        if (coef >= 0).all() or len(keep) == 1:
            break
        keep.pop(int(np.argmin(coef)))
    full = np.zeros(X.shape[1])
    full[keep] = coef
    names = ["SEC_PER_CTA", "SEC_PER_STEP", "SEC_PER_ACCESS", "SEC_PER_EVENT", "SEC_PER_ITER"]
    fit = dict(zip(names, full.tolist()))
    pred = X @ full
    err = (pred / y - 1)
    print("fit:", {k: f"{v:.3g}" for k, v in fit.items()}, f"relative error median {np.median(abs(err)):.2f} "
          f"worst {abs(err).max():.2f}")
    return rows, {"constants": fit, "median_rel_error": float(np.median(abs(err))), "worst_rel_error": float(abs(err).max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hw", default="h100-sxm")
    ap.add_argument("--random", type=int, default=0, metavar="N", help="also time N random cases")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fit", action="store_true", help="fit memsim.grain's cost constants (only that)")
    ap.add_argument("--no-spread", action="store_true", help="skip the spread of issue problems")
    ap.add_argument("--suite", action="store_true",
                    help="also compare auto with today's rule on every validation-suite case auto coarsens")
    ap.add_argument("--only", nargs="*", default=None, help="spread cases whose label contains one of these")
    ap.add_argument("--before-cap", type=float, default=60.0,
                    help="run today's rule only where it is estimated under this many seconds (default 60)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / f"sim_speed-{platform.node()}.json"))
    a = ap.parse_args(argv)
    if a.random < 0:
        ap.error(f"--random must be >= 0, got {a.random}")
    hw = load_hardware(a.hw)
    data = {"benchmark": "memsim sim_speed", "hardware_preset": a.hw,
            "cost_constants": {k: getattr(G, k) for k in ("SEC_PER_CTA", "SEC_PER_STEP", "SEC_PER_ACCESS",
                                                            "SEC_PER_EVENT", "SEC_PER_ITER")},
            "auto_budget_s": G.AUTO_BUDGET_S, "cpu_loop_s_before": cpu_speed()}
    if a.fit:
        data["fit_runs"], data["fit"] = run_fit(hw)
    else:
        if not a.no_spread:
            data["spread"] = run_spread(hw, a.before_cap, a.only)
        if a.suite:
            data["suite"] = run_suite(hw)
        if a.random:
            data["random"], data["random_summary"] = run_random(hw, a.random, a.seed)
            data["random_seed"] = a.seed
    data["cpu_loop_s_after"] = cpu_speed()
    data["provenance"] = {**base_provenance(" ".join(["benchmarks/sim_speed.py", *(argv or sys.argv[1:])])),
                          "cpu_count": os.cpu_count(), "machine": platform.machine(),
                          "load_average": os.getloadavg(),
                          "note": "wall time on a 2-core VM shared with other jobs: cpu_s is the process's own time; "
                                  "cpu_loop_s_* time a fixed Python loop before and after (how fast the machine was)"}
    out = unique_path(a.out)
    write_json(out, data)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
