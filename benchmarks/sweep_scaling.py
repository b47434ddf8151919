"""Parallel efficiency of `memsim.sweep` on this machine: the same hardware what-if points run serially, on
local processes and on a local Dask cluster; writes JSON (never asserts a time).

    python benchmarks/sweep_scaling.py --points 1000 --workers 2 --out benchmarks/results/sweep_scaling-vm.json

efficiency = (serial seconds / parallel seconds) / workers.  The points: flash2 forward on small problems over
an L2-size x DRAM-bandwidth x sequence-length grid (hardware keys as axes), so each point is a real simulation.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def spec_for(points: int):
    from memsim.sweep import SweepSpec
    l2 = [int(m * (1 << 20)) for m in (2, 4, 8, 16, 25, 32, 40, 50, 64, 80)]
    bw = [x * 1e12 for x in (1.5, 2.0, 2.5, 3.0, 3.35, 4.0, 4.8, 6.0, 8.0, 10.0)]
    seq = [256, 384, 512, 640, 768, 896, 1024, 1280, 1536, 2048]
    n = 0
    axes = {"l2_bytes": [], "dram_bw_Bps": bw, "seq": seq}
    for v in l2:  # as many L2 sizes as make `points` points
        axes["l2_bytes"].append(v)
        n = len(axes["l2_bytes"]) * len(bw) * len(seq)
        if n >= points:
            break
    return SweepSpec(axes=axes, base={"batch": 1, "heads": 4, "head_dim": 64, "algorithm": "flash2"},
                     hardware="h100-sxm"), n


def timed(spec, **kw) -> tuple[float, int]:
    from memsim.sweep import run_sweep
    t = time.perf_counter()
    r = run_sweep(spec, None, progress=False, **kw)
    return time.perf_counter() - t, len(r.rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--backends", default="local,dask")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from memsim.io import write_json
    spec, n = spec_for(a.points)
    out = {"points": n, "workers": a.workers, "cpu_count": os.cpu_count(), "python": platform.python_version(),
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": "python " + " ".join(sys.argv), "runs": {}}
    serial_s, rows = timed(spec, backend="local", workers=1)
    out["runs"]["serial"] = {"seconds": serial_s, "rows": rows, "points_per_s": rows / serial_s}
    print(f"serial: {rows} points in {serial_s:.1f} s", flush=True)
    for b in a.backends.split(","):
        try:
            s, rows = timed(spec, backend=b, workers=a.workers)
        except Exception as e:  # an engine that cannot start here is reported, not fatal
            out["runs"][b] = {"error": f"{type(e).__name__}: {e}"}
            print(f"{b}: {e}", flush=True)
            continue
        eff = serial_s / s / a.workers
        out["runs"][b] = {"seconds": s, "rows": rows, "points_per_s": rows / s, "efficiency": eff}
        print(f"{b} x{a.workers}: {rows} points in {s:.1f} s, efficiency {100 * eff:.0f} %", flush=True)
    write_json(a.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
