"""A predicated-off load waits for nothing: naive's row trips wait only on the loads of columns inside seq_kv
(issue 8, session 17; switch MEMSIM_ROW_MASK).

naive's row kernels (kernels.naive._naive_softmax, _naive_bwd_ds) hold whole rows of next_pow2(seq_kv) columns
(`naive_rows_per_step`'s npow2) in registers; with 255 registers and a row pitch Triton cannot prove 16-byte aligned,
ptxas loads a row as npow2 / 32 warp loads of one element a lane (`LDG.E.U16` for bf16 S at +0, +64, ... B) and
waits on each before the next.  The SASS replay (memsim.warp_issue) gives every one of those waits the load latency
-- an L2 hit or a DRAM miss, mixed by the step's misses.  But the columns past seq_kv are masked: a warp load whose
32 lanes are all past seq_kv is predicated off, brings nothing and releases its scoreboard almost at once.  A row
of seq_kv columns waits on cdiv(seq_kv, 32) of its npow2 / 32 loads (r1_019: 158 of 256).

Measured (`benchmarks/spill_rowchain_gpu.py`, H100 80GB HBM3, 2026-11-27 07:19 UTC, run
verification/data/nvidia-h100-80gb-hbm3/calibration/spill_rowchain-2026-11-27T0719.json):

* a one-warp chain of dependent 64-B warp loads along a row: 717-720 cycles a load from DRAM, 312 from the L2 (the
  replay of its SASS: 710 / 314); the same chain with its second half predicated off: 384 / 182 cycles a load on
  average, i.e. ~52 cycles a predicated-off load -- the replay gives 52 with such a load released after
  `MASKED_RELEASE_CYCLES` (25) cycles, and 38 at 0;
* contiguous 64-B loads wait as long as loads 256 B apart (720 / 717 / 720 cycles): a load of the other half of a
  line the previous load brought is NOT an L2 hit -- the L2 fills what was asked, so nothing else changes here;
* the real `_naive_softmax` (r1_019's code, 128 rows a CTA, one CTA per SM, S from DRAM): 97.9 us a row at
  seq_kv 8189 (256 real loads), 65.8 at 5055 (158): 32.1 us for 98 loads = 649 cycles each at 1.98 GHz, a DRAM
  wait less a masked one.

`real_share` is the share of a row trip's waited loads that load something; `trip_costs` moves memsim.costs' L2-hit
and DRAM-miss trips (and the trip that loads nothing) along the replay's slope in the load latency (it is linear:
the waits are in a row).  memsim/MODEL.md row proposed in notes/spills.md session 17.
"""
from __future__ import annotations

import os

from .schedule import naive_rows_per_step

__all__ = ["enabled", "real_share", "trip_costs", "ROW_LAUNCHES", "MASKED_RELEASE_CYCLES", "wait_bytes_enabled",
           "sm_gap_enabled"]

#: the launches that hold whole rows of npow2 >= seq_kv columns and load them one warp load at a time
ROW_LAUNCHES = frozenset({"naive_softmax", "naive_bwd_ds"})
#: cycles after which a predicated-off register load releases its scoreboard in the replay: the load latency at which
#: memsim.warp_issue.replay of the spill_rowchain chain loop gives its measured ~52 cycles a masked load
#: (`python benchmarks/spill_rowchain_gpu.py --fit RUN` derives it; tests/test_spill_rowmask.py checks it)
MASKED_RELEASE_CYCLES = 25.0
#: lanes of a warp: each warp load covers 32 consecutive columns (one element a lane; a vectorised load covers more
#: and ends on the same chunk boundary within a rounding of seq_kv)
WARP_COLUMNS = 32


def enabled() -> bool:
    """MEMSIM_ROW_MASK set to anything but '', '0', 'off', 'no', 'false' (default: off, while it is evaluated)."""
    return os.environ.get("MEMSIM_ROW_MASK", "0").strip().lower() not in ("", "0", "off", "no", "false")


def _on(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() not in ("", "0", "off", "no", "false")


def wait_bytes_enabled() -> bool:
    """MEMSIM_WAIT_BYTES (default off, being evaluated): memsim.engine mixes a replayed loop's register-load waits
    (L2 hit / DRAM miss) by the share of the step's OWN bytes that miss, not of its sector traffic.  A warp load at a
    pitch off the sector touches one sector more than its bytes (memsim.sectors: 96 B for 64), the sector it shares
    with the next load; the engine's traffic counts it, the L2 holds the bytes once -- so a row streamed from DRAM
    read as 0.68 missing (r1_001) where every load waits the DRAM latency: spill_rowchain's 64-B loads 2 B off the
    sector wait 717 cycles, aligned ones 720, loads 256 B apart 720 (the L2 hit is 312)."""
    return _on("MEMSIM_WAIT_BYTES")


def sm_gap_enabled() -> bool:
    """MEMSIM_SM_GAP (default off, being evaluated): a step that its CTA's own chain holds back (it may start only
    after the SM's calendar is free: t0 > the SM's free_at) books its turn in the SM's idle gap -- the SM's
    free_at moves by the step's turn, not to the step's end.  Without it a zero-turn step (naive's P stores after
    the chain-bound row step) set the SM's free_at to that CTA's chain end, and every other CTA of the SM waited
    for it: r1_019's short CTAs' idle trips started at the long CTAs' 8.17 ms and the second wave at 9.7 ms (the
    session-16 design: "the SM's free_at stays the turn's end, so co-resident CTAs still share the SM")."""
    return _on("MEMSIM_SM_GAP")


def real_share(launch_name: str, seq_kv: int, block_m: int) -> float:
    """The share of a row trip's warp loads that have a lane inside seq_kv (1.0 for other launches, and where a warp
    load spans several rows: npow2 <= 32, every load has real columns)."""
    if launch_name not in ROW_LAUNCHES or not seq_kv or not block_m:
        return 1.0
    _, npow2 = naive_rows_per_step(seq_kv, block_m)
    if npow2 <= WARP_COLUMNS:
        return 1.0
    return min(1.0, -(-seq_kv // WARP_COLUMNS) * WARP_COLUMNS / npow2)


def trip_costs(issue: float, issue_dram: float, noload: float, l2_cycles: float, dram_cycles: float, share: float,
               masked_cycles: float = MASKED_RELEASE_CYCLES, floor: float = 0.0) -> tuple:
    """(issue, issue_dram, noload) -- memsim.costs' trip at L2-hit loads, at DRAM-miss loads and with every load
    masked (seconds of a turn) -- with the share 1 - `share` of the waited loads predicated off (released after
    `masked_cycles`), none below `floor` (the code's fetch).  The replay is linear in the latency of loads waited one
    after another: its slope per cycle of latency is (issue_dram - issue) / (dram_cycles - l2_cycles).  Unchanged
    where nothing is masked or the trip has no DRAM figure."""
    if share >= 1.0 or not issue_dram or dram_cycles <= l2_cycles:
        return issue, issue_dram, noload
    slope = max(0.0, issue_dram - issue) / (dram_cycles - l2_cycles)
    off = 1.0 - max(0.0, share)
    issue2 = max(floor, issue - off * slope * (l2_cycles - masked_cycles))
    dram2 = max(floor, issue_dram - off * slope * (dram_cycles - masked_cycles))
    # the idle trip (rows past seq_q: every load masked) waits masked_cycles a load, not 0
    noload2 = max(noload, issue - slope * (l2_cycles - masked_cycles)) if noload else noload
    return issue2, dram2, noload2
