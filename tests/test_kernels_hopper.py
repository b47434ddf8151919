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
         scale=None, input_scale=1.0, grid_order="q_fastest", backward=False, alg="hopper"):
    B, Hq, Hkv, Nq, Nkv, d = shape
    q, k, v, do = make_inputs(B, Hq, Hkv, Nq, Nkv, d, dtype, device,
                              seed_of(alg, shape, dtype, causal, align, blocks, ws, layout, scale), layout,
                              input_scale)
    p = kernels.problem_for(q, k, v, causal=causal, scale=scale, causal_align=align)
    # ws: num_warps 4 + 2 stages selects the warp-specialised loop; 1 stage the two-loop variant
    s = Schedule(alg, "fwd", blocks[0], blocks[1], 4, 2 if ws else 1, grid_order)
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
def test_hopper_ws_persistent_forward(case, device, monkeypatch):
    """hopper_ws fwd (the persistent forward: descriptors built once, tiles walked with the grid's stride, longest
    first when causal) is exact: GQA/MQA, both causal alignments with seq_q != seq_kv, and CTAs of several tiles
    (PERSISTENT_CTAS patched to 5, so every CTA walks tiles of several heads); on a GPU also the timed 128-row tiles."""
    import memsim.algorithms_hopper as ah
    shape, blocks, causal, align = case
    for ctas in (ah.PERSISTENT_CTAS, 5):
        monkeypatch.setattr(ah, "PERSISTENT_CTAS", ctas)
        _run(shape, "bf16", device, causal=causal, align=align, blocks=blocks, alg="hopper_ws")
    if device == "cuda":
        monkeypatch.setattr(ah, "PERSISTENT_CTAS", 132)
        _run((2, 4, 2, 1024, 1024, 128), "bf16", device, causal=causal, align=align, blocks=(128, 128),
             alg="hopper_ws")


def test_hopper_ws_forward_other_paths(device):
    """Ragged lengths run hopper's per-tile launch; heads_fastest tile order; fp32 (not warp-specialised); the
    flash2 backward from its lse."""
    _run((1, 4, 2, 37, 45, 16), "fp16", device, causal=True, alg="hopper_ws", backward=True)
    _run((2, 2, 1, 64, 32, 16), "fp16", device, causal=False, grid_order="heads_fastest", alg="hopper_ws")
    _run((1, 2, 2, 32, 48, 16), "fp32", device, causal=True, align="bottom_right", alg="hopper_ws")


def test_hopper_ws_forward_launch_and_rules():
    """The persistent launch: min(tiles, 132) CTAs, the tiles each CTA runs (all tiles once, longest first when causal),
    the per-tile fallback on ragged lengths, the SRAM formula (= the sm_90a compile of run4 less its 424 B of
    mbarriers), and the contiguity rule with a clear error."""
    import kernels.hopper as kh
    from memsim.algorithms_hopper import persistent_tiles
    from memsim.schedule import AttentionProblem, kernel_launches, sram_bytes_per_cta
    s = Schedule("hopper_ws", "fwd", 128, 128, 4, 2)
    p = AttentionProblem(16, 16, 16, 1024, 1024, 128, "bf16")
    (L,) = kernel_launches(p, s)
    assert (L.name, L.grid, L.axes) == ("hopper_fwd_persistent", (132, 1, 1), ("cta", "one", "one"))
    assert sram_bytes_per_cta(p, s) == 229800 - 424
    tiles = [t for c in range(132) for t in persistent_tiles(p, s, c)]
    assert sorted(tiles) == [(m, h) for m in range(8) for h in range(256)] and len(tiles) == 2048
    assert persistent_tiles(p, s, 1)[:2] == [(1, 0), (5, 16)]  # tile 1, then tile 133: Q blocks of a head in a row
    pc = AttentionProblem(1, 2, 2, 512, 512, 128, "bf16", True)
    assert [t for t in persistent_tiles(pc, s, 0)] == [(3, 0)] and persistent_tiles(pc, s, 7) == [(0, 1)]
    small = AttentionProblem(1, 2, 2, 256, 256, 128, "bf16")
    assert kernel_launches(small, s)[0].grid == (4, 1, 1)
    ragged = AttentionProblem(1, 2, 2, 1000, 1024, 128, "bf16")
    assert [(x.name, x.grid) for x in kernel_launches(ragged, s)] == [("hopper_fwd", (8, 2, 1))]
    with pytest.raises(ValueError, match=r"hopper_ws fwd .* q must be contiguous"):
        kh.check_persistent_layout("q", torch.zeros(1, 16, 2, 16, dtype=torch.float16).transpose(1, 2))
    kh.check_persistent_layout("q", torch.zeros(1, 2, 16, 16, dtype=torch.float16))  # fine: nothing raised


