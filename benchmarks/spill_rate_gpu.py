"""One device call: how fast one warp moves its spilled registers, by warps per SM, on SMs that share nothing.

The `spills` calibration points (memsim/presets/<hw>.calibration.json) run the spilling `_mb_spill` kernel on
every SM: there the chip's L2 takes the spill stores at its own limit and the per-warp latency is hidden.  These
points run it on num_sms/8 SMs only (one CTA per SM, the other SMs idle), with 1, 2, 4, 8 and 16 warps per CTA
and the same 512 fp32 values per thread (about 3 KB spilled per thread), so the time is each warp's own
local-memory round trips: bytes per warp per second against warps per SM (memsim.calibration.spill_rates_from).
Two points with one CTA on every SM give the chip-wide store rate beside it.

    run(command="python3 benchmarks/spill_rate_gpu.py --out $OUT/spill_rate.calibration.json", timeout_s=480)

It reuses `verification calibrate` (same runner, same ncu metrics and provenance) with this plan in place of the
default one; the file it writes has the calibration format, so `memsim.calibration.merge_points` can add its
points to the preset's `spills` fact.
"""
from __future__ import annotations

import argparse
import sys

from verification import calibrate as C

WARPS = (1, 2, 4, 8, 16)
VALUES_PER_THREAD = 512  # rows x 64 / (32 x warps): past ~200 the compiler spills; 512 = 2-3.5 KB per thread


def plan(num_sms: int = 132, **_ignored) -> list[dict]:
    pts = []
    for warps in WARPS:
        rows = VALUES_PER_THREAD * 32 * warps // 64
        pts.append(C._pt("spills", kernel="_mb_spill", rows=rows, cols=64, num_warps=warps, n_iter=16,
                         ctas=num_sms // 8))
    for warps in (1, 4):  # the same kernels on every SM: the chip-wide limit beside the per-warp one
        rows = VALUES_PER_THREAD * 32 * warps // 64
        pts.append(C._pt("spills", kernel="_mb_spill", rows=rows, cols=64, num_warps=warps, n_iter=16,
                         ctas=num_sms))
    return pts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="calibration-format JSON to write")
    ap.add_argument("--hw", default="h100-sxm")
    a = ap.parse_args(argv)
    C.build_plan = lambda quick=False, facts=None, num_sms=132, l2_bytes=0: plan(num_sms)
    cmd = "python3 benchmarks/spill_rate_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv)
    res = C.calibrate(a.hw, out_path=a.out, command=cmd, facts={"spills"}, repeats=5, ncu_repeats=3,
                      ncu_timeout_s=300)
    print("| warps | ctas | local B/thread | time us | local MB | GB/s per warp |")
    for p in res["facts"]["spills"]:
        if "error" in p:
            print(f"| {p.get('num_warps')} | {p.get('ctas')} | error: {p['error'][:80]} |")
            continue
        loc = p.get("local_read_bytes", 0) + p.get("local_write_bytes", 0)
        w = p["ctas"] * p["num_warps"]
        print(f"| {p['num_warps']} | {p['ctas']} | {p['compiled']['local_bytes_per_thread']} | "
              f"{p['time_s'] * 1e6:.0f} | {loc / 1e6:.0f} | {loc / p['time_s'] / w / 1e9:.2f} |")
    return 0 if res["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
