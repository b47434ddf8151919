"""The model's half of the hopper entries keeps up with the kernels (issue 9 item 4): the causal forward's
longest-first Q block order and the fused backward's atomic dQ traffic, at the byte-contract level (CPU only)."""
import pytest

from memsim.analytic import launch_counts
from memsim.schedule import AttentionProblem, Schedule
from memsim.workloads import build_launches

CASES = [AttentionProblem(1, 4, 2, 200, 200, 32, "bf16", True),
         AttentionProblem(2, 2, 2, 96, 160, 64, "fp16", True, causal_align="bottom_right"),
         AttentionProblem(1, 2, 1, 130, 70, 16, "fp32", False)]


def _tiles(steps):
    return sum(st[4] for st in steps)


@pytest.mark.parametrize("p", CASES, ids=lambda p: f"{p.seq_q}x{p.seq_kv}{'c' if p.causal else ''}")
@pytest.mark.parametrize("grid_order", ["q_fastest", "heads_fastest"])
def test_causal_forward_dispatches_longest_first(p, grid_order):
    s = Schedule("hopper", "fwd", 32, 32, 4, 2, grid_order)
    (lw,) = build_launches(p, s, sectors=False)
    mb = -(-p.seq_q // 32)
    blk_axis = 0 if grid_order == "q_fastest" else 1
    tiles = []
    for idx in range(lw.num_ctas):
        grid = lw.launch.grid
        pos = idx % grid[0] if blk_axis == 0 else (idx // grid[0]) % grid[1]
        tiles.append((pos, _tiles(lw.cta_steps(idx))))
    by_pos = {}
    for pos, t in tiles:
        by_pos.setdefault(pos, t)
    seq = [by_pos[i] for i in range(mb)]
    if p.causal:  # position 0 runs the last Q block: never fewer K/V blocks than any later position
        assert seq == sorted(seq, reverse=True) and seq[0] > seq[-1]
    else:
        assert len(set(seq)) == 1


@pytest.mark.parametrize("p", CASES, ids=lambda p: f"{p.seq_q}x{p.seq_kv}{'c' if p.causal else ''}")
@pytest.mark.parametrize("alg_phase, blocks", [(("hopper", "fwd"), (32, 32)), (("hopper", "bwd"), (16, 32)),
                                               (("hopper", "bwd"), (32, 16))])
def test_workload_bytes_are_the_contract(p, alg_phase, blocks):
    """Summed over every CTA step, each launch reads and writes exactly the closed-form contract (atomics as
    writes), whatever the order."""
    s = Schedule(*alg_phase, *blocks, 4, 2)
    want = launch_counts(p, s)
    for lw in build_launches(p, s, sectors=False):
        rd = wr = fl = 0
        for idx in range(lw.num_ctas):
            for st in lw.cta_steps(idx):
                rd += sum(a[2] for a in st[0])
                wr += sum(a[2] for a in st[1])
                fl += st[2]
        c = want[lw.name]
        assert (rd, wr, fl) == (c["global_read_bytes"], c["global_write_bytes"], c["flops"]), lw.name
