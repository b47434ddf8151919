"""naive's row trips wait only on loads with a column inside seq_kv (memsim.spill_rowmask; notes/spills.md session 17)."""
import json
import sys
from pathlib import Path

import pytest

from memsim import spill_rowmask as RM

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "verification/data/nvidia-h100-80gb-hbm3/calibration/spill_rowchain-2026-11-27T0719.json"


def test_real_share():
    # r1_019: seq_kv 5055 in 8192 columns -> 158 of 256 warp loads have a real column
    assert RM.real_share("naive_softmax", 5055, 128) == pytest.approx(158 / 256)
    assert RM.real_share("naive_bwd_ds", 5055, 128) == pytest.approx(158 / 256)
    assert RM.real_share("naive_softmax", 8192, 128) == 1.0
    assert RM.real_share("naive_softmax", 8189, 128) == 1.0  # the last load has 29 real lanes
    assert RM.real_share("naive_pv", 5055, 128) == 1.0  # not a row kernel
    assert RM.real_share("naive_softmax", 20, 128) == 1.0  # a warp load spans rows: each has real columns


def test_trip_costs_linear():
    # a trip of 100 waits: 10 + 100 x latency (cycles as seconds here)
    l2, dram = 300.0, 700.0
    issue, issue_dram, noload = 10 + 100 * l2, 10 + 100 * dram, 10.0
    i2, d2, n2 = RM.trip_costs(issue, issue_dram, noload, l2, dram, 0.25, masked_cycles=20.0)
    assert i2 == pytest.approx(10 + 25 * l2 + 75 * 20.0)
    assert d2 == pytest.approx(10 + 25 * dram + 75 * 20.0)
    assert n2 == pytest.approx(10 + 100 * 20.0)
    assert RM.trip_costs(issue, issue_dram, noload, l2, dram, 1.0) == (issue, issue_dram, noload)
    assert RM.trip_costs(issue, 0.0, noload, l2, dram, 0.5) == (issue, 0.0, noload)  # no DRAM figure: unchanged
    assert RM.trip_costs(issue, issue_dram, noload, l2, dram, 0.0, floor=1e9)[:2] == (1e9, 1e9)


def test_switch(monkeypatch):
    monkeypatch.delenv("MEMSIM_ROW_MASK", raising=False)
    assert not RM.enabled()
    monkeypatch.setenv("MEMSIM_ROW_MASK", "1")
    assert RM.enabled()
    monkeypatch.setenv("MEMSIM_ROW_MASK", "0")
    assert not RM.enabled()


def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import spill_rowchain_gpu as B
    return B


def test_microbenchmark_masked_load_and_the_replay():
    """The chain's SASS replayed: real loads at the calibration's latencies within 3 % of the card, a predicated-off
    load at MASKED_RELEASE_CYCLES within 3 cycles of its measured cost (52), at 0 it would be 14 under."""
    pytest.importorskip("simpy")
    import memsim
    from memsim.calibration import calibration_for
    B = _bench()
    run = json.loads(RUN.read_text())
    lat = calibration_for(memsim.load_hardware("h100-sxm")).issue
    body = B.chain_body(run)
    pts = {(p["where"], p["step"], p["misalign_bytes"], p["ctas_per_sm"], p["n_real"] < p["n_dep"]): p
           for p in run["points"] if p["kind"] == "row_chain" and p["elem_bytes"] == 2}
    for where, c in (("l2", lat.load_l2_cycles), ("dram", lat.load_dram_cycles)):
        meas = pts[(where, "contig", 2, 1, False)]["cycles_per_load_median"]
        assert B.replay_per_load(body, lat, c) == pytest.approx(meas, rel=0.03)
        masked = B.masked_cost(run, where)
        assert abs(B.replay_per_load(body, lat, RM.MASKED_RELEASE_CYCLES) - masked) < 3.0
        assert B.replay_per_load(body, lat, 0.0) < masked - 10
    # no line sharing: 64-B loads along a line wait as long as loads 256 B apart
    assert pts[("dram", "contig", 0, 1, False)]["cycles_per_load_median"] == pytest.approx(
        pts[("dram", "spaced", 0, 1, False)]["cycles_per_load_median"], rel=0.02)


