"""GPU-only checks: larger shapes, the bwd d=256 limit, and a speed sanity check (skip without CUDA)."""
import pytest
import torch

import kernels
from kernels.testing import make_inputs, run_case, seed_of
from memsim.schedule import ScheduleError

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [64, 128])
def test_flash2_larger_shapes(d, causal):
    run_case("flash2", (2, 8, 2, 1023, 2048, d), "bf16", "cuda", causal=causal, align="bottom_right",
             backward=True, verbose=True)


@pytest.mark.parametrize("alg", ["naive", "flash1"])
def test_naive_flash1_larger(alg):
    run_case(alg, (2, 4, 4, 1023, 1023, 64), "fp16", "cuda", causal=True, backward=alg == "naive")


def test_head_dim_256_backward_default():
    """bwd d=256 runs with the default schedule or says clearly that it does not fit."""
    try:
        run_case("flash2", (1, 2, 2, 300, 300, 256), "bf16", "cuda", causal=True, backward=True)
    except ScheduleError as exc:
        assert "does not fit" in str(exc)


def test_speed_sanity():
    """flash2 is far faster than naive at N=4096 and reaches a sane fraction of the H100's rate."""
    import triton
    q, k, v, _ = make_inputs(4, 16, 16, 4096, 4096, 64, "fp16", "cuda", seed_of("speed"))
    p = kernels.problem_for(q, k, v)
    f2 = kernels.default_schedule(p, "flash2", "fwd", "cuda")
    nv = kernels.default_schedule(p, "naive", "fwd", "cuda")
    t_f2 = triton.testing.do_bench(lambda: kernels.forward(p, f2, q, k, v), return_mode="median")
    t_nv = triton.testing.do_bench(lambda: kernels.forward(p, nv, q, k, v), return_mode="median")
    tflops = p.nominal_flops("fwd") / (t_f2 * 1e-3) / 1e12
    print(f"flash2 fwd {t_f2:.3f} ms ({tflops:.0f} TFLOP/s), naive {t_nv:.3f} ms")
    assert t_f2 * 2 < t_nv
    assert tflops > 50
