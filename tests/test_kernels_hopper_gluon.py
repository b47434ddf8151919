"""hopper_fa3 (kernels/hopper_gluon.py): the FA3-structured Gluon forward.

Gluon does not run in Triton's CPU interpreter, so the numbers are checked on a GPU only (the GPU tests skip
themselves without one; the committed log of a GPU run is the evidence).  Without a GPU this file checks what the
launcher sets up: the refusals, the grid, the four host TMA descriptors (shapes, boxes, byte counts per load), and
the sm_90a compile (partitions, register budgets, no spills, the shared memory the registry states)."""
import pytest
import torch

import kernels
from kernels.testing import check_lse, check_rule, make_inputs, poisoned_allocations, seed_of, yardsticks
from memsim.schedule import AttentionProblem, Schedule, ScheduleError

hg = pytest.importorskip("kernels.hopper_gluon")
if hg.gluon is None:  # pragma: no cover
    pytest.skip("triton.experimental.gluon missing", allow_module_level=True)

ALG = "hopper_fa3"

# (B, Hq, Hkv, Nq, Nkv, d), causal, alignment, block_n, stages, grid order
_CASES = {
    "d128_full_gqa": ((2, 8, 2, 1024, 1024, 128), False, "top_left", 128, 2, "q_fastest"),
    # (128x128 with 3 stages does not fit the persistent walk at d=128: the registry runs it one CTA per tile)
    "d128_full_s3_heads_fastest": ((1, 4, 4, 512, 768, 128), False, "top_left", 64, 3, "heads_fastest"),
    "d128_causal_tl": ((1, 4, 4, 1024, 1024, 128), True, "top_left", 128, 2, "q_fastest"),
    "d128_causal_br_q_lt_kv": ((1, 4, 2, 512, 1024, 128), True, "bottom_right", 128, 3, "q_fastest"),
    "d128_causal_br_rows_see_nothing": ((1, 2, 2, 1024, 256, 128), True, "bottom_right", 128, 2, "q_fastest"),
    "d128_causal_tl_q_gt_kv_bn64": ((1, 2, 1, 512, 256, 128), True, "top_left", 64, 2, "heads_fastest"),
    "d64_full_bn64_mqa": ((2, 4, 1, 768, 1280, 64), False, "top_left", 64, 2, "q_fastest"),
    "d64_causal_tl": ((1, 4, 4, 2048, 2048, 64), True, "top_left", 128, 2, "q_fastest"),
    "d128_one_block": ((1, 1, 1, 128, 128, 128), True, "top_left", 128, 2, "q_fastest"),
}


# the persistent walk: more tiles than CTAs (132), tiles that see nothing (bottom-right, seq_q > seq_kv)
_WALK_CASES = {
    "walk_full_gqa": ((4, 16, 4, 1024, 1024, 128), False, "top_left", 128, 2, "q_fastest"),
    "walk_full_heads_fastest_bn64": ((2, 16, 16, 1024, 1024, 64), False, "top_left", 64, 2, "heads_fastest"),
    "walk_causal_br": ((2, 16, 16, 1024, 2048, 64), True, "bottom_right", 128, 2, "q_fastest"),
    "walk_causal_tiles_see_nothing": ((2, 32, 32, 512, 128, 128), True, "bottom_right", 128, 2, "q_fastest"),
}