@pytest.mark.parametrize("causal, n, want", [(True, 1024, "flash2"), (True, 4096, "hopper"), (False, 1024, "hopper")])
def test_fastest_forward_rule_short_causal_keeps_flash2(causal, n, want, monkeypatch):
    """kernels.api.HOPPER_FASTEST: on a Hopper GPU with TMA-able tensors, d=128 causal below N_q = 4096 stays flash2
    (run4: flash2 10-14 % faster at causal N=1024), hopper elsewhere at d=128 (the GPU part is patched in)."""
    import kernels.api as api
    monkeypatch.setattr(api, "_hopper_capable", lambda dev: True)
    q = torch.randn(1, 1, 16, 128, dtype=torch.bfloat16)
    p = kernels.AttentionProblem(1, 1, 1, n, n, 128, dtype="bf16", causal=causal)
    assert api.fastest_forward_algorithm(p, q, q, q) == want


from test_kernels_contract import byte_counter, launches  # noqa: E402,F401  (fixtures: launch recorder, byte counter)

_PERSISTENT_CASES = {"gqa_full": ((2, 4, 2, 64, 64, 16), False, "top_left"),
                     "causal_br": ((1, 3, 1, 48, 64, 16), True, "bottom_right")}


@pytest.mark.parametrize("ctas", [3, 132])
@pytest.mark.parametrize("case", list(_PERSISTENT_CASES))
def test_hopper_ws_persistent_launch_grid(case, ctas, launches, device, monkeypatch):
    """The kernel launches the registry's grid: min(tiles, PERSISTENT_CTAS) CTAs (tests/test_kernels_contract.py checks
    the per-tile fallback on its ragged cases)."""
    import memsim.algorithms_hopper as ah
    from memsim.schedule import kernel_launches
    monkeypatch.setattr(ah, "PERSISTENT_CTAS", ctas)
    shape, causal, align = _PERSISTENT_CASES[case]
    q, k, v, _ = make_inputs(*shape, "fp16", device, seed_of("persistent-grid", case))
    p = kernels.problem_for(q, k, v, causal=causal, causal_align=align)
    s = Schedule("hopper_ws", "fwd", 16, 16, 4 if device == "cuda" else 1, 1)
    kernels.forward(p, s, q, k, v)
    assert [(n, tuple(g) + (1,) * (3 - len(g))) for n, g in launches] == \
        [("_" + x.name, x.grid) for x in kernel_launches(p, s)]
    assert launches[0][0] == "_hopper_fwd_persistent"


@pytest.mark.skipif("not __import__('kernels').interpreting()", reason="counts bytes in Triton's interpreter")
@pytest.mark.parametrize("ctas", [3, 132])
@pytest.mark.parametrize("case", list(_PERSISTENT_CASES))
def test_hopper_ws_persistent_bytes_match_contract(case, ctas, byte_counter, device, monkeypatch):
    """Global bytes the persistent kernel reads and writes (every tile of every CTA, masked-in elements counted in the
    interpreter) == the registry's closed form, with CTAs of one tile (132) and of several heads' tiles (3)."""
    import memsim.algorithms_hopper as ah
    from memsim.analytic import launch_counts
    monkeypatch.setattr(ah, "PERSISTENT_CTAS", ctas)
    shape, causal, align = _PERSISTENT_CASES[case]
    q, k, v, _ = make_inputs(*shape, "fp16", device, seed_of("persistent-bytes", case))
    p = kernels.problem_for(q, k, v, causal=causal, causal_align=align)
    s = Schedule("hopper_ws", "fwd", 16, 16, 1, 1)
    kernels.forward(p, s, q, k, v)
    want = {n: (c["global_read_bytes"], c["global_write_bytes"]) for n, c in launch_counts(p, s).items()}
    assert {n: tuple(c) for n, c in byte_counter.items()} == want and list(want) == ["hopper_fwd_persistent"]


