"""The loaded DRAM latency in the attention engine (memsim/MODEL.md row "loaded DRAM latency (attention)"): a step
that waits on its loads and misses the L2 waits the `dram_stream` curve's latency beyond the unloaded one, at the
rate the DRAM was asked for over the last round trip; the link's own queue covers the rates past its rate."""
from __future__ import annotations

import pytest
import simpy

from memsim import sim
from memsim.calibration import calibration_for, curve_latency_s, dram_queue_latency
from memsim.engine import Link
from memsim.hardware import load_hardware
from memsim.schedule import AttentionProblem, Schedule

HW = load_hardware("h100-sxm")
CAL = calibration_for(HW)


def test_curve_is_the_excess_below_the_link_rate():
    dq = dram_queue_latency(CAL, CAL.dram_Bps)
    assert dq is not None, "the h100-sxm calibration has a dram_stream curve"
    curve, memory_s = dq
    assert curve[0][1] == 0.0
    assert all(b <= CAL.dram_Bps for b, _ in curve), "the queue regime past the link rate is the link's own"
    lats = [x for _, x in curve]
    assert lats == sorted(lats), f"latency must not fall as load rises: {lats}"
    # what the microbenchmark says (H100): flat to ~1.2 TB/s, +0.15 us near 2.1 TB/s, +0.6 us near 2.9 TB/s
    assert curve_latency_s(curve, 1.0e12) < 0.06e-6
    assert 0.1e-6 < curve_latency_s(curve, 2.1e12) < 0.25e-6
    assert 0.4e-6 < curve_latency_s(curve, 2.9e12) < 0.8e-6
    assert memory_s == pytest.approx(CAL.dram_latency_curve[0][1])  # the unloaded latency, 0.86 us (H100)
    assert 0.5e-6 < memory_s < 1.5e-6


def test_without_a_curve_there_is_no_loaded_latency():
    from dataclasses import replace
    assert dram_queue_latency(replace(CAL, dram_latency_curve=None), CAL.dram_Bps) is None


@pytest.mark.parametrize("rate_Bps", [0.5e12, 2.0e12, 2.9e12])
def test_link_tracks_the_recent_rate(rate_Bps):
    env = simpy.Environment()
    link = Link(env, 3.0e12, "dram", memory_s=1e-6)
    chunk = 16 * 1024
    t, dt = 0.0, chunk / rate_Bps
    for _ in range(2000):  # 2000 chunks: many memory times of steady traffic
        link.book(t, chunk)
        t += dt
    got = link.recent_Bps(t)
    assert got == pytest.approx(rate_Bps, rel=0.05), f"recent rate {got:.3e} for a steady {rate_Bps:.3e} B/s"
    assert link.recent_Bps(t + 20e-6) < 0.01 * rate_Bps, "the memory fades once the traffic stops"


def test_link_without_memory_reports_nothing():
    link = Link(simpy.Environment(), 3.0e12, "l2")
    link.book(0.0, 1 << 20)
    assert link.recent_Bps(1e-7) == 0.0


def _launches(problem, schedule, mode: str, monkeypatch) -> dict:
    """mode "loaded": the model; "flat": the same unloaded latency, no loaded excess; "none": no curve at all
    (the preset's mem_latency_s)."""
    def flat(cal, link):
        curve, lat0 = dram_queue_latency(cal, link)
        return tuple((b, 0.0) for b, _ in curve), lat0
    fn = {"loaded": dram_queue_latency, "flat": flat, "none": lambda cal, link: None}[mode]
    monkeypatch.setattr(sim, "dram_queue_latency", fn)
    return {k["name"]: k["time_s"] for k in sim.simulate(problem, schedule, HW).to_dict()["kernels"]}


def test_a_busy_dram_makes_waiting_steps_slower(monkeypatch):
    """naive fwd at N=1024, 32 heads, d=128, one stage: the P V CTAs load their tiles, wait, compute and store --
    hundreds of short CTAs per SM with the DRAM at 2-3 TB/s: each wait is the loaded latency.  (The softmax CTAs
    load their rows in one read step since the row kernels' trips are booked as the kernel makes them -- memsim/
    MODEL.md "naive's row kernels": the loaded excess reaches them once, with their first loads.  Spreading it over
    each trip's replayed waits was tried and dropped: in the DRAM's queue regime it counts the saturated rate twice,
    naive softmax 1.3 -> 3.1 ms where the card took 1.3.)"""
    p = AttentionProblem(1, 32, 32, 1024, 1024, 128, dtype="bf16")
    s = Schedule("naive", "fwd", 32, 64, 4, 1)
    t0, t1 = _launches(p, s, "flat", monkeypatch), _launches(p, s, "loaded", monkeypatch)
    for name in ("naive_pv",):
        assert t1[name] > 1.05 * t0[name], (f"{name}: loaded latency should slow a DRAM-busy unpipelined launch: "
                                            f"{t0[name] * 1e6:.1f} -> {t1[name] * 1e6:.1f} us")
    assert all(t1[n] >= t0[n] * (1 - 1e-9) for n in t0), "a longer wait never makes a launch faster"


def test_an_idle_dram_changes_nothing(monkeypatch):
    """One small CTA: the DRAM is never busy, so the latency stays the unloaded one."""
    p = AttentionProblem(1, 1, 1, 16, 16, 16, dtype="fp16")
    s = Schedule("naive", "fwd", 16, 16, 1, 1)
    t0, t1 = _launches(p, s, "flat", monkeypatch), _launches(p, s, "loaded", monkeypatch)
    for name in t0:
        assert t1[name] == pytest.approx(t0[name], rel=1e-3), f"{name}: {t0[name] * 1e6:.2f} vs {t1[name] * 1e6:.2f} us"


def test_the_unloaded_latency_is_the_measured_one(monkeypatch):
    """A one-CTA launch waits the dram_stream curve's unloaded end per waiting step, not the preset's estimate:
    the difference between the two runs is a whole number of (0.86 - 0.60) us waits."""
    p = AttentionProblem(1, 1, 1, 16, 16, 16, dtype="fp16")
    s = Schedule("naive", "fwd", 16, 16, 1, 1)
    t0, t1 = _launches(p, s, "none", monkeypatch), _launches(p, s, "loaded", monkeypatch)
    step = dram_queue_latency(CAL, CAL.dram_Bps)[1] - HW.mem_latency_s
    for name in t0:
        n = (t1[name] - t0[name]) / step
        assert n >= 0.99 and abs(n - round(n)) < 0.02, f"{name}: {t0[name] * 1e6:.3f} -> {t1[name] * 1e6:.3f} us"
