"""Backward passes (flash2: preprocess + dK/dV + dQ; naive: five launches) against float64 grads."""
import pytest
import torch

import kernels
from kernels.testing import DTYPES, MASKS, SHAPES, make_inputs, poisoned_allocations, run_case, seed_of



@pytest.mark.parametrize("mask", MASKS, ids=["full", "causal_tl", "causal_br"])
@pytest.mark.parametrize("shape_id", list(SHAPES))
@pytest.mark.parametrize("alg", ["naive", "flash2"])
def test_backward_shapes(alg, shape_id, mask, device):
    dtype = DTYPES[(list(SHAPES).index(shape_id) + (alg == "naive")) % 3]
    run_case(alg, SHAPES[shape_id], dtype, device, causal=mask[0], align=mask[1], backward=True)


@pytest.mark.parametrize("d", [16, 32, 64, 128, 256])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alg", ["naive", "flash2"])
def test_backward_dtypes_head_dims(alg, dtype, d, device):
    causal = d in (32, 128)
    run_case(alg, (1, 2, 1, 33, 40, d), dtype, device, causal=causal, backward=True)


@pytest.mark.parametrize("blocks", [(16, 32), (32, 16), (64, 16)], ids=lambda b: f"{b[0]}x{b[1]}")
@pytest.mark.parametrize("lens", [(77, 113), (113, 77)], ids=lambda n: f"q{n[0]}_kv{n[1]}")
@pytest.mark.parametrize("align", ["top_left", "bottom_right"])
def test_flash2_backward_blocks(align, lens, blocks, device):
    run_case("flash2", (1, 1, 1, lens[0], lens[1], 16), "fp32", device, causal=True, align=align,
             blocks=blocks, backward=True)


@pytest.mark.parametrize("layout", ["bnhd", "wide"])
@pytest.mark.parametrize("alg", ["naive", "flash2"])
def test_backward_strides(alg, layout, device):
    run_case(alg, (2, 2, 1, 33, 40, 32), "fp16", device, layout=layout, causal=True, backward=True)


@pytest.mark.parametrize("alg", ["naive", "flash2"])
def test_backward_fully_masked_rows(alg, device):
    res, (dq, dk, dv) = run_case(alg, (1, 2, 2, 50, 9, 16), "bf16", device, causal=True, align="bottom_right",
                                 backward=True)
    assert (dq[:, :, :41].float() == 0).all()


@pytest.mark.parametrize("alg", ["naive", "flash2"])
def test_backward_scale_heads_fastest_large_logits(alg, device):
    run_case(alg, (2, 2, 2, 40, 24, 32), "fp16", device, scale=1.0, input_scale=4.0,
             grid_order="heads_fastest", causal=True, backward=True)


def test_flash2_backward_deterministic(device):
    """No atomics: two backward runs give bitwise identical gradients."""
    q, k, v, do = make_inputs(1, 4, 2, 70, 90, 32, "bf16", device, seed_of("determinism"))
    p = kernels.problem_for(q, k, v, causal=True)
    fs = kernels.default_schedule(p, "flash2", "fwd", device)
    bs = kernels.default_schedule(p, "flash2", "bwd", device)
    fwd = kernels.forward(p, fs, q, k, v)
    with poisoned_allocations():
        g1 = kernels.backward(p, bs, q, k, v, fwd.o, do, fwd)
        g2 = kernels.backward(p, bs, q, k, v, fwd.o, do, fwd)
    for a, b in zip(g1, g2):
        assert torch.equal(a, b)


# --- saved tensors are checked before any launch (issue 11: a wrong lse was an out-of-bounds read) -------

def _flash_fwd(device, alg="flash2"):
    q, k, v, do = make_inputs(1, 2, 1, 33, 40, 16, "fp16", device, seed_of("saved", alg))
    p = kernels.problem_for(q, k, v, causal=True)
    s = kernels.Schedule(alg, "fwd", 16, 16, 1, 1)
    return p, q, k, v, do, kernels.forward(p, s, q, k, v)


SAVED_LSE_CASES = {
    "wrong_shape": (lambda lse: lse[:, :, :-1].contiguous(), ValueError, r"must have shape \(1, 2, 33\)"),
    "fp16": (lambda lse: lse.half(), ValueError, r"dtype torch.float32"),
    "flat": (lambda lse: lse.reshape(-1), ValueError, r"must have shape"),
    "non_contiguous": (lambda lse: lse.transpose(1, 2).contiguous().transpose(1, 2), ValueError,
                       r"must be contiguous"),
    "not_a_tensor": (lambda lse: lse.tolist(), TypeError, r"must be a torch.Tensor"),
    "missing": (None, ValueError, r"fwd.saved\['lse'\] .* is missing; fwd.saved has \[\]"),
}


@pytest.mark.parametrize("case", list(SAVED_LSE_CASES))
@pytest.mark.parametrize("fwd_alg", ["flash2", "flash1"])
def test_backward_refuses_a_bad_saved_lse(fwd_alg, case, device):
    change, exc, needle = SAVED_LSE_CASES[case]
    p, q, k, v, do, fwd = _flash_fwd(device, fwd_alg)
    if change is None:
        fwd.saved.clear()
    else:
        fwd.saved["lse"] = change(fwd.saved["lse"])
    with pytest.raises(exc, match=needle):
        kernels.backward(p, kernels.Schedule("flash2", "bwd", 16, 16, 1, 1), q, k, v, fwd.o, do, fwd)


@pytest.mark.parametrize("change,needle", [
    (lambda P: P.float(), r"dtype torch.float16"),
    (lambda P: P.transpose(1, 2).contiguous().transpose(1, 2), r"must be contiguous"),
    (lambda P: P[:1], r"must have shape \(2, 33, 40\)"),
], ids=["dtype", "non_contiguous", "shape"])
def test_naive_backward_refuses_a_bad_saved_p(change, needle, device):
    q, k, v, do = make_inputs(1, 2, 1, 33, 40, 16, "fp16", device, seed_of("saved", "naive"))
    p = kernels.problem_for(q, k, v)
    fwd = kernels.forward(p, kernels.Schedule("naive", "fwd", 16, 16, 1, 1), q, k, v)
    fwd.saved["P"] = change(fwd.saved["P"])
    with pytest.raises(ValueError, match=needle):
        kernels.backward(p, kernels.Schedule("naive", "bwd", 16, 16, 1, 1), q, k, v, fwd.o, do, fwd)


def test_backward_wants_a_forward_result(device):
    p, q, k, v, do, fwd = _flash_fwd(device)
    with pytest.raises(TypeError, match="fwd must be the ForwardResult"):
        kernels.backward(p, kernels.Schedule("flash2", "bwd", 16, 16, 1, 1), q, k, v, fwd.o, do, fwd.saved)
