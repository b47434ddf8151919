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


# --- warp-specialised SASS as the card runs it (session 6; benchmarks/hopper_model_ws.py) ----------------------------
_WS_SPECS = ("hopper,fwd,128,128,128", "hopper_ws,fwd,128,128,128", "hopper_ws,bwd,64,128,128")


@pytest.fixture(scope="module")
def ws_sass():
    """`benchmarks/hopper_model_ws.py --facts` of the three warp-specialised launches: compiled for sm_90a on the CPU
    by the script in its own process (it unsets TRITON_INTERPRET before importing triton)."""
    import json
    import pathlib
    import subprocess
    import sys
    pytest.importorskip("triton")
    root = pathlib.Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "benchmarks" / "hopper_model_ws.py")]
    for spec in _WS_SPECS:
        cmd += ["--facts", spec]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])  # {"SPEC:launch": facts}


@pytest.mark.parametrize("key, descriptors, persistent", [(f"{_WS_SPECS[0]}:hopper_fwd", 3, False),
                                                          (f"{_WS_SPECS[1]}:hopper_fwd_persistent", 3, True),
                                                          (f"{_WS_SPECS[2]}:hopper_bwd_dkdv_ws", 6, False)])
def test_ws_sass_partitions(ws_sass, key, descriptors, persistent):
    """Each warp-specialised launch is 12 warps (the compiler's metadata; ncu block size 384 in run4/run5): two
    consumer warpgroups running the tile loop and a producer; the producer builds its TMA descriptors one after the
    other (Q, K, V forward; six in the dK/dV pass); only the persistent forward has a tile walk around the K/V loop."""
    w = ws_sass[key]
    assert w["metadata_warps"] == 12 and w["launched_warps"] == 12 and w["groups"] == 2
    assert w["producer_descriptors"] == descriptors
    assert w["persistent"] is persistent
    assert (w["per_tile_instructions"] > 0) is persistent
    # two groups share the SM's tensor cores and SFUs: a trip of both takes longer than one group's alone, and less
    # than two of them one after the other (one group's softmax overlaps the other's HGMMAs)
    assert w["tile_cycles_one_group"] < w["tile_cycles"] < 2 * w["tile_cycles_one_group"]


def test_ws_per_tile_launches_leave_no_other_ctas_on_the_sm():
    """168 registers x 384 launched threads = 64 512 of the SM's 65 536: one CTA per SM (ncu run4, d=64 hopper_fwd:
    launch__occupancy_limit_registers 1, shared memory 2), where the schedule's 4 warps leave room for 2 (shared
    memory) -- what memsim.costs reads today."""
    import memsim
    from memsim.compiled import lookup
    from memsim.costs import ctas_per_sm
    hw = memsim.load_hardware("h100-sxm")
    p = AttentionProblem(4, 32, 32, 4096, 4096, 64, "bf16", False)
    s = Schedule("hopper", "fwd", 128, 128, 4, 2)
    f = lookup("hopper_fwd", p, s)
    assert f is not None and f.regs_per_thread == 168
    assert ctas_per_sm(hw, f.shared_bytes, 12, f.regs_per_thread) == (1, "registers")
    assert ctas_per_sm(hw, f.shared_bytes, s.num_warps, f.regs_per_thread) == (2, "shared memory")
