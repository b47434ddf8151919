"""Spill reloads aged from the value's last access, not its store (issue 8; notes/spills.md session 15).

`memsim.local_memory` places each reload of a tile loop at x = its reuse distance x the threads that interleave with
it / the cache (the L1 beside the carve-out, the L2), reading the measured miss curves there.  The table's distances
(`kernels.sass.local_reuse`) run from the STL that wrote the value: the distinct other local words loaded or stored
since.  A cache that keeps lines by recency ages a line from its last REFERENCE -- a reload that hits refreshes it, a
reload that misses brings it back -- so a value reloaded k times per store is, at its second to k-th reload, as old
as the words touched since the reload before (its LRU stack distance).

Why the two readings are the same on the microbenchmarks: `spills` and `spill_sm` (`_mb_spill_sm`: a tile re-read
and rewritten every iteration) store each spilled value once and reload it once per sweep, so every LDL's two
distances are equal (`benchmarks/spill_reuse_lru.py`'s check on the four compiled variants): the curves are
calibrated under both.  Live fp32 backward loops reload a value 1-4 times per store (held-out V's r26112703_000 dK/dV
trip: 93 688 B reloaded per 52 476 B stored per thread), where the two readings part: its reloads reaching the L2 miss
it 29 % since the store, 12 % since the last access; ncu: 2.5 %.

Data: per spilling table entry of the live sets (by `memsim.spill_draw.fingerprint`), the joint histogram of the two
distances (`benchmarks/spill_reuse_lru.py`, packed into `DATA_FILE`); entries it lacks keep the table's reading.
With MEMSIM_SPILL_LRU=1 the L2 reads the since-last-access distance, the L1 keeps the since-store one (`reuse_for`;
both from the last access was tried and put the live L1-miss shares under ncu's).  Live A-V at 05f2e13
(notes/spills.md session 15): dram_read median 1.29 -> 1.24 %, worst 510 -> 384 %, 43 cases closer / 6 farther; l2
and dram_write unchanged; time 16.00 -> 16.60 % (4 closer / 11 farther), gpu_time 13.07 -> 13.16 % (4 / 9): the
launches whose reloads now wait on the L2 instead of DRAM run too fast in the replay (notes/spills.md "Next 1"), so
the switch stays off by default.
Stdlib only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "MEMSIM_SPILL_LRU"
#: "l2" (default): the L1 ages a reload from its store (the table's distances), the L2 from the value's last access
#: (`memsim.local_memory` reads `reload_pairs`); "l1l2": both from the last access
LEVELS_ENV = "MEMSIM_SPILL_LRU_LEVELS"


def _sequence(body: list[str]) -> list:
    seq = []
    for op in body:
        parts = op.split(":")
        if parts[0] in ("STL", "LDL") and len(parts) == 3:
            seq.append((parts[0], int(parts[2]), int(parts[1])))
    return seq


def stack_distances(body: list[str], word_bytes: int = 4) -> list:
    """(bytes, distance in bytes per thread) of every LDL of the loop body (`kernels.sass.parse`'s "LDL:width:offset"
    opcodes), in order: walking back around the loop from the LDL to the last STL or LDL that touched its first word,
    the distinct other words loaded or stored in between, x 4 bytes; a word nothing else in the loop touches gets the
    loop's whole local footprint (`kernels.sass.local_distances`' rule for a value stored before the loop)."""
    seq = _sequence(body)
    if not seq:
        return []
    words = [set(range(o // word_bytes, (o + max(w, word_bytes) - 1) // word_bytes + 1)) for _, o, w in seq]
    footprint = len(set().union(*words)) * word_bytes
    n, out = len(seq), []
    for i, (kind, o, w) in enumerate(seq):
        if kind != "LDL":
            continue
        first = o // word_bytes
        seen: set = set()
        dist = None
        for step in range(1, n + 1):
            j = (i - step) % n
            if first in words[j]:
                dist = len(seen - words[i]) * word_bytes
                break
            seen |= words[j]
        out.append((w, footprint if dist is None else dist))
    return out


def distance_pairs(body: list[str], word_bytes: int = 4) -> list:
    """(bytes, distance since the store, distance since the last access) of every LDL of the loop body, in order: the
    first is `kernels.sass.local_distances`' reload distance, the second `stack_distances`'; both in O(n log n) (a
    Fenwick tree over each word's latest access, the body walked twice), for loops of 10^4-10^5 local accesses."""
    seq = _sequence(body)
    if not seq:
        return []
    words = [list(range(o // word_bytes, (o + max(w, word_bytes) - 1) // word_bytes + 1)) for _, o, w in seq]
    footprint = len(set().union(*map(set, words))) * word_bytes
    n = len(seq)
    size = 2 * n + 1
    tree = [0] * (size + 1)

    def add(i: int, v: int) -> None:
        i += 1
        while i <= size:
            tree[i] += v
            i += i & -i

    def upto(i: int) -> int:  # sum over positions 0..i
        i += 1
        s_ = 0
        while i > 0:
            s_ += tree[i]
            i -= i & -i
        return s_

    last: dict = {}
    last_store: dict = {}
    out = []
    for t in range(2 * n):
        i = t % n
        kind, _, w = seq[i]
        ws = words[i]
        if t >= n and kind == "LDL":
            def between(t0: int) -> int:
                # distinct other words whose latest access lies in (t0, t)
                c = upto(t - 1) - upto(t0)
                return c - sum(1 for x in set(ws) if t0 < last.get(x, -1) < t)
            first = ws[0]
            ts = last_store.get(first, -1)
            d_store = between(ts) * word_bytes if ts > t - n else footprint
            d_lru = between(last[first]) * word_bytes
            out.append((w, d_store, d_lru))
        for x in set(ws):
            if x in last:
                add(last[x], -1)
            last[x] = t
            add(t, 1)
            if kind == "STL":
                last_store[x] = t
    return out


def histogram(dists: list, bucket_bytes: int = 16) -> list:
    """[[distance rounded half up to `bucket_bytes`, bytes]] ascending (the table's `local_reuse` format)."""
    h: dict = {}
    for w, d in dists:
        b = bucket_bytes * ((d + bucket_bytes // 2) // bucket_bytes)
        h[b] = h.get(b, 0) + w
    return sorted([d, n] for d, n in h.items())


def pair_histogram(pairs: list, bucket_bytes: int = 16) -> list:
    """[[since-store distance, since-last-access distance, bytes]] (each rounded half up to `bucket_bytes`), sorted."""
    h: dict = {}
    r = lambda d: bucket_bytes * ((d + bucket_bytes // 2) // bucket_bytes)  # noqa: E731
    for w, a, b in pairs:
        k = (r(a), r(b))
        h[k] = h.get(k, 0) + w
    return sorted([a, b, n] for (a, b), n in h.items())


#: the reload pairs of the live sets' spilling table entries (`benchmarks/spill_reuse_lru.py --out` then `--pack`)
DATA_FILE = Path(__file__).with_name("spill_reuse_sm90.json.gz")

_FILES: dict = {}


def _entries(path: str) -> dict:
    p = Path(path)
    stamp = p.stat().st_mtime_ns if p.is_file() else None
    hit = _FILES.get(path)
    if hit and hit[0] == stamp:
        return hit[1]
    ent = {}
    if stamp is not None:
        raw = p.read_bytes()
        if path.endswith(".gz"):
            import gzip
            raw = gzip.decompress(raw)
        ent = json.loads(raw).get("entries", {})
    _FILES[path] = (stamp, ent)
    return ent


def marginal(pairs: list) -> list:
    """The since-last-access histogram [[distance, bytes]] of a pair histogram."""
    h: dict = {}
    for _, b, n in pairs:
        h[b] = h.get(b, 0) + n
    return sorted([d, n] for d, n in h.items())


def reuse_for(f) -> dict | None:
    """The tile loop's reuse histograms `memsim.local_memory` reads for facts `f`: the table's `local_reuse`, with the
    reloads' pairs of distances (since the store, since the last access) where the table's entry has them
    (`local_reuse["reload_pairs"]`) or the data file does (by `memsim.spill_draw.fingerprint`).

    MEMSIM_SPILL_LRU: unset or "1" -> `DATA_FILE` (the default since 2026-11-27, sixteenth session: live A-Y
    dram_read 1.52 -> 1.07 % median, worst 510 -> 186 %, 74 cases closer / 30 further; time 13.88 -> 14.31 %, the
    spilling loops whose reloads now hit the L2 run too fast -- memsim/MODEL.md); "0" -> off (the table's
    since-store histograms only); a path -> that file.
    MEMSIM_SPILL_LRU_LEVELS: "l2" (default) -> `local_memory` places the L1 by the since-store distance and the L2 by
    the since-last-access one; "l1l2" -> both caches by the since-last-access distance (tried, not adopted: the
    L1-miss share drops below ncu's on the live set, notes/spills.md session 15)."""
    reuse = (getattr(f, "loop", None) or {}).get("local_reuse")
    path = os.environ.get(ENV, "1")
    if not reuse or not path or path == "0":
        return reuse
    pairs = reuse.get("reload_pairs")
    if not pairs:
        from .spill_draw import fingerprint
        e = _entries(str(DATA_FILE) if path == "1" else path).get(fingerprint(f))
        pairs = (e or {}).get("reload_pairs")
    if not pairs:
        return reuse
    if os.environ.get(LEVELS_ENV, "l2") == "l1l2":
        out = {**reuse, "reload": marginal(pairs)}
        out.pop("reload_pairs", None)
        return out
    return {**reuse, "reload_pairs": pairs}
