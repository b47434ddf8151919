"""naive vs flash1 vs flash2 on one problem: FLOPs, global GB, DRAM GB, time."""
from __future__ import annotations

import argparse
import json

from ..schedule import ALGORITHMS, PHASES
from . import common as C

NAME = "compare"
SUMMARY = "naive vs flash1 vs flash2 side by side (FlashAttention paper, Fig. 2 left)"
EPILOG = ("examples:\n  python -m memsim compare\n  python -m memsim compare --seq 1024 --batch 64 --heads 16 --phase "
          "both   # GPT-2 medium, the paper's Fig. 2 left")


def add_arguments(p) -> None:
    C.add_problem_args(p)
    C.add_schedule_args(p, algorithm=False)
    for act in p._actions:  # compare also takes --phase both (forward + backward, as the paper's Fig. 2)
        if act.dest == "phase":
            act.choices = PHASES + ("both",)
            act.help = "fwd, bwd or both (fwd + bwd summed; default fwd)"
    C.add_model_args(p)
    p.add_argument("--json", action="store_true", help="print the three SimResult dicts as JSON")


def run(a) -> int:
    from ..hardware import load_hardware
    from .. import analytic
    hw = load_hardware(a.hw)
    p = C.problem(a)
    phases = ("fwd", "bwd") if a.phase == "both" else (a.phase,)
    from ..algorithms import registered
    keys = set(registered())
    algs = [x for x in ALGORITHMS if all((x, ph) in keys for ph in phases)]  # flash1, hopper: no backward
    results = []  # (alg, [(schedule, SimResult) per phase])
    for alg in algs:
        runs = []
        for ph in phases:
            s = C.schedule(argparse.Namespace(**{**vars(a), "phase": ph}), alg)
            runs.append((s, C.simulate(a, p, s, hw)))
        results.append((alg, runs))
    if a.json:
        print(json.dumps([r.to_dict() for _, runs in results for _, r in runs], indent=1))
        return 0
    GB = C.GB
    print(f"{C.describe(p, hw)}; {' + '.join(phases)}, tiles {a.block_m}x{a.block_n}")
    for x in ALGORITHMS:
        if x not in algs:
            print(f"({x} has a forward pass only and is left out)")

    def tot(runs, key):
        return sum(r.total[key] for _, r in runs)

    def glob(runs):
        return tot(runs, "global_read_bytes") + tot(runs, "global_write_bytes")

    base = glob(dict(results)["flash2"])
    rows = []
    for alg, runs in results:
        cf = sum(v["global_read_bytes"] + v["global_write_bytes"]
                 for s, _ in runs for v in [analytic.global_bytes(p, s)])
        t = tot(runs, "time_s")
        nominal = sum(r.nominal_flops for _, r in runs)
        rows.append([alg, sum(len(r.kernels) for _, r in runs), f"{tot(runs, 'flops') / 1e9:.0f}",
                     f"{glob(runs) / GB:.2f}", f"{cf / GB:.2f}",
                     f"{(tot(runs, 'dram_read_bytes') + tot(runs, 'dram_write_bytes')) / GB:.3f}",
                     f"{t * 1e3:.3f}", f"{nominal / t / 1e12:.0f}",
                     f"{max(r.extra_device_bytes for _, r in runs) / 1e6:.1f}", f"{glob(runs) / base:.1f}x"])
    print(C.fmt_table(["algorithm", "launches", "GFLOP", "global GB", "closed form GB", "DRAM GB", "time ms",
                       "TFLOP/s", "extra MB", "global vs flash2"], rows))
    print("GFLOP = tensor-core FLOPs executed (flash2 bwd recomputes S twice); TFLOP/s uses the nominal "
          "4*B*H*N^2*d (x2.5 bwd) count; DRAM = L2<->HBM with the L2 flushed before each launch (as ncu does)")
    print("closed form = the byte contract of memsim/schedule.py; flash1's global level adds the O-workspace "
          "re-read that L1 serves (measured on the H100: see memsim/MODEL.md)")
    return 0
