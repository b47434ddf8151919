"""A step's `tiles` are trips of the kernel's tile loop, which the issue replay charges one each: steps that load
operands but make no trip (K/V blocks no Q block sees, CTAs whose blocks are all masked) carry 0 tiles.

Set K's flash1 forward (causal top-left, 301 queries against 9136 keys) loads all 286 K/V blocks but runs the
Q-block loop for the ~10 that some query sees; counting one trip per loaded block predicted it 6.8x too slow."""
from __future__ import annotations

import math

import pytest

from memsim.schedule import AttentionProblem, Schedule
from memsim.workloads import build_launches


def _visible_pairs(p: AttentionProblem, bm: int, bn: int) -> int:
    """(Q block, K/V block) pairs some query of the Q block sees (top-left causal: key <= query)."""
    n = 0
    for i in range(math.ceil(p.seq_q / bm)):
        last_q = min(p.seq_q, (i + 1) * bm) - 1
        n += min(math.ceil(p.seq_kv / bn), last_q // bn + 1)
    return n


@pytest.mark.parametrize("seq_q, seq_kv", [(301, 9136), (384, 1700), (128, 4096)])
def test_flash1_counts_only_the_q_block_trips(seq_q, seq_kv):
    p = AttentionProblem(batch=1, heads_q=2, heads_kv=2, seq_q=seq_q, seq_kv=seq_kv, head_dim=32, dtype="bf16",
                         causal=True, causal_align="top_left")
    s = Schedule("flash1", "fwd", 128, 32, 1, 4)
    (work,) = build_launches(p, s)
    steps = work.cta_steps(0)
    tiles = sum(st[4] for st in steps)
    loads_only = [st for st in steps if st[0] and not st[2]]
    assert tiles == _visible_pairs(p, 128, 32), f"{tiles} tiles, {len(loads_only)} load-only steps"
    assert all(st[4] == 0 for st in loads_only), "a step that only loads K/V made a tile-loop trip"


@pytest.mark.parametrize("alg, phase", [("flash2", "fwd"), ("flash2", "bwd")])
def test_fully_masked_ctas_make_no_trip(alg, phase):
    # bottom-right causal with more queries than keys: the first Q blocks see no key at all
    p = AttentionProblem(batch=1, heads_q=1, heads_kv=1, seq_q=1024, seq_kv=64, head_dim=64, dtype="fp16",
                         causal=True, causal_align="bottom_right")
    s = Schedule(alg, phase, 64, 64, 4, 2)
    for work in build_launches(p, s):
        for idx in range(work.num_ctas):
            steps = work.cta_steps(idx)
            if all(not st[2] for st in steps) and any(st[0] for st in steps) and work.name != "flash2_bwd_preprocess":
                assert sum(st[4] for st in steps) == 0, f"{work.name} CTA {idx}: {[st[4] for st in steps]}"


class _SameLines:
    """A launch whose CTAs each make 4 tile-loop trips over the same 64 KB of K/V (one head's K/V, read by every
    query block): the engine's minimal work interface."""
    name, dependent_loop, cta_l1_bytes, launch, num_warps = "same_lines", False, None, None, 4

    def __init__(self, num_ctas: int):
        self.num_ctas = num_ctas

    def cta_steps(self, idx):
        full = 1 << 16
        return [([("kv", 1, full, full, -1, full)], [], 1.0e6, 0, 4)]


@pytest.mark.parametrize("fill_s,expect_dram_ctas", [(None, 1), (1.0, 8)])
def test_reads_of_lines_whose_fill_is_in_flight_wait_for_it(fill_s, expect_dram_ctas):
    """The first CTA misses and starts the fill; the 7 others read the lines while it is in flight: with
    `fill_latency_s` they wait as the miss does (the replay's DRAM-latency trip, issue_s_per_tile_dram), without
    it they are L2 hits (tile_loop microbenchmark: the lockstep query blocks of one head all see the DRAM
    latency under ncu's cache flush)."""
    from memsim.costs import LaunchCost
    from memsim.engine import L2Cache, LaunchModel
    from memsim.hardware import load_hardware
    hw = load_hardware("h100-sxm")
    cost = LaunchCost(name="same_lines", num_warps=4, regs_per_thread=64, ctas_per_sm=1, occupancy_limit="warps",
                      sec_per_flop=1e-15, sec_per_exp=1e-12, issue_s_per_tile=1e-6,
                      spill_l2_write_bytes_per_tile=0, spill_l2_read_bytes_per_tile=0, spill_dram_write_fraction=0.0,
                      spill_dram_read_fraction=0.0, facts_source="test", issue_s_per_tile_dram=3e-6)
    m = LaunchModel(hw, _SameLines(8), L2Cache(50 << 20), cost, num_stages=2, dram_Bps=3e12, launch_overhead_s=0.0,
                    fill_latency_s=fill_s)
    m.progress = None
    st = m.run()
    # each CTA's 4 trips: 4 us at the L2 latency, 12 us at the DRAM one
    expect = expect_dram_ctas * 12e-6 + (8 - expect_dram_ctas) * 4e-6
    assert st.sm_busy_s == pytest.approx(expect, rel=1e-6), f"busy {st.sm_busy_s * 1e6:.2f} us, want {expect * 1e6:.2f}"


@pytest.mark.parametrize("seq_q, seq_kv, bm", [(16, 12052, 128), (11, 6656, 64), (300, 200, 64), (1, 1, 16),
                                                (130, 9000, 32), (64, 64, 64)])
@pytest.mark.parametrize("launch", ["naive_softmax", "naive_bwd_ds"])
def test_naive_row_kernels_make_block_m_over_rows_trips(seq_q, seq_kv, bm, launch):
    """kernels.naive's row kernels loop `for r0 in range(0, BLOCK_M, ROWS)`: every CTA makes cdiv(block_m, rows)
    trips, the ones past seq_q with nothing to load (set U's 003: 16 real rows of a 128-row block, 8x the trips the
    model counted), and its reads wait once per trip, in the loop -- one read step, not one per column run."""
    from memsim.schedule import cdiv, naive_rows_per_step
    p = AttentionProblem(batch=1, heads_q=2, heads_kv=2, seq_q=seq_q, seq_kv=seq_kv, head_dim=32, dtype="fp16")
    s = Schedule("naive", "bwd" if launch == "naive_bwd_ds" else "fwd", bm, 16, 4, 1)
    work = next(w for w in build_launches(p, s) if w.name == launch)
    per_trip, _ = naive_rows_per_step(seq_kv, bm)
    for idx in range(work.num_ctas):
        steps = work.cta_steps(idx)
        read_steps = [st for st in steps if st[0]]
        assert len(read_steps) == 1, f"CTA {idx}: {len(read_steps)} read steps"
        assert sum(st[4] for st in steps) == cdiv(bm, per_trip), (
            f"CTA {idx}: {sum(st[4] for st in steps)} trips, the kernel makes {cdiv(bm, per_trip)}")
        assert all(st[4] == 0 for st in steps if st[1]), "a store step made trips"


def test_idle_row_trips_cost_the_loop_without_its_load_waits():
    """A trip of naive's row kernels past seq_q loads nothing (masks all false): the replay, linear in the load
    latency (replayed at the L2-hit and the DRAM-miss one), at latency 0 -- less than a trip that loads."""
    import memsim
    from memsim.calibration import calibration_for
    from memsim.costs import launch_cost
    hw = memsim.load_hardware("h100-sxm")
    cal = calibration_for(hw)
    p = AttentionProblem(batch=62, heads_q=1, heads_kv=1, seq_q=16, seq_kv=12052, head_dim=32, dtype="fp16")
    s = Schedule("naive", "bwd", 128, 16, 8, 3)
    c = launch_cost(hw, cal, "naive_bwd_ds", p, s, 0)
    if not c.issue_s_per_tile_dram:
        pytest.skip("no DRAM-latency replay for this entry in the table")
    lat = cal.issue
    slope = (c.issue_s_per_tile_dram - c.issue_s_per_tile) / (lat.load_dram_cycles - lat.load_l2_cycles)
    assert c.issue_s_per_tile_noload == pytest.approx(c.issue_s_per_tile - slope * lat.load_l2_cycles, rel=1e-9)
    assert 0 < c.issue_s_per_tile_noload < c.issue_s_per_tile
