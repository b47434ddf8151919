"""The figures `memsim.warp_issue.replay` needs, from microbenchmarks (never from attention cases).

The `issue_latency` points (benchmarks/issue_latency_gpu.py) each time one chain loop and carry its SASS loop
body (control bits included) and iterations per trip.  One figure per point, each the value that makes the
replay of that point's body take the measured cycles (bisection: the replay is monotone in each figure):

====================  ==========================================================  ===========================
figure                point                                                        what it isolates
====================  ==========================================================  ===========================
MUFU release          ``mufu``, 1 chain, 1 warp, 1 CTA per SM                       exp2 -> dependent FMUL
SFU issue cycles      ``mufu``, 4 chains, 4 warps, 4 CTAs per SM (16 warps)         the SFU's throughput
SHFL release          ``shfl`` (1 warp, 1 CTA per SM)                               the warp butterfly
LDS release           ``smem`` (4 warps, 1 CTA per SM)                              STS / BAR / LDS across warps
====================  ==========================================================  ===========================

LDSM, LDL (an L1 hit) and LDC take the LDS figure, S2R the SHFL one (same MIO queue; not isolated: said so in
`IssueLatencies.source`).  The tensor pipes come from the `dot_chain` points (register-resident chains, no
memory in the loop): mma.sync's per-scheduler rate = the best ``mma`` point's FLOP/s per SM / 4; the warpgroup
rate = the best ``wgmma`` point's.  The remaining points (other chain counts and warps, the ``softmax`` mix)
are not used: `check` replays them as the mechanism's test.
"""
from __future__ import annotations

import statistics

from .warp_issue import Instr, IssueLatencies, replay

_FIT = (  # (figure, point selector) in the order they are fitted (later ones use the earlier)
    ("MUFU", lambda p: p["kind"] == "mufu" and p["constexprs"].get("CHAINS") == 1 and p["num_warps"] == 1
     and p["ctas_per_sm"] == 1),
    ("mufu_cycles", lambda p: p["kind"] == "mufu" and p["constexprs"].get("CHAINS") == 4 and p["num_warps"] == 4
     and p["ctas_per_sm"] == 4),
    ("SHFL", lambda p: p["kind"] == "shfl" and p["num_warps"] == 1 and p["ctas_per_sm"] == 1),
    ("LDS", lambda p: p["kind"] == "smem" and p["num_warps"] == 4 and p["ctas_per_sm"] == 1),
)


def body_of(point: dict) -> list[Instr]:
    return [Instr.from_list(x) for x in point["body"]]


def measured_cycles(point: dict, clock_Hz: float) -> float:
    """Cycles per loop trip the card took: seconds per iteration x iterations per trip x clock."""
    return point["s_per_iter"] * point.get("iterations_per_trip", 1) * clock_Hz


def replay_point(point: dict, lat: IssueLatencies) -> float:
    return replay(body_of(point), warps_per_cta=point["num_warps"], ctas=point["ctas_per_sm"], lat=lat)


def _with(lat: IssueLatencies, name: str, value: float) -> IssueLatencies:
    from dataclasses import replace
    if name == "mufu_cycles":
        return replace(lat, mufu_cycles=value)
    cyc = dict(lat.cycles)
    cyc[name] = value
    if name == "LDS":
        cyc.update(LDSM=value, LDL=value, LDC=value)
    if name == "SHFL":
        cyc["S2R"] = value
    return replace(lat, cycles=cyc)


def _bisect(point, lat, name, target, lo=0.0, hi=400.0, steps=30) -> float:
    """The figure in [lo, hi] whose replay of `point` takes `target` cycles (clamped to the bounds)."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if replay_point(point, _with(lat, name, mid)) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _dot_of(r: dict) -> tuple:
    return (int(r["block_m"]), int(r["block_n"]), int(r["block_k"]), int(r["num_warps"]), int(r["ctas_per_sm"]))


def dot_chain_clock_Hz(dot_clock_points: list | None, dot: tuple, kind: str) -> float | None:
    """The SM clock ncu measured while dot chain `dot` (block_m, block_n, block_k, num_warps, ctas_per_sm) ran:
    the median over its `dot_clock` points (benchmarks/tile_loop_gpu.py --dot-clock), else over the points of
    its kind ("mma" / "wgmma"); None without any.  H100, 2026-11-26: 1.81-1.83 GHz for the fp16 chains, 1.99
    for the FFMA chain -- tensor-core work runs the card below the clock the calibrate plan's points saw."""
    from .calibration import dot_kind
    same, kin = [], []
    for p in dot_clock_points or []:
        if not p.get("sm_clock_Hz") or not p.get("dot"):
            continue
        bm, bn, bk, w, c, dt = p["dot"][:6]
        if (int(bm), int(bn), int(bk), int(w), int(c)) == tuple(dot):
            same.append(float(p["sm_clock_Hz"]))
        if dot_kind(dt, int(bm), int(w)) == kind:
            kin.append(float(p["sm_clock_Hz"]))
    pick = same or kin
    return statistics.median(pick) if pick else None


