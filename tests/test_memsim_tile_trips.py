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
