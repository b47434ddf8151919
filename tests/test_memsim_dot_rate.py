"""The tensor-core rate of attention's chains of small dots (memsim/MODEL.md, "dot rate by tile").

`dot_chain` points (H100 80GB HBM3, benchmarks/dot_rate_gpu.py): a BM x BN x BK fp16 dot accumulated 4096 times
on chip by CTAs of 1-8 warps.  The model reads the rate at a launch's per-warp dot (2 x block_m x block_n x d /
num_warps FLOPs) and resident warps per SM from those points.
"""
from __future__ import annotations

import dataclasses
import math

import pytest

import memsim
from memsim.calibration import dot_chain_from, dot_flops_per_sm_s, dot_kind, load_calibration, uses_warpgroup_mma


@pytest.fixture(scope="module")
def h100():
    hw = memsim.load_hardware("h100-sxm")
    return hw, load_calibration(hw)


def _pt(bm, bn, bk, w, c, rate, regs=64, spills=0, dtype="float16"):
    return {"block_m": bm, "block_n": bn, "block_k": bk, "num_warps": w, "ctas_per_sm": c, "regs_per_thread": regs,
            "spills": spills, "flops_per_sm_s": rate, "dtype": dtype}


def test_derivation_counts_resident_warps_and_drops_spilling_points(h100):
    hw, _ = h100
    rows = dot_chain_from([_pt(16, 16, 64, 1, 4, 1e12), _pt(128, 128, 64, 8, 4, 5e12, regs=255),
                           _pt(128, 64, 64, 1, 1, 3e10, spills=40), _pt(64, 64, 32, 4, 1, 2e11, dtype="float32"),
                           dict(_pt(16, 16, 64, 1, 1, 5e11), operand_b="memory")],  # measured, not used yet
                          hw)["dot_chain"]
    assert rows == (("fma", 2.0 * 64 * 64 * 32 / 4, 4, 2e11), ("mma", 2.0 * 16 * 16 * 64, 4, 1e12),
                    ("wgmma", 2.0 * 128 * 128 * 64 / 8, 8, 5e12)), rows
    assert dot_chain_from([], hw) == {}


def test_warpgroup_rule():
    assert uses_warpgroup_mma(64, 4) and uses_warpgroup_mma(128, 8)
    assert not uses_warpgroup_mma(32, 4) and not uses_warpgroup_mma(128, 2)
    assert dot_kind("fp32", 128, 8) == "fma" and dot_kind("bf16", 128, 8) == "wgmma" and dot_kind("fp16", 16, 1) == "mma"


@pytest.mark.parametrize("kind,dtype", [("mma", "fp16"), ("fma", "fp32")])
def test_measured_point_is_returned(h100, kind, dtype):
    _, cal = h100
    _, flops_per_warp, warps_per_sm, rate = next(r for r in cal.dot_chain if r[0] == kind)
    bm, w = 16, 1
    got = dot_flops_per_sm_s(cal, dtype, block_m=bm, block_n=1, head_dim=flops_per_warp * w / 2 / bm,
                             num_warps=w, warps_per_sm=warps_per_sm)
    assert got == pytest.approx(rate)


def test_without_points_of_a_kind_the_gemm_rate_stays(h100):
    _, cal = h100
    no_fma = dataclasses.replace(cal, dot_chain=tuple(r for r in cal.dot_chain if r[0] != "fma"))
    assert dot_flops_per_sm_s(no_fma, "fp32", block_m=16, block_n=16, head_dim=64, num_warps=1,
                              warps_per_sm=1) == cal.dot_flops_per_sm_s["fp32"]


def test_small_tiles_are_slower_than_large(h100):
    _, cal = h100
    small = dot_flops_per_sm_s(cal, "bf16", block_m=16, block_n=32, head_dim=128, num_warps=2, warps_per_sm=8)
    large = dot_flops_per_sm_s(cal, "bf16", block_m=128, block_n=128, head_dim=128, num_warps=8, warps_per_sm=8)
    assert small < 0.4 * large, (small, large)


@pytest.mark.parametrize("kinds,dtype", [(("mma", "wgmma"), "fp16"), (("fma",), "fp32")])
def test_each_point_is_predicted_from_the_others_better_than_by_one_gemm_rate(h100, kinds, dtype):
    """Leave one point out, predict it from the rest: the lookup must beat the single best-GEMM rate the model
    used before (which is what the points are evidence against).  H100, 2026-11-26, median |log error|:
    fp16 0.23 vs 0.94 (the GEMM rate), fp32 0.24 vs 0.42."""
    _, cal = h100
    pts = cal.dot_chain
    mine = [i for i, r in enumerate(pts) if r[0] in kinds]
    assert len(mine) >= 40
    gemm = cal.dot_flops_per_sm_s[dtype]
    loo, const = [], []
    for i in mine:
        kind, flops_per_warp, warps_per_sm, rate = pts[i]
        rest = dataclasses.replace(cal, dot_chain=pts[:i] + pts[i + 1:])
        w, bm = (4, 64) if kind == "wgmma" else (1, 16)
        got = dot_flops_per_sm_s(rest, dtype, block_m=bm, block_n=1, head_dim=flops_per_warp * w / 2 / bm,
                                 num_warps=w, warps_per_sm=warps_per_sm)
        loo.append(abs(math.log(got / rate)))
        const.append(abs(math.log(gemm / rate)))
    med = lambda xs: sorted(xs)[len(xs) // 2]
    assert med(loo) < med(const), (f"leave-one-out median |log error| {med(loo):.2f} vs one GEMM rate "
                                   f"{med(const):.2f}")


def test_engine_uses_the_tile_rate():
    """flash2 backward on 16 x 32 tiles with 2 warps (set D's r2611_007 shape): the dots bind at the chain
    rate, several times slower than the best GEMM rate would make them."""
    from memsim.schedule import AttentionProblem, Schedule
    hw = memsim.load_hardware("h100-sxm")
    cal = load_calibration(hw)
    p = AttentionProblem(batch=9, heads_q=1, heads_kv=1, seq_q=4096, seq_kv=4096, head_dim=128, dtype="bf16")
    s = Schedule("flash2", "bwd", block_m=16, block_n=32, num_warps=2, num_stages=4)
    k = {x["name"]: x for x in memsim.simulate(p, s, hw).to_dict()["kernels"]}["flash2_bwd_dkdv"]
    at_gemm = k["flops"] / (cal.dot_flops_per_sm_s["bf16"] * hw.num_sms)
    assert k["time_s"] > 2.5 * at_gemm, (k["time_s"], at_gemm)