def tensor_rates(dot_chain_points: list, clock_Hz: float, dot_clock_points: list | None = None) -> tuple[float, float]:
    """(mma.sync FLOPs per cycle per scheduler, warpgroup-MMA FLOPs per cycle per SM) from the best
    register-resident fp16 dot-chain points of each kind, per cycle of the clock that chain ran at
    (`dot_chain_clock_Hz`; `clock_Hz` where it was not measured)."""
    from .calibration import dot_kind
    best = {"mma": (0.0, None), "wgmma": (0.0, None)}
    for r in dot_chain_points or []:
        if r.get("error") or r.get("spills") or r.get("operand_b") == "memory" or not r.get("flops_per_sm_s"):
            continue
        k = dot_kind(r.get("dtype", "float16"), r["block_m"], int(r["num_warps"]))
        if k in best and float(r["flops_per_sm_s"]) > best[k][0]:
            best[k] = (float(r["flops_per_sm_s"]), _dot_of(r))
    if not best["mma"][0] or not best["wgmma"][0]:
        raise ValueError("issue_fit: the dot_chain fact needs register-resident mma and wgmma points")
    clk = {k: dot_chain_clock_Hz(dot_clock_points, dot, k) or clock_Hz for k, (_, dot) in best.items()}
    return best["mma"][0] / 4 / clk["mma"], best["wgmma"][0] / clk["wgmma"]


def fit(points: list, dot_chain_points: list, clock_Hz: float, dot_clock_points: list | None = None) -> IssueLatencies:
    """IssueLatencies from the microbenchmarks (see the module doc)."""
    hmma, hgmma = tensor_rates(dot_chain_points, clock_Hz, dot_clock_points)
    lat = IssueLatencies(cycles={c: 0.0 for c in ("MUFU", "SHFL", "LDS", "LDSM", "LDL", "S2R", "LDC", "BAR")},
                         hmma_flops_per_cycle=hmma, hgmma_flops_per_cycle=hgmma, mufu_cycles=1.0)
    used = []
    for name, sel in _FIT:
        pts = [p for p in points if not p.get("error") and p.get("body") and sel(p)]
        if not pts:
            raise ValueError(f"issue_fit: no issue_latency point isolates {name}")
        p = pts[0]
        hi = 64.0 if name == "mufu_cycles" else 400.0
        lat = _with(lat, name, _bisect(p, lat, name, measured_cycles(p, clock_Hz), hi=hi))
        used.append(f"{name} from {p['kind']} w{p['num_warps']} c{p['ctas_per_sm']}")
    from dataclasses import replace
    src = ("issue_latency microbenchmark (" + "; ".join(used) + "); LDSM, LDL, LDC = LDS and S2R = SHFL (assumed, "
           f"not isolated); tensor pipes from the best dot_chain points (mma {hmma:.0f} FLOP/cycle per scheduler, "
           f"wgmma {hgmma:.0f} per SM, per cycle of the chains' own clock where dot_clock measured it); "
           f"clock {clock_Hz / 1e9:.3f} GHz")
    return replace(lat, source=src)


def check(points: list, lat: IssueLatencies, clock_Hz: float) -> list[dict]:
    """Replay every point: [{kind, warps, ctas, measured, replayed cycles per trip, error}] (the fitted points
    included, marked)."""
    fitted = {id(p) for _, sel in _FIT for p in points[:] if p.get("body") and sel(p)}
    rows = []
    for p in points:
        if p.get("error") or not p.get("body"):
            continue
        m, r = measured_cycles(p, clock_Hz), replay_point(p, lat)
        rows.append({"kind": p["kind"], "constexprs": p.get("constexprs"), "num_warps": p["num_warps"],
                     "ctas_per_sm": p["ctas_per_sm"], "measured_cycles": m, "replayed_cycles": r,
                     "error": r / m - 1.0, "fitted": id(p) in fitted})
    return rows


