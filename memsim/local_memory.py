"""Where a launch's local memory (register spills) lives: L1, L2 or DRAM.

A spilling kernel stores and reloads the same per-thread slots every loop iteration.  The hardware
gives each resident thread its own local-memory slot, so the bytes that compete for the caches are
the *resident* threads' slots, not the whole grid's:

* **L1.**  Each SM's unified L1/shared memory (``Hardware.l1_shared_per_sm_bytes``) is split by the
  driver into a shared-memory carve-out -- the smallest of ``Hardware.smem_carveouts_bytes`` that holds
  the CTAs the occupancy allows with their shared memory and 1 KB reservations, or the largest for a
  kernel of more than 48 KB of shared memory, which Triton's loader launches with PREFER_SHARED
  (`carveout_bytes`, measured: spill_sm carveout plan) -- and an L1 data cache that gets the rest.  If the SM's local footprint (resident CTAs x threads x local bytes per thread) fits that L1,
  the reloads hit it (measured: ``verification calibrate`` spills, 64 B per thread: reloads reach L2
  at 0.0002 per byte, `Calibration.l2_read_per_spill_load_byte`); if it does not, the iteration's sweep
  over the slots evicts each slot before it is reloaded and every reload goes to L2.  Stores always go
  through to L2 (write-through L1; `Calibration.l2_write_per_spill_store_byte`).
* **L2 and DRAM.**  The whole GPU's local footprint (resident slots on all used SMs) competes for the
  L2, which keeps at most `Calibration.l2_dirty_bytes` dirty (measured, l2_writeback).  While the
  footprint fits, spill stores merge into dirty lines and never reach DRAM inside the kernel; past it,
  a growing fraction is written back, and reloads that reach the L2 miss it.

How fast each fraction grows with the footprint is a property of the caches' replacement, which no
datasheet gives: it is MEASURED by ``verification calibrate`` spills (``_mb_spill``: one wave of 1-8
resident CTAs per SM, 2 KB per thread stored and reloaded every iteration, footprints 17-75 MB on the
H100).  `curves_from` turns each point into (footprint / capacity, fraction) for three curves -- reloads
missing L1 (x = footprint per SM / L1 data cache), stores written back (x = GPU footprint / dirty
capacity), reloads missing L2 (x = GPU footprint / L2) -- and the model interpolates them (0 at x = 0,
flat past the last point).  The footprint is the bytes one iteration touches: the smaller of the stack
frame and the iteration's spill stores per thread.  Without a calibration file: reloads miss L1 when the
footprint exceeds it, and 1 - capacity / footprint of stores / reloads miss the dirty capacity / L2.
The microbenchmark stores and reloads each value once per sweep of its footprint, so x is really the
reuse distance over the capacity.  Where the compiled-facts table has the tile loop's reuse histograms
(`kernels.sass.local_reuse`: for each reload, the distinct local bytes per thread touched since its value was
stored; for each store, the distinct bytes stored since its word was last stored), each access is placed at
x = its distance x the threads that interleave with it (the SM's resident threads for L1, the GPU's for the
L2) / the capacity.  Otherwise a loop whose spill stores per iteration are k times its footprint (the SASS
count over the frame) is taken to reuse each value after 1/k of the footprint.

Stdlib only; the numbers come from `Hardware` and `Calibration`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalMemory:
    """The local-memory placement of one launch (see module doc)."""

    #: resident CTAs per SM x threads x local bytes per thread
    footprint_per_sm_bytes: int
    #: the same summed over the SMs the grid occupies
    footprint_bytes: int
    #: the L1 data cache left beside the shared-memory carve-out (0 = unknown hardware)
    l1_data_bytes: int
    #: fraction of the reloads that miss L1 (reach L2)
    l1_miss_fraction: float
    #: fraction of the spill stores reaching L2 that are written back to DRAM inside the kernel
    dram_write_fraction: float
    #: fraction of the reloads reaching L2 that miss it (DRAM reads)
    dram_read_fraction: float
    #: where the fractions come from
    rule: str = ""
    #: with reuse distances: the x of the L1-miss and L2-miss curves per byte of a reload's distance (the resident
    #: threads of the SM / the L1, of the GPU / the L2); 0 without (memsim.spill_draw places each reload by them)
    l1_x_per_byte: float = 0.0
    l2_x_per_byte: float = 0.0

    @property
    def reloads_reach_l2(self) -> bool:
        return self.l1_miss_fraction > 0

    def explain(self) -> str:
        mb = 1 << 20
        where = f"{self.l1_miss_fraction:.0%} of reloads miss L1"
        return (f"local memory {self.footprint_per_sm_bytes / 1024:.0f} KB per SM vs L1 {self.l1_data_bytes / 1024:.0f} KB"
                f" ({where}); {self.footprint_bytes / mb:.1f} MB on the GPU: "
                f"{self.dram_write_fraction:.0%} of spill stores written back, {self.dram_read_fraction:.0%} of reloads "
                f"from DRAM ({self.rule})")


#: Triton's loader (triton/backends/nvidia/driver.c `load_binary`, Triton 3.6) calls
#: cuFuncSetCacheConfig(CU_FUNC_CACHE_PREFER_SHARED) for a kernel with more than 48 KB of shared memory (the CUDA
#: limit without the opt-in): the SM then runs it with its largest shared-memory carve-out
TRITON_PREFER_SHARED_ABOVE_BYTES = 48 * 1024


def carveout_bytes(hw, smem_per_cta_bytes: int, ctas_per_sm: int) -> int:
    """The shared-memory carve-out of an SM running a Triton kernel: the largest for a kernel of more than 48 KB of
    shared memory (Triton asks PREFER_SHARED), else the smallest that holds the CTAs its occupancy allows (the
    driver's default).  `spill_sm` carveout plan (benchmarks/spill_sm_gpu.py, H100, 2026-11-26): one 1-warp CTA per
    SM spilling 60 KB per iteration, launched by Triton's loader with 0-160 KB of shared memory, missed L1 on 0 % of
    its reloads with none, 26 % with 47 KB (4 CTAs fit -> 196 KB, 60 KB of L1) and 97.5 % with 8, 40, 49, 64, 100,
    160 KB (28 KB of L1: by occupancy for 8-49 KB, by the preference for 64 and 160 KB, where occupancy alone
    would leave 60 and 92 KB)."""
    if smem_per_cta_bytes > TRITON_PREFER_SHARED_ABOVE_BYTES and hw.smem_carveouts_bytes:
        return hw.smem_carveouts_bytes[-1]
    need = ctas_per_sm * (smem_per_cta_bytes + hw.smem_reserved_per_block_bytes) if smem_per_cta_bytes else 0
    for c in hw.smem_carveouts_bytes:
        if c >= need:
            return c
    return hw.smem_carveouts_bytes[-1] if hw.smem_carveouts_bytes else need


def l1_data_bytes(hw, smem_per_cta_bytes: int, ctas_per_sm: int) -> int:
    """The L1 data cache of an SM running `ctas_per_sm` CTAs of `smem_per_cta_bytes` (0 if unknown)."""
    if not hw.l1_shared_per_sm_bytes:
        return 0
    return max(0, hw.l1_shared_per_sm_bytes - carveout_bytes(hw, smem_per_cta_bytes, ctas_per_sm))


def _overflow(capacity: int | None, footprint: int) -> float:
    if not capacity or footprint <= capacity:
        return 0.0
    return 1.0 - capacity / footprint


@dataclass(frozen=True)
class SpillCurves:
    """Measured (x, fraction) points, x ascending (module doc)."""

    l1_miss: tuple
    dram_write: tuple
    l2_miss: tuple
    source: str

    @staticmethod
    def at(curve: tuple, x: float) -> float:
        """Linear interpolation through (0, 0) and the points; flat past the last."""
        pts = ((0.0, 0.0),) + tuple(curve)
        if x <= 0:
            return 0.0
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            if x <= x1:
                return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
        return pts[-1][1]


def _frac(num: float, den: float) -> float:
    return min(1.0, max(0.0, num / den))


def _spills_point(r: dict, hw) -> tuple | None:
    """A `spills` calibration point's (CTAs per SM, footprint per SM, footprint on the GPU, local store bytes, local
    load bytes, reload bytes that reached the L2); None where it does not spill."""
    frame = (r.get("compiled") or {}).get("local_bytes_per_thread") or 0
    lw, lr = r.get("local_write_bytes") or 0.0, r.get("local_read_bytes") or 0.0
    if frame <= 0 or lw <= 0 or lr <= 0:
        return None
    threads, ctas = 32 * r["num_warps"], r["ctas"]
    per_sm = -(-ctas // hw.num_sms)
    touched = min(frame, lw / (threads * ctas * r["n_iter"]))
    reach = max(0.0, r["l2_read_bytes"] - r.get("global_read_bytes", 0.0))
    return (per_sm, per_sm * threads * touched, min(ctas, per_sm * hw.num_sms) * threads * touched, lw, lr, reach)


def curves_from(points: list, hw) -> SpillCurves | None:
    """The three curves from the calibration's spills points (module doc); None if no point spills."""
    l1, wb, l2 = [], [], []
    for r in points:
        pt = _spills_point(r, hw)
        if pt is None:
            continue
        per_sm, f_sm, f_gpu, lw, lr, reach = pt
        l1_bytes = l1_data_bytes(hw, (r.get("compiled") or {}).get("shared_bytes") or 0, per_sm)
        if l1_bytes:
            l1.append((f_sm / l1_bytes, _frac(reach, lr)))
        wb.append((f_gpu, _frac(r["dram_write_bytes"] - r.get("global_write_bytes", 0.0), lw)))
        if reach > 0.01 * lr:
            l2.append((f_gpu / hw.l2_bytes, _frac(r["dram_read_bytes"] - r.get("global_read_bytes", 0.0), reach)))
    if not wb:
        return None
    return SpillCurves(l1_miss=tuple(sorted(l1)), dram_write=tuple(sorted(wb)), l2_miss=tuple(sorted(l2)),
                       source=f"verification calibrate spills ({len(wb)} points)")


