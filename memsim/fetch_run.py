"""The instruction fetch runs only a few lines ahead of a warp (issue 8, spills session 19; switch, default off),
and a loop past 128 KB fetches at the 256 KB rate (the loop curve's 144 KB point: the default).

memsim.costs takes a tile-loop trip as max(replay, fetch of the loop's code): the fetch of the whole trip hides
under the waits of the whole trip.  ncu's stall samples of r5126_005's fp32 forward (a 101 KB loop whose replay is
1.75x its fetch) put its 23 % "no instruction" samples only on the first instruction of a 128-B line, and only where
the warp had issued ~40 or more instructions since its last scoreboard wait: during a wait the fetch gets a few
lines ahead; in a long wait-free run (an fp32 dot's FFMAs) the warp waits for every line at the fetch rate.
`benchmarks/spill_fetchrun_gpu.py` measures it: the same waits spread through a loop or clustered at its start.

With MEMSIM_FETCH_RUN=1 memsim.warp_issue.replay gets `window(curve, instructions)`: each warp's code arrives one
128-B line (8 instructions) at a time at the loop curve's rate for the loop's size, at most DEPTH_LINES ahead of
the line the warp issues from.  The table's replays do not have it: the switch reads the figures of
`memsim/fetch_run_sm90.json.gz` (benchmarks/spill_fetchrun_table.py), per compiled-table key, where present.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

#: lines (128 B) the fetch may run ahead of the warp's current line (r5126_005's stall samples: no fetch wait in the
#: ~36 instructions after a wait; spill_fetchrun's points are the same within 1 % for 3-6 lines)
DEPTH_LINES = 4
TABLE = Path(__file__).with_name("fetch_run_sm90.json.gz")
#: the same replays with the loop curve extended by CURVE_POINT (MEMSIM_FETCH_RUN=all): loops of 144-192 KB only
TABLE_CURVE = Path(__file__).with_name("fetch_run_curve_sm90.json.gz")
#: spill_fetchrun (H100 80GB HBM3, 09:49 UTC): a loop of 147 520 B (9220 FFMAs, no waits) fetched at 5.87 cycles an
#: instruction, the 256 KB rate -- the loop curve's step reading charges it the 128 KB point's 2.85
CURVE_POINT = (147520, 5.866)


def mode() -> str:
    """MEMSIM_FETCH_RUN: "curve" (the default since 2026-11-27, seventeenth session: the 144 KB point in the loop
    curve -- 5 live launches closer, none further), "1" (the fetch window, off by default: fp32 spilling loops get
    further), "all" (both), "0" (neither: the loop curve of the calibration alone)."""
    v = os.environ.get("MEMSIM_FETCH_RUN", "curve")
    return "" if v in ("", "0") else v


def enabled() -> bool:
    return bool(mode())


def window_on() -> bool:
    return mode() in ("1", "all")


def curve_on() -> bool:
    return mode() in ("curve", "all")


def loop_curve(cal) -> tuple | None:
    """The calibration's loop curve with CURVE_POINT (sorted by code size)."""
    base = cal.icache_loop_curve or cal.icache_curve
    if not base:
        return base
    return tuple(sorted([p for p in base if p[0] != CURVE_POINT[0]] + [CURVE_POINT]))


def window(curve, instructions: int, depth: int | None = None) -> tuple | None:
    """(cycles per 128-B line, lines ahead) for a loop of `instructions` SASS instructions (16 B each): 8 x the
    curve's cycles per instruction at that code size (memsim.issue_fit.fetch_cycles' reading); None without a
    curve."""
    from .issue_fit import fetch_cycles
    if not curve or instructions <= 0:
        return None
    return (8.0 * fetch_cycles(curve, instructions) / instructions, DEPTH_LINES if depth is None else depth)


@functools.lru_cache(maxsize=2)
def _table(path: Path = TABLE) -> dict:
    if not path.exists():
        return {}
    from .io import read_json
    return read_json(str(path)).get("entries", {})


def loop_key(num_warps: int, issue: dict) -> str:
    """The side table's key of a compiled entry's tile loop: its warps, SASS instructions and one-CTA trip (the
    table's replay without the window) -- the same loop under every key of the compiled table that shares it."""
    return f"{int(num_warps)}|{int(issue.get('tile_instructions', 0))}|{float(issue['tile_cycles'][0]):.1f}"


def figures_for(num_warps: int, issue: dict) -> dict | None:
    """The lists replayed with the fetch window (tile_cycles, tile_cycles_local_l2, tile_cycles_dram,
    band_cycles: index c - 1 = c resident CTAs) of a compiled entry's tile loop, where the side table has them
    with the same latencies."""
    if not issue or not issue.get("tile_cycles"):
        return None
    k_ = loop_key(num_warps, issue)
    e = (_table(TABLE_CURVE).get(k_) if curve_on() else None) or _table().get(k_)
    if not e or e.get("latencies") != issue.get("latencies"):
        return None
    return e
