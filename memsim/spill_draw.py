"""Spill reloads drawn one by one in the tile loop's replay (issue 8; notes/spills.md sessions 11-12; diagnostic).

memsim.costs charges a spilling tile loop's reloads by mixing two replays of its SASS linearly -- every reload an
L1 hit (`tile_cycles`), every reload an L2 hit (`tile_cycles_local_l2`) -- by the expected reload latency.  On the
`spill_sm` microbenchmark (benchmarks/spill_draw_replay.py, 57 points at <= 4 warps per SM) the time follows the
replay with each reload DRAWN instead: an L1 miss with the placed fraction m, of those a DRAM miss with the placed
fraction d, each waited on at its own latency -- a warp's batch of reloads waits for its slowest, and a DRAM miss
for the DRAM latency loaded by the traffic around it.  This module replays a tile loop that way; the body comes
from a folder of pickled bodies (benchmarks/spill_draw_live.py --bodies) because the compiled table keeps only the
two replays.  memsim never compiles: without a body the caller keeps the linear mix.

Not adopted in the model (see notes/spills.md, session 12); used by the env-switched patch
notes/spills_patch_session13.diff (MEMSIM_SPILL_DRAW=<bodies folder>).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import random
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

#: draws averaged per replay (each draw fixes which LDL of the body misses, for every trip of the replay)
SEEDS = 2


def fingerprint(e) -> str:
    """A table entry's (dict) or CompiledFacts' identity as far as its tile loop goes: the same compiled kernel gives
    the same launch, registers, local and shared bytes, warps, stages and replayed tile cycles."""
    get = (lambda k: e.get(k)) if isinstance(e, dict) else (lambda k: getattr(e, k, None))
    issue = get("issue") or {}
    return "|".join(str(x) for x in (get("launch"), get("regs_per_thread"), get("local_bytes_per_thread"),
                                     get("shared_bytes"), get("num_warps"), get("num_stages"),
                                     tuple(issue.get("tile_cycles") or ()),
                                     tuple(issue.get("tile_cycles_local_l2") or ())))


def body_file(fp: str) -> str:
    return hashlib.sha1(fp.encode()).hexdigest()[:20] + ".pkl"


def bodies_dir() -> Path | None:
    d = os.environ.get("MEMSIM_SPILL_DRAW")
    return Path(d) if d else None


@lru_cache(maxsize=None)
def _body(folder: str, fp: str):
    p = Path(folder) / body_file(fp)
    if not p.is_file():
        return None
    return pickle.loads(p.read_bytes())["body"]


def body_for(facts) -> list | None:
    """The pickled tile-loop body of `facts` (None: no folder, or this kernel was not compiled there)."""
    d = bodies_dir()
    if d is None or facts is None:
        return None
    return _body(str(d), fingerprint(facts))


_LATS: dict = {}


@lru_cache(maxsize=4096)
def _drawn(folder: str, fp: str, warps: int, ctas: int, lat_fp: str, m: float, d: float, dram_cycles: float) -> float:
    """`_drawn_each` with every reload at the same (L1-miss, L2-miss) probabilities (the same draws, seed by seed)."""
    n = sum(x.op == "LDL" for x in _body(folder, fp))
    return _drawn_each(folder, fp, warps, ctas, lat_fp, ((m, d),) * n, dram_cycles)


@lru_cache(maxsize=None)
def _distances(folder: str, fp: str):
    p = Path(folder) / body_file(fp)
    return tuple(pickle.loads(p.read_bytes()).get("ldl_distance") or ()) if p.is_file() else ()


@lru_cache(maxsize=4096)
def _drawn_each(folder: str, fp: str, warps: int, ctas: int, lat_fp: str, probs: tuple, dram_cycles: float) -> float:
    from .warp_issue import replay
    body = _body(folder, fp)
    lat = _LATS[lat_fp]
    lat2 = replace(lat, cycles={**lat.cycles, "LDL_L2": lat.load_l2_cycles, "LDL_DRAM": dram_cycles})
    out = []
    for seed in range(SEEDS):
        rnd = random.Random(seed)
        it = iter(probs)
        b = []
        for x in body:
            if x.op == "LDL":
                m, d = next(it)
                if rnd.random() < m:
                    x = replace(x, op=("LDL_DRAM" if rnd.random() < d else "LDL_L2"))
            b.append(x)
        out.append(replay(b, warps_per_cta=warps, ctas=ctas, lat=lat2))
    return sum(out) / len(out)


def drawn_by_distance(facts, local, curves, *, warps: int, ctas: int, lat, dram_cycles: float) -> float | None:
    """`drawn_cycles` with each reload at its OWN reuse distance (the pickled ``ldl_distance``, benchmarks/
    spill_draw_live.py --distances): it misses L1 with the L1-miss curve at distance x `local.l1_x_per_byte`, and
    then the L2 with the L2-miss curve at distance x `local.l2_x_per_byte` -- the placement memsim.local_memory
    makes from the same distances, kept per reload instead of averaged, so the misses fall on the reloads of the
    long distances.  None without distances or without the placement's scales."""
    if body_for(facts) is None or local is None or not local.l2_x_per_byte:
        return None
    dist = _distances(str(bodies_dir()), fingerprint(facts))
    if not dist:
        return None
    at = type(curves).at
    probs = tuple((round(at(curves.l1_miss, x * local.l1_x_per_byte), 2) if local.l1_x_per_byte else 0.0,
                   round(at(curves.l2_miss, x * local.l2_x_per_byte), 2)) for x in dist)
    _LATS.setdefault(lat.fingerprint(), lat)
    return _drawn_each(str(bodies_dir()), fingerprint(facts), warps, ctas, lat.fingerprint(), probs,
                       round(dram_cycles, -1))


def drawn_cycles(facts, *, warps: int, ctas: int, lat, m: float, d: float, dram_cycles: float) -> float | None:
    """Cycles per trip of the tile loop with `ctas` CTAs of `warps` warps on the SM, each reload an L1 hit, an L2
    hit (`lat.load_l2_cycles`) or a DRAM miss (`dram_cycles`) with probabilities 1 - m, m (1 - d), m d (mean over
    SEEDS draws; m, d rounded to 0.01 so that launches of one kernel share replays).  None without a body."""
    if body_for(facts) is None:
        return None
    _LATS.setdefault(lat.fingerprint(), lat)
    return _drawn(str(bodies_dir()), fingerprint(facts), warps, ctas, lat.fingerprint(), round(m, 2), round(d, 2),
                  round(dram_cycles, -1))