#: a reload point enters the L2-miss curve only where at least this share of its reloads reached the L2
#: (MEMSIM_SPILL_L2CURVE unset or "reach", the default since 2026-11-27; "all": every point; session 12): below it, the reloads that miss L1 are the ones whose lines went
#: furthest, and their L2-miss share is not the reloads' (see `l2_miss_from_reaching`)
L2_CURVE_MIN_REACH = 0.8


def l2_miss_from_reaching(spills: list, spill_sm: list, hw) -> tuple:
    """(x = GPU footprint / L2, fraction of reloads missing the L2) from the microbenchmark points whose reloads
    (nearly) all reach the L2 -- `spills` (`curves_from`'s points) and `spill_sm` (benchmarks/spill_sm_gpu.py: k
    one-warp CTAs on 16-132 SMs, the L1 left beside the carve-out set by dynamic shared memory) with a reload L1-miss
    fraction >= L2_CURVE_MIN_REACH.

    Why (notes/spills.md, session 12): at one footprint the share of L2-reaching reloads that miss the L2 depends on
    how many reach it -- x = 0.66: 0.22 with 99 % of the reloads missing L1 (spill_sm f2976 k4, 8 KB) but 0.45-0.47
    with 19 % (spill_sm f2976 k4 0 KB, spills rows=256 k4); x = 0.50: 0.06-0.07 at m = 0.99, 0.13 at 0.24, 0.46 at
    0.04.  The reloads L1 misses are those whose lines went furthest, the same ones the L2 misses, so a curve
    through the low-m points charges every L2-reaching reload of an m ~ 1 launch the long-distance reloads' miss
    share.  The model's reuse-distance placement already weights each distance by its L1-miss share; the curve it
    reads must be the unconditional one."""
    out = []
    # the spills points (as `curves_from` reads them), keeping only those whose reloads reach the L2
    for r in spills:
        pt = _spills_point(r, hw)
        if pt is None:
            continue
        _, _, f_gpu, _, lr, reach = pt
        if reach >= L2_CURVE_MIN_REACH * lr:
            out.append((f_gpu / hw.l2_bytes, _frac(r["dram_read_bytes"] - r.get("global_read_bytes", 0.0), reach)))
    seen = set()
    for p in spill_sm:
        if (p.get("id"), p.get("time_s")) in seen:
            continue
        seen.add((p.get("id"), p.get("time_s")))
        frame = (p.get("compiled") or {}).get("local_bytes_per_thread") or 0
        st, ld = p.get("local_st_bytes") or 0.0, p.get("local_ld_bytes") or 0.0
        m = p.get("reload_l1_miss_fraction")
        if frame <= 0 or st <= 0 or ld <= 0 or m is None or m < L2_CURVE_MIN_REACH:
            continue
        threads, ctas = 32 * p["num_warps"], p["ctas_per_sm"] * p["sms_used"]
        touched = min(frame, st / (threads * ctas * p["n_iter"]))
        reach = max(0.0, p["l2_read_bytes"] - p["global_read_bytes"])
        if reach <= 0.01 * ld:
            continue
        out.append((ctas * threads * touched / hw.l2_bytes, _frac(p["dram_read_bytes"] - p["global_read_bytes"], reach)))
    return tuple(sorted(out))


