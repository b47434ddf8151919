"""The decode model's mechanisms from benchmarks/decode_mechanisms_gpu.py (combine rounds, scattered pages) and the
dot_chain calibration (the last tile's dots): each read from the raw microbenchmark points, never a decode case."""
import json
import math

import pytest

from memsim import inference as I
from memsim.inference import DecodeProblem, DecodeSchedule
from memsim.workloads_decode import last_tile_drain_s, simulate_decode

H100 = "h100-sxm"


def _points():
    from pathlib import Path
    cal = Path(I.__file__).resolve().parent / "presets" / f"{H100}.calibration.json"
    return json.loads(cal.read_text())["facts"]["decode_mechanisms"]


def _lsq_slope(xs, ys):
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


@pytest.mark.parametrize("d,ctas", [(64, 1), (128, 1), (256, 132)])
def test_combine_round_is_the_measured_slope_at_a_measured_point(d, ctas):
    pts = [p for p in _points() if p["kind"] == "rounds" and p["head_dim"] == d and p["ctas"] == ctas
           and p["weighted"] and p["stride_rows"] == 16]
    assert len(pts) == 3
    want = _lsq_slope([p["rounds"] for p in pts], [p["time_s"] for p in pts])
    assert I.combine_round_s(H100, 32 * (d + 1) * 4, ctas) == pytest.approx(want, rel=1e-9)


def test_combine_round_none_without_a_run_and_interpolates_between_points():
    assert I.combine_round_s("a100", 16384, 1) is None
    lo, hi = (I.combine_round_s(H100, 32 * (d + 1) * 4, 1) for d in (64, 128))
    mid = I.combine_round_s(H100, math.sqrt(32 * 65 * 4 * 32 * 129 * 4), 1)
    assert min(lo, hi) <= mid <= max(lo, hi)


def test_combine_rounds_after_the_first_cost_the_measured_round():
    """S=128 partials = 4 rounds of 32: the combine launch costs 3 measured rounds more than its first round's
    bytes at the latency rate (one wave of CTAs, so no slot contention)."""
    p = DecodeProblem.uniform(1, 32, 8, 128, 131072)
    r = simulate_decode(p, DecodeSchedule(num_splits=128), H100)
    comb = r["kernels"][1]
    assert comb["round_s"] == pytest.approx(I.combine_round_s(H100, 32 * 129 * 4, comb["num_ctas"]))
    r32 = simulate_decode(p, DecodeSchedule(num_splits=32), H100)["kernels"][1]
    assert r32["round_s"] > 0  # one round: the round time is not used
    assert comb["time_s"] - r32["time_s"] == pytest.approx(3 * comb["round_s"], rel=0.02)


def test_scattered_page_latency_from_the_gather_points():
    g = {(p["ctas"], p["page_rows"], p["per_key"]): p for p in _points() if p["kind"] == "gather"}
    for rows in (16, 64):
        want = (g[(8, rows, True)]["time_s"] - g[(8, 0, False)]["time_s"]) / g[(8, 0, False)]["tiles"] * 2
        assert I.paged_latency_extra_s(H100, rows, 8) == pytest.approx(want, rel=1e-9)
    assert I.paged_latency_extra_s(H100, None, 8) == 0.0
    assert I.paged_latency_extra_s(H100, 16, 8) > I.paged_latency_extra_s(H100, 64, 8) > 0
    assert I.paged_latency_extra_s("a100", 16, 8) == 0.0


def test_scattered_pages_slow_only_a_pipelined_loop():
    """The latency goes to prefetching (pipelined) paged loops; a one-buffer loop (no prefetch) is unchanged."""
    import memsim.workloads_decode as W
    p = DecodeProblem.uniform(8, 32, 8, 128, 8192, page_size=16)
    t = {}
    for pf in (False, True):
        s = DecodeSchedule(num_splits=1, page_prefetch=pf)
        with_ = simulate_decode(p, s, H100)["kernels"][0]["time_s"]
        orig = W.paged_latency_extra_s
        W.paged_latency_extra_s = lambda *a: 0.0
        try:
            without = simulate_decode(p, s, H100)["kernels"][0]["time_s"]
        finally:
            W.paged_latency_extra_s = orig
        t[pf] = with_ / without
    assert t[False] == pytest.approx(1.0, abs=1e-12)
    # > 1.05 before the measured loop compute (third decode session): a 16-row prefetching loop now computes 1.43 us
    # per tile (the `loop` microbenchmark) and is compute-bound at 64 CTAs, so the latency term moves it a little
    assert t[True] > 1.0 + 1e-4, t


def test_last_tile_drain_is_two_dots_at_the_dot_chain_rate_and_adds_to_a_short_kernel():
    from memsim.calibration import calibration_for, dot_flops_per_sm_s
    from memsim.hardware import load_hardware
    hw = load_hardware(H100)
    p = DecodeProblem.uniform(2, 32, 8, 128, 64)  # one 64-key tile per CTA, 16 CTAs
    s = DecodeSchedule(num_splits=1)
    rate = dot_flops_per_sm_s(calibration_for(hw), "bf16", block_m=16, block_n=64, head_dim=128, num_warps=4,
                              warps_per_sm=4)
    assert last_tile_drain_s(p, s, hw, 1) == pytest.approx(2 * 2 * 16 * 64 * 128 / rate)
    k = simulate_decode(p, s, H100)["kernels"][0]
    assert k["drain_s"] == pytest.approx(last_tile_drain_s(p, s, hw, 1))
    import memsim.workloads_decode as W
    orig = W.last_tile_drain_s
    W.last_tile_drain_s = lambda *a: 0.0
    try:
        k0 = simulate_decode(p, s, H100)["kernels"][0]
    finally:
        W.last_tile_drain_s = orig
    # the loop step already computes the last tile (its copy + issue, `cta_tile_costs`); the dots add what they take
    # beyond that
    from memsim.inference import DeviceFacts, cta_tile_costs
    per_byte, issue = cta_tile_costs(p, s, DeviceFacts.from_hardware(hw), 1)
    last_c = 2 * 64 * 128 * 2 * per_byte + issue
    assert k["time_s"] - k0["time_s"] == pytest.approx(max(0.0, k["drain_s"] - last_c), rel=1e-6, abs=1e-12)


def test_a_run_file_without_points_is_refused():
    with pytest.raises(ValueError, match="no 'points'"):
        I.mechanism_points_of({"provenance": {}}, "run.json")
    with pytest.raises(ValueError, match="no 'points'"):
        I.mechanism_points_of([], "a calibration fact")


def test_the_points_come_from_the_preset_calibration():
    pts = I.decode_mechanism_points(H100)
    assert pts and all("error" not in p for p in pts)
    assert I.decode_mechanism_points("a100-40gb") is None  # no calibration file of its own
    assert I.decode_mechanism_points("not-a-preset") is None
