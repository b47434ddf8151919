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