@pytest.mark.parametrize("d, bn, st, causal, persistent, fits", [
    (128, 128, 3, False, True, False),   # the walk stages O in its own tile: 262 144 B
    (128, 128, 3, True, True, False),    # causal too
    (128, 128, 3, False, None, True),    # so the registry runs these tiles one per CTA: 229 376 B
    (128, 128, 3, True, None, True),
    (128, 128, 3, True, False, True),
    (128, 128, 3, False, False, True),   # the walk forced off
    (128, 128, 2, False, None, True),
    (128, 64, 3, False, None, True),
    (64, 128, 3, False, True, True),
])
def test_sram_refusal(d, bn, st, causal, persistent, fits):
    """The launcher refuses tiles that do not fit the card's shared memory before compiling (run on the H100,
    2026-11-26 15:45 UTC: the d=128 128x128 s3 non-causal schedule stopped in Triton with OutOfResources, 262 560 B
    of 232 448)."""
    from memsim.hardware import load_hardware
    p = AttentionProblem(1, 4, 4, 512, 768, d, "bf16", causal)
    s = Schedule(ALG, "fwd", 128, bn, 4, st)
    limit = load_hardware("h100-sxm").smem_per_block_bytes
    if fits:
        assert hg.check_fa3_sram(p, s, persistent, limit, "H100") <= limit
    else:
        with pytest.raises(ScheduleError, match="shared memory"):
            hg.check_fa3_sram(p, s, persistent, limit, "H100")


def _gpu():
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", list(_CASES))
def test_fa3_forward_gpu(case, dtype):
    """O and lse against the float64 reference by DESIGN.md's rule: GQA/MQA, both causal alignments, rows that see no
    key, seq_q != seq_kv, both grid orders, 2 and 3 stages, block_n 64/128, poisoned outputs."""
    shape, causal, align, bn, st, order = _CASES[case]
    q, k, v, _ = make_inputs(*shape, dtype, "cuda", seed_of("fa3", case, dtype))
    p = kernels.problem_for(q, k, v, causal=causal, causal_align=align)
    with poisoned_allocations():
        res = hg.fa3_forward(p, Schedule(ALG, "fwd", 128, bn, 4, st, order), q, k, v)
    ref = kernels.reference(q, k, v, causal=causal, causal_align=align)
    ys = yardsticks(q, k, v, causal=causal, causal_align=align)
    check_rule("o", res.o, ref[0], dtype=dtype, **ys["o"])
    check_lse(res.lse, ref[1])


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("fence", [False, True], ids=["no_fence", "fence"])
@pytest.mark.parametrize("persistent", [True, False], ids=["walk", "per_tile"])
@pytest.mark.parametrize("case", list(_CASES) + list(_WALK_CASES))
def test_fa3_both_grids_gpu(case, persistent, fence):
    """Both launch variants on every case, whatever the registry's rule picks (the persistent walk -- causal: the
    host's balanced table -- or one tile per CTA), each with and without the wait fence (WAIT_FENCE): exact by the
    rule.  (Different compiles: run9b found the non-causal outputs of walk and per-tile not bit-identical -- 5
    cases, all within the rule.)"""
    shape, causal, align, bn, st, order = {**_CASES, **_WALK_CASES}[case]
    q, k, v, _ = make_inputs(*shape, "bf16", "cuda", seed_of("fa3", "walk", case))
    p = kernels.problem_for(q, k, v, causal=causal, causal_align=align)
    s = Schedule(ALG, "fwd", 128, bn, 4, 2, order)  # 2 stages: with the O staging tiles 3 do not fit at d=128
    assert len(hg.fa3_grid(p, s, persistent)) == (1 if persistent else 2)
    with poisoned_allocations():
        res = hg.fa3_forward(p, s, q, k, v, persistent=persistent, wait_fence=fence)
    ref = kernels.reference(q, k, v, causal=causal, causal_align=align)
    ys = yardsticks(q, k, v, causal=causal, causal_align=align)
    check_rule("o", res.o, ref[0], dtype="bf16", **ys["o"])
    check_lse(res.lse, ref[1])


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("case", [c for c, v in {**_CASES, **_WALK_CASES}.items() if v[1]])
def test_fa3_block0_unmasked_gpu(case):
    """Causal, BLOCK0_UNMASKED: block 0 without the mask where a consumer's rows see it whole, masked where they may
    not (bottom-right rows that see nothing, the diagonal's tile): exact by the rule, registry's grid."""
    shape, causal, align, bn, st, order = {**_CASES, **_WALK_CASES}[case]
    q, k, v, _ = make_inputs(*shape, "bf16", "cuda", seed_of("fa3", "block0", case))
    p = kernels.problem_for(q, k, v, causal=causal, causal_align=align)
    with poisoned_allocations():
        res = hg.fa3_forward(p, Schedule(ALG, "fwd", 128, bn, 4, st, order), q, k, v, block0_unmasked=True)
    ref = kernels.reference(q, k, v, causal=causal, causal_align=align)
    ys = yardsticks(q, k, v, causal=causal, causal_align=align)
    check_rule("o", res.o, ref[0], dtype="bf16", **ys["o"])
    check_lse(res.lse, ref[1])


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("sections", [1, 3, None, "all"])
@pytest.mark.parametrize("fence", [False, True], ids=["no_fence", "fence"])
def test_fa3_causal_walk_sections_gpu(sections, fence):
    """The persistent causal walk with other section sizes (the benchmarks' variants): any table the host builds is
    computed exactly -- more tiles than CTAs, GQA, bottom-right, fp16."""
    q, k, v, _ = make_inputs(3, 16, 4, 1024, 1280, 64, "fp16", "cuda", seed_of("fa3", "sections", sections, fence))
    p = kernels.problem_for(q, k, v, causal=True, causal_align="bottom_right")
    s = Schedule(ALG, "fwd", 128, 128, 4, 2)
    sec = p.batch * p.heads_q if sections == "all" else sections
    with poisoned_allocations():
        res = hg.fa3_forward(p, s, q, k, v, persistent=True, wait_fence=fence, section_heads=sec)
    ref = kernels.reference(q, k, v, causal=True, causal_align="bottom_right")
    ys = yardsticks(q, k, v, causal=True, causal_align="bottom_right")
    check_rule("o", res.o, ref[0], dtype="fp16", **ys["o"])
    check_lse(res.lse, ref[1])


