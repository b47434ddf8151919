"""The shared vocabulary: validation, masking counts and launch grids."""
import itertools
import subprocess
import sys

import pytest

from memsim.schedule import (AttentionProblem, Schedule, ScheduleError, check_fits, kernel_launches,
                             problem_from_dict, schedule_from_dict, sram_bytes_per_cta)


def prob(**kw):
    base = dict(batch=2, heads_q=4, heads_kv=2, seq_q=100, seq_kv=70, head_dim=64)
    base.update(kw)
    return AttentionProblem(**base)


@pytest.mark.parametrize("field,value,needle", [
    ("batch", 0, "batch must be positive"),
    ("seq_q", -3, "seq_q must be positive"),
    ("head_dim", 64.0, "head_dim must be an int"),
    ("heads_q", 3, "multiple of heads_kv"),
    ("dtype", "fp8", "dtype = 'fp8' is not one of"),
    ("causal_align", "middle", "causal_align"),
    ("scale", -1.0, "scale must be a positive finite"),
    ("scale", float("nan"), "scale must be a positive finite"),
    ("scale", True, "scale must be a positive finite"),        # a bool is not a number here
    ("causal", "no", "causal must be a bool"),                  # a truthy string is not True
    ("causal", 1, "causal must be a bool"),
])
def test_problem_rejects_bad_fields(field, value, needle):
    with pytest.raises(ScheduleError, match=needle):
        prob(**{field: value})


@pytest.mark.parametrize("field,value,needle", [
    ("algorithm", "flash3", "algorithm = 'flash3'"),
    ("phase", "both", "phase"),
    ("block_m", 96, "power of two"),
    ("block_n", 8, "power of two >= 16"),
    ("num_warps", 3, "num_warps"),
    ("num_stages", 0, "num_stages must be positive"),
    ("grid_order", "random", "grid_order"),
    ("sp_dtype", "int8", "sp_dtype"),
])
def test_schedule_rejects_bad_fields(field, value, needle):
    with pytest.raises(ScheduleError, match=needle):
        Schedule(**{field: value})


def test_flash1_has_no_backward():
    with pytest.raises(ScheduleError, match=r"no registered \(flash1, bwd\); registered: .*\(flash2, bwd\)"):
        Schedule("flash1", "bwd")


def test_default_scale_is_inverse_sqrt_head_dim():
    assert prob(head_dim=64).scale == pytest.approx(0.125)
    assert prob(scale=0.5).scale == 0.5


@pytest.mark.parametrize("nq,nk,align", list(itertools.product([1, 5, 17, 64], [1, 4, 17, 70], ["top_left", "bottom_right"])))
def test_visible_pairs_match_brute_force(nq, nk, align):
    p = prob(seq_q=nq, seq_kv=nk, causal=True, causal_align=align)
    brute = sum(1 for r in range(nq) for c in range(nk) if c <= r + p.causal_offset)
    assert p.visible_pairs() == brute == sum(p.visible_cols(r) for r in range(nq))


@pytest.mark.parametrize("nq,nk,align,bm,bn", list(itertools.product(
    [17, 64, 130], [16, 70, 129], ["top_left", "bottom_right"], [16, 32], [16, 64])))
def test_tile_visible_matches_elementwise_mask(nq, nk, align, bm, bn):
    p = prob(seq_q=nq, seq_kv=nk, causal=True, causal_align=align)
    for r0 in range(0, nq, bm):
        r1 = min(r0 + bm, nq)
        for c0 in range(0, nk, bn):
            c1 = min(c0 + bn, nk)
            any_visible = any(c <= r + p.causal_offset for r in range(r0, r1) for c in range(c0, c1))
            assert p.tile_visible(r0, r1, c0) == any_visible, (r0, r1, c0)


@pytest.mark.parametrize("algorithm,phase,names", [
    ("flash2", "fwd", ["flash2_fwd"]),
    ("flash2", "bwd", ["flash2_bwd_preprocess", "flash2_bwd_dkdv", "flash2_bwd_dq"]),
    ("flash1", "fwd", ["flash1_fwd"]),
    ("naive", "fwd", ["naive_qk", "naive_softmax", "naive_pv"]),
    ("naive", "bwd", ["naive_bwd_dv", "naive_bwd_dp", "naive_bwd_ds", "naive_bwd_dq", "naive_bwd_dk"]),
])
def test_launch_names(algorithm, phase, names):
    assert [l.name for l in kernel_launches(prob(), Schedule(algorithm, phase, 32, 16))] == names


@pytest.mark.parametrize("order", ["q_fastest", "heads_fastest"])
def test_grid_order_puts_the_right_axis_first(order):
    p = prob(seq_q=1000)
    (launch,) = kernel_launches(p, Schedule("flash2", "fwd", 128, 64, grid_order=order))
    mb, bh = 8, p.batch * p.heads_q
    if order == "q_fastest":
        assert launch.grid == (mb, bh, 1) and launch.axes[0] == "q_block"
    else:
        assert launch.grid == (bh, mb, 1) and launch.axes[0] == "bh"
    assert launch.num_ctas == mb * bh


def test_gqa_dkdv_pass_runs_per_kv_head():
    p = prob(heads_q=8, heads_kv=2)
    dkdv = kernel_launches(p, Schedule("flash2", "bwd", 64, 64))[1]
    assert dkdv.grid == (2, p.batch * 2, 1)


def test_check_fits_reports_bytes_needed_and_available():
    p = prob(head_dim=256, dtype="fp32")
    s = Schedule("flash2", "fwd", 256, 256, num_stages=4)
    need = sram_bytes_per_cta(p, s)
    with pytest.raises(ScheduleError, match=rf"needs {need} bytes .* allows 232448"):
        check_fits(p, s, 232448, "h100-sxm")
    assert check_fits(p, Schedule("flash2", "fwd", 64, 32), 232448) <= 232448


def test_sram_grows_with_tiles_and_stages():
    p = prob()
    a = sram_bytes_per_cta(p, Schedule(block_m=64, block_n=64, num_stages=2))
    assert sram_bytes_per_cta(p, Schedule(block_m=128, block_n=64, num_stages=2)) > a
    assert sram_bytes_per_cta(p, Schedule(block_m=64, block_n=64, num_stages=3)) > a


def test_round_trip_and_unknown_fields():
    p, s = prob(causal=True), Schedule("naive", "bwd", 64, 32, sp_dtype="fp32")
    assert problem_from_dict(p.to_dict()) == p and schedule_from_dict(s.to_dict()) == s
    with pytest.raises(ScheduleError, match="unknown Schedule field"):
        schedule_from_dict({"algo": "flash2"})


def test_nominal_flops():
    p = prob(seq_q=128, seq_kv=128)
    f = 4 * 2 * 4 * 128 * 128 * 64
    assert p.nominal_flops("fwd") == f and p.nominal_flops("bwd") == 2.5 * f
    assert prob(seq_q=128, seq_kv=128, causal=True).nominal_flops() == f / 2


def test_schedule_module_imports_neither_simpy_nor_numpy():
    code = "import sys, memsim.schedule, memsim; assert 'simpy' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
