"""hopper_fa3 (kernels/hopper_gluon.py): the FA3-structured Gluon forward.

Gluon does not run in Triton's CPU interpreter, so the numbers are checked on a GPU only (the GPU tests skip
themselves without one; the committed log of a GPU run is the evidence).  Without a GPU this file checks what the
launcher sets up: the refusals, the grid, the four host TMA descriptors (shapes, boxes, byte counts per load), and
the sm_90a compile (partitions, register budgets, no spills, the shared memory the registry states)."""
import pytest
import torch

import kernels
from kernels.testing import check_lse, check_rule, make_inputs, poisoned_allocations, seed_of, yardsticks
from memsim.schedule import Schedule, ScheduleError

hg = pytest.importorskip("kernels.hopper_gluon")
if hg.gluon is None:  # pragma: no cover
    pytest.skip("triton.experimental.gluon missing", allow_module_level=True)

ALG = "hopper"  # the Schedule's algorithm name while the launcher is called directly

# (B, Hq, Hkv, Nq, Nkv, d), causal, alignment, block_n, stages, grid order
_CASES = {
    "d128_full_gqa": ((2, 8, 2, 1024, 1024, 128), False, "top_left", 128, 2, "q_fastest"),
    "d128_full_s3_heads_fastest": ((1, 4, 4, 512, 768, 128), False, "top_left", 128, 3, "heads_fastest"),
    "d128_causal_tl": ((1, 4, 4, 1024, 1024, 128), True, "top_left", 128, 2, "q_fastest"),
    "d128_causal_br_q_lt_kv": ((1, 4, 2, 512, 1024, 128), True, "bottom_right", 128, 3, "q_fastest"),
    "d128_causal_br_rows_see_nothing": ((1, 2, 2, 1024, 256, 128), True, "bottom_right", 128, 2, "q_fastest"),
    "d128_causal_tl_q_gt_kv_bn64": ((1, 2, 1, 512, 256, 128), True, "top_left", 64, 2, "heads_fastest"),
    "d64_full_bn64_mqa": ((2, 4, 1, 768, 1280, 64), False, "top_left", 64, 2, "q_fastest"),
    "d64_causal_tl": ((1, 4, 4, 2048, 2048, 64), True, "top_left", 128, 2, "q_fastest"),
    "d128_one_block": ((1, 1, 1, 128, 128, 128), True, "top_left", 128, 2, "q_fastest"),
}


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
    assert hg.fa3_grid(p, s) == ((4, 12) if order == "q_fastest" else (12, 4))
    q = torch.zeros(2, 6, 512, 64, dtype=torch.float16)
    k = torch.zeros(2, 3, 384, 64, dtype=torch.float16)
    o = torch.zeros_like(q)
    lse = torch.zeros(2, 6, 512)
    args, kw = hg.fa3_args(p, s, q, k, k, o, lse)
    qd, kd, vd, od = args[:4]
    dims = lambda d: (list(d.shape), list(d.block_shape))  # noqa: E731
    assert dims(qd) == dims(od) == ([6144, 64], [64, 64])
    assert dims(kd) == dims(vd) == ([2304, 64], [64, 64])
    assert qd.base.data_ptr() == q.data_ptr() and od.base.data_ptr() == o.data_ptr()
    assert args[5:] == (6, 512, 384, p.scale * 1.4426950408889634, 0)
    assert (kw["GROUP"], kw["BLOCK_M"], kw["BLOCK_N"], kw["STAGES"], kw["num_warps"], kw["maxnreg"]) == \
        (2, 128, 64, 2, 4, 168)
    assert kw["Q_FASTEST"] == (order == "q_fastest")
    # the register budgets fill the register file: 12 warps x maxnreg <= 64K, producer + 2 consumers at their budgets
    assert 12 * 32 * hg.MAXNREG <= 65536
    assert 4 * 32 * (hg.PRODUCER_REGS + 2 * hg.CONSUMER_REGS) == 12 * 32 * hg.MAXNREG


def test_fa3_compiles_for_sm90a():
    """The sm_90a compile on the CPU (benchmarks/hopper_gluon_compile.py): 12 warps (producer warpgroup + two
    consumers), setmaxnreg to 24 (producer) and 240 (consumers), no spills; 8 wgmma per 64x128x128 matmul."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "hopper_gluon_compile.py"
    spec = importlib.util.spec_from_file_location("hopper_gluon_compile", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.compile_one(128, False, "bf16", 128, kernel="fa3")
    assert r["num_warps"] == 12 and r["local_bytes"] == 0
    allocs = {x.split()[-1] for x in r["USETMAXREG"] if "ALLOC" in x and "DEALLOC" not in x}
    deallocs = {x.split()[-1] for x in r["USETMAXREG"] if "DEALLOC" in x}
    assert "0xf0" in allocs and "0x18" in deallocs
