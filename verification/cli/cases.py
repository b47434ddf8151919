"""List the suite's named cases: problem, schedule, launches, report tags.
CASES may be names, shell patterns ('flash2_fwd_*') or tags ('tag:grid_order').
Tags: fig2_left (GPT-2 medium naive vs flash), block_sweep (flash1 block sizes), grid_order (Q-fastest vs
heads-fastest), scaling (the rest).

Examples:
  python -m verification cases
  python -m verification cases 'naive_*' --json
"""
from __future__ import annotations

import sys

from . import common as C

NAME = "cases"
SUMMARY = "list the validation suite (names, shapes, schedules, launches)"


def add_arguments(p):
    p.add_argument("cases", nargs="*", metavar="CASES")
    C.add_json(p, "print JSON (with each case's launch names)")
    C.add_random_args(p)
    C.add_hw(p, "preset whose SRAM the random draws must fit (with --random)")


def run(a):
    if a.random is not None:
        from ..randomsets import print_set
        print_set(C.draw_set(a.random, a.seed, a.set_label, a.hw)[1], a.json)
        return 0
    cases = C.select(a.cases)
    if a.json:
        C.print_json([{**c.to_spec(), "tags": list(c.tags), "io_bytes": c.io_bytes()} for c in cases])
        return 0
    for c in cases:
        p, s = c.problem, c.schedule
        print(f"{c.name:40s} B={p.batch:<3d} H={p.heads_q}/{p.heads_kv} N={p.seq_q:<5d} d={p.head_dim:<3d} "
              f"{p.dtype} {'causal' if p.causal else 'full  '} {s.algorithm}/{s.phase} {s.block_m}x{s.block_n} "
              f"w{s.num_warps} st{s.num_stages} {s.grid_order:13s} [{','.join(c.tags)}]")
    print(f"{len(cases)} case(s)", file=sys.stderr)
    return 0