def test_fa3_causal_walk():
    """The persistent causal walk (memsim.algorithms_hopper.fa3_walk): every tile exactly once, min(tiles, 132) CTAs,
    balanced by K/V blocks (no CTA more than one tile's cost above the mean), sections of whole kv heads finished in
    order, Q blocks longest first inside a section; its int32 table (offsets, then q_block * B*Hq + bh per CTA);
    the model walks the same tiles (fa3_tiles)."""
    from memsim.algorithms_hopper import (FA3_TILE_FIXED_BLOCKS, _fa3_blocks, fa3_section_heads, fa3_tiles, fa3_walk)
    s = Schedule(ALG, "fwd", 128, 128, 4, 2)
    for p in (AttentionProblem(16, 16, 16, 1024, 1024, 128, "bf16", True),
              AttentionProblem(1, 32, 8, 16384, 16384, 64, "fp16", True),
              AttentionProblem(3, 16, 4, 1024, 1280, 64, "fp16", True, causal_align="bottom_right"),
              AttentionProblem(1, 2, 2, 512, 512, 128, "bf16", True)):
        mb, bh = p.seq_q // 128, p.batch * p.heads_q
        walk = fa3_walk(p, s)
        assert len(walk) == min(mb * bh, 132)
        tiles = [t for c in walk for t in c]
        assert sorted(tiles) == [(m, h) for m in range(mb) for h in range(bh)]
        cost = [sum(_fa3_blocks(p, s, m) + FA3_TILE_FIXED_BLOCKS for m, _ in c) for c in walk]
        assert max(cost) - sum(cost) / len(cost) <= max(_fa3_blocks(p, s, m) for m in range(mb)) + 1
        sec = fa3_section_heads(p, s)
        assert sec % p.group_size == 0
        for c in walk:  # a CTA never goes back to an earlier section, nor to a longer Q block within one
            keys = [(h // sec, -_fa3_blocks(p, s, m)) for m, h in c]
            assert keys == sorted(keys)
        assert [fa3_tiles(p, s, c) for c in range(len(walk))] == [list(c) for c in walk]
        t = hg.fa3_walk_table(p, s, "cpu").tolist()
        g = len(walk)
        offs, codes = t[:g + 1], t[g + 1:]
        assert offs[0] == 0 and offs[-1] == len(codes) == mb * bh
        assert [[(x // bh, x % bh) for x in codes[offs[c]:offs[c + 1]]] for c in range(g)] == [list(c) for c in walk]
    p = AttentionProblem(2, 4, 4, 512, 512, 128, "bf16", True)
    assert fa3_walk(p, s, 1) != fa3_walk(p, s, 8)
    with pytest.raises(ScheduleError, match="section_heads"):
        fa3_walk(p, s, 0)


@pytest.mark.parametrize("persistent", [False, True], ids=["per_tile", "walk"])
def test_fa3_wait_fence_keeps_the_overlap(persistent):
    """sm_90a SASS (CPU compile): with WAIT_FENCE each consumer step's exponentials (MUFU.EX2) all sit between the wait
    for S_j and the wait for P_{j-1} V_{j-1} -- FA3's in-warpgroup overlap; without it ptxas hoists the second wait
    above them (session 9).  bf16 d=128 128x128 s2, non-causal."""
    import ast
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    got = {}
    for fence in ("on", "off"):
        cmd = [sys.executable, "benchmarks/hopper_gluon_compile.py", "--kernel", "fa3", "--d", "128", "--causal", "no",
               "--wait-fence", fence] + (["--persistent"] if persistent else [])
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        if r.returncode != 0:
            pytest.fail(f"sm_90a compile failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        got[fence] = ast.literal_eval(r.stdout.strip().splitlines()[-1])
    assert got["on"]["mufu_between_waits"] and all(x == (66, 0) for x in got["on"]["mufu_between_waits"])
    assert all(x == (0, 66) for x in got["off"]["mufu_between_waits"])
    assert got["on"]["local_bytes"] == got["off"]["local_bytes"] == 0 and got["on"]["regs"] == 168
    assert 0 < got["on"]["shared"] - got["off"]["shared"] <= 512  # the two consumers' 64-float l_i scratch


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("shape", [(2, 4, 2, 512, 1024, 128), (1, 3, 3, 300, 517, 64)], ids=["own_launch", "fallback"])
def test_fa3_registry_path_gpu(shape, causal):
    """Through the registry (kernels.attention with a hopper_fa3 Schedule, autograd, flash2's default backward): the
    Gluon launch where `fa3_applies` (persistent when not causal), hopper's per-tile launch on ragged lengths; O, lse
    and the gradients exact."""
    from memsim.algorithms_hopper import fa3_applies
    q, k, v, do = make_inputs(*shape, "bf16", "cuda", seed_of("fa3", "registry", shape, causal))
    p = kernels.problem_for(q, k, v, causal=causal)
    s = Schedule(ALG, "fwd", 128, 128, 4, 2)
    assert fa3_applies(p, s) == (shape[3] % 128 == 0)
    res = kernels.forward(p, s, q, k, v)
    ref = kernels.reference(q, k, v, do=do, causal=causal)
    ys = yardsticks(q, k, v, do=do, causal=causal)
    check_rule("o", res.o, ref[0], dtype="bf16", **ys["o"])
    check_lse(res.lse, ref[1])
    qg, kg, vg = (t.detach().clone().requires_grad_() for t in (q, k, v))
    o = kernels.attention(qg, kg, vg, is_causal=causal, enable_gqa=True, schedule=s)
    o.backward(do)
    assert kernels.last_schedule()[0] == s
    check_rule("o", o.detach(), ref[0], dtype="bf16", **ys["o"])
    for name, g, gr in zip(("dq", "dk", "dv"), (qg.grad, kg.grad, vg.grad), ref[2:]):
        check_rule(name, g, gr, dtype="bf16", **ys[name])


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
def test_fa3_forward_gpu_repeatable():
    """Two launches on the same inputs give bit-identical outputs (no race between the partitions shows)."""
    q, k, v, _ = make_inputs(2, 8, 8, 2048, 2048, 128, "bf16", "cuda", seed_of("fa3", "repeat"))
    p = kernels.problem_for(q, k, v, causal=True)
    s = Schedule(ALG, "fwd", 128, 128, 4, 2)
    a, b = hg.fa3_forward(p, s, q, k, v), hg.fa3_forward(p, s, q, k, v)
    assert torch.equal(a.o, b.o) and torch.equal(a.lse, b.lse)


def test_fa3_refusals():
    """What the launch does not run is refused before anything launches, with the reason."""
    p = kernels.AttentionProblem(1, 2, 2, 256, 256, 128, dtype="bf16")
    ok = Schedule(ALG, "fwd", 128, 128, 4, 2)
    hg.check_fa3(p, ok)
    for bad, msg in ((Schedule(ALG, "fwd", 64, 128, 4, 2), "block_m 128"),
                     (Schedule(ALG, "fwd", 128, 128, 8, 2), "num_warps 4"),
                     (Schedule(ALG, "fwd", 128, 128, 4, 4), "num_stages 2-3")):
        with pytest.raises(ScheduleError, match=msg):
            hg.check_fa3(p, bad)
    for bad in (kernels.AttentionProblem(1, 2, 2, 256, 200, 128, dtype="bf16"),
                kernels.AttentionProblem(1, 2, 2, 200, 256, 128, dtype="bf16")):
        with pytest.raises(ScheduleError, match="lengths the tiles divide"):
            hg.check_fa3(bad, ok)
    with pytest.raises(ScheduleError, match="fp16/bf16"):
        hg.check_fa3(kernels.AttentionProblem(1, 2, 2, 256, 256, 128, dtype="fp32"), ok)
    with pytest.raises(ScheduleError, match="d 64/128"):
        hg.check_fa3(kernels.AttentionProblem(1, 2, 2, 256, 256, 256, dtype="bf16"), ok)
    q = torch.zeros(1, 256, 2, 128, dtype=torch.bfloat16).transpose(1, 2)  # (B, H, N, d) view of a (B, N, H, d)
    with pytest.raises(ValueError, match="contiguous"):
        hg.check_fa3(p, ok, (("q", q),))
    with pytest.raises(NotImplementedError, match="interpreter"):
        c = torch.zeros(1, 2, 256, 128, dtype=torch.bfloat16)
        hg.fa3_forward(p, ok, c, c, c)


@pytest.mark.parametrize("order", ["q_fastest", "heads_fastest"])
def test_fa3_grid_and_descriptors(order):
    """Grid = (Q blocks, B*Hq) in the schedule's axis order; descriptors over all rows [B*H*N, d] of each tensor, Q/O
    boxes of 64 rows (a consumer warpgroup's half), K/V boxes of block_n rows: one box = the bytes each TMA load's
    mbarrier expects."""
    p = kernels.AttentionProblem(2, 6, 3, 512, 384, 64, dtype="fp16")
    s = Schedule(ALG, "fwd", 128, 64, 4, 2, order)
    assert hg.fa3_grid(p, s, persistent=False) == ((4, 12) if order == "q_fastest" else (12, 4))
    assert hg.fa3_grid(p, s) == hg.fa3_grid(p, s, persistent=True) == (48,)  # the registry's rule: the walk
    pc = kernels.AttentionProblem(2, 6, 3, 512, 384, 64, dtype="fp16", causal=True)
    assert hg.fa3_grid(pc, s) == (48,) != hg.fa3_grid(pc, s, persistent=False)
    q = torch.zeros(2, 6, 512, 64, dtype=torch.float16)
    k = torch.zeros(2, 3, 384, 64, dtype=torch.float16)
    o = torch.zeros_like(q)
    lse = torch.zeros(2, 6, 512)
    args, kw = hg.fa3_args(p, s, q, k, k, o, lse, persistent=False)
    qd, kd, vd, od = args[:4]
    dims = lambda d: (list(d.shape), list(d.block_shape))  # noqa: E731
    assert dims(qd) == dims(od) == ([6144, 64], [64, 64])
    assert dims(kd) == dims(vd) == ([2304, 64], [64, 64])
    assert qd.base.data_ptr() == q.data_ptr() and od.base.data_ptr() == o.data_ptr()
    assert args[4] is lse and args[5] is lse  # WALK: not read unless the walk is causal
    assert args[6:] == (6, 12, 512, 384, p.scale * 1.4426950408889634, 0)
    assert kw["BLOCK0_UNMASKED"] is hg.BLOCK0_UNMASKED
    assert kw["WAIT_FENCE"] is hg.WAIT_FENCE and hg.fa3_args(p, s, q, k, k, o, lse, wait_fence=True)[1]["WAIT_FENCE"]
    assert kw["PERSISTENT"] is False and hg.fa3_args(p, s, q, k, k, o, lse)[1]["PERSISTENT"] is True
    assert hg.fa3_grid(kernels.AttentionProblem(4, 64, 64, 1024, 1024, 64, dtype="bf16"), s, persistent=True) == (132,)
    assert (kw["GROUP"], kw["BLOCK_M"], kw["BLOCK_N"], kw["STAGES"], kw["num_warps"], kw["maxnreg"]) == \
        (2, 128, 64, 2, 4, 168)
    assert kw["Q_FASTEST"] == (order == "q_fastest")
    # the register budgets fill the register file: 12 warps x maxnreg <= 64K, producer + 2 consumers at their budgets
    assert 12 * 32 * hg.MAXNREG <= 65536
    assert 4 * 32 * (hg.PRODUCER_REGS + 2 * hg.CONSUMER_REGS) == 12 * 32 * hg.MAXNREG


def test_fa3_registry_launches():
    """kernel_launches of hopper_fa3: the persistent walk (min(tiles, 132) CTAs, its own O staging tile), causal or
    not; hopper's per-tile launch where the Gluon launch does not run; one CTA per tile where the walk's tiles would
    need more than the H100's 227 KB (d=128 128x128 s3); extra memory = lse (+ the causal walk's int32 table)."""
    from memsim.algorithms import spec_for
    from memsim.algorithms_hopper import fa3_applies, fa3_persistent
    from memsim.schedule import check_fits, kernel_launches
    s = Schedule(ALG, "fwd", 128, 128, 4, 2)
    full = kernels.AttentionProblem(16, 16, 16, 1024, 1024, 128, dtype="bf16")
    causal = kernels.AttentionProblem(16, 16, 16, 1024, 1024, 128, dtype="bf16", causal=True)
    ragged = kernels.AttentionProblem(2, 4, 4, 1000, 1000, 128, dtype="bf16")
    (lf,), (lc,), (lr,) = (kernel_launches(x, s) for x in (full, causal, ragged))
    assert (lf.name, lf.grid, lf.axes) == ("hopper_fa3_fwd", (132, 1, 1), ("cta", "one", "one"))
    assert (lc.name, lc.grid, lc.axes) == ("hopper_fa3_fwd", (132, 1, 1), ("cta", "one", "one"))
    assert (lr.name, lr.grid) == ("hopper_fwd", (8, 8, 1))
    assert kernel_launches(kernels.AttentionProblem(1, 4, 4, 256, 256, 64, dtype="fp16"), s)[0].grid == (8, 1, 1)
    e = 2 * 128
    assert lc.smem_bytes == lf.smem_bytes == 128 * e + 2 * 2 * 128 * e + 128 * e
    assert [fa3_persistent(x, s) for x in (full, causal, ragged)] == [True, True, False]
    assert not fa3_applies(kernels.AttentionProblem(1, 1, 1, 256, 256, 128, dtype="fp32"), s)
    spec = spec_for(ALG, "fwd")
    lse = 16 * 16 * 1024 * 4
    assert spec.extra_device_bytes(full, s) == lse
    assert spec.extra_device_bytes(causal, s) == lse + 4 * (132 + 1 + 8 * 256)
    h100 = 227 * 1024  # shared memory per block (DESIGN.md)
    check_fits(causal, Schedule(ALG, "fwd", 128, 64, 4, 3), h100)
    s3 = Schedule(ALG, "fwd", 128, 128, 4, 3)  # the walk would need 262 KB: one CTA per tile (229 KB)
    for p in (full, causal):
        check_fits(p, s3, h100)
        (L,) = kernel_launches(p, s3)
        assert not fa3_persistent(p, s3) and L.grid == (8, 256, 1) and L.smem_bytes == 128 * e + 3 * 2 * 128 * e


_COMPILE = r"""
import json, os, re, sys
os.environ.pop("TRITON_INTERPRET", None)
import triton
from triton.backends.compiler import GPUTarget
from kernels.compiled_facts import capture, _specialise, ptxas_report
from kernels.sass import disassemble
from memsim.schedule import AttentionProblem, Schedule, kernel_launches, sram_bytes_per_cta
p = AttentionProblem(2, 4, 2, 1024, 1024, 128, "bf16", sys.argv[1] == "causal")
s = Schedule("hopper_fa3", "fwd", 128, 128, 4, 2)
(jf, args, kw, grid), = capture(p, s)
t = GPUTarget("cuda", 90, 32)
src, opt = _specialise(jf, args, kw, t)
ck = triton.compile(src, target=t, options=opt.__dict__)
sass = disassemble(ck.asm["cubin"])
(launch,) = kernel_launches(p, s)
print(json.dumps({"name": jf.fn.__name__, "launch": launch.name, "grid": list(grid), "want_grid": list(launch.grid),
                  "shared": ck.metadata.shared, "warps": ck.metadata.num_warps, "sram": sram_bytes_per_cta(p, s),
                  "local": ptxas_report(ck.asm["ptx"], "sm90", opt)["local_bytes_per_thread"],
                  "setmaxnreg": re.findall(r"USETMAXREG\.(\w+)\.CTAPOOL (?:\w+, )?(0x[0-9a-f]+)", sass),
                  "hgmma": len(re.findall(r"\bHGMMA\.64x128x16", sass))}))
"""


@pytest.mark.parametrize("mask", ["causal", "full"])
def test_fa3_compiles_for_sm90a(mask):
    """The registry's launch captured by `kernels.compiled_facts` (meta tensors) and compiled for sm_90a on the CPU,
    in a subprocess without TRITON_INTERPRET: the captured grid is kernel_launches' grid (the persistent walk, 64
    tiles -> 64 CTAs; causal: through the host's table); 12 warps (producer warpgroup + two consumer warpgroups);
    setmaxnreg down to 24 for the producer and up to 240 for the consumers; no local memory (no spills); the
    registry's SRAM formula within 1 KB below the compiled shared memory (mbarriers)."""
    import json
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _COMPILE, mask], capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"sm_90a compile failed:\n{r.stderr[-3000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert (got["name"], got["launch"]) == ("_hopper_fa3_fwd", "hopper_fa3_fwd")
    assert got["grid"] + [1] * (3 - len(got["grid"])) == got["want_grid"]
    assert got["want_grid"] == [64, 1, 1]  # the walk, causal (host table) or not
    assert got["warps"] == 12 and got["local"] == 0
    budgets = set(map(tuple, got["setmaxnreg"]))
    assert ("DEALLOC", "0x18") in budgets and ("TRY_ALLOC", "0xf0") in budgets
    assert 0 <= got["shared"] - got["sram"] < 1024
    assert got["hgmma"] > 0
