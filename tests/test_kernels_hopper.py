"""The hopper forward (kernels/hopper.py) against the float64 reference, by DESIGN.md's rule.

Runs in Triton's CPU interpreter (TMA tensor descriptors are interpreted: out-of-bounds rows are
zero-filled on load and dropped on store, as the copy engine does), and unchanged on a GPU.  Both
loop variants are exercised: the warp-specialised one (num_warps 4, num_stages 2, fp16/bf16) and the
software-pipelined two-loop one (any other schedule).  The GPU run of the same file is the H100
exactness evidence (benchmarks/hopper_gpu.sh)."""
import pytest
import torch

import kernels
from kernels.hopper import check_capability, check_tma_layout, warp_specialise
from kernels.testing import (SHAPES, check_lse, check_rule, make_inputs, poisoned_allocations, seed_of,
                             yardsticks)
from memsim.schedule import Schedule, ScheduleError


def _run(shape, dtype, device, *, causal=False, align="top_left", blocks=(16, 16), ws=True, layout="contiguous",
         scale=None, input_scale=1.0, grid_order="q_fastest", backward=False):
    B, Hq, Hkv, Nq, Nkv, d = shape
    q, k, v, do = make_inputs(B, Hq, Hkv, Nq, Nkv, d, dtype, device,
                              seed_of("hopper", shape, dtype, causal, align, blocks, ws, layout, scale), layout,
                              input_scale)
    p = kernels.problem_for(q, k, v, causal=causal, scale=scale, causal_align=align)
    # ws: num_warps 4 + 2 stages selects the warp-specialised loop; 1 stage the two-loop variant
    s = Schedule("hopper", "fwd", blocks[0], blocks[1], 4, 2 if ws else 1, grid_order)
    assert warp_specialise(p, s) == (ws and dtype != "fp32")
    kw = dict(causal=causal, scale=scale, causal_align=align)
    with poisoned_allocations():
        res = kernels.forward(p, s, q, k, v)
        grads = kernels.backward(p, kernels.default_schedule(p, "flash2", "bwd", device), q, k, v, res.o, do,
                                 res) if backward else None
    ref = kernels.reference(q, k, v, do=do if backward else None, **kw)
    ys = yardsticks(q, k, v, do=do if backward else None, **kw)
    check_rule("o", res.o, ref[0], dtype=dtype, **ys["o"])
    check_lse(res.lse, ref[1])
    if backward:
        for name, g, gr in zip(("dq", "dk", "dv"), grads, ref[2:]):
            check_rule(name, g, gr, dtype=dtype, **ys[name])
    return res


MASKS = [(False, "top_left"), (True, "top_left"), (True, "bottom_right")]


@pytest.mark.parametrize("mask", MASKS, ids=["full", "causal_tl", "causal_br"])
@pytest.mark.parametrize("shape_id", ["n113_gqa", "q113_kv17_mqa", "q33_kv47_gqa"])
@pytest.mark.parametrize("ws", [True, False], ids=["ws", "pipelined"])
def test_hopper_shapes(ws, shape_id, mask, device):
    dtype = ("fp16", "bf16")[(list(SHAPES).index(shape_id) + ws) % 2]
    _run(SHAPES[shape_id], dtype, device, causal=mask[0], align=mask[1], ws=ws)


@pytest.mark.parametrize("d", [64, 128, 256])
def test_hopper_head_dims(d, device):
    _run((1, 2, 1, 33, 47, d), "bf16", device, causal=d != 64, blocks=(32, 16))


@pytest.mark.parametrize("blocks", [(16, 32), (32, 16)], ids=lambda b: f"{b[0]}x{b[1]}")
@pytest.mark.parametrize("ws", [True, False], ids=["ws", "pipelined"])
def test_hopper_blocks_and_fp32(ws, blocks, device):
    _run((1, 1, 1, 77, 113, 16), "fp32" if not ws else "fp16", device, causal=True, align="bottom_right",
         blocks=blocks, ws=ws)


@pytest.mark.parametrize("layout", ["bnhd", "wide"])
def test_hopper_strided_inputs(layout, device):
    """Per-head descriptors take any 16-byte-multiple strides: a transposed (B, N, H, d) buffer, a slice."""
    _run((2, 2, 1, 33, 40, 32), "fp16", device, layout=layout, causal=True)


def test_hopper_fully_masked_rows_large_logits_heads_fastest(device):
    res = _run((1, 2, 2, 50, 9, 16), "fp16", device, causal=True, align="bottom_right", input_scale=6.0,
               scale=1.0, grid_order="heads_fastest")
    assert (res.o[:, :, :41].float() == 0).all() and (res.lse[:, :, :41] == float("-inf")).all()


def test_hopper_forward_pairs_with_flash2_backward(device):
    """The saved lse is flash2's: kernels.backward with a flash2 schedule takes the hopper forward's result."""
    _run((1, 2, 1, 40, 33, 32), "bf16", device, causal=True, backward=True)
    q, k, v, _ = make_inputs(1, 2, 2, 24, 24, 16, "fp16", device, 7)
    q.requires_grad_(True)
    o = kernels.attention(q, k, v, is_causal=True, schedule=Schedule("hopper", "fwd", 16, 16, 4, 2))
    o.float().sum().backward()
    assert q.grad is not None and q.grad.isfinite().all()


