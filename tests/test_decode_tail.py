"""The last partial wave of a decode split launch and the per-GPC share of the DRAM rate (memsim/MODEL.md decode,
"the last partial wave"; data: reports/h100-sxm/decode/tail-session11/, benchmarks/decode_tail_gpu.py)."""
import json
import os
from collections import defaultdict

import pytest

pytest.importorskip("simpy")

import memsim.workloads_decode as wd  # noqa: E402
from memsim.inference import DecodeProblem, DecodeSchedule  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAIL = os.path.join(ROOT, "reports", "h100-sxm", "decode", "tail-session11", "tail.json")


def _tail():
    with open(TAIL) as f:
        return json.load(f)


def test_gpc_map_deals_every_sm_once_and_spreads_the_first_sms():
    sizes, _ = wd.GPC_ARBITRATION["h100-sxm"]
    m = wd.gpc_sm_map(sizes)
    assert len(m) == 132 == sum(sizes)
    assert [m.count(g) for g in range(len(sizes))] == list(sizes)
    assert sorted(m[:8]) == list(range(8))  # one SM of every GPC before a second of any


def test_gpc_share_proportional_under_the_cap_equal_over_it():
    cap = 1.0
    assert wd.gpc_share([0.2, 0.6, 0.0], 0, cap) == pytest.approx(0.25)
    assert wd.gpc_share([3.0, 2.0, 5.0], 1, cap) == pytest.approx(1 / 3)
    assert wd.gpc_share([3.0, 0.5], 1, cap) == pytest.approx(0.5 / 1.5)
    # the latency factor is 1 when no GPC is over the cap (the mean field), and < 1 for a GPC under the others
    assert wd.gpc_latency_factor([0.2, 0.6], 0, 0.8, cap) == pytest.approx(1.0)
    assert wd.gpc_latency_factor([3.0, 2.0], 1, 5.0, cap) < 1 < wd.gpc_latency_factor([3.0, 2.0], 0, 5.0, cap)


def test_trace_shows_the_gpc_groups_the_model_assumes():
    """At 3 CTAs on every SM (the 512-CTA trace's first wave), the CTAs of 24 SMs end early, at about 12/18 of the
    others' time: two GPCs of 12 SMs, six of 18, the same rate per GPC."""
    t = next(x for x in _tail()["traces"] if x["batch"] == 64 and x["num_splits"] == 1)
    ends = defaultdict(list)
    for sm, s, e in zip(t["smid"], t["start_ns"], t["end_ns"]):
        if s < 5000:  # first wave
            ends[sm].append(e)
    mean = {sm: sum(v) / len(v) for sm, v in ends.items()}
    cut = (min(mean.values()) + max(mean.values())) / 2
    early = [sm for sm, v in mean.items() if v < cut]
    late = [sm for sm, v in mean.items() if v >= cut]
    sizes, _ = wd.GPC_ARBITRATION["h100-sxm"]
    assert len(early) == sum(x for x in sizes if x == min(sizes))
    ratio = (sum(mean[s] for s in early) / len(early)) / (sum(mean[s] for s in late) / len(late))
    assert ratio == pytest.approx(min(sizes) / max(sizes), abs=0.03)
    # the tail CTAs go first to the SMs that ended early, three to an SM
    later = [sm for sm, s in zip(t["smid"], t["start_ns"]) if 5000 <= s < (cut - 10_000)]
    assert set(later) <= set(early) and len(later) == 3 * len(early)


@pytest.mark.parametrize("gpc", [True, False])
def test_tail_sweep(gpc, monkeypatch):
    """The model of S = 1 launches whose last wave holds 0..264 CTAs against the card (CUDA-graph medians): with the
    GPC share every point within 10 %; the mean field over all SMs misses the 4- and 20-CTA tails (+13 / +9 %:
    their CTAs start when the early GPCs end, not after the whole wave) -- kept as the check that the data can
    tell the two apart."""
    monkeypatch.setattr(wd, "GPC_MODEL", gpc)
    errs = {}
    for r in _tail()["rows"]:
        p = DecodeProblem.uniform(r["batch"], 32, 8, 128, r["context"], dtype="bf16")
        t = wd.simulate_decode(p, DecodeSchedule(num_splits=1), "h100-sxm", flush_l2=False)["total"]["gpu_time_s"]
        errs[(r["batch"], r["context"])] = t / (r["ms"] * 1e-3) - 1
    worst = max(abs(e) for e in errs.values())
    if gpc:
        assert worst <= 0.10, errs
    else:
        assert errs[(50, 16384)] > 0.10 and errs[(50, 4096)] > 0.10, errs


COLD = os.path.join(ROOT, "reports", "h100-sxm", "decode", "cold-session11", "cold.json")


def _cold_sweeps():
    with open(COLD) as f:
        rows = json.load(f)["rows"]
    by = defaultdict(dict)
    for r in rows:
        if r["impl"] == "decode" and r["layout"] == "contiguous" and not r.get("auto"):
            by[(r["batch"], r["context"])][r["num_splits"]] = r["s"][0]
    return by


def test_graph_context_needs_an_unflushed_l2_and_a_measured_figure():
    p = DecodeProblem.uniform(1, 32, 8, 128, 1024)
    with pytest.raises(ValueError, match="flush_l2=False"):
        wd.simulate_decode(p, DecodeSchedule(num_splits=2), "h100-sxm", context="graph")
    with pytest.raises(ValueError, match="'ncu' or 'graph'"):
        wd.simulate_decode(p, DecodeSchedule(num_splits=2), "h100-sxm", flush_l2=False, context="eager")
    with pytest.raises(ValueError, match="no CUDA-graph kernel cost"):
        wd.simulate_decode(p, DecodeSchedule(num_splits=2), "a100-80gb", flush_l2=False, context="graph")


@pytest.mark.parametrize("shape", [(1, 1024), (1, 8192), (8, 1024), (8, 8192)])
def test_split_pick_on_the_cold_cache_graph_sweeps(shape):
    """benchmarks/decode_cold.py (H100, 2026-11-26 17:19 UTC): CUDA-graph medians over caches that are not in the
    L2.  The model in the graph context (0.97 us per kernel, the empty-kernel graph microbenchmark) picks a split
    count within 5 % of the best measured one, and its time at that count is within 10 %; in ncu's context (2.18 us
    per kernel) the small launches are 15-36 % too slow (kept: the data tells the two apart)."""
    m = _cold_sweeps()[shape]
    p = DecodeProblem.uniform(shape[0], 32, 8, 128, shape[1], dtype="bf16")
    graph = {S: wd.simulate_decode(p, DecodeSchedule(num_splits=S), "h100-sxm", flush_l2=False,
                                   context="graph")["total"]["gpu_time_s"] for S in m}
    best, pick = min(m, key=m.get), min(graph, key=graph.get)
    assert m[pick] <= 1.05 * m[best], (pick, best, m)
    assert graph[pick] == pytest.approx(m[pick], rel=0.10), (pick, graph[pick], m[pick])
    if shape == (1, 1024):
        ncu = wd.simulate_decode(p, DecodeSchedule(num_splits=16), "h100-sxm", flush_l2=False)["total"]["gpu_time_s"]
        assert ncu > 1.25 * m[16]
