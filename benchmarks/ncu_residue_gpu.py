"""Whose are the ~2.2 MB of dirty lines that a kernel measured under ncu writes back without having written them?
(issue 8; notes/fidelity.md, twelfth session, item 4.)

`l2_dirty_reads`' W = 0 points (read R = 48 / 96 MB, store nothing but one tile per CTA) wrote 2.17 / 2.25 MB to DRAM;
`l2_thrash_drift` 2.4 MB; the model now seeds 2.4 MB of dirty lines in every launch measured after a flush
(`calibration.ncu_dirty_residue_bytes`).  But `l2_readers`, the same kind of program, levels off at its own W: it
never writes a residue back.  Its launches differ in one visible way: each is preceded by a small memset (its claim
counters).  So: the same read-only launch (l2_dirty_reads' kernel, W = 0, R = 48 MB, 264 CTAs; three times each),

* ``six``: under l2_dirty_reads' six metrics (several ncu passes: ncu saves and restores the buffers the kernel
  writes between passes);
* ``one``: under dram__bytes_write.sum alone (one pass);
* ``six_memset``: six metrics, each launch preceded by a 4 KB memset (not profiled), as l2_readers does;
* ``six_out16``: six metrics, the kernel's one-tile-per-CTA output buffer 16 MB instead of 1 MB.

One ncu process per variant (default cache control, --clock-control none).

    run(command="python3 benchmarks/ncu_residue_gpu.py --out $OUT/ncu_residue.json", timeout_s=200)
    python benchmarks/ncu_residue_gpu.py --analyse FILE

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MB = 1 << 20
READ_BYTES = 48 * MB
LAUNCHES = 3
VARIANTS = ("six", "one", "six_memset", "six_out16")


def child(variant: str) -> int:
    import torch
    sys.path.insert(0, HERE)
    import l2_dirty_reads_gpu as B
    k = B._kernel()
    pt = {"mode": "write_first", "write_bytes": 0, "read_bytes": READ_BYTES}
    src = torch.randn(READ_BYTES // 2, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty(1024, device="cuda", dtype=torch.bfloat16)
    out = torch.empty((16 * MB if variant == "six_out16" else B.GRID * B.TILE_BYTES * 2) // 4, device="cuda",
                      dtype=torch.float32)
    scratch = torch.empty(1024, device="cuda", dtype=torch.int32)
    B._launch(k, pt, src, dst, out)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for _ in range(LAUNCHES):
        if variant == "six_memset":
            scratch.zero_()
        B._launch(k, pt, src, dst, out)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    return 0


def run(out: str) -> int:
    import time
    sys.path.insert(0, os.path.dirname(HERE))
    sys.path.insert(0, HERE)
    import l2_dirty_reads_gpu as B
    from run_file import ncu_rows, write_run

    from verification import ncu as N
    t0 = time.time()
    pts = []
    for v in VARIANTS:
        rows, cmd, _ = ncu_rows(os.path.abspath(__file__), ["--child", v], kernel_regex="_mb_l2dr",
                                metrics=["dram__bytes_write.sum"] if v == "one" else B.METRICS, expected=LAUNCHES,
                                timeout_s=150)
        pts += [{"variant": v, "launch": i, "ncu_command": " ".join(cmd), "metrics": dict(r.metrics)}
                for i, r in enumerate(rows)]
    write_run(out, "ncu_residue/1", pts, script="ncu_residue_gpu.py", argv=None,
              method="ncu, default cache control, one process per variant", t0=t0,
              extra={"ncu": N.ncu_version(), "read_bytes": READ_BYTES})
    return analyse(out)


def analyse(path: str) -> int:
    res = json.load(open(path))
    print(res["provenance"]["gpu"], res["provenance"]["date"])
    print("| variant | DRAM write MB per launch | DRAM read MB |")
    print("| --- | --- | --- |")
    for v in VARIANTS:
        ms = [p["metrics"] for p in res["points"] if p["variant"] == v]
        w = ", ".join("%.2f" % (m["dram__bytes_write.sum"] / MB) for m in ms)
        r = ", ".join("%.1f" % (m.get("dram__bytes_read.sum", float("nan")) / MB) for m in ms)
        print(f"| {v} | {w} | {r} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="(GPU machine) the result JSON")
    g.add_argument("--child", metavar="VARIANT", choices=VARIANTS, help=argparse.SUPPRESS)
    g.add_argument("--analyse", metavar="FILE")
    a = ap.parse_args(argv)
    if a.child:
        return child(a.child)
    if a.analyse:
        return analyse(a.analyse)
    return run(a.out)


if __name__ == "__main__":
    sys.exit(main())
