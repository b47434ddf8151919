"""The masked copy of the tile loop (memsim/MODEL.md "the masked copy of the tile loop").

flash2 and hopper compile each K/V (or Q) loop twice -- the blocks every row of the tile sees whole, and the masked
ones (the causal diagonal band, a ragged last block) -- and the masked copy carries the mask arithmetic (forward d=128
128x16: 416 SASS instructions against 347; its replay 11 % slower a trip).  The workload counts each CTA's masked
trips as the kernels split their loops (`kernels._tl._kv_split`, `kernels.flash2._dkdv_setup`), the SASS reading
finds the other loop (`kernels.sass.band_profile`), and the engine prices a CTA's trips by its share of masked ones.
"""
from __future__ import annotations

import math
import random

import pytest

from memsim.schedule import AttentionProblem, Schedule
from memsim.workloads import _Ctx


def _problems(n: int, seed: int = 7):
    rng = random.Random(seed)
    for _ in range(n):
        causal = rng.random() < 0.8
        yield (AttentionProblem(batch=1, heads_q=2, heads_kv=rng.choice([1, 2]), seq_q=rng.randint(1, 700),
                                seq_kv=rng.randint(1, 700), head_dim=32, dtype="fp16", causal=causal,
                                causal_align=rng.choice(["top_left", "bottom_right"])),
               rng.choice([16, 32, 64, 128]), rng.choice([16, 32, 64, 128]))


def _sees(p: AttentionProblem, row: int, col: int) -> bool:
    return col < p.seq_kv and (not p.causal or col <= row + p.causal_offset)


@pytest.mark.parametrize("p, bm, bn", list(_problems(60)))
def test_masked_q_trips_are_the_blocks_some_row_of_the_tile_sees_only_in_part(p, bm, bn):
    """A Q block's masked K/V trips: the visible blocks that some row of the block's first row's tile does not see
    whole (the kernel's split is by the block's first row: rows past seq_q still run the tile) or that run past
    seq_kv."""
    c = _Ctx(p, Schedule("flash2", "fwd", bm, bn, 4, 2), 1)
    for i in range(c.mb):
        rows = range(i * bm, (i + 1) * bm)
        want = 0
        for j in range(c.jmax[i] + 1):
            cols = range(j * bn, (j + 1) * bn)
            whole = all(_sees(p, r, col) for r in rows for col in cols)
            want += not whole
        assert c.masked_q(i) == want, f"Q block {i} of {p}, {bm}x{bn}: {c.masked_q(i)} masked trips, want {want}"


@pytest.mark.parametrize("p, bm, bn", list(_problems(60, seed=11)))
def test_masked_kv_trips_are_the_q_blocks_whose_first_row_sees_part_of_the_block(p, bm, bn):
    """A K/V block's masked Q trips (per query head): the Q blocks from the first one some row of which sees the
    block, while the block's first row does not see all its (real) columns; none without a causal mask."""
    c = _Ctx(p, Schedule("flash2", "bwd", bm, bn, 4, 2), 1)
    for j in range(c.nb):
        last_col = min((j + 1) * bn, p.seq_kv) - 1
        want = 0
        if p.causal:
            for i in range(c.mb):
                some = any(_sees(p, r, col) for r in range(i * bm, min((i + 1) * bm, p.seq_q))
                           for col in range(j * bn, last_col + 1))
                want += some and not _sees(p, i * bm, last_col)
        assert c.masked_kv(j) == want, f"K/V block {j} of {p}, {bm}x{bn}: {c.masked_kv(j)}, want {want}"


class _Band:
    """A launch of 4 CTAs of 4 trips each, `masked` of them in the masked loop copy (the engine's minimal work
    interface, no memory traffic)."""
    name, dependent_loop, cta_l1_bytes, launch, num_warps = "band", False, None, None, 4

    def __init__(self, masked: int | None):
        self.num_ctas = 4
        self.cta_masked_tiles = None if masked is None else (lambda idx: masked)

    def cta_steps(self, idx):
        return [([], [], 0.0, 0, 2), ([], [], 0.0, 0, 2)]


