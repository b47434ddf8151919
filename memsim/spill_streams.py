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

The same call's `--plan blocker` (12:28 UTC) held the GPU's footprint: a shared-memory blocker on half (three
quarters) of the SMs put 130 (65) CTAs at 2 per SM on the rest -- a trip 269 k (270 k) cycles against 243 k (248 k)
at 1 per SM: **co-residency alone costs 1.09-1.11x**; the 260-CTA point's 1.44x is mostly its 49 MB of frames (71 %
of the spill stores written back, 6 % of the reloads from DRAM, the fetch slowed with them).

With the switch each stream beyond the first adds EXPOSED x the loop's fetch (memsim.issue_fit.fetch_cycles over the
loop curve) to the k CTAs' trip, for loops of more than CACHE_BYTES of code: EXPOSED = the blocker pairs' extra
cycles a trip over the loop's fetch (23.9 k / 127.1 k = 0.19) -- an upper bound for the fetch streams alone, since
two frames also share the L1 (its miss fraction 0.64 -> 0.78 at 260 CTAs).  Streams: "ctas" (the measured case: one
per resident CTA) or "warps" (one per resident warp: the warps of a CTA drift apart between its barriers too -- an
extrapolation, not measured).  memsim/MODEL.md, notes/spills.md session 20.
"""
from __future__ import annotations

import os

#: the instruction cache a loop must exceed to be fetched from the L2 (the loop curve's step: 2.85 cycles an
#: instruction at 128 KB, 5.87 at 144 KB -- `spill_fetchrun`, memsim.fetch_run.CURVE_POINT)
CACHE_BYTES = 128 << 10
#: spill_coresident --plan blocker (12:28 UTC): the trip at 2 CTAs per SM less the trip at 1 per SM with the same
#: CTAs on the GPU (130 CTAs: 269.0 k - 243.3 k; 65 CTAs: 270.4 k - 248.3 k; mean 23.9 k cycles) over the loop's fetch
#: at the loop curve's rate (21 447 instructions, 127.1 k cycles): the share of a second stream's fetch a trip waits for
EXPOSED = 23.9e3 / 127.1e3
#: the first call's ncu reading (no_instruction 0.455 -> 2.441 cycles an instruction from 130 to 260 CTAs: 42.6 k a
#: trip) gives 0.336, but 260 CTAs also double the footprint: kept for the record, not used
EXPOSED_NCU_260 = 42.6e3 / 126.5e3


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
