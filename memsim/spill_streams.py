"""Co-resident CTAs fetch a loop past the instruction cache as separate streams (issue 8, spills session 20;
switch ``MEMSIM_FETCH_STREAMS``, default off).

memsim.costs takes the trip of k co-resident CTAs as max(replay at k CTAs, fetch of the loop once): the CTAs share
the fetch, as the lockstep warps of the `icache` / `spill_fetch` / `spill_fetchrun` points do.  CTAs that drift
apart in a loop larger than the instruction cache (past the loop curve's 128 KB step: fetched from the L2) ask
for different lines, and the SM's fetch serves them one after another.  `benchmarks/spill_coresident_gpu.py`
(H100 80GB HBM3, 2026-11-27 12:23 UTC) ran one live fp32 spilling loop (r61126_001's `_flash1_fwd`, 335 KB of
loop code, one-warp CTAs, all CTAs the same walk) at 1, 2 and 3 CTAs per SM: a trip took 247 k / 356 k / 444 k
cycles (the model 270 / 279 / 302 k: the replay says the CTAs overlap) and ncu's warp-stall samples put the growth
from 1 to 2 CTAs per SM on instruction fetch ("no instruction": 0.46 -> 2.44 cycles per issued instruction, 4.3 ->
15.2 % of the samples -- a fetch that kept ahead of one slow warp falls behind two, each at 1.5x the cycles per
instruction) and on the spill reloads (long scoreboard 7.1 -> 10.5; their L1 miss fraction 0.64 -> 0.78 and 6 % of
them from DRAM at 2 CTAs: the placement, memsim.local_memory's business).

With the switch each stream beyond the first adds EXPOSED x the loop's fetch (memsim.issue_fit.fetch_cycles over the
loop curve) to the k CTAs' trip, for loops of more than CACHE_BYTES of code: EXPOSED = the measured growth of the
"no instruction" cycles per trip over the fetch of the loop (42.6 k / 126.5 k).  Streams: "ctas" (the measured
case: one per resident CTA) or "warps" (one per resident warp: the warps of a CTA drift apart between its barriers
too -- an extrapolation, not measured).  memsim/MODEL.md, notes/spills.md session 20.
"""
from __future__ import annotations

import os

#: the instruction cache a loop must exceed to be fetched from the L2 (the loop curve's step: 2.85 cycles an
#: instruction at 128 KB, 5.87 at 144 KB -- `spill_fetchrun`, memsim.fetch_run.CURVE_POINT)
CACHE_BYTES = 128 << 10
#: spill_coresident (12:23 UTC): "no instruction" cycles per issued instruction 0.455 (130 CTAs, 1 per SM) -> 2.441
#: (260 CTAs, 2 per SM), x 21 447 loop instructions = 42.6 k cycles a trip, over the loop's fetch at the loop curve's
#: rate (21 447 x 5.90 = 126.5 k): the share of a second stream's fetch a trip waits for
EXPOSED = 42.6e3 / 126.5e3


def mode() -> str:
    """'' (off: the default), 'ctas' ("1" too) or 'warps', from MEMSIM_FETCH_STREAMS."""
    v = os.environ.get("MEMSIM_FETCH_STREAMS", "").strip().lower()
    if v in ("", "0", "off", "no", "false"):
        return ""
    return "warps" if v == "warps" else "ctas"


def streams(resident: int, num_warps: int, switch: str | None = None) -> int:
    """Instruction streams on an SM: one per resident CTA ('ctas') or per resident warp ('warps')."""
    sw = mode() if switch is None else switch
    if not sw:
        return 1
    return max(1, int(resident)) * (max(1, int(num_warps)) if sw == "warps" else 1)


def extra_cycles(fetch_cycles: float, tile_instructions: int, resident: int, num_warps: int,
                 switch: str | None = None) -> float:
    """Cycles the trip of `resident` co-resident CTAs waits beyond max(replay, fetch): (streams - 1) x EXPOSED x
    the loop's fetch, for a loop past the instruction cache (16-byte instructions); 0 with the switch off."""
    sw = mode() if switch is None else switch
    if not sw or tile_instructions * 16 <= CACHE_BYTES or fetch_cycles <= 0:
        return 0.0
    return (streams(resident, num_warps, sw) - 1) * EXPOSED * fetch_cycles
