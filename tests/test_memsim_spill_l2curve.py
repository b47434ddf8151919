"""The reload L2-miss curve from the microbenchmark points whose reloads reach the L2 (notes/spills.md session 12;
MEMSIM_SPILL_L2CURVE=reach, the default since 2026-11-27; "all" turns it off)."""
import json

import pytest

import memsim
from memsim.calibration import calibration_path, load_calibration
from memsim.local_memory import (L2_CURVE_MIN_REACH, SpillCurves, _CURVES, curves_for, l2_miss_from_reaching)


@pytest.fixture(scope="module")
def h100():
    hw = memsim.load_hardware("h100-sxm")
    facts = json.loads(calibration_path(hw).read_text())["facts"]
    return hw, load_calibration(hw), facts


def test_the_all_points_curve_is_unchanged_with_the_switch_off(h100, monkeypatch):
    hw, cal, _ = h100
    monkeypatch.setenv("MEMSIM_SPILL_L2CURVE", "all")
    _CURVES.clear()
    c = curves_for(hw, cal)
    assert "reach the L2" not in c.source
    # the `spills` points at x = 0.66-0.72 with 19-21 % of the reloads missing L1
    assert SpillCurves.at(c.l2_miss, 0.66) == pytest.approx(0.47, abs=0.02)


def test_reloads_reaching_the_l2_miss_it_less_than_the_few_that_l1_lets_through(h100):
    """At one footprint, the L2-miss share of the reloads that reach the L2 falls as more of them reach it: the
    reloads L1 misses are those whose lines went furthest (spill_sm, same kernel f2976, 4 one-warp CTAs per SM on
    132 SMs, x = 0.66: 0.45 with 0 KB of shared memory (19 % miss L1), 0.22 with 8 KB (99 %))."""
    hw, _, facts = h100
    pts = {(p["id"], p.get("run", "")[15:19]): p for p in facts["spill_sm"]}
    lo, hi = pts[("f2976_k4_smem0k", "2007")], pts[("f2976_k4_smem8k", "2007")]

    def d(p):
        return (p["dram_read_bytes"] - p["global_read_bytes"]) / (p["l2_read_bytes"] - p["global_read_bytes"])
    assert lo["reload_l1_miss_fraction"] < 0.25 < L2_CURVE_MIN_REACH < hi["reload_l1_miss_fraction"]
    assert d(lo) > 0.4 and d(hi) < 0.25
    curve = l2_miss_from_reaching(facts["spills"], facts["spill_sm"], hw)
    # only points whose reloads reach the L2; the curve at x = 0.5 is the m ~ 1 points' 0.06-0.07, not 0.2
    assert len(curve) > 20
    assert SpillCurves.at(curve, 0.50) < 0.1
    assert SpillCurves.at(curve, 1.4) > 0.95


def test_the_switch_puts_the_curve_in_the_placement(h100, monkeypatch):
    hw, cal, _ = h100
    monkeypatch.setenv("MEMSIM_SPILL_L2CURVE", "reach")
    c = curves_for(hw, cal)
    assert "reach the L2" in c.source
    assert SpillCurves.at(c.l2_miss, 0.5) < 0.1
    monkeypatch.delenv("MEMSIM_SPILL_L2CURVE")  # the default since 2026-11-27
    assert "reach the L2" in curves_for(hw, cal).source
    monkeypatch.setenv("MEMSIM_SPILL_L2CURVE", "all")
    assert "reach the L2" not in curves_for(hw, cal).source