_CURVES: dict = {}


def curves_for(hw, cal) -> SpillCurves | None:
    """The curves of `hw`'s calibration file (read once per file), with the write-back x normalised by the
    calibrated dirty capacity; None without a file or spilling points."""
    from .calibration import calibration_path
    p = calibration_path(hw)
    import os
    # the default since 2026-11-27 (with MEMSIM_SPILL_LRU): "all" -> every spilling point, as before
    reach_only = os.environ.get("MEMSIM_SPILL_L2CURVE", "reach") == "reach"
    key = (str(p), p.stat().st_mtime_ns if p.is_file() else None, hw.num_sms, hw.l2_bytes,
           hw.l1_shared_per_sm_bytes, cal.l2_dirty_bytes, reach_only)
    if key in _CURVES:
        return _CURVES[key]
    out = None
    if p.is_file() and cal.l2_dirty_bytes:
        import json
        facts = json.loads(p.read_text()).get("facts") or {}
        pts = facts.get("spills") or []
        c = curves_from(pts, hw)
        if c is not None:
            l2, src = c.l2_miss, c.source
            if reach_only:
                l2 = l2_miss_from_reaching(pts, facts.get("spill_sm") or [], hw)
                src += f"; L2 misses from {len(l2)} points whose reloads reach the L2"
            out = SpillCurves(c.l1_miss, tuple((x / cal.l2_dirty_bytes, y) for x, y in c.dram_write), l2, src)
    _CURVES[key] = out
    return out


