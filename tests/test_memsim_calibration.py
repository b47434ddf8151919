"""memsim.calibration: the rules that turn the committed H100 microbenchmark curves into model figures."""
from __future__ import annotations

import json

import pytest

import memsim
from memsim import calibration as C

HW = memsim.load_hardware("h100-sxm")
RAW = json.loads(C.calibration_path(HW).read_text()) if C.calibration_path(HW).is_file() else None
pytestmark = pytest.mark.skipif(RAW is None, reason="no H100 calibration file committed")


def test_derived_figures_follow_the_curves():
    cal = C.load_calibration(HW)
    f = RAW["facts"]
    # dots: the best Triton GEMM rate per dtype, per SM
    best16 = max(r["flops_per_s"] for r in f["matmul"] if r["path"] == "triton_fp16")
    assert cal.dot_flops_per_sm_s["fp16"] * HW.num_sms == pytest.approx(best16)
    ieee = max(r["flops_per_s"] for r in f["matmul"] if r["path"] == "triton_fp32_ieee")
    assert cal.dot_flops_per_sm_s["fp32"] * HW.num_sms == pytest.approx(ieee)
    # the L2 keeps W - (DRAM writes) dirty at the large W points
    big = [(r["dirty_bytes"], r["dram_write_bytes"]) for r in f["l2_writeback"] if r["dirty_bytes"] >= 64 << 20]
    for w, d in big:
        assert abs((w - d) - cal.l2_dirty_bytes) < 0.03 * cal.l2_dirty_bytes, (w, d, cal.l2_dirty_bytes)
    assert cal.background_clean_fraction == 0.0
    # merging: lockstep readers cost 1/G up to the group size
    assert cal.merge_group_sms == 4
    assert 1e-6 < cal.l2_merge_window_s < 30e-6
    assert cal.dependent_Bps > 0 and 0 <= cal.l2_roundtrip_s < 1e-6
    assert cal.host_pass_s and set(cal.host_pass_s) >= {("flash2", "fwd"), ("flash2", "bwd")}


def test_what_if_copies_scale_rates_and_capacities():
    cal = C.load_calibration(HW)
    fast = C.load_calibration(HW.with_overrides(dram_bw_Bps=2 * HW.dram_bw_Bps, l2_bytes=HW.l2_bytes // 2))
    assert fast.dram_Bps == pytest.approx(2 * cal.dram_Bps)
    assert fast.l2_dirty_bytes == pytest.approx(cal.l2_dirty_bytes / 2, rel=1e-6)
    assert fast.l2_roundtrip_s == cal.l2_roundtrip_s  # latencies stay as measured


def test_uncalibrated_hardware_says_so():
    other = HW.with_overrides(name="no-such-calibration")
    assert C.load_calibration(other).source.startswith("datasheet")