# --- global-load latency -------------------------------------------------------------------------------------------
def chase_slope_cycles(points: list, where: str, ctas_per_sm: int = 0) -> float | None:
    """SM cycles per dependent load of the `load_latency` chase at `where` (benchmarks/load_latency_gpu.py): the
    slope between the two chain lengths (drops the loop's entry and the first round of the L1 ring)."""
    by = {int(p["n_dep"]): float(p["cycles_per_load_median"]) for p in points
          if p.get("kind") == "load_latency" and p.get("where") == where and p.get("ctas_per_sm") == ctas_per_sm
          and p.get("cycles_per_load_median")}
    if len(by) < 2:
        return None
    lo, hi = min(by), max(by)
    return (by[hi] * hi - by[lo] * lo) / (hi - lo)


def load_latency_from(points: list, lat: IssueLatencies) -> IssueLatencies:
    """`lat` with the L2-hit and DRAM-miss latencies of a register load: each the release that makes the replay of
    the chase loop (one warp, one CTA; the points' ``body`` and ``loads_per_trip``, ptxas unrolls it) take the
    measured cycles per load.  ``l2``: a warm 16 MB ring of random lines; ``dram_seq``: fresh lines streamed after
    an L2 flush (kernels stream rows; ``dram_rand``, random lines over 1 GB, took 1-2 % longer on the H100)."""
    from dataclasses import replace
    body = next((p for p in points if p.get("kind") == "load_latency" and p.get("body")), None)
    if body is None:
        raise ValueError("issue_fit: the load_latency fact needs the chase loop's SASS body (merge the run with "
                         "benchmarks/load_latency_gpu.py --merge)")
    loop, per_trip = body_of(body), int(body["loads_per_trip"])
    out = {}
    for where, name in (("l2", "load_l2_cycles"), ("dram_seq", "load_dram_cycles")):
        slope = chase_slope_cycles(points, where)
        if slope is None:
            raise ValueError(f"issue_fit: the load_latency fact has no single-CTA {where} points at two lengths")
        lo, hi = 0.0, 4000.0
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            if replay(loop, warps_per_cta=1, ctas=1, lat=replace(lat, load_cycles=mid)) / per_trip < slope:
                lo = mid
            else:
                hi = mid
        out[name] = 0.5 * (lo + hi)
    src = (f"{lat.source}; register loads: L2 hit {out['load_l2_cycles']:.0f}, DRAM miss "
           f"{out['load_dram_cycles']:.0f} cycles (load_latency pointer chase, replayed)")
    return replace(lat, source=src, **out)


# --- the SM's intake of asynchronous copies ---------------------------------------------------------------------------
def _fill_fit_point(p: dict) -> bool:
    """The `sm_fill` points the rate is fitted on: one 4-warp CTA on each of 16 SMs (the L2 nearly idle, so only
    the SM limits), two stages (each trip waits for its whole group: the group's landing is the trip)."""
    return (p.get("kind") == "sm_fill" and p.get("body") and p["ctas"] == p["distinct_sms"] <= 16
            and p["num_stages"] == 2 and p["num_warps"] == 4)


def fill_rate_of(point: dict, lat: IssueLatencies) -> float:
    """The fill rate (bytes per cycle) at which the replay of `point`'s loop (copies at the L2 latency) takes its
    measured cycles per trip; `inf` where the replay without any fill limit is already as slow."""
    from dataclasses import replace
    body, warps = body_of(point), point["num_warps"]
    at = lat.at_load_latency("l2")
    target = point["cycles_per_trip"]
    if replay(body, warps_per_cta=warps, ctas=1, lat=replace(at, fill_bytes_per_cycle=0.0)) >= target:
        return float("inf")
    lo, hi = 1.0, 4096.0
    for _ in range(40):  # the replay slows as the rate falls: bisect on a log scale
        mid = (lo * hi) ** 0.5
        if replay(body, warps_per_cta=warps, ctas=1, lat=replace(at, fill_bytes_per_cycle=mid)) > target:
            lo = mid
        else:
            hi = mid
    return (lo * hi) ** 0.5


