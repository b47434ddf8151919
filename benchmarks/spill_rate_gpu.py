"""One device call: how fast one warp moves its spilled registers, by warps per SM, on SMs that share nothing.

The `spills` calibration points (memsim/presets/<hw>.calibration.json) run the spilling `_mb_spill` kernel on
every SM: there the chip's L2 takes the spill stores at its own limit and the per-warp latency is hidden.  These
points run it on num_sms/8 SMs only (one CTA per SM, the other SMs idle), with 1, 2, 4, 8 and 16 warps per CTA
and the same 512 fp32 values per thread (about 3 KB spilled per thread), so the time is each warp's own
local-memory round trips: bytes per warp per second against warps per SM (memsim.calibration.spill_rates_from).
Two points with one CTA on every SM give the chip-wide store rate beside it.

    run(command="python3 benchmarks/spill_rate_gpu.py --out $OUT/spill_rate.calibration.json", timeout_s=480)

It reuses `verification calibrate` (same runner, same ncu metrics and provenance) with only these points
(`verification.calibrate.spill_rate_points`, also part of the default plan's `spills` fact since 2026-11-26); the
file it writes has the calibration format, and its points were merged into the preset's `spills` fact.
"""
from __future__ import annotations

import argparse
import sys

from verification import calibrate as C


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="calibration-format JSON to write")
    ap.add_argument("--hw", default="h100-sxm")
    a = ap.parse_args(argv)
    C.build_plan = lambda quick=False, facts=None, num_sms=132, l2_bytes=0: C.spill_rate_points(num_sms)
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
