"""Do TMA forwards' K/V reads of co-running CTAs merge before the L2?  (issue 8; notes/fidelity.md, eighth session,
item 6: held-out set N and the live sets show hopper forwards' L2 read traffic ~ their global bytes where the model
merges ~70 % of it.)

The same attention forwards through the two load paths, measured by `verification.measure` (ncu, default cache
control, --clock-control none; L2 sectors from the TEX units vs the bytes the SMs asked for):

* ``hopper`` (TMA boxes, warp-specialised where Triton does it) vs ``flash2`` (LSU loads through L1), bf16,
  d = 16, 32, 64, 128, 256, one batch of 4 heads;
* ``share``: 2048 queries per head -- 16 Q blocks of 128 rows (hopper) / 32 of 64 (flash2) read each K/V tile of their
  head at about the same time; ``solo``: 128 queries per head -- one or two CTAs per head, nothing to merge (the
  control: L2 should equal the global bytes there);
* both grid orders for d = 64 (which CTAs run side by side), and hopper_ws (the persistent forward) at d = 64 / 128.

    python benchmarks/tma_l2_gpu.py --out DIR           # on the GPU machine: records + bundle DIR/tma_l2.tar.gz
    python benchmarks/tma_l2_gpu.py --analyse DATA_DIR  # here: measured L2 / global per case beside memsim's

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

D_VALUES = (16, 32, 64, 128, 256)


def cases() -> list:
    from memsim.schedule import AttentionProblem, Schedule
    from verification.suite import Case
    out = []
    for d in D_VALUES:
        for share, nq in (("share", 2048), ("solo", 128)):
            p = AttentionProblem(1, 4, 4, nq, 2048, d, "bf16", False)
            hb = (64, 64) if d == 256 else (128, 64)
            fb = (64, 32) if d == 256 else (64, 64)
            out.append(Case(f"tmal2_hopper_d{d}_{share}", p, Schedule("hopper", "fwd", *hb, 4, 2)))
            out.append(Case(f"tmal2_flash2_d{d}_{share}", p, Schedule("flash2", "fwd", *fb, 4, 2)))
    p = AttentionProblem(1, 4, 4, 2048, 2048, 64, "bf16", False)
    from dataclasses import replace
    for c in list(out):
        if c.name in ("tmal2_hopper_d64_share", "tmal2_flash2_d64_share"):
            out.append(replace(c, name=c.name + "_headsfastest", schedule=replace(c.schedule, grid_order="heads_fastest")))
    for d in (64, 128):
        p = AttentionProblem(1, 4, 4, 2048, 2048, d, "bf16", False)
        out.append(Case(f"tmal2_hopperws_d{d}_share", p, Schedule("hopper_ws", "fwd", 128, 64, 4, 2)))
    return out


def cases_by_readers() -> list:
    """Second set (`--set readers`): how many CTAs read each K/V tile (2, 4, 8, 16 Q blocks of a head: 256-2048
    queries at 128-row blocks) and how large the box is (block_n 32 / 64 / 128 rows, d 16 / 64 / 128), hopper's TMA
    forward beside flash2's LSU forward at the SAME tiles (128 x block_n), 4 heads, 2048 keys, bf16."""
    from memsim.schedule import AttentionProblem, Schedule
    from verification.suite import Case
    out = []
    for d in (16, 64, 128):
        for nq in (256, 512, 1024, 2048):
            p = AttentionProblem(1, 4, 4, nq, 2048, d, "bf16", False)
            out.append(Case(f"tmal2r_hopper_d{d}_q{nq}_n64", p, Schedule("hopper", "fwd", 128, 64, 4, 2)))
            if nq in (256, 2048):
                out.append(Case(f"tmal2r_flash2_d{d}_q{nq}_n64", p, Schedule("flash2", "fwd", 128, 64, 4, 2)))
    for d, bn in ((16, 128), (64, 32), (64, 128), (128, 32)):
        p = AttentionProblem(1, 4, 4, 2048, 2048, d, "bf16", False)
        out.append(Case(f"tmal2r_hopper_d{d}_q2048_n{bn}", p, Schedule("hopper", "fwd", 128, bn, 4, 2)))
    return out


SETS = {"first": cases, "readers": cases_by_readers}


def run(out: str, which: str = "first") -> int:
    from verification.measure import measure_cases
    os.makedirs(out, exist_ok=True)
    summ = measure_cases(SETS[which](), os.path.join("/tmp", "tmal2_data_" + which),
                         command=f"python3 benchmarks/tma_l2_gpu.py --out {out} --set {which}",
                         bundle_to=os.path.join(out, f"tma_l2_{which}.tar.gz"), repeats=1, group_size=8)
    print(json.dumps({k: summ[k] for k in ("written", "failed", "seconds", "gpu")}, default=str)[:3000])
    return 0 if summ["written"] else 1


def analyse(data_dir: str) -> int:
    import glob

    import memsim
    from memsim.schedule import problem_from_dict, schedule_from_dict
    hw = memsim.load_hardware("h100-sxm")
    print("| case | global MB | L2 read MB measured | L2/global measured | memsim L2 read MB | memsim L2/global | time us |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for f in sorted(glob.glob(os.path.join(data_dir, "tmal2*.json"))):
        r = json.load(open(f))
        k = r["kernels"][-1]  # the forward's own launch
        g = k["global_read_bytes"]
        res = memsim.simulate(problem_from_dict(r["problem"]), schedule_from_dict(r["schedule"]), hw)
        mk = res.kernels[-1]
        mk = mk if isinstance(mk, dict) else mk.__dict__
        print(f"| {r['case']} | {g / 1e6:.1f} | {k['l2_read_bytes'] / 1e6:.1f} | {k['l2_read_bytes'] / max(g, 1):.2f} | "
              f"{mk['l2_read_bytes'] / 1e6:.1f} | {mk['l2_read_bytes'] / max(mk['global_read_bytes'], 1):.2f} | "
              f"{k['time_s'] * 1e6:.1f} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="(GPU machine) folder for the bundle")
    g.add_argument("--analyse", metavar="DATA_DIR", help="the unpacked records: measured vs memsim")
    g.add_argument("--list", action="store_true", help="print the cases and check that each schedule fits")
    ap.add_argument("--set", choices=sorted(SETS), default="first", help="which cases (--out, --list)")
    a = ap.parse_args(argv)
    if a.list:
        from memsim.schedule import kernel_launches
        for c in SETS[a.set]():
            print(c.name, c.schedule, [L.name for L in kernel_launches(c.problem, c.schedule)])
        return 0
    return run(a.out, a.set) if a.out else analyse(a.analyse)


if __name__ == "__main__":
    sys.exit(main())
