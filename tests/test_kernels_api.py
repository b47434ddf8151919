"""kernels.attention (autograd), schedules, and clear errors before anything launches."""
import pytest
import torch

import kernels
from kernels.testing import check_rule, make_inputs, seed_of
from memsim.schedule import Schedule, ScheduleError, kernel_launches


def _grads_case(device, schedule, causal=True, dtype="fp16", shape=(1, 4, 2, 37, 45, 32)):
    B, Hq, Hkv, Nq, Nkv, d = shape
    q, k, v, do = make_inputs(B, Hq, Hkv, Nq, Nkv, d, dtype, device, seed_of("api", str(schedule), causal))
    for t in (q, k, v):
        t.requires_grad_(True)
    o = kernels.attention(q, k, v, causal=causal, schedule=schedule, enable_gqa=Hq != Hkv)
    o.backward(do)
    o_ref, _, *g_ref = kernels.reference(q, k, v, causal=causal, do=do)
    o_nv, _, *g_nv = kernels.naive_same_dtype(q, k, v, causal=causal, do=do)
    check_rule("o", o, o_ref, o_nv, dtype)
    for name, t, gr, gn in zip(("dq", "dk", "dv"), (q, k, v), g_ref, g_nv):
        check_rule(name, t.grad, gr, gn, dtype)


def test_attention_autograd_default(device):
    _grads_case(device, None)


def test_attention_autograd_naive(device):
    _grads_case(device, Schedule(algorithm="naive", block_m=32, block_n=16, num_warps=4 if device == "cuda" else 1,
                                 num_stages=1), causal=False)


def test_attention_autograd_flash1_then_flash2_bwd(device):
    fs = Schedule(algorithm="flash1", block_m=16, block_n=32, num_warps=4 if device == "cuda" else 1, num_stages=1)
    _grads_case(device, fs, dtype="bf16")


def test_attention_matches_sdpa_is_causal(device):
    """causal=True is SDPA's is_causal (top-left) also when seq_q != seq_kv."""
    q, k, v, _ = make_inputs(1, 2, 2, 20, 35, 32, "fp32", device, seed_of("sdpa"))
    o = kernels.attention(q, k, v, causal=True)
    o_sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (o - o_sdpa).abs().max().item() < 1e-5


def test_default_schedules_fit(device):
    for d in (16, 32, 64, 128, 256):
        for dt in ("fp16", "bf16", "fp32"):
            p = kernels.AttentionProblem(2, 4, 4, 1000, 1000, d, dt, causal=True)
            for alg, phase in (("flash2", "fwd"), ("flash2", "bwd"), ("flash1", "fwd"), ("naive", "fwd"),
                               ("naive", "bwd")):
                s = kernels.default_schedule(p, alg, phase, device)
                assert s.algorithm == alg and s.phase == phase
                assert kernel_launches(p, s)


# --- errors: raised before any launch -------------------------------------------------------------

def _qkv(device, dtype=torch.float16, shape_q=(1, 2, 16, 32), shape_kv=(1, 2, 16, 32)):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(shape_q, generator=g).to(device=device, dtype=dtype)
    k = torch.randn(shape_kv, generator=g).to(device=device, dtype=dtype)
    v = torch.randn(shape_kv, generator=g).to(device=device, dtype=dtype)
    return q, k, v


def test_error_cpu_tensors_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, k, v = _qkv("cpu")
    with pytest.raises(RuntimeError, match="CUDA device"):
        kernels.attention(q, k, v)


def test_error_shapes_dtypes(device):
    q, k, v = _qkv(device)
    with pytest.raises(TypeError, match="one dtype"):
        kernels.attention(q, k.float(), v)
    with pytest.raises(ValueError, match="same shape"):
        kernels.attention(q, k, v[:, :, :8])
    with pytest.raises(ValueError, match="4-D"):
        kernels.attention(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="head_dim"):
        kernels.attention(q, k[..., :16], v[..., :16])
    with pytest.raises(ValueError, match="multiple"):
        q3, k3, v3 = _qkv(device, shape_q=(1, 3, 16, 32), shape_kv=(1, 2, 16, 32))
        kernels.attention(q3, k3, v3)
    with pytest.raises(TypeError, match="dtype"):
        kernels.attention(q.double(), k.double(), v.double())
    with pytest.raises(ValueError, match="last dimension"):
        kernels.attention(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3))


