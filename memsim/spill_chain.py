"""A CTA's trip takes at least its own warps' chain: the tile-loop replay at ONE resident CTA (issue 8, session 16).

The engine books the CTAs resident on an SM one turn after another, each turn `issue_s_per_tile` = the replay of
the tile loop at the launch's resident CTAs / resident (memsim.costs: ``at(cycles) / (resident * clock)``).  That
is right while every resident CTA has trips to make: k CTAs interleave and each one's trip takes the k-CTA replay.
A CTA left alone on its SM (its co-residents done: a causal launch's short walks, a grid's tail) or a small grid's
single CTA per SM cannot go faster than its own warps' dependency chain -- the replay with one CTA, which for a
latency-bound loop (one warp waiting on its spill reloads at the L2 latency) is nearly k times a k-CTA turn.

`chain_ratio` is that lower bound over a turn (both with the launch's reload mix: the L1-hit pass and the
L2-latency pass mixed by the same x as memsim.costs), `chain_end` the time a step of `d_issue` turn-seconds cannot
end before.  Switch: ``MEMSIM_SPILL_CHAIN`` -- "0": off (the engine as before); "1": launches with spill
reloads in their tile loop; "all" (also when unset: the default): every launch with a replayed tile loop.  Microbenchmark:
`benchmarks/spill_sm_gpu.py --plan chain` (one long-walking CTA per SM among short ones, L1- and L2-resident
spills).  memsim/MODEL.md, notes/spills.md session 16.
"""
from __future__ import annotations

import os

__all__ = ["mode", "chain_ratio", "chain_end", "ratio_for"]


def mode() -> str:
    """'' (off), '1' (spilling loops) or 'all' (every replayed loop), from MEMSIM_SPILL_CHAIN; unset: 'all' (the
    default since the fifteenth lead session: live A-W gpu_time 12.84 -> 12.33 %, 47 cases closer, 17 farther)."""
    v = os.environ.get("MEMSIM_SPILL_CHAIN", "all").strip().lower()
    if v in ("", "0", "off", "no", "false"):
        return ""
    return "all" if v == "all" else "1"


def _at(cycles: list, k: int) -> float:
    """memsim.costs' `at`: the replayed cycles of a trip with k resident CTAs (past the replayed ones, linear)."""
    n = min(k, len(cycles))
    return cycles[n - 1] * k / n


def chain_ratio(tile_cycles: list, resident: int, *, local_l2_cycles: list | None = None, x: float = 0.0,
                fetch_cycles: float = 0.0) -> float:
    """One CTA's trip alone over its turn among `resident` CTAs (>= 1 where the replay is latency-bound; 1 at
    resident = 1).  x mixes the L1-hit and the L2-latency passes as memsim.costs does."""
    if not tile_cycles or resident < 1:
        return 0.0
    l2 = local_l2_cycles if local_l2_cycles else tile_cycles

    def trip(k):
        a1, a2 = _at(tile_cycles, k), _at(l2, k)
        return max(a1, fetch_cycles) + x * max(0.0, a2 - a1)
    turn = trip(resident) / resident
    return trip(1) / turn if turn > 0 else 0.0


def ratio_for(rep: dict | None, resident: int, *, spills: bool, x: float = 0.0, fetch_cycles: float = 0.0,
              switch: str | None = None) -> float:
    """The launch's chain ratio under the switch (0.0: no bound): `rep` is the compiled table's issue profile,
    `spills` whether the tile loop reloads spilled registers (its replay has `tile_cycles_local_l2`)."""
    sw = mode() if switch is None else switch
    if not sw or not rep or not rep.get("tile_cycles"):
        return 0.0
    if sw == "1" and not (spills and rep.get("tile_cycles_local_l2")):
        return 0.0
    return chain_ratio(rep["tile_cycles"], resident, local_l2_cycles=rep.get("tile_cycles_local_l2"), x=x,
                       fetch_cycles=fetch_cycles)


def chain_end(t0: float, d_issue: float, ratio: float, side_by_side: float = 1.0) -> float:
    """The earliest end of a step that became ready at t0 and books `d_issue` seconds of SM turns: its CTA's own
    chain, ratio x its turns (an event standing for `side_by_side` CTAs that run at once: each CTA's share)."""
    if ratio <= 0.0 or d_issue <= 0.0:
        return t0
    return t0 + ratio * d_issue / max(1.0, side_by_side)
