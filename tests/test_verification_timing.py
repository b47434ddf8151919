"""A pass's measured time (verification.caserunner.pass_time): the larger of the cold-L2 do_bench median and the
time per pass run back to back, both kept in the record -- without a GPU (the two timers are stubbed)."""
from __future__ import annotations

import sys
import types

import pytest

from verification import caserunner as CR
from verification import measure as M


@pytest.fixture
def timers(monkeypatch):
    """Stub do_bench (milliseconds, as Triton returns it) and back_to_back_s (seconds); returns a setter."""
    box = {}
    fake = types.ModuleType("triton.testing")
    fake.do_bench = lambda fn, warmup, rep, return_mode: box["cold_ms"]
    monkeypatch.setitem(sys.modules, "triton.testing", fake)
    monkeypatch.setattr(CR, "back_to_back_s", lambda fn, est_s: box["b2b_s"])

    def set_(cold_ms, b2b_s):
        box.update(cold_ms=cold_ms, b2b_s=b2b_s)
    return set_


@pytest.mark.parametrize("cold_ms, b2b_s", [(0.050, 120e-6), (2.000, 1.7e-3)])
def test_pass_time_keeps_both_timings(timers, cold_ms, b2b_s):
    timers(cold_ms, b2b_s)
    got = CR.pass_time(lambda: None, warmup_ms=1, rep_ms=1)
    assert got == pytest.approx({"time_cold_s": cold_ms * 1e-3, "time_b2b_s": b2b_s}), got


@pytest.mark.parametrize("cold, b2b, floor, gpu, want, why", [
    (50e-6, 120e-6, 110e-6, 5e-6, 120e-6, "host-bound: the host needs 110 us to issue kernels the GPU runs in 5"),
    (895e-6, 1009e-6, 289e-6, 890e-6, 895e-6, "GPU-bound: back to back ran 13 % slower (set X 001); cold counts"),
    (175.5e-6, 243.4e-6, 154.5e-6, 42.8e-6, 243.4e-6,
     "set X 013: cold (176) is the host's time less the memset, above the floor (155); its kernels take 43"),
    (139.5e-6, 170.5e-6, 167.8e-6, 138.7e-6, 170.5e-6, "near the edge (set X 015): the floor classifies only"),
    (50e-6, None, 110e-6, 5e-6, 50e-6, "no back-to-back timing: the cold time"),
    (50e-6, 120e-6, 110e-6, None, 50e-6, "no kernel time to compare with: the cold time"),
])
def test_the_pass_time_rule(cold, b2b, floor, gpu, want, why):
    from verification.timing import pass_time_s, record_time_s
    assert pass_time_s(cold, b2b, floor, gpu) == want, why
    tot = {"time_s": 1.0, "time_cold_s": cold, "time_b2b_s": b2b, "host_pass_b2b_s": floor, "ncu_time_s": gpu}
    assert record_time_s(tot) == (want if b2b is not None else 1.0), why


def test_a_record_keeps_both_timings_and_their_medians_over_repeats():
    spec = {"name": "c", "hardware": "h100-sxm", "problem": {}, "schedule": {}}
    rows = []  # no ncu rows needed for the totals under test
    reps = [(rows, {"time_s": t, "time_cold_s": c, "time_b2b_s": b, "host_pass_s": h, "host_pass_b2b_s": h,
                    "host_pass_cold_s": h / 2})
            for t, c, b, h in ((3e-5, 1e-5, 3e-5, 4e-5), (5e-5, 2e-5, 5e-5, 6e-5), (4e-5, 3e-5, 4e-5, 5e-5))]
    rec = M.build_record(spec, None, None, {}, repeats=reps)
    tot = rec["total"]
    # no ncu rows here, so no kernel time to classify by: the pass's time is the cold median (verification.timing)
    want = {"time_s": 2e-5, "time_cold_s": 2e-5, "time_b2b_s": 4e-5, "host_pass_s": 5e-5, "host_pass_b2b_s": 5e-5,
            "host_pass_cold_s": 2.5e-5}
    got = {k: tot.get(k) for k in want}
    assert got == pytest.approx(want), f"medians over the repeats: got {got}, want {want}"
    assert "back-to-back" in rec["timing"]["time_s"]
    assert M._repeat_levels([], {"time_s": 3e-5})[1]["time_s"] == 3e-5


def test_records_timed_before_keep_their_shape():
    """A timing line of the old runner (do_bench alone) gives no new keys: nothing invents a back-to-back time."""
    _, tot = M._repeat_levels([], {"time_s": 1e-4, "host_pass_s": 9e-5})
    assert tot["time_s"] == 1e-4 and tot["host_pass_s"] == 9e-5
    assert not {"time_cold_s", "time_b2b_s", "host_pass_b2b_s"} & set(tot), tot


@pytest.mark.parametrize("est_s, want", [
    (5e-6, (200, 7)),      # a host-bound pass: 200 of them a batch (the host's launch rate sets it)
    (100e-6, (20, 7)),     # ~2 ms a batch
    (1.5e-3, (3, 7)),      # at least 3 a batch
    (0.327, (1, 3)),       # set X's 327 ms forward: alone, three times
    (2.6, (1, 3)),         # set V's 2.6 s flash1 forward: 8 s of timing, not 55
])
def test_back_to_back_plan(est_s, want):
    assert CR.b2b_plan(est_s) == want
