"""Simulated global traffic, FLOPs and exps equal the closed forms exactly, at every grain; with a
tiny L2 every global byte is a DRAM byte."""
import pytest

from memsim import analytic
from memsim.algorithms import registered, spec_for
from memsim.hardware import load_hardware
from memsim.schedule import AttentionProblem, Schedule, ScheduleError, kernel_launches
from memsim.sim import simulate

HW = load_hardware("h100-sxm")
#: a 1-byte L2 under another name, so no calibration file applies (no request merging before the L2): every
#: global byte is an L2 request and a DRAM byte
TINY = HW.with_overrides(l2_bytes=1, name="tiny-l2-test")

#: every registered (algorithm, phase) over AttentionProblem: a new entry is checked here without an edit
SCHEDULES = [k for k in registered() if spec_for(*k).problem_type is AttentionProblem]
PROBLEMS = [
    # B, Hq, Hkv, Nq, Nkv, d, dtype, causal, align
    (1, 2, 2, 256, 256, 32, "fp16", False, "top_left"),
    (2, 4, 2, 203, 113, 64, "bf16", True, "top_left"),        # ragged, GQA, causal
    (1, 2, 1, 113, 203, 16, "fp32", True, "bottom_right"),   # MQA, seq_q < seq_kv
    (1, 3, 3, 300, 100, 32, "fp16", True, "bottom_right"),   # rows that see no key
    (1, 1, 1, 1, 17, 16, "fp16", True, "top_left"),           # one query
]
KEYS = ("global_read_bytes", "global_write_bytes", "flops", "exp_count")


@pytest.mark.parametrize("alg, phase", SCHEDULES)
@pytest.mark.parametrize("prob", PROBLEMS, ids=lambda t: "-".join(map(str, t)))
@pytest.mark.parametrize("bm, bn", [(64, 32), (16, 64)])
def test_simulated_equals_closed_form(alg, phase, prob, bm, bn):
    B, Hq, Hkv, Nq, Nk, d, dt, causal, align = prob
    p = AttentionProblem(B, Hq, Hkv, Nq, Nk, d, dt, causal, causal_align=align)
    s = Schedule(alg, phase, bm, bn)
    try:
        kernel_launches(p, s)
    except ScheduleError:  # refused by its entry's own rule (hopper_ws bwd's 16-row WS tiles): the same tiles, 1 stage
        s = Schedule(alg, phase, bm, bn, num_stages=1)
    cf = analytic.launch_counts(p, s)
    l1 = analytic.l1_reread_bytes(p, s)
    assert list(l1) == list(cf) and (alg == "flash1" or not any(l1.values()))
    for grain, rb in (("tile", None), ("run", 3), ("cta", None)):
        r = simulate(p, s, HW, grain=grain, run_blocks=rb, sectors=False)
        assert [k["name"] for k in r.kernels] == list(cf)
        for k in r.kernels:
            assert k["l1_reread_bytes"] == l1[k["name"]], (grain, k["name"])
            for key in KEYS:
                extra = k["l1_reread_bytes"] if key == "global_read_bytes" else 0  # explicit, never silent
                assert k[key] - extra == cf[k["name"]][key], (grain, k["name"], key)
    tiny = simulate(p, s, TINY, grain="tile", sectors=False).total
    contract = analytic.global_bytes(p, s)["global_read_bytes"]
    assert (tiny["dram_read_bytes"] - tiny["code_dram_read_bytes"] == tiny["global_read_bytes"] - tiny["l1_reread_bytes"]
            == contract)
    assert tiny["l2_read_bytes"] == contract  # the L1-absorbed re-read never reaches L2
    assert tiny["dram_write_bytes"] == tiny["global_write_bytes"]