def _by_distance(curve: tuple, hist, per_byte_scale: float, weight=None) -> float:
    """Bytes-weighted mean of the curve at x = distance x per_byte_scale over a reuse histogram."""
    num = den = 0.0
    for d, b in hist:
        w = b * (weight(d) if weight else 1.0)
        num += w * SpillCurves.at(curve, d * per_byte_scale)
        den += w
    return num / den if den else 0.0


#: MEMSIM_SPILL_SPREAD=1: the L1 footprint of a grid smaller than a full wave counts the CTAs the block scheduler
#: really puts on an SM -- ceil(CTAs / SMs), capped by the occupancy -- instead of the occupancy's CTAs (notes/spills.md
#: session 13).  Measured: `benchmarks/decode_tail_gpu.py`'s %smid traces (H100, reports/h100-sxm/decode/tail-session11/
#: tail.json) put 128 CTAs on 128 distinct SMs, 256 as 2 on 124 SMs and 1 on 8, 392 as 3 on 128 and 2 on 4; the
#: `spills` curves are read that way (`_spills_point`: ceil(CTAs / SMs) per SM).  On the live records the rule moves 25
#: of the 37 spilling launches placed above ncu's bound on the reload L1-miss fraction inside it, but drops 10 others
#: below theirs; live A-S: l2 median 7.52 -> 5.96 %, time 16.89 -> 18.63 %, gpu_time 13.06 -> 13.68 % (the
#: spilling loops whose reloads now hit L1, as ncu says, run too fast in the model): off by default.
SPREAD_ENV = "MEMSIM_SPILL_SPREAD"


def spread_ctas() -> bool:
    """Whether the L1 footprint counts the grid's CTAs per SM (`SPREAD_ENV`; default off)."""
    import os
    return os.environ.get(SPREAD_ENV) == "1"