def test_tma_layout_is_checked():
    buf = torch.zeros(1 * 2 * 16 * 16 + 1, dtype=torch.float16)
    t = buf[1:].view(1, 2, 16, 16)  # 2-byte offset: not 16-byte aligned
    with pytest.raises(ValueError, match=r"16-byte aligned start.*data_ptr\(\) % 16 = 2.*flash2"):
        check_tma_layout("q", t)
    odd = torch.zeros(1, 2, 16, 20, dtype=torch.float16)[..., :16]  # row stride 40 bytes
    with pytest.raises(ValueError, match=r"stride\(2\) = 20 elements \(40 bytes\)"):
        check_tma_layout("k", odd)
    check_tma_layout("v", torch.zeros(1, 2, 16, 16, dtype=torch.float16))  # fine: nothing raised


@pytest.mark.parametrize("case", [
    ((1, 2, 1, 300, 300, 64), (128, 128), True, "top_left"),
    ((1, 1, 1, 260, 200, 128), (128, 64), True, "bottom_right"),
    ((1, 2, 2, 200, 260, 128), (128, 128), False, "top_left"),
    ((1, 1, 1, 150, 150, 256), (128, 32), True, "top_left"),
], ids=["d64_128x128_causal", "d128_128x64_causal_br", "d128_128x128_full", "d256_128x32_causal"])
def test_hopper_128_row_tiles(case, device):
    """The tiles the H100 runs: on a GPU the warp-specialised loop splits 128 Q rows over two consumer
    warpgroups (Triton's data partitioner).  Regression: Triton 3.6 offset the second warpgroup's row
    indices twice (start_m + 64 + arange(64, 128)) -- causal masks and lse rows 64 off, caught on the H100
    by benchmarks/hopper_bench.py; the kernel now forms row indices that the partitioner splits right."""
    shape, blocks, causal, align = case
    _run(shape, "bf16", device, causal=causal, align=align, blocks=blocks)


def test_capability_is_checked():
    with pytest.raises(ScheduleError, match=r"compute capability >= 9.0.*A100 is sm_80. Use flash2"):
        check_capability((8, 0), "A100")
    check_capability((9, 0), "H100")  # fine: nothing raised


@pytest.mark.parametrize("case", [
    ((2, 4, 2, 64, 64, 32), (16, 16), False, "top_left"), ((1, 2, 1, 64, 96, 16), (16, 32), True, "top_left"),
    ((2, 2, 2, 96, 64, 32), (32, 16), True, "bottom_right"), ((1, 3, 3, 48, 48, 64), (16, 16), True, "top_left"),
], ids=["gqa_full", "mqa_causal_tl_longer_kv", "causal_br_shorter_kv", "h3_causal"])
def test_hopper_persistent_experiment(case, device, monkeypatch):
    """PERSISTENT = True (the persistent forward: descriptors built once, tiles walked with the grid's stride, longest
    first when causal; contiguous tensors, lengths multiples of the tiles) is exact: GQA/MQA, both causal alignments
    with seq_q != seq_kv; on a GPU also the benchmark's 128-row tiles.  A ragged length falls back (not persistent)."""
    import kernels.hopper as kh
    monkeypatch.setattr(kh, "PERSISTENT", True)
    shape, blocks, causal, align = case
    _run(shape, "bf16", device, causal=causal, align=align, blocks=blocks)
    if device == "cuda":
        _run((2, 4, 2, 1024, 1024, 128), "bf16", device, causal=causal, align=align, blocks=(128, 128))
    from memsim.schedule import AttentionProblem
    s = Schedule("hopper", "fwd", 16, 16, 4, 2)
    t = torch.empty(1, 2, 32, 16, dtype=torch.float16)
    assert kh.persistent(AttentionProblem(1, 2, 2, 32, 32, 16, "fp16"), s, t, t, t)
    assert not kh.persistent(AttentionProblem(1, 2, 2, 40, 40, 16, "fp16"), s, t, t, t)  # 40 % 16 != 0
    assert not kh.persistent(AttentionProblem(1, 2, 2, 32, 32, 16, "fp32"), s, t, t, t)  # not warp-specialised
    assert not kh.persistent(AttentionProblem(1, 2, 2, 32, 32, 16, "fp16"), s, t.transpose(1, 2), t, t)  # strided


@pytest.mark.parametrize("causal, n, want", [(True, 1024, "flash2"), (True, 4096, "hopper"), (False, 1024, "hopper")])
def test_fastest_forward_rule_short_causal_keeps_flash2(causal, n, want, monkeypatch):
    """kernels.api.HOPPER_FASTEST: on a Hopper GPU with TMA-able tensors, d=128 causal below N_q = 4096 stays flash2
    (run4: flash2 10-14 % faster at causal N=1024), hopper elsewhere at d=128 (the GPU part is patched in)."""
    import kernels.api as api
    monkeypatch.setattr(api, "_hopper_capable", lambda dev: True)
    q = torch.randn(1, 1, 16, 128, dtype=torch.bfloat16)
    p = kernels.AttentionProblem(1, 1, 1, n, n, 128, dtype="bf16", causal=causal)
    assert api.fastest_forward_algorithm(p, q, q, q) == want