@pytest.mark.parametrize("warps, extra_stats", [(4, 0), (8, 1)])
def test_flash1_l1_reread_is_the_o_tile_per_revisit(warps, extra_stats):
    """H100 (ncu, Triton 3.6): flash1 LSU global loads - contract = one fp32 O workspace tile per revisit
    (4 warps, 64-row tiles), plus one more m and l per row with 8 warps (gpt2m / sweep_flash1 cases)."""
    p = AttentionProblem(2, 3, 3, 1024, 1024, 64)
    s = Schedule("flash1", block_m=64, block_n=128, num_warps=warps)
    revisits = 2 * 3 * 1024 * (1024 // 128 - 1)
    assert analytic.l1_reread_bytes(p, s)["flash1_fwd"] == revisits * (64 * 4 + extra_stats * 2 * 4)
    r = simulate(p, s, HW, sectors=False)
    assert r.total["global_read_bytes"] == analytic.global_bytes(p, s)["global_read_bytes"] + r.total["l1_reread_bytes"]


@pytest.mark.parametrize("dtype, o_tile", [("fp16", 64 * 4), ("bf16", 64 * 4), ("fp32", 0)])
def test_flash1_fp32_loads_its_o_workspace_without_excessive_sectors(dtype, o_tile):
    """ncu's per-instruction sector counts (benchmarks/ldg_sectors_gpu.sh, H100, 2026-11-26 18:04 UTC): the fp16 /
    bf16 kernels' O-workspace LDG.E.128s touch ~30 sectors per warp instruction (16 ideal), the fp32 kernel's none
    in excess: only the 16-bit kernels re-read the O tile at L1's tag stage."""
    p = AttentionProblem(2, 3, 3, 1024, 1024, 64, dtype=dtype)
    s = Schedule("flash1", block_m=64, block_n=128, num_warps=4)
    revisits = 2 * 3 * 1024 * (1024 // 128 - 1)
    assert analytic.l1_reread_bytes(p, s)["flash1_fwd"] == revisits * o_tile


#: fp32 flash1 records the model misses, and why (each a strict xfail below: it fails once the miss is fixed)
FLASH1_FP32_KNOWN_MISSES = {
    # held-out AA (eighteenth session): seq 284 is not a multiple of 16, so the loop loads Q and the O workspace as
    # runs of four 4-byte LDG.E (l1_load_factor 2.5); flash1 names no split tensor, so the full tile's mix lands on
    # all its reads: 55.4 MB against ncu's 24.7 (notes/fidelity.md "What to do next (eighteenth session)" 2)
    "r26112708_010_flash1_fwd_fp32_d32_q284_k284_bh85": "split 4-byte Q / O-workspace loads priced as the full mix",
}


def _flash1_fp32_misses(known: bool) -> list:
    import glob
    import json
    from pathlib import Path
    from memsim.schedule import problem_from_dict, schedule_from_dict
    root = Path(__file__).resolve().parents[1]
    files = sorted(glob.glob(str(root / "verification/data/nvidia-h100-80gb-hbm3/random/*/*flash1_fwd_fp32*.json")))
    assert len(files) >= 5
    bad = []
    for f in files:
        r = json.loads(Path(f).read_text())
        if (r["case"] in FLASH1_FP32_KNOWN_MISSES) != known:
            continue
        want = sum(k["global_read_bytes"] for k in r["kernels"])
        if want < 1e6:
            continue  # the error floor (1 MB) of the fidelity report
        got = simulate(problem_from_dict(r["problem"]), schedule_from_dict(r["schedule"]), HW).total["global_read_bytes"]
        if abs(got / want - 1) > 0.03:
            bad.append(f"{r['case']}: model {got / 1e6:.1f} MB, card {want / 1e6:.1f} MB")
    return bad


def test_flash1_fp32_live_records_match_the_card():
    """Every measured fp32 flash1 forward of the random sets but the named misses: global reads within 3 % of ncu's
    (they were +2..+49 % with the 16-bit kernels' O re-read)."""
    bad = _flash1_fp32_misses(known=False)
    assert not bad, "\n".join(bad)


@pytest.mark.xfail(strict=True, reason="FLASH1_FP32_KNOWN_MISSES: split 4-byte loads priced as the full tile's mix")
def test_flash1_fp32_known_misses_match_the_card():
    bad = _flash1_fp32_misses(known=True)
    assert not bad, "\n".join(bad)


def test_flash2_fwd_formula_is_the_papers_count():
    """No mask: Q + O + lse once, K and V once per Q block."""
    p = AttentionProblem(4, 16, 16, 4096, 4096, 64)
    s = Schedule("flash2", block_m=128, block_n=64)
    g = analytic.global_bytes(p, s)
    assert g["global_read_bytes"] == p.q_bytes() + 32 * p.kv_bytes()
    assert g["global_write_bytes"] == p.o_bytes() + 4 * 16 * 4096 * 4


def test_flash1_asymptotic_shape():
    """flash1's workspace traffic ~ N^2 d^2 / M: doubling block_n (the SRAM given to K/V) halves it."""
    p = AttentionProblem(1, 1, 1, 2048, 2048, 64)
    a = analytic.global_bytes(p, Schedule("flash1", block_m=64, block_n=32))
    b = analytic.global_bytes(p, Schedule("flash1", block_m=64, block_n=64))
    ta, tb = sum(a[k] for k in KEYS[:2]), sum(b[k] for k in KEYS[:2])
    assert 1.8 < ta / tb < 2.1
    assert analytic.flash1_global_asymptotic(2048, 64, 2 * 128 * 1024) * 2 == analytic.flash1_global_asymptotic(
        2048, 64, 128 * 1024)


def test_roofline_below_simulated_time():
    p = AttentionProblem(2, 8, 8, 1024, 1024, 64)
    for alg, ph in SCHEDULES:
        s = Schedule(alg, ph)
        r = simulate(p, s, HW, sectors=False)
        assert analytic.roofline_time(p, s, HW) <= r.time_s * 1.05


# --- issue 11 item 7 (audit 2026-11-26): the closed forms are linear in the blocks -------------------------------
def _qrows_for_j_quadratic(rows, V, nb):
    """The O(Mb x Nb) definition `_sums` used before: rows of the Q blocks with V_i > j."""
    return [sum(r for r, v in zip(rows, V) if v > j) for j in range(nb)]


def test_linear_sums_equal_the_quadratic_definition():
    """`_sums` (linear since the audit) equals the old quadratic list and sums on random problems: causal in
    both alignments and not, ragged lengths, seq_q above and below seq_kv, GQA, tiles 16-128."""
    from hypothesis import given, settings, strategies as st

    from memsim.algorithms_builtin import _sums, visible_blocks
    from memsim.schedule import cdiv

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.integers(1, 700), st.integers(1, 700), st.sampled_from([1, 2, 4]), st.sampled_from([1, 2, 3]),
           st.booleans(), st.sampled_from(["top_left", "bottom_right"]),
           st.sampled_from([16, 32, 64, 128]), st.sampled_from([16, 32, 64, 128]), st.sampled_from(["flash2", "flash1"]))
    def check(nq, nk, heads_kv, group, causal, align, bm, bn, alg):
        p = AttentionProblem(2, heads_kv * group, heads_kv, nq, nk, 32, "fp16", causal, causal_align=align)
        s = Schedule(alg, block_m=bm, block_n=bn)
        x = _sums(p, s)
        nb = cdiv(nk, bn)
        assert x.V == visible_blocks(p, s)
        assert x.qrows_for_j == _qrows_for_j_quadratic(x.rows, x.V, nb)
        cols = [min(nk, v * bn) for v in x.V]
        assert (x.sum_rc, x.sum_cols, x.sum_rv) == (sum(r * c for r, c in zip(x.rows, cols)), sum(cols),
                                                     sum(r * v for r, v in zip(x.rows, x.V)))
    check()