def local_memory(hw, cal, *, local_bytes_per_thread: int, threads: int, ctas_per_sm: int, num_ctas: int,
                 smem_per_cta_bytes: int, store_bytes_per_iteration: int | None = None,
                 reuse: dict | None = None, resident_per_sm: int | None = None) -> LocalMemory:
    """Place one launch's local memory (module doc).  `store_bytes_per_iteration`: the tile loop's spill
    stores per thread (kernels.sass); the footprint is the smaller of it and the frame.  `reuse`: the tile
    loop's reuse histograms (kernels.sass local_reuse): where given, each reload and store is placed at its
    own reuse distance x the resident threads (of the SM for L1, of the GPU for L2) instead of the 1/k rule.
    `ctas_per_sm`: the CTAs the occupancy allows (they decide the carve-out); `resident_per_sm`: the CTAs an SM
    really holds, whose slots share its L1 (default min(ctas_per_sm, num_ctas))."""
    if local_bytes_per_thread < 0 or threads <= 0 or ctas_per_sm <= 0 or num_ctas <= 0:
        raise ValueError(f"local_memory: need local_bytes_per_thread >= 0 and positive threads, ctas_per_sm, "
                         f"num_ctas; got {local_bytes_per_thread}, {threads}, {ctas_per_sm}, {num_ctas}")
    touched = local_bytes_per_thread
    if store_bytes_per_iteration:
        touched = min(touched, store_bytes_per_iteration)
    per_cta = touched * threads
    if resident_per_sm is None and spread_ctas():
        resident_per_sm = -(-num_ctas // hw.num_sms)
    on_sm = min(ctas_per_sm, num_ctas) if resident_per_sm is None else max(1, min(resident_per_sm, ctas_per_sm))
    per_sm = on_sm * per_cta
    resident = min(num_ctas, ctas_per_sm * hw.num_sms)
    total = resident * per_cta
    l1 = l1_data_bytes(hw, smem_per_cta_bytes, ctas_per_sm)
    dirty = cal.l2_dirty_bytes if cal.l2_dirty_bytes is not None else hw.l2_effective_bytes
    curves = curves_for(hw, cal)
    if curves is None:
        l1_miss = 1.0 if (l1 and per_sm > l1) else 0.0
        wf, rf = _overflow(dirty, total), _overflow(hw.l2_bytes, total)
    elif reuse and reuse.get("reload") and reuse.get("restore"):
        # each access at its own reuse distance (distinct local bytes per thread since the value was stored), times
        # the threads that interleave with it: the SM's resident threads for L1, the GPU's for L2
        t_sm = on_sm * threads
        t_gpu = resident * threads
        rl, rs = reuse["reload"], reuse["restore"]
        l1_miss = _by_distance(curves.l1_miss, rl, t_sm / l1) if l1 else 0.0
        l1_of = (lambda d: SpillCurves.at(curves.l1_miss, d * t_sm / l1)) if l1 else None
        if reuse.get("reload_pairs"):
            # memsim.spill_reuse (MEMSIM_SPILL_LRU, levels "l2"): each reload at its distance since the store for
            # the L1, since the value's last access for the L2
            num = den = 0.0
            for ds, dl, b in reuse["reload_pairs"]:
                w = b * (l1_of(ds) if l1_of else 1.0)
                num += w * SpillCurves.at(curves.l2_miss, dl * t_gpu / hw.l2_bytes)
                den += w
            rf = num / den if den else 0.0
        else:
            rf = _by_distance(curves.l2_miss, rl, t_gpu / hw.l2_bytes, weight=l1_of)
        wf = _by_distance(curves.dram_write, rs, t_gpu / dirty)
    else:
        # the curves are measured with each value stored and reloaded once per sweep of the footprint; a
        # loop that stores its footprint k times per iteration reuses a value after 1/k of it
        k = max(1.0, store_bytes_per_iteration / touched) if (store_bytes_per_iteration and touched) else 1.0
        l1_miss = SpillCurves.at(curves.l1_miss, per_sm / k / l1) if l1 else 0.0
        wf = SpillCurves.at(curves.dram_write, total / k / dirty)
        rf = SpillCurves.at(curves.l2_miss, total / k / hw.l2_bytes)
    x1 = x2 = 0.0
    if curves is not None and reuse and reuse.get("reload") and reuse.get("restore"):
        x1, x2 = (on_sm * threads / l1 if l1 else 0.0), resident * threads / hw.l2_bytes
    return LocalMemory(footprint_per_sm_bytes=per_sm, footprint_bytes=total, l1_data_bytes=l1,
                       l1_x_per_byte=x1, l2_x_per_byte=x2,
                       l1_miss_fraction=l1_miss, dram_write_fraction=wf,
                       dram_read_fraction=rf if l1_miss > 0 else 0.0,
                       rule=(curves.source + (", SASS reuse distances" if reuse and reuse.get("reload") else ", 1/k reuse"))
                       if curves else "uncalibrated: capacity / footprint")


def _cycles_per_iteration(p: dict) -> float | None:
    t, clk, n = p.get("time_s"), p.get("ncu_sm_clock_Hz"), p.get("n_iter")
    return t * clk / n if t and clk and n else None


def reload_batch_from(points: list, num_sms: int) -> float | None:
    """How many spill reloads a warp waits on together, from the `spill_sm` fact (benchmarks/spill_sm_gpu.py: one
    kernel per frame variant, k one-warp CTAs on every SM, the L1 left beside the carve-out and the footprint per SM
    set so that 0-100 % of the reloads miss L1; all of it resident in the L2).

    A warp issues its reloads in batches and waits for the slowest of each: a batch of b reloads of which each
    misses L1 with probability m waits for an L2 round trip with probability 1 - (1 - m)^b, so the time per
    iteration moves from the all-hit time T0 to the all-miss time T1 by that fraction, not by m.  Per variant,
    T0 = the median cycles per iteration of its points with m < 1 %, T1 of those with m > 95 %; each point in
    between (5 % <= m <= 70 %) gives b = ln(1 - f) / ln(1 - m) with f = (T - T0) / (T1 - T0); the median over the
    points.  Only points with at most 4 warps per SM (the SM's four schedulers each run one warp: the per-iteration
    time does not depend on k) on every SM, with no write-backs (DRAM writes < 10 % of the spill stores) and
    reloads that hit the L2 (DRAM reads beyond the global loads < 5 % of the reloads reaching it).  None without
    such points."""
    import math
    by: dict = {}
    for p in points:
        m, c = p.get("reload_l1_miss_fraction"), _cycles_per_iteration(p)
        st, ld = p.get("local_st_bytes") or 0.0, p.get("local_ld_bytes") or 0.0
        if m is None or c is None or st <= 0 or ld <= 0 or p.get("sms_used") != num_sms:
            continue
        if (p.get("warps_per_sm") or 99) > 4 or (p.get("dram_write_bytes") or 0.0) > 0.1 * st:
            continue
        if m > 0 and max(0.0, (p.get("dram_read_bytes") or 0.0) - (p.get("global_read_bytes") or 0.0)) > 0.05 * m * ld:
            continue
        by.setdefault(p["variant"], []).append((m, c))
    import statistics
    bs = []
    for pts in by.values():
        lo = [c for m, c in pts if m < 0.01]
        hi = [c for m, c in pts if m > 0.95]
        if not lo or not hi:
            continue
        t0, t1 = statistics.median(lo), statistics.median(hi)
        if t1 <= t0:
            continue
        for m, c in pts:
            f = (c - t0) / (t1 - t0)
            if 0.05 <= m <= 0.7 and 0.0 < f < 1.0:
                bs.append(math.log(1 - f) / math.log(1 - m))
    return statistics.median(bs) if bs else None


def batched_miss_fraction(m: float, batch: float | None) -> float:
    """The share of a warp's reload batches that wait for an L1 miss: 1 - (1 - m)^b (`reload_batch_from`); m
    itself without a calibrated batch."""
    if not batch or batch <= 1 or m <= 0:
        return m
    return 1.0 - (1.0 - min(1.0, m)) ** batch


def spill_store_rate_from(points: list, num_sms: int) -> float | None:
    """The chip's spill-store rate: the fastest the L2 took spill stores in the `spill_sm` fact's points on every
    SM (H100: 2.90 TB/s with 16 one-warp CTAs per SM; 2.3-2.65 with 8, whether the reloads hit L1 or not).  The
    rate of few warps per SM is their own latency, which the replay charges; this is the ceiling above it.  None
    without such points."""
    rates = [p["local_st_bytes"] / p["time_s"] for p in points
             if p.get("sms_used") == num_sms and p.get("time_s") and p.get("local_st_bytes")]
    return max(rates) if rates else None
