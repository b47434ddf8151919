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


@pytest.mark.parametrize("cold_ms, b2b_s, want_s", [
    (0.050, 120e-6, 120e-6),   # host-bound: do_bench's memset hid 70 us of the host's 120 -> the back-to-back time
    (2.000, 1.7e-3, 2.0e-3),   # GPU-bound: back to back the L2 is warm and the pass faster -> the cold median
    (0.010, 10e-6, 10e-6),     # equal
])
def test_pass_time_is_the_larger_of_cold_and_back_to_back(timers, cold_ms, b2b_s, want_s):
    timers(cold_ms, b2b_s)
    got = CR.pass_time(lambda: None, warmup_ms=1, rep_ms=1)
    assert got["time_s"] == pytest.approx(want_s), got
    assert got["time_cold_s"] == pytest.approx(cold_ms * 1e-3) and got["time_b2b_s"] == pytest.approx(b2b_s), got


def test_a_record_keeps_both_timings_and_their_medians_over_repeats():
    spec = {"name": "c", "hardware": "h100-sxm", "problem": {}, "schedule": {}}
    rows = []  # no ncu rows needed for the totals under test
    reps = [(rows, {"time_s": t, "time_cold_s": c, "time_b2b_s": b, "host_pass_s": h, "host_pass_b2b_s": h,
                    "host_pass_cold_s": h / 2})
            for t, c, b, h in ((3e-5, 1e-5, 3e-5, 4e-5), (5e-5, 2e-5, 5e-5, 6e-5), (4e-5, 3e-5, 4e-5, 5e-5))]
    rec = M.build_record(spec, None, None, {}, repeats=reps)
    tot = rec["total"]
    want = {"time_s": 4e-5, "time_cold_s": 2e-5, "time_b2b_s": 4e-5, "host_pass_s": 5e-5, "host_pass_b2b_s": 5e-5,
            "host_pass_cold_s": 2.5e-5}
    got = {k: tot.get(k) for k in want}
    assert got == pytest.approx(want), f"medians over the repeats: got {got}, want {want}"
    assert "back-to-back" in rec["timing"]["time_s"]


def test_records_timed_before_keep_their_shape():
    """A timing line of the old runner (do_bench alone) gives no new keys: nothing invents a back-to-back time."""
    _, tot = M._repeat_levels([], {"time_s": 1e-4, "host_pass_s": 9e-5})
    assert tot["time_s"] == 1e-4 and tot["host_pass_s"] == 9e-5
    assert not {"time_cold_s", "time_b2b_s", "host_pass_b2b_s"} & set(tot), tot
