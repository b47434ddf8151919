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
