"""Forward passes of naive, flash1 and flash2 against the float64 reference (DESIGN.md's rule).

Runs in Triton's CPU interpreter without a GPU (small shapes), on the GPU unchanged when present.
Every run happens under poisoned allocations (NaN-filled buffers), on fresh random inputs."""
import pytest

from kernels.testing import DTYPES, MASKS, SHAPES, run_case

ALGS = ["naive", "flash1", "flash2"]


@pytest.mark.parametrize("mask", MASKS, ids=["full", "causal_tl", "causal_br"])
@pytest.mark.parametrize("shape_id", list(SHAPES))
@pytest.mark.parametrize("alg", ALGS)
def test_forward_shapes(alg, shape_id, mask, device):
    dtype = DTYPES[list(SHAPES).index(shape_id) % 3]  # every dtype meets every kind of shape across algs
    if alg == "flash1":
        dtype = DTYPES[(list(SHAPES).index(shape_id) + 1) % 3]
    run_case(alg, SHAPES[shape_id], dtype, device, causal=mask[0], align=mask[1])


@pytest.mark.parametrize("d", [16, 32, 64, 128, 256])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alg", ALGS)
def test_forward_dtypes_head_dims(alg, dtype, d, device):
    causal = d in (32, 128)
    run_case(alg, (1, 2, 1, 33, 47, d), dtype, device, causal=causal)


# tile shapes that are not square exercise the mask/loop-bound arithmetic at block edges
@pytest.mark.parametrize("blocks", [(16, 32), (32, 16), (64, 16)], ids=lambda b: f"{b[0]}x{b[1]}")
@pytest.mark.parametrize("lens", [(77, 113), (113, 77)], ids=lambda n: f"q{n[0]}_kv{n[1]}")
@pytest.mark.parametrize("align", ["top_left", "bottom_right"])
@pytest.mark.parametrize("alg", ["flash1", "flash2"])
def test_forward_blocks(alg, align, lens, blocks, device):
    run_case(alg, (1, 1, 1, lens[0], lens[1], 16), "fp32", device, causal=True, align=align, blocks=blocks)


@pytest.mark.parametrize("layout", ["bnhd", "wide"])
@pytest.mark.parametrize("alg", ALGS)
def test_forward_strides(alg, layout, device):
    """Non-contiguous q/k/v (a (B, N, H, d) buffer transposed; a slice of a wider last dim)."""
    run_case(alg, (2, 2, 1, 33, 40, 32), "fp16", device, layout=layout, causal=True)


@pytest.mark.parametrize("alg", ALGS)
def test_forward_fully_masked_rows(alg, device):
    """bottom_right with seq_q > seq_kv: the first rows see no key -> o = 0 (not NaN), lse = -inf."""
    res, _ = run_case(alg, (1, 2, 2, 50, 9, 16), "fp16", device, causal=True, align="bottom_right")
    assert (res.o[:, :, :41].float() == 0).all()
    if res.lse is not None:
        assert (res.lse[:, :, :41] == float("-inf")).all()


@pytest.mark.parametrize("alg", ALGS)
def test_forward_large_logits(alg, device):
    """Scores of several hundred: exp2 of max-subtracted scores never overflows."""
    res, _ = run_case(alg, (1, 2, 2, 40, 40, 64), "fp16", device, input_scale=6.0, scale=1.0)
    assert res.o.isfinite().all()


@pytest.mark.parametrize("alg", ALGS)
def test_forward_scale_and_heads_fastest(alg, device):
    run_case(alg, (2, 2, 2, 40, 24, 32), "bf16", device, scale=0.3, grid_order="heads_fastest", causal=True)


def test_naive_fp32_sp_dtype(device):
    """S and P in fp32 for fp16 inputs (Schedule.sp_dtype)."""
    run_case("naive", (1, 2, 2, 40, 33, 32), "fp16", device, sp_dtype="fp32", causal=True)
