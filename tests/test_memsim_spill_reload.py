"""The spill_sm reload plan (benchmarks/spill_sm_gpu.py --plan reload, H100 80GB HBM3, 2026-11-26 16:45 UTC) and the two
readings of it in memsim.local_memory (notes/spills.md, session 10).

`_mb_spill_sm` with k one-warp CTAs on every SM and 8 / 47 KB of dynamic shared memory (28 / 60 KB of L1 beside the
carve-out): 0-99 % of the reloads miss L1 while the footprint stays in the L2.  These tests read the committed run
files, not a GPU.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from memsim.local_memory import batched_miss_fraction, reload_batch_from, spill_store_rate_from

ROOT = Path(__file__).resolve().parents[1]
CAL = ROOT / "verification/data/nvidia-h100-80gb-hbm3/calibration"
RUNS = ("run-2026-11-26T1421-spill_sm.json", "run-2026-11-26T1505-spill_sm_carveout.json",
        "run-2026-11-26T1645-spill_sm_reload.json")


@pytest.fixture(scope="module")
def points():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import spill_sm_gpu as B
    out = []
    for r in RUNS:
        out += [{**p, "run": r} for p in B.fact_points(json.loads((CAL / r).read_text())["points"])]
    return out


def _pt(variant, m, cycles, *, warps=1, sms=132, dram_w=0.0):
    return {"variant": variant, "reload_l1_miss_fraction": m, "time_s": cycles * 1e-9, "ncu_sm_clock_Hz": 1e9,
            "n_iter": 1, "local_st_bytes": 1e9, "local_ld_bytes": 1e9, "sms_used": sms, "warps_per_sm": warps,
            "dram_write_bytes": dram_w, "dram_read_bytes": 0.0, "global_read_bytes": 0.0}


def test_batch_from_synthetic_points():
    """A kernel whose warps wait on batches of 4 reloads: T = T0 + (T1 - T0) (1 - (1 - m)^4)."""
    t0, t1, b = 1000.0, 2000.0, 4.0
    pts = [_pt("v", 0.0, t0), _pt("v", 1.0, t1)] + [_pt("v", m, t0 + (t1 - t0) * (1 - (1 - m) ** b))
                                                    for m in (0.1, 0.3, 0.6)]
    assert reload_batch_from(pts, 132) == pytest.approx(b)
    # points with more than 4 warps per SM, on fewer SMs, or with write-backs do not count
    noisy = pts + [_pt("v", 0.3, 1990.0, warps=8), _pt("v", 0.3, 1990.0, sms=16),
                   _pt("v", 0.3, 1990.0, dram_w=0.5e9)]
    assert reload_batch_from(noisy, 132) == pytest.approx(b)
    # linear in m (b = 1) is read as such
    lin = [_pt("w", 0.0, t0), _pt("w", 1.0, t1), _pt("w", 0.4, t0 + 0.4 * (t1 - t0))]
    assert reload_batch_from(lin, 132) == pytest.approx(1.0)
    assert reload_batch_from([_pt("v", 0.3, 1500.0)], 132) is None  # no all-hit / all-miss reference
    assert batched_miss_fraction(0.3, None) == 0.3
    assert batched_miss_fraction(0.3, 4.0) == pytest.approx(1 - 0.7 ** 4)


def test_reload_plan_ran_the_warps_and_the_l1_it_claims(points):
    """Every reload-plan point got k CTAs on every SM, and the L1 it was given decides its misses: without shared
    memory (256 KB of L1) no point misses; with 8 KB (28 KB of L1) the footprint of k x 10 KB (f576) crosses it."""
    rows = {p["id"]: p for p in points if p["run"] == RUNS[2]}
    assert len(rows) == 18
    for p in rows.values():
        o = p["observed"]
        assert o["sms_working"] == 132 and o["ctas_per_sm_min"] == o["ctas_per_sm_max"] == p["ctas_per_sm"], p["id"]
        if p["dynamic_smem"] == 0:
            assert p["reload_l1_miss_fraction"] < 0.03, p["id"]
    ms = [rows[f"f576_k{k}_smem8k"]["reload_l1_miss_fraction"] for k in (1, 2, 3, 4, 6, 8)]
    assert ms == sorted(ms) and ms[0] < 0.05 and ms[-1] > 0.95, ms


def test_reloads_missing_l1_cost_more_than_their_share(points):
    """The measured time between the all-hit and the all-miss time of the same variant moves by 1 - (1 - m)^b of
    the way, b = `reload_batch_from` of the fact (H100: about 3.75), and not by m (the linear mix memsim.costs used
    through session 9): for each point in between, the batch rule is closer than the linear one."""
    b = reload_batch_from(points, 132)
    assert b is not None and 2.0 < b < 8.0, b
    by = {}
    for p in points:
        if p["sms_used"] == 132 and p["warps_per_sm"] <= 4 and p["dram_write_bytes"] < 0.1 * p["local_st_bytes"]:
            by.setdefault(p["variant"], []).append(p)
    checked = 0
    for v, ps in by.items():
        cyc = [(p["reload_l1_miss_fraction"], p["time_s"] * p["ncu_sm_clock_Hz"] / p["n_iter"], p["id"]) for p in ps]
        lo = sorted(c for m, c, _ in cyc if m < 0.01)
        hi = sorted(c for m, c, _ in cyc if m > 0.95)
        if not lo or not hi:
            continue
        t0, t1 = lo[len(lo) // 2], hi[len(hi) // 2]
        for m, c, pid in cyc:
            if 0.05 <= m <= 0.7:
                f = (c - t0) / (t1 - t0)
                assert abs(batched_miss_fraction(m, b) - f) < abs(m - f), (v, pid, m, f)
                checked += 1
    assert checked >= 4


def test_chip_spill_store_rate(points):
    """The fastest spill stores on every SM: 2.9 TB/s (16 one-warp CTAs per SM); at 6-8 warps per SM the stores
    reach 2.1-2.65 TB/s whether the reloads hit L1 or not (reload plan, f576 at 8 KB of shared memory: 99 % miss,
    2.60 TB/s) -- the 1.59 TB/s of the calibration's `spills` points is a point with write-backs."""
    rate = spill_store_rate_from(points, 132)
    assert 2.7e12 < rate < 3.1e12, rate
    k8 = {p["id"]: p for p in points if p["run"] == RUNS[2]}
    miss, hit = k8["f576_k8_smem8k"], k8["f576_k8_smem0k"]
    assert miss["reload_l1_miss_fraction"] > 0.95 and hit["reload_l1_miss_fraction"] < 0.05
    for p in (miss, hit):
        assert p["local_st_bytes"] / p["time_s"] > 2.2e12, p["id"]
    assert not math.isnan(rate)


