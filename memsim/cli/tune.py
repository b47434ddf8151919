"""``python -m memsim tune``: the model's ranking of a problem's candidate schedules, and why."""
from __future__ import annotations

import json
import math

from . import common as C

NAME = "tune"


def add_parser(sub) -> None:
    sp = sub.add_parser(NAME, help="rank the candidate schedules of a problem by predicted time (model-steered tuning)",
                        description="Rank every candidate schedule of the search space (memsim.tuning.SPACES: tiles, "
                                    "warps, stages that fit the preset's shared memory and the register budget) by "
                                    "the model's predicted time; `kernels.autotune` measures only the top few.",
                        epilog="examples:\n  python -m memsim tune --seq 4096 --head-dim 128 --dtype bf16 --causal\n"
                               "  python -m memsim tune --phase bwd -d 64 --top 5 --json\n"
                               "  python -m memsim tune --algorithms flash2 --facts "
                               "benchmarks/results/tune-rank-compiled-sm90.json.gz",
                        formatter_class=C.RAW)
    C.add_problem_args(sp)
    g = sp.add_argument_group("tuning")
    g.add_argument("--phase", choices=("fwd", "bwd"), default="fwd", help="forward or backward (default fwd)")
    g.add_argument("--algorithms", default=None,
                   help="comma-separated algorithms whose candidates compete (default: flash2,hopper forward, "
                        "flash2 backward)")
    g.add_argument("--hw", default="h100-sxm", help="hardware preset name or .toml path (default h100-sxm)")
    g.add_argument("--facts", action="append", default=None, metavar="FILE",
                   help="extra compiled-facts file (python -m kernels.compiled_facts format) for candidates the "
                        "committed table lacks; repeatable")
    g.add_argument("--top", type=int, default=None, help="print only the first N (default: all)")
    g.add_argument("--json", action="store_true", help="print the ranking as JSON")
    sp.set_defaults(fn=run)


def _facts(paths) -> dict:
    from ..io import read_json  # plain or gzipped (the committed table is .json.gz)
    out = {}
    for p in paths or []:
        d = read_json(p)
        out.update(d.get("entries", d))
    return out


def run(a) -> int:
    from ..hardware import load_hardware
    from ..schedule import ScheduleError
    from ..tuning import candidates, rank
    if a.top is not None and a.top < 1:
        raise ScheduleError(f"--top must be a positive count, got {a.top}")
    hw = load_hardware(a.hw)
    p = C.problem(a)
    algs = tuple(x.strip() for x in a.algorithms.split(",")) if a.algorithms else (
        ("flash2", "hopper") if a.phase == "fwd" else ("flash2",))
    cands = [s for alg in algs for s in candidates(p, alg, a.phase, hw)]
    ranked = rank(p, cands, hw, facts=_facts(a.facts))
    shown = ranked[:a.top] if a.top else ranked
    if a.json:
        print(json.dumps({"hardware": hw.name, "problem": p.to_dict(), "phase": a.phase, "algorithms": list(algs),
                          "candidates": len(ranked), "ranking": [r.to_dict() for r in shown]}, indent=1))
        return 0
    print(C.describe(p, hw) + f"; {a.phase}; {len(ranked)} candidates of {', '.join(algs)}")
    best = ranked[0].predicted_s
    rows = []
    for r in shown:
        s = r.schedule
        ok = math.isfinite(r.predicted_s)
        assumed = sum(f.startswith("assumed") for f in r.facts_source)
        rows.append([r.rank, s.algorithm, f"{s.block_m}x{s.block_n}", s.num_warps, s.num_stages,
                     f"{r.predicted_s * 1e3:.3f}" if ok else "-", f"{r.predicted_s / best:.2f}" if ok else "-",
                     f"{r.bound} ({r.bound_launch})" if ok else r.error[:60],
                     "/".join(str(x["ctas_per_sm"]) for x in r.launches) or "-",
                     "assumed" if assumed else "compiled"])
    print(C.fmt_table(["rank", "algorithm", "tiles", "warps", "stages", "pred ms", "x best", "bound (launch)",
                       "CTA/SM", "facts"], rows))
    print("bound: the binding limit of the candidate's longest launch: tensor, exp, tensor+exp (the SM's dots and "
          "exponentials together), dram, l2, issue (the tile loop's SASS instructions), latency/occupancy (no unit "
          "explains 60 % of the time); facts 'assumed': the launch is not in the compiled-facts table, so the "
          "preset's registers and no spills are assumed (pass --facts)")
    return 0
