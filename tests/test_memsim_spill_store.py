"""The spill_sm microbenchmark (benchmarks/spill_sm_gpu.py, H100 80GB HBM3, 2026-11-26 14:21 UTC) against the model's
spill-store figure (memsim/MODEL.md "spill-store rate"; notes/spills.md).

`_mb_spill_sm` runs k one-warp CTAs on every SM (or on 16 SMs only, the other CTAs exiting at once), so the same
warps per SM run with and without chip-wide contention.  These tests read the committed run file, not a GPU.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import memsim
from memsim.calibration import load_calibration

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "verification/data/nvidia-h100-80gb-hbm3/calibration/run-2026-11-26T1421-spill_sm.json"


@pytest.fixture(scope="module")
def rows():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import spill_sm_gpu as B
    return B.summarise(json.loads(RUN.read_text())["points"])


def test_every_point_ran_the_warps_it_claims(rows):
    """The block scheduler gave every working SM exactly k CTAs (the kernel records %smid per CTA): the per-SM
    figures below are per k warps, not an average over uneven SMs."""
    assert len(rows) >= 20
    for r in rows:
        o = r["observed"]
        assert o["sms_working"] == r["sms_used"], r["id"]
        assert o["ctas_per_sm_min"] == o["ctas_per_sm_max"] == r["ctas_per_sm"], (r["id"], o)


def test_few_warps_per_sm_do_not_contend_between_sms(rows):
    """Up to 4 warps per SM with reloads in L1, an SM stores as fast with every SM busy as with 16: the rate is
    each warp's own (latency), not the chip's."""
    by = {(r["variant"], r["ctas_per_sm"], r["sms_used"]): r for r in rows}
    for v in ("f576", "f1008"):
        alone, busy = by[(v, 4, 16)], by[(v, 4, 132)]
        assert busy["reload_l2_fraction"] < 0.01 and alone["reload_l2_fraction"] < 0.01
        assert busy["store_Bps_per_sm"] == pytest.approx(alone["store_Bps_per_sm"], rel=0.05), v


@pytest.mark.xfail(strict=True, reason="memsim's Calibration.spill_store_l2_Bps (1.59 TB/s, the `spills` 4-warp point "
                                       "with 61 % write-backs) is not the chip's limit: spill_sm stored 2.65-2.90 TB/s "
                                       "with 8-16 warps per SM; raising it alone made the live sets' medians worse "
                                       "(notes/spills.md), so the model keeps it for now")
def test_calibrated_spill_store_rate_is_the_chips_limit(rows):
    cal = load_calibration(memsim.load_hardware("h100-sxm"))
    fastest = max(r["store_Bps"] for r in rows if r["sms_used"] == 132)
    assert fastest <= 1.1 * cal.spill_store_l2_Bps, (fastest, cal.spill_store_l2_Bps)
