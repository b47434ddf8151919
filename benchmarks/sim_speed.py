"""How fast is the simulator?  Times `memsim.simulate` at both grains on growing tile counts.

flash2 forward, d=128, B*H=32, fp16, 128x64 tiles, N = 1024 ... 16384 (the last is 1,048,576 tile
operations).  Reports wall seconds, tile operations per second and SimPy steps, checks that wall time
grows no faster than the tile count (log-log slope <= 1.1), and writes
benchmarks/results/sim_speed-<host>.json (a new file per run, never over an old one).

    python benchmarks/sim_speed.py            # full run, about 20 s on a 2-core machine
    python benchmarks/sim_speed.py --quick    # up to N=4096
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memsim.io import base_provenance, unique_path, write_json  # noqa: E402
from memsim.schedule import AttentionProblem, Schedule  # noqa: E402
from memsim.sim import simulate  # noqa: E402


def slope(xs, ys):
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="stop at N=4096")
    ap.add_argument("--hw", default="h100-sxm")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / f"sim_speed-{platform.node()}.json"))
    a = ap.parse_args(argv)
    seqs = [1024, 2048, 4096] if a.quick else [1024, 2048, 4096, 8192, 16384]
    sched = Schedule("flash2", "fwd", block_m=128, block_n=64)
    rows = []
    print(f"{'grain':<6} {'N':>6} {'tiles':>9} {'events':>8} {'wall s':>8} {'tiles/s':>10} {'pred ms':>8} {'DRAM rd MB':>10}")
    for grain in ("run", "tile"):
        for n in seqs:
            p = AttentionProblem(1, 32, 32, n, n, 128, "fp16")
            t0 = time.perf_counter()
            r = simulate(p, sched, a.hw, grain=grain)
            wall = time.perf_counter() - t0
            tiles = r.kernels[0]["tiles"]
            row = {"grain": grain, "run_blocks": r.run_blocks, "seq": n, "batch_heads": 32, "head_dim": 128,
                   "tiles": tiles, "sim_steps": r.sim_steps, "wall_s": wall, "tiles_per_s": tiles / wall,
                   "predicted_time_s": r.time_s, "global_bytes": r.total["global_read_bytes"] + r.total["global_write_bytes"],
                   "dram_read_bytes": r.total["dram_read_bytes"]}
            rows.append(row)
            print(f"{grain:<6} {n:>6} {tiles:>9} {r.sim_steps:>8} {wall:>8.3f} {tiles / wall:>10.0f} "
                  f"{r.time_s * 1e3:>8.3f} {r.total['dram_read_bytes'] / 1e6:>10.1f}", flush=True)
    summary = {}
    for grain in ("run", "tile"):
        g = [r for r in rows if r["grain"] == grain]
        s = slope([r["tiles"] for r in g], [r["wall_s"] for r in g])
        summary[grain] = {"loglog_slope_wall_vs_tiles": s, "largest_case_wall_s": g[-1]["wall_s"],
                          "largest_case_tiles_per_s": g[-1]["tiles_per_s"], "grows_no_faster_than_tiles": s <= 1.1}
        print(f"{grain}: wall time ~ tiles^{s:.2f}; largest case {g[-1]['tiles']} tiles in {g[-1]['wall_s']:.2f} s "
              f"({g[-1]['tiles_per_s']:.0f} tiles/s)")
    same = all(r1["global_bytes"] == r2["global_bytes"] for r1, r2 in
               zip([r for r in rows if r["grain"] == "run"], [r for r in rows if r["grain"] == "tile"]))
    print(f"global bytes identical at both grains: {same}")
    out = unique_path(a.out)
    write_json(out, {"benchmark": "memsim sim_speed", "hardware_preset": a.hw, "schedule": sched.to_dict(),
                     "rows": rows, "summary": summary, "grains_agree_on_global_bytes": same,
                     "provenance": {**base_provenance(), "cpu_count": __import__("os").cpu_count(),
                                    "machine": platform.machine()}})
    print(f"wrote {out}")
    ok = same and all(v["grows_no_faster_than_tiles"] for v in summary.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