def sm_fill_from(points: list, lat: IssueLatencies) -> IssueLatencies:
    """`lat` with `fill_bytes_per_cycle`: the median over the fit points (`_fill_fit_point`: 2-64 KB groups) of the
    rate each needs (`fill_rate_of`).  The other points -- three stages, 1 and 8 warps -- are the check
    (tests/test_memsim_sm_fill.py); grids over every SM also meet the L2's own rate (the engine's link)."""
    from dataclasses import replace
    fit = [p for p in points if _fill_fit_point(p)]
    if len(fit) < 3:
        raise ValueError(f"issue_fit: the sm_fill fact needs >= 3 two-stage 4-warp points on <= 16 SMs with their "
                         f"loop bodies (benchmarks/sm_fill_gpu.py --merge), found {len(fit)}")
    rates = sorted(fill_rate_of(p, lat) for p in fit)
    rate = statistics.median(rates)
    src = (f"{lat.source}; copy fill {rate:.1f} B/cycle per SM (sm_fill, median of {len(fit)} points, "
           f"{rates[0]:.0f}-{rates[-1]:.0f})")
    return replace(lat, fill_bytes_per_cycle=rate, source=src)


# --- instruction fetch ---------------------------------------------------------------------------------------------
def icache_curve_from(points: list, clock_Hz: float) -> tuple:
    """((code bytes, cycles per instruction), ...) by rising code size, from the `icache` points with one warp
    per SM (benchmarks/icache_gpu.py: a loop of K independent FFMAs, 4 KB - 512 KB of code): below the caches'
    capacity one instruction per cycle (the replay), above it the fetch rate (H100: 2.8 cycles per 16-byte
    instruction at 64-128 KB, 5.9 at 256-512 KB).  Four warps of one CTA take the same time as one (they share
    the fetches)."""
    rows = sorted((int(p["code_bytes"]), measured_cycles(p, clock_Hz) / (p["code_bytes"] / 16))
                  for p in points if not p.get("error") and p.get("code_bytes") and p["num_warps"] == 1
                  and p["ctas_per_sm"] == 1)
    if len(rows) < 2:
        raise ValueError("issue_fit: the icache fact needs one-warp points of at least two code sizes")
    return tuple(rows)


def icache_loop_curve_from(icache_points: list, fetch_points: list, clock_Hz: float) -> tuple:
    """The fetch curve of a LOOP body: `icache_curve_from`'s points plus the `spill_fetch` loop points without
    waits, one warp a CTA, one CTA per SM (benchmarks/spill_fetch_gpu.py: the same K-FFMA loop at 8 and 192 KB of
    code; cycles per instruction = seconds x clock / (iterations x loop instructions)).  A 192 KB loop fetched at
    5.96 cycles per instruction (H100 80GB HBM3, 2026-11-27 06:16 UTC) -- the 256 KB rate -- where straight-line
    code of that size ran at the 128 KB rate (set E's naive_qk): the straight code keeps `icache_curve`."""
    rows = dict(icache_curve_from(icache_points, clock_Hz))
    for p in fetch_points:
        if p.get("wait") or p.get("num_warps") != 1 or not p.get("time_s") or not p.get("loop_instructions"):
            continue
        rows[int(p["code_bytes"])] = p["time_s"] * clock_Hz / (p["n_iter"] * p["loop_instructions"])
    return tuple(sorted(rows.items()))


def fetch_cycles(curve, instructions: int) -> float:
    """Cycles the SM needs to fetch one pass over `instructions` SASS instructions (16 bytes each) when they run
    as one loop body or straight-line block: instructions x the cycles per instruction of the largest measured
    code size not above this one (a cache level holds at least the largest size that still ran at its rate;
    set E's naive_qk with 192 KB of straight-line code ran at the 128 KB rate), clamped to the smallest point.
    0 without a curve."""
    if not curve or instructions <= 0:
        return 0.0
    size = 16.0 * instructions
    cpi = curve[0][1]
    for s0, c0 in curve:
        if s0 <= size:
            cpi = c0
    return instructions * cpi