#: live launches whose spill stores are mostly written back (DRAM writes / spill stores 0.65-0.94) while ncu's DRAM reads
#: say most of their reloads still hit the L2 (notes/spills.md, session 10: 18 of the 59 live launches with >= 100 MB
#: of spill stores and reloads reaching the L2 are placed more than 0.1 above that bound)
PLACED_TOO_FAR = (
    ("r2611261_005", "flash1_fwd"), ("r7261126_012", "hopper_bwd_dkdvdq"), ("r26112614_003", "hopper_bwd_dkdv_ws"),
    ("r26112_012_", "flash2_bwd_dkdv"), ("r11262_002", "flash2_bwd_dkdv"), ("r5126_000", "naive_bwd_dp"),
)


@pytest.mark.xfail(strict=True, reason="memsim.local_memory's L2-miss curve for reloads (from the `spills` points, "
                                       "which store and reload every value once per sweep of the footprint) sends "
                                       "0.32-0.99 of these launches' L2 reloads to DRAM where ncu saw at most "
                                       "0.10-0.34: their stores are written back but the lines stay in the L2 "
                                       "(notes/spills.md, session 10); a costlier DRAM-missing reload (the "
                                       "microbenchmark's write-back points imply ~2200 cycles) multiplies this error")
def test_reload_dram_fraction_within_the_measured_bound():
    import glob
    import memsim
    from verification.suite import case_from_record
    hw = memsim.load_hardware("h100-sxm")
    bad = []
    for pat, launch in PLACED_TOO_FAR:
        f = glob.glob(str(ROOT / "verification/data/nvidia-h100-80gb-hbm3/random/*" / f"{pat}*.json"))
        assert len(f) == 1, (pat, f)
        rec = json.loads(Path(f[0]).read_text())
        case = case_from_record(rec)
        k = memsim.simulate(case.problem, case.schedule, hw).kernel(launch)
        m = next(x for x in rec["kernels"] if x["name"] == launch)["metrics"]
        gld = (m.get("l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum", 0.0)
               + m.get("l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld.sum", 0.0))
        reach = m["lts__t_sectors_srcunit_tex_op_read.sum"] * 32 - gld
        bound = m["dram__bytes_read.sum"] / reach  # every DRAM read counted as a reload miss: an upper bound
        model = k["spill_dram_read_bytes"] / max(1, k["spill_l2_read_bytes"])
        if model > bound + 0.1:
            bad.append(f"{pat} {launch}: model {model:.2f} > measured <= {bound:.2f}")
    assert not bad, "\n".join(bad)


def test_reloads_of_written_back_lines_wait():
    """spill_sm writeback plan (17:31 UTC): f2976 with 8 KB of shared memory, k = 1 / 2 / 3 one-warp CTAs per SM -- every
    reload misses L1 and (almost) every one hits the L2, and up to 3 warps per SM each run the same replay per
    iteration (one per scheduler).  Once the footprint passes the dirty capacity (k = 3: 38 MB, half the stores written
    back) an iteration takes 1.45x as long as at k = 1, though the reloads still hit the L2: a reload of a line being
    written back waits about as long as a DRAM miss (notes/spills.md, session 10, finding 5).  Not in the model."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import spill_sm_gpu as B
    rows = {r["id"]: r for r in B.summarise(json.loads((CAL / "run-2026-11-26T1731-spill_sm_writeback.json")
                                                       .read_text())["points"])}

    def cyc(r):
        return r["time_s"] * r["sm_clock_Hz"] / r["n_iter"]
    base = rows["f2976_k1_smem8k"]
    for k, wb_lo, wb_hi, slower_lo, slower_hi in ((2, 0.1, 0.25, 1.0, 1.12), (3, 0.4, 0.7, 1.3, 1.7)):
        r = rows[f"f2976_k{k}_smem8k"]
        reach = r["reload_l1_miss_fraction"] * r["local_ld_bytes"]
        l2_miss = max(0.0, r["dram_read_bytes"] - r["global_read_bytes"]) / reach
        wb = r["dram_write_bytes"] / r["local_st_bytes"]
        assert r["reload_l1_miss_fraction"] > 0.95 and l2_miss < 0.1, (k, l2_miss)
        assert wb_lo < wb < wb_hi, (k, wb)
        assert slower_lo < cyc(r) / cyc(base) < slower_hi, (k, cyc(r) / cyc(base))