# --- kernels.attention's default picks hopper_fa3 / hopper_ws where they measured faster (kernels.api.measured_rule) --
@pytest.fixture
def h100(monkeypatch, tmp_path):
    """CPU tensors, but the default path believes it runs on the H100 SXM (132 SMs): its committed table applies and the
    registry's GPU rows are read (nothing large is launched)."""
    import importlib

    import kernels.api as api
    from memsim.algorithms import spec_for
    at = importlib.import_module("kernels.autotune")
    monkeypatch.setenv(at.CACHE_ENV, str(tmp_path / "tuned.json"))
    monkeypatch.setattr(api, "_gpu_of", lambda dev: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(api, "_hopper_capable", lambda dev: True)
    monkeypatch.setattr(api, "_sm_count", lambda dev: 132)
    monkeypatch.setattr(api, "_registry_device", lambda dev: torch.device("cuda"))
    monkeypatch.setattr(api, "default_schedule", lambda p, alg, phase, dev: Schedule(
        alg, phase, **spec_for(alg, phase).default_tiles(p, "gpu")))
    return api


def _small(d, dtype=torch.bfloat16):
    return tuple(torch.randn(1, 1, 8, d).to(dtype) for _ in range(3))  # only device, layout and strides are read


@pytest.mark.parametrize("dtype, d, causal, n, fwd, bwd", [
    ("bf16", 128, False, 1024, "hopper_fa3", "hopper_fa3"),  # bwd: hopper_fa3 from run11d (STAT_SMEM)
    ("fp16", 128, False, 4096, "hopper_fa3", "hopper_fa3"),
    ("bf16", 128, False, 16384, "hopper_fa3", "hopper_fa3"),
    ("bf16", 128, True, 1024, "hopper_fa3", "hopper_fa3"),   # bwd: was flash2 (hopper_ws a tie)
    ("bf16", 128, True, 4096, "hopper_fa3", "hopper_fa3"),
    ("bf16", 128, True, 16384, "hopper_fa3", "hopper_fa3"),
    ("bf16", 64, False, 1024, "hopper_fa3", "hopper_fa3"),   # fwd: hopper_fa3 from session 10 (run10b); bwd: run13b
    ("bf16", 64, True, 2048, "hopper_fa3", "hopper_fa3"),    # fwd: the causal walk (run10b); bwd: 128-row Q blocks
    ("fp16", 64, False, 4096, "hopper_fa3", "hopper_fa3"),
    ("bf16", 64, False, 16384, "hopper_fa3", "hopper_fa3"),
    ("bf16", 64, True, 1024, "flash2", "hopper_fa3"),        # fwd: flash2 faster than hopper_fa3 (run9b, run10b)
    ("bf16", 64, True, 4096, "hopper_fa3", "hopper_fa3"),    # bwd: a tie with 64-row blocks (run11d); run13b
    ("bf16", 64, True, 16384, "hopper_fa3", "hopper_fa3"),
    ("bf16", 64, True, 1984, None, "flash2"),                # bwd: 1984 % 128 != 0 (the d=64 tiles are 128 x 128)
    ("bf16", 128, False, 2000, None, "hopper_ws"),           # 2000 % 128 != 0 -> no hopper_fa3 rule
])
def test_default_picks_the_measured_rules(h100, dtype, d, causal, n, fwd, bwd):
    """kernels.default_choice picks hopper_fa3's forward / hopper_ws where a measured rule says so (kernels.api:
    HOPPER_FA3_FWD_FASTEST, HOPPER_WS_*_FASTEST), with the rule's name as the key; elsewhere no rule."""
    p = kernels.AttentionProblem(max(1, 16384 // n), 2048 // d, 2048 // d, n, n, d, dtype=dtype, causal=causal)
    q, k, v = _small(d)
    c = kernels.default_choice(p, q, k, v)
    if fwd is not None:
        assert c.forward.algorithm == fwd, c
    else:
        assert c.forward.algorithm != "hopper_fa3", c
    assert c.backward.algorithm == bwd, c
    for s, src, key in ((c.forward, c.forward_source, c.forward_key), (c.backward, c.backward_source, c.backward_key)):
        if s.algorithm in ("hopper_ws", "hopper_fa3"):
            want = f"HOPPER_{'FA3' if s.algorithm == 'hopper_fa3' else 'WS'}_{s.phase.upper()}_FASTEST"
            assert src == "rule" and key == want
            tiles = (s.block_m, s.block_n, s.num_warps, s.num_stages)
            assert tiles == ((128, 128, 4, 2) if s.phase == "fwd" or p.head_dim == 64 else (64, 128, 4, 2))
        else:
            assert src != "rule"


def test_hopper_fa3_rule_needs_what_the_kernel_needs(h100, monkeypatch):
    """hopper_fa3's rule only where its own launch runs and was measured: 2-byte dtypes, d 64/128 in the measured
    ranges, lengths the 128-row tiles divide, contiguous tensors, a 132-SM card, Triton with Gluon."""
    import kernels.hopper_gluon as kg
    api = h100
    q, k, v = _small(128)
    p = kernels.AttentionProblem(16, 16, 16, 1024, 1024, 128, dtype="bf16")
    assert api.measured_rule(p, "fwd", q, k, v) == "HOPPER_FA3_FWD_FASTEST"
    assert api.measured_rule(kernels.AttentionProblem(1, 16, 16, 32768, 32768, 128, dtype="bf16"), "fwd", q, k,
                             v) is None  # beyond the measured range
    assert api.measured_rule(kernels.AttentionProblem(8, 16, 16, 2048, 1920, 128, dtype="bf16"), "fwd", q, k,
                             v) == "HOPPER_FA3_FWD_FASTEST"  # inside the range, tiles divide both lengths
    assert api.measured_rule(kernels.AttentionProblem(8, 16, 16, 2048, 1900, 128, dtype="bf16"), "fwd", q, k,
                             v) != "HOPPER_FA3_FWD_FASTEST"
    assert api.measured_rule(kernels.AttentionProblem(16, 16, 16, 1024, 1024, 64, dtype="bf16", causal=True), "fwd",
                             q, k, v) is None
    t = torch.randn(1, 8, 2, 128).to(torch.bfloat16).transpose(1, 2)  # (B, N, H, d) storage: not contiguous
    assert api.measured_rule(p, "fwd", t, k, v) != "HOPPER_FA3_FWD_FASTEST"
    monkeypatch.setattr(api, "_sm_count", lambda dev: 114)
    assert api.measured_rule(p, "fwd", q, k, v) is None
    monkeypatch.setattr(api, "_sm_count", lambda dev: 132)
    monkeypatch.setattr(kg, "gluon", None)
    assert api.measured_rule(p, "fwd", q, k, v) == "HOPPER_WS_FWD_FASTEST"


def test_hopper_fa3_bwd_rule_needs_what_the_kernel_needs(h100, monkeypatch):
    """hopper_fa3 bwd's rule (run11d) only where its own launch runs and was measured: 2-byte dtypes, d 64/128 in the
    measured ranges, lengths its 64 x 128 tiles divide, contiguous tensors, a 132-SM card, Triton with Gluon, and
    never when determinism is asked for (dQ's reduce-adds): hopper_ws (deterministic) there."""
    import kernels.hopper_gluon as kg
    api = h100
    q, k, v = _small(128)
    p = kernels.AttentionProblem(4, 16, 16, 4096, 4096, 128, dtype="bf16", causal=True)
    assert api.measured_rule(p, "bwd", q, k, v) == "HOPPER_FA3_BWD_FASTEST"
    assert api.measured_rule(p, "bwd", q, k, v, deterministic=True) == "HOPPER_WS_BWD_FASTEST"
    torch.use_deterministic_algorithms(True)
    try:
        assert kernels.default_choice(p, q, k, v).backward.algorithm == "hopper_ws"
    finally:
        torch.use_deterministic_algorithms(False)
    assert kernels.default_choice(p, q, k, v).backward.algorithm == "hopper_fa3"
    assert api.measured_rule(kernels.AttentionProblem(1, 16, 16, 32768, 32768, 128, dtype="bf16"), "bwd", q, k,
                             v) == "HOPPER_WS_BWD_FASTEST"  # beyond the measured range
    assert api.measured_rule(kernels.AttentionProblem(8, 16, 16, 2048, 1920, 128, dtype="bf16"), "bwd", q, k,
                             v) == "HOPPER_FA3_BWD_FASTEST"  # inside the range, the tiles divide both lengths
    assert api.measured_rule(kernels.AttentionProblem(8, 16, 16, 2048, 1984, 128, dtype="bf16"), "bwd", q, k,
                             v) == "HOPPER_WS_BWD_FASTEST"  # 1984 % 128 != 0
    assert api.measured_rule(kernels.AttentionProblem(16, 32, 32, 1024, 1024, 64, dtype="bf16"), "bwd", q, k,
                             v) == "HOPPER_FA3_BWD_FASTEST"  # d=64 N=1024: 128-row Q blocks (run13b)
    assert api.measured_rule(kernels.AttentionProblem(16, 32, 32, 1088, 1088, 64, dtype="bf16"), "bwd", q, k,
                             v) is None  # 1088 % 128 != 0: d=64's 128-row Q blocks do not divide it
    assert api.measured_rule(kernels.AttentionProblem(4, 16, 16, 4096, 4096, 128, dtype="fp32"), "bwd", q, k,
                             v) is None
    t = torch.randn(1, 8, 2, 128).to(torch.bfloat16).transpose(1, 2)  # (B, N, H, d) storage: not contiguous
    assert api.measured_rule(p, "bwd", t, k, v) != "HOPPER_FA3_BWD_FASTEST"
    monkeypatch.setattr(api, "_sm_count", lambda dev: 114)
    assert api.measured_rule(p, "bwd", q, k, v) == "HOPPER_WS_BWD_FASTEST"
    monkeypatch.setattr(api, "_sm_count", lambda dev: 132)
    monkeypatch.setattr(kg, "gluon", None)
    assert api.measured_rule(p, "bwd", q, k, v) == "HOPPER_WS_BWD_FASTEST"


def test_hopper_ws_rule_needs_what_the_kernels_need(h100, monkeypatch):
    """The persistent forward only on 132-SM cards, contiguous tensors, lengths its tiles divide, 2-byte dtypes and
    TMA layouts; this machine's tuning cache is never overridden; deterministic runs may take hopper_ws bwd (no
    atomics)."""
    import json
    import os

    at = __import__("importlib").import_module("kernels.autotune")
    api = h100
    p = kernels.AttentionProblem(16, 16, 16, 1024, 1024, 128, dtype="bf16")
    q, k, v = _small(128)
    monkeypatch.setattr(api, "HOPPER_FA3_FWD_FASTEST", {**api.HOPPER_FA3_FWD_FASTEST, "seq_range": {}})  # ws alone
    monkeypatch.setattr(api, "HOPPER_FA3_BWD_FASTEST", {**api.HOPPER_FA3_BWD_FASTEST, "seq_range": {}})
    assert api.measured_rule(p, "fwd", q, k, v) == "HOPPER_WS_FWD_FASTEST"
    assert api.measured_rule(p, "bwd", q, k, v) == "HOPPER_WS_BWD_FASTEST"  # d=128 non-causal from N=1024
    assert api.measured_rule(kernels.AttentionProblem(16, 16, 16, 1024, 1024, 64, dtype="bf16"), "bwd", q, k, v) is None
    assert api.measured_rule(kernels.AttentionProblem(16, 16, 16, 1024, 1024, 128, dtype="bf16", causal=True), "bwd",
                             q, k, v) is None
    assert api.measured_rule(kernels.AttentionProblem(16, 8, 8, 1024, 1024, 256, dtype="bf16"), "fwd", q, k, v) is None
    t = torch.randn(1, 8, 2, 128).to(torch.bfloat16).transpose(1, 2)  # (B, N, H, d) storage: not contiguous
    assert api.measured_rule(p, "fwd", t, k, v) is None
    odd = torch.randn(1, 1, 8, 129).to(torch.bfloat16)[..., :128]  # 258-byte rows: no TMA
    p4 = kernels.AttentionProblem(4, 16, 16, 4096, 4096, 128, dtype="bf16")
    assert api.measured_rule(p4, "bwd", q, k, v) == "HOPPER_WS_BWD_FASTEST"
    assert api.measured_rule(p4, "bwd", odd, k, v) is None
    assert api.measured_rule(kernels.AttentionProblem(16, 16, 16, 1000, 1000, 128, dtype="bf16"), "fwd", q, k, v) is None
    assert api.measured_rule(kernels.AttentionProblem(4, 16, 16, 4096, 4096, 128, dtype="fp32"), "bwd", q, k, v) is None
    monkeypatch.setattr(api, "_sm_count", lambda dev: 114)  # an H100 PCIe: the 132-CTA grid would be 1.16 waves
    assert api.measured_rule(p, "fwd", q, k, v) is None
    monkeypatch.setattr(api, "_sm_count", lambda dev: 132)
    torch.use_deterministic_algorithms(True)
    try:
        assert kernels.default_choice(p4, q, k, v).backward.algorithm == "hopper_ws"
    finally:
        torch.use_deterministic_algorithms(False)
    own = Schedule("hopper", "fwd", 128, 64, 8, 3)
    key = at.cache_key(p, at.DEFAULT_ALGORITHMS["fwd"], "fwd", gpu="NVIDIA H100 80GB HBM3",
                       torch_version=torch.__version__, triton_version=__import__("triton").__version__)
    with open(os.environ[at.CACHE_ENV], "w") as f:
        json.dump({"format": at.CACHE_FORMAT, "entries": {key: {"schedule": own.to_dict()}}}, f)
    c = kernels.default_choice(p, q, k, v)
    assert (c.forward, c.forward_source) == (own, "cache")


def test_rule_schedules_simulate(h100):
    """memsim simulates what the rule picks (issue 9 item 6: the chosen Schedule is visible and simulable)."""
    pytest.importorskip("simpy")
    import memsim
    hw = memsim.load_hardware("h100-sxm")
    p = kernels.AttentionProblem(4, 16, 16, 1024, 1024, 128, dtype="bf16")
    q, k, v = _small(128)
    fs = kernels.default_choice(p, q, k, v).forward
    p4 = kernels.AttentionProblem(1, 16, 16, 4096, 4096, 128, dtype="bf16", causal=True)
    bs = kernels.default_choice(p4, q, k, v).backward
    p64 = kernels.AttentionProblem(1, 32, 32, 4096, 4096, 64, dtype="bf16", causal=True)
    b64 = kernels.default_choice(p64, *_small(64)).backward
    assert (fs.algorithm, bs.algorithm, b64.algorithm) == ("hopper_fa3", "hopper_fa3", "hopper_fa3")
    assert b64.block_m == 128  # d=64: 128-row Q blocks (run13b)
    ws = kernels.default_choice(kernels.AttentionProblem(1, 32, 32, 32768, 32768, 64, dtype="bf16", causal=True),
                                *_small(64)).backward  # beyond hopper_fa3's measured range: hopper_ws's rule
    assert ws.algorithm == "hopper_ws"
    rf = memsim.simulate(p, fs, hw).to_dict()
    assert [x["name"] for x in rf["kernels"]] == ["hopper_fa3_fwd"] and rf["total"]["time_s"] > 0
    rb = memsim.simulate(kernels.AttentionProblem(1, 4, 4, 1024, 1024, 128, dtype="bf16", causal=True), bs, hw).to_dict()
    assert [x["name"] for x in rb["kernels"]] == ["hopper_bwd_preprocess", "hopper_fa3_bwd", "hopper_bwd_dq_convert"]
    rw = memsim.simulate(kernels.AttentionProblem(1, 4, 4, 1024, 1024, 64, dtype="bf16", causal=True), ws, hw).to_dict()
    assert [x["name"] for x in rw["kernels"]] == ["flash2_bwd_preprocess", "hopper_bwd_dkdv_ws", "flash2_bwd_dq"]
    r64 = memsim.simulate(kernels.AttentionProblem(1, 4, 4, 1024, 1024, 64, dtype="bf16", causal=True), b64,
                          hw).to_dict()
    assert [x["name"] for x in r64["kernels"]][1] == "hopper_fa3_bwd" and r64["total"]["time_s"] > 0


# --- the Gluon forward experiment (kernels.hopper.gluon_forward): GPU only (Gluon does not run in the interpreter) ---
_GLUON_CASES = {
    "d128_full": ((2, 8, 2, 1024, 1024, 128), False, "top_left", 128),
    "d128_causal_ragged_br": ((2, 4, 2, 1000, 1203, 128), True, "bottom_right", 128),
    "d64_causal_tl_q_gt_kv": ((1, 4, 4, 300, 200, 64), True, "top_left", 128),
    "d64_full_bn64": ((1, 3, 1, 333, 517, 64), False, "top_left", 64),
    "d128_rows_see_nothing": ((1, 2, 2, 200, 72, 128), True, "bottom_right", 128),
}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", list(_GLUON_CASES))
def test_gluon_forward(case, dtype):
    """The Gluon forward (FA3's intra-warpgroup pipelining in explicit async wgmma) against the float64 reference by
    DESIGN.md's rule: O and lse, ragged lengths, GQA, both causal alignments, rows that see no key."""
    from kernels.hopper import gluon_forward
    shape, causal, align, bn = _GLUON_CASES[case]
    q, k, v, _ = make_inputs(*shape, dtype, "cuda", seed_of("gluon", case, dtype))
    p = kernels.problem_for(q, k, v, causal=causal, causal_align=align)
    with poisoned_allocations():
        res = gluon_forward(p, Schedule("hopper", "fwd", 128, bn, 8, 2), q, k, v)
    ref = kernels.reference(q, k, v, causal=causal, causal_align=align)
    ys = yardsticks(q, k, v, causal=causal, causal_align=align)
    check_rule("o", res.o, ref[0], dtype=dtype, **ys["o"])
    check_lse(res.lse, ref[1])


def test_gluon_forward_refusals():
    """What the Gluon forward does not run is refused with a clear error before anything launches."""
    from kernels.hopper import gluon_forward
    q = torch.zeros(1, 1, 16, 128, dtype=torch.bfloat16)
    p = kernels.AttentionProblem(1, 1, 1, 16, 16, 128, dtype="bf16")
    with pytest.raises(ScheduleError, match="num_warps 8"):
        gluon_forward(p, Schedule("hopper", "fwd", 128, 128, 4, 2), q, q, q)
    with pytest.raises(ScheduleError, match="d 64/128"):
        gluon_forward(kernels.AttentionProblem(1, 1, 1, 16, 16, 32, dtype="bf16"), Schedule("hopper", "fwd", 128, 128, 8, 2),
                      q[..., :32], q[..., :32], q[..., :32])
    with pytest.raises(NotImplementedError, match="interpreter"):
        gluon_forward(p, Schedule("hopper", "fwd", 128, 128, 8, 2), q, q, q)
