"""Compile the hopper backward's fused dK/dV/dQ launch for sm_90a on the CPU (no GPU) and print registers, spills,
shared memory and the MMA kind of its tile loop for a few candidate tiles: a check before spending device time.

    python benchmarks/hopper_bwd_compile.py [--d 64 128] [--tiles 64,128,8,2 64,64,4,2 ...] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

if __name__ == "__main__":  # before triton is imported (compiling needs real JITFunctions); never when a
    os.environ.pop("TRITON_INTERPRET", None)  # test imports this module: the interpreter must stay on for the rest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--tiles", nargs="+", default=["64,128,8,2", "64,128,8,3", "64,64,4,2", "64,64,4,3", "128,128,8,2"])
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--alg", default="hopper")
    ap.add_argument("--dq-reduce", choices=("tma", "atomic"), default="atomic",
                    help="compile the TMA reduce-add path (the launcher picks it only on an sm_90 GPU)")
    ap.add_argument("--loop", choices=("split", "ws"), default="split",
                    help="the fused pass's loop (kernels.hopper_bwd.LOOP)")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    import kernels.hopper_bwd as hb
    hb.dq_reduce_by_tma = lambda device: a.dq_reduce == "tma"
    hb.LOOP = a.loop
    from kernels.compiled_facts import capture, compile_launch
    from memsim.schedule import AttentionProblem, Schedule, sram_bytes_per_cta
    rows = []
    for d in a.d:
        for t in a.tiles:
            bm, bn, w, st = (int(x) for x in t.split(","))
            p = AttentionProblem(4, 2048 // d, 2048 // d, 4096, 4096, d, "bf16", a.causal)
            s = Schedule(a.alg, "bwd", bm, bn, w, st)
            try:
                for jf, args, kw, grid in capture(p, s):
                    name = jf.fn.__name__
                    if "dkdv" not in name:
                        continue
                    f = compile_launch(jf, args, kw)
                    lp = f.get("loop") or {}
                    row = {"d": d, "tiles": t, "dq_reduce": a.dq_reduce, "variant": a.loop, "kernel": name, "regs": f["regs_per_thread"],
                           "local": f["local_bytes_per_thread"], "spill_st": f["spill_store_bytes"],
                           "shared": f["shared_bytes"], "sram_formula": sram_bytes_per_cta(p, s),
                           "loop": {k: lp.get(k) for k in ("mma", "hgmma", "hmma", "instructions", "mufu") if k in lp}}
            except Exception as e:  # report and go on
                row = {"d": d, "tiles": t, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