@pytest.mark.parametrize("masked, unmasked_f, masked_f, per_trip_us", [
    (None, 1.0, 1.3, 1.0),  # a launch with one loop copy: the tile loop's figure
    (0, 1.0, 1.3, 1.0),     # no masked trip
    (4, 1.0, 1.3, 1.3),     # every trip masked (a short causal tile: the whole row block is the band)
    (1, 1.0, 1.3, 1.075),   # one of four
    (1, 0.8, 1.0, 0.85),    # the tile loop is the masked copy (flash2's dK/dV runs its band first)
])
def test_engine_prices_masked_trips_at_the_masked_copy(masked, unmasked_f, masked_f, per_trip_us):
    from memsim.costs import LaunchCost
    from memsim.engine import L2Cache, LaunchModel
    from memsim.hardware import load_hardware
    hw = load_hardware("h100-sxm")
    cost = LaunchCost(name="band", num_warps=4, regs_per_thread=64, ctas_per_sm=1, occupancy_limit="warps",
                      sec_per_flop=1e-15, sec_per_exp=1e-12, issue_s_per_tile=1e-6,
                      spill_l2_write_bytes_per_tile=0, spill_l2_read_bytes_per_tile=0, spill_dram_write_fraction=0.0,
                      spill_dram_read_fraction=0.0, facts_source="test", masked_trip_factor=masked_f,
                      unmasked_trip_factor=unmasked_f)
    m = LaunchModel(hw, _Band(masked), L2Cache(50 << 20), cost, num_stages=2, dram_Bps=3e12, launch_overhead_s=0.0)
    m.progress = None
    st = m.run()
    want = 4 * 4 * per_trip_us * 1e-6
    assert st.sm_busy_s == pytest.approx(want, rel=1e-9), f"busy {st.sm_busy_s * 1e6:.3f} us, want {want * 1e6:.3f}"


_COMPILE = r"""
import inspect, json, triton
from triton.backends.compiler import GPUTarget
import kernels.flash2 as f2
from kernels import sass as S
from kernels.sass import _band_range, _decode, _plain_tile_body, band_fields, disassemble
import memsim
from memsim.calibration import calibration_for
sig = {}
for name in inspect.signature(f2._flash2_fwd.fn).parameters:  # stride_q, ...: a (batch, head, row) tuple each
    sig[name] = ("*fp16" if name in ("Q", "K", "V", "O") else "*fp32" if name == "LSE"
                 else "fp32" if name == "qk_scale2" else ("i32",) * 3 if name.startswith("stride_") else "i32")
const = dict(GROUP=1, HEAD_DIM=64, BLOCK_M=64, BLOCK_N=32, CAUSAL=True, Q_FASTEST=True, PREC="tf32")
sig.update({k: "constexpr" for k in const})
c = triton.compile(triton.compiler.ASTSource(fn=f2._flash2_fwd, signature=sig, constexprs=const),
                   target=GPUTarget("cuda", 90, 32), options=dict(num_warps=4, num_stages=2))
text = disassemble(c.asm["cubin"])
ins, loops, _ = _decode(text)
cal = calibration_for(memsim.load_hardware("h100-sxm"))
out = band_fields(text, num_warps=4, max_ctas=2, lat=cal.issue)
out["tile_instructions"] = len(_plain_tile_body(ins, loops))
out["loops_with_mma"] = sum(any(x.op in S.MMA_OPS for x in ins[a:b + 1]) for _, a, b in loops)
print(json.dumps(out))
"""


def test_real_causal_forward_has_a_masked_copy_of_its_tile_loop():
    """flash2's causal forward compiled for sm_90 on this CPU (a subprocess: the tests run Triton's interpreter):
    two MMA loops, the unmasked one first (the tile loop), the masked band longer and slower a trip."""
    import json
    import os
    import subprocess
    import sys
    from kernels import sass as S
    pytest.importorskip("triton")
    try:
        S.nvdisasm_path()
    except S.SassError as e:
        pytest.skip(str(e))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", _COMPILE], capture_output=True, text=True, env=env, cwd=root,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["loops_with_mma"] == 2, out
    assert out["band_masked"] and out["band_instructions"] > out["tile_instructions"], out
    assert len(out["band_cycles"]) == 2 and all(x > 0 for x in out["band_cycles"]), out


@pytest.mark.parametrize("tile_extra, band_extra, band_masked", [
    (["FSEL"] * 2, ["FFMA"] * 8, False),  # the band is longer (its spill code, say) but the tile loop has the selects
    ([], ["FSEL", "SEL"], True),          # the band holds the mask's selects: it is the masked copy
])
def test_band_masked_is_the_copy_with_the_masks_selects(tile_extra, band_extra, band_masked):
    """Which copy is the masked one: the one with more FSEL / SEL (the mask), not the longer one -- in spilling fp32
    kernels the spill code makes the whole copy longer (14 of 126 cached kernels, notes/spills.md session 13)."""
    from kernels.sass import band_profile
    from memsim.calibration import calibration_for
    from memsim.hardware import load_hardware
    from memsim.warp_issue import Instr
    lat = calibration_for(load_hardware("h100-sxm")).issue
    if lat is None:
        pytest.skip("no issue_latency calibration")
    body = lambda extra: [Instr("HMMA", 2, mma_flops=4096)] + [Instr(op, 1) for op in extra] + [Instr("BRA", 1)]  # noqa: E731
    tile, band = body(["FADD"] * 4 + tile_extra), body(["FADD"] * 4 + band_extra)
    ins = [Instr("MOV", 1)] + tile + band + [Instr("EXIT", 1)]
    loops = [(".L_x_0", 1, len(tile)), (".L_x_1", 1 + len(tile), len(tile) + len(band))]
    out = band_profile(ins, loops, num_warps=4, max_ctas=1, lat=lat)
    assert out["band_instructions"] == len(band), out
    assert out["band_masked"] is band_masked, out