def test_naive_softmax_per_row(monkeypatch):
    """r1_019's softmax code, one CTA per SM, S from DRAM: the model's trip with the switch within 8 % of the card at
    seq_kv 5055 and 8189 (65.8 / 97.9 us a row) and their difference within 5 % (32.1 us); without it 5055 is 40 %
    slow (every masked load waited as a DRAM miss)."""
    import memsim
    from memsim import costs
    from memsim.calibration import calibration_for
    from memsim.schedule import AttentionProblem, Schedule
    run = json.loads(RUN.read_text())
    meas = {p["seq_kv"]: p["us_per_row"] for p in run["points"] if p["kind"] == "naive_softmax" and p["heads"] == 132}
    hw = memsim.load_hardware("h100-sxm")
    cal = calibration_for(hw)
    s = Schedule(algorithm="naive", phase="fwd", block_m=128, block_n=32, num_warps=1, num_stages=4,
                 grid_order="heads_fastest")

    def row_us(kv):
        p = AttentionProblem(batch=1, heads_q=132, heads_kv=66, seq_q=128, seq_kv=kv, head_dim=16, dtype="bf16",
                             causal=True, causal_align="bottom_right")
        c = costs.launch_cost(hw, cal, "naive_softmax", p, s, 0, num_ctas=132)
        if c.issue_source.split("+")[0] != "replay" or not c.issue_s_per_tile_dram:
            pytest.skip("no replayed naive_softmax entry in the compiled table")
        return c.issue_s_per_tile_dram * 1e6  # one resident CTA: its turn is its trip; every load a DRAM miss
    monkeypatch.setenv("MEMSIM_ROW_MASK", "1")
    a, b = row_us(5055), row_us(8189)
    assert a == pytest.approx(meas[5055], rel=0.08) and b == pytest.approx(meas[8189], rel=0.08)
    assert b - a == pytest.approx(meas[8189] - meas[5055], rel=0.05)
    monkeypatch.setenv("MEMSIM_ROW_MASK", "0")
    assert row_us(5055) > 1.3 * meas[5055]


def _softmax_time(monkeypatch, env: dict, heads: int = 132) -> float:
    import memsim
    from memsim.schedule import AttentionProblem, Schedule
    for k in ("MEMSIM_ROW_MASK", "MEMSIM_WAIT_BYTES", "MEMSIM_SM_GAP"):
        monkeypatch.setenv(k, env.get(k, "0"))
    p = AttentionProblem(batch=1, heads_q=heads, heads_kv=heads // 2, seq_q=152, seq_kv=5055, head_dim=16,
                         dtype="bf16", causal=True, causal_align="bottom_right")
    s = Schedule(algorithm="naive", phase="fwd", block_m=128, block_n=32, num_warps=1, num_stages=4,
                 grid_order="heads_fastest")
    r = memsim.simulate(p, s, "h100-sxm", grain="cta", max_seconds=None).to_dict()
    return next(k["time_s"] for k in r["kernels"] if k["name"] == "naive_softmax")


def test_engine_switches_on_a_small_r1_019(monkeypatch):
    """r1_019's softmax at 132 heads (a long and a short CTA an SM): masked loads make it faster; waits mixed by
    own bytes (S streams from DRAM, 3 sectors a 2-B-aligned load) slower than by sector traffic; the gap booking never
    slower than the chain-end booking."""
    pytest.importorskip("simpy")
    base = _softmax_time(monkeypatch, {})
    mask = _softmax_time(monkeypatch, {"MEMSIM_ROW_MASK": "1"})
    wait = _softmax_time(monkeypatch, {"MEMSIM_ROW_MASK": "1", "MEMSIM_WAIT_BYTES": "1"})
    gap = _softmax_time(monkeypatch, {"MEMSIM_ROW_MASK": "1", "MEMSIM_WAIT_BYTES": "1", "MEMSIM_SM_GAP": "1"})
    assert mask < 0.85 * base
    assert wait > mask
    assert gap <= wait * 1.0001