def test_error_unsupported_head_dim(device):
    q, k, v = _qkv(device, shape_q=(1, 2, 16, 48), shape_kv=(1, 2, 16, 48))
    with pytest.raises(ScheduleError, match="head_dim 48"):
        kernels.attention(q, k, v)


def test_error_schedule_does_not_fit(device):
    q, k, v = _qkv(device, shape_q=(1, 1, 16, 256), shape_kv=(1, 1, 16, 256))
    big = Schedule(algorithm="flash2", block_m=2048, block_n=2048, num_stages=8)
    with pytest.raises(ScheduleError, match="shared memory"):
        kernels.attention(q, k, v, schedule=big)


def test_error_wrong_phase_and_problem(device):
    q, k, v = _qkv(device)
    p = kernels.problem_for(q, k, v)
    with pytest.raises(ScheduleError, match="fwd pass"):
        kernels.forward(p, Schedule(phase="bwd", block_m=16, block_n=16), q, k, v)
    p2 = kernels.problem_for(q, k, v, causal=True)
    p_other = kernels.AttentionProblem(1, 2, 2, 17, 16, 32, "fp16")
    with pytest.raises(ValueError, match="do not match"):
        kernels.forward(p_other, Schedule(block_m=16, block_n=16), q, k, v)
    fwd = kernels.forward(p2, Schedule(block_m=16, block_n=16, num_warps=1, num_stages=1), q, k, v)
    with pytest.raises(ValueError, match="do must match"):
        kernels.backward(p2, Schedule(phase="bwd", block_m=16, block_n=16), q, k, v, fwd.o, fwd.o[:, :1], fwd)
    with pytest.raises(ValueError, match=r"naive backward: fwd.saved\[.P.\].*is missing"):
        kernels.backward(p2, Schedule(algorithm="naive", phase="bwd", block_m=16, block_n=16), q, k, v,
                         fwd.o, torch.randn_like(fwd.o), fwd)


@pytest.mark.parametrize("causal", ["no", 1, None])
def test_problem_for_takes_only_real_bools(causal, device):
    """causal="no" used to mean causal (bool("no") is True); refused now, as are ints and None."""
    q, k, v = _qkv(device)
    with pytest.raises(ScheduleError, match="causal must be a bool"):
        kernels.problem_for(q, k, v, causal=causal)


def test_reference_float64_and_fully_masked(device):
    q, k, v = _qkv(device, shape_q=(1, 2, 8, 32), shape_kv=(1, 2, 3, 32))
    o, lse = kernels.reference(q, k, v, causal=True, causal_align="bottom_right")
    assert o.dtype == torch.float64 and lse.dtype == torch.float64
    assert (o[:, :, :5] == 0).all() and torch.isneginf(lse[:, :, :5]).all()
    assert torch.isfinite(lse[:, :, 5:]).all()


def test_command_line(capsys):
    from kernels.__main__ import main
    assert main(["launches", "--shape", "2,4,2,100,120,64", "--alg", "naive", "--phase", "bwd", "--json"]) == 0
    import json
    out = json.loads(capsys.readouterr().out)
    assert [x["name"] for x in out["launches"]] == ["_naive_bwd_dv", "_naive_bwd_dp", "_naive_bwd_ds",
                                                    "_naive_bwd_dq", "_naive_bwd_dk"]
    assert main(["run", "--shape", "1,2,1,20,33,16", "--causal", "--phase", "bwd", "--dtype", "fp16",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pass"] is True and set(out["check"]) == {"o", "dq", "dk", "dv"}
