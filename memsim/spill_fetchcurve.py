"""A loop of 40-56 KB fetches at ~2.43 cycles an instruction, not the 32 KB point's 1.20 (issue 8, spills session
20; ``MEMSIM_FETCH_40K``, on by default since the eighteenth session; "0" turns it off).

The loop curve (`Calibration.icache_loop_curve`, read by memsim.issue_fit.fetch_cycles as a step: the largest
measured size not above) has points at 32 KB (1.20 cycles an instruction) and 64 KB (2.79), so every tile loop of
32-64 KB is charged the 32 KB rate.  `benchmarks/spill_fetchrun_gpu.py --points 2560:0:0:1:1,3072:0:0:1:1,
3584:0:0:1:1` (H100 80GB HBM3, 2026-11-27 12:38 UTC, %clock64, one warp, no waits:
verification/data/nvidia-h100-80gb-hbm3/calibration/spill_fetchrun-2026-11-27T1238.*) measured loops of 40 / 48 /
56 KB at 2.44 / 2.43 / 2.42 cycles an instruction -- the cliff lies between 32 and 40 KB.  Found through
r26112609_005's flash1 forward (fp32 d=16, a 59 KB loop of two-warp CTAs, L1-resident frames): 1.33x the model at
1, 2 and 3 CTAs per SM alike, and ncu put 21.6 % of its warps' samples on "no instruction" (the same session's
`spill_coresident_gpu.py --plan w2 / w2k`).  With the switch the loop curve gains the three points (tile loops
only; straight code keeps `icache_curve`).  memsim/MODEL.md, notes/spills.md session 20.
"""
from __future__ import annotations

import os

#: (code bytes of the loop, cycles an instruction), spill_fetchrun 12:38 UTC: 2564 / 3076 / 3588 SASS instructions,
#: 6253 / 7486 / 8688 cycles a trip
POINTS = ((2564 * 16, 6253 / 2564), (3076 * 16, 7486 / 3076), (3588 * 16, 8688 / 3588))


def on() -> bool:
    """MEMSIM_FETCH_40K: on unless "0" / "off" / "no" / "false" (the default since 2026-11-27, eighteenth session:
    the helper's live score, 419 cases -- time 13.65 -> 13.55 %, gpu_time 11.42 -> 11.30 %, 10 launches closer, 1
    further, no class worse; notes/spills.md session 20)."""
    return os.environ.get("MEMSIM_FETCH_40K", "1").strip().lower() not in ("", "0", "off", "no", "false")


def loop_curve(curve):
    """`curve` (a loop curve: (bytes, cycles an instruction) sorted) with POINTS."""
    if not curve:
        return curve
    sizes = {p[0] for p in POINTS}
    return tuple(sorted([p for p in curve if p[0] not in sizes] + list(POINTS)))
