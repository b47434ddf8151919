"""hopper_fa3 bwd (kernels/hopper_gluon_bwd.py): the FA3-structured Gluon backward.

Gluon does not run in Triton's CPU interpreter, so the gradients are checked on a GPU only (the GPU tests skip
themselves without one; the committed log of a GPU run is the evidence).  Without a GPU this file checks the registry
entry (launches, SRAM, the byte contract's names, the fallback), the refusals, and the sm_90a compile (partitions,
register budgets, the shared memory the registry states)."""
import itertools

import pytest
import torch

import kernels
from kernels.testing import check_rule, make_inputs, poisoned_allocations, seed_of, yardsticks
from memsim.schedule import AttentionProblem, Schedule, ScheduleError, kernel_launches, sram_bytes_per_cta

hb = pytest.importorskip("kernels.hopper_gluon_bwd")
if hb.gluon is None:  # pragma: no cover
    pytest.skip("triton.experimental.gluon missing", allow_module_level=True)

ALG = "hopper_fa3"

# (B, Hq, Hkv, Nq, Nkv, d), causal, alignment, stages, grid order
_CASES = {
    "d128_full": ((2, 4, 4, 512, 512, 128), False, "top_left", 2, "q_fastest"),
    "d128_full_gqa_s3": ((2, 8, 2, 1024, 768, 128), False, "top_left", 3, "q_fastest"),
    "d128_causal_tl": ((1, 4, 4, 1024, 1024, 128), True, "top_left", 2, "q_fastest"),
    "d128_causal_tl_heads_fastest": ((2, 2, 2, 768, 768, 128), True, "top_left", 2, "heads_fastest"),
    "d128_causal_br_q_lt_kv": ((1, 4, 2, 512, 1024, 128), True, "bottom_right", 3, "q_fastest"),
    "d128_causal_br_rows_see_nothing": ((1, 2, 2, 1024, 256, 128), True, "bottom_right", 2, "q_fastest"),
    "d128_causal_tl_q_gt_kv": ((1, 2, 1, 512, 256, 128), True, "top_left", 2, "heads_fastest"),
    "d64_full_mqa": ((2, 4, 1, 640, 1280, 64), False, "top_left", 2, "q_fastest"),
    "d64_causal_tl": ((1, 4, 4, 2048, 2048, 64), True, "top_left", 2, "q_fastest"),
    "d64_causal_tl_blocks_see_nothing": ((1, 2, 2, 256, 1024, 64), True, "top_left", 2, "q_fastest"),
    "d128_one_block": ((1, 1, 1, 64, 128, 128), True, "top_left", 2, "q_fastest"),
}


def _gpu():
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9


def _check_grads(p, q, k, v, do, grads, dtype):
    """dQ, dK, dV against the float64 reference by DESIGN.md's rule."""
    kw = dict(do=do, causal=p.causal, causal_align=p.causal_align)
    ref = kernels.reference(q, k, v, **kw)
    ys = yardsticks(q, k, v, **kw)
    for name, g, gr in zip(("dq", "dk", "dv"), grads, ref[2:]):
        check_rule(name, g, gr, dtype=dtype, **ys[name])


def _run(case, dtype, seed_tag, block_m=64):
    shape, causal, align, st, order = _CASES[case]
    q, k, v, do = make_inputs(*shape, dtype, "cuda", seed_of("fa3_bwd", seed_tag, case, dtype))
    p = kernels.problem_for(q, k, v, causal=causal, causal_align=align)
    s = Schedule(ALG, "bwd", block_m, 128, 4, st, order)
    f = kernels.forward(p, kernels.default_schedule(p, "flash2", "fwd", q.device), q, k, v)
    with poisoned_allocations():
        grads = kernels.backward(p, s, q, k, v, f.o, do, f)
    return p, s, (q, k, v, do), grads


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", list(_CASES))
def test_fa3_backward_gpu(case, dtype):
    """dQ, dK, dV against the float64 reference by DESIGN.md's rule: GQA/MQA, both causal alignments, rows that see
    no key, K/V blocks no row sees, seq_q != seq_kv, both grid orders, 2 and 3 stages, d 64/128, poisoned outputs."""
    p, s, (q, k, v, do), grads = _run(case, dtype, "rule")
    from memsim.algorithms_hopper import fa3_bwd_applies
    assert fa3_bwd_applies(p, s)
    _check_grads(p, q, k, v, do, grads, dtype)


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("switches", [dict(DQ_TMA=False, STAT_SMEM=False, DQ_ASYNC=False),
                                      dict(DQ_TMA=True, STAT_SMEM=False, DQ_ASYNC=False),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=False),
                                      dict(DQ_TMA=True, STAT_SMEM=False, DQ_ASYNC=True),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=True),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, MMA_ORDER=1),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=True, MMA_ORDER=1),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, MMA_ORDER=2),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=True, DQ_DEFER=True),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_KSPLIT=True),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=True, DQ_KSPLIT=True),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_LAG=True, WG_OFFSET=0,
                                           DQ_STAGE1=False),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_LAG=True, WG_OFFSET=1,
                                           DQ_STAGE1=False),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_LAG=True, WG_OFFSET=2,
                                           DQ_STAGE1=False),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_LAG=False, WG_OFFSET=1,
                                           DQ_STAGE1=False),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_LAG=False, WG_OFFSET=None,
                                           DQ_STAGE1=False),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_LAG=True, WG_OFFSET=1,
                                           DQ_STAGE1=True),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_LAG=True, PINGPONG=True,
                                           DQ_STAGE1=False),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_LAG=True, PINGPONG=True,
                                           DQ_STAGE1=True),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_LAG=False, DQ_STAGE1=True),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_FUSE=True,
                                           DQ_ZERO_WS=False),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_FUSE=True,
                                           DQ_ZERO_WS=True),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_FUSE=True,
                                           DQ_ZERO_WS=False, FUSE_STEP=True),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_FUSE=True,
                                           DQ_ZERO_WS=True, FUSE_STEP=True),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_FUSE=True,
                                           DQ_ZERO_WS=True, FUSE_STEP=4),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, DQ_FUSE=True,
                                           DQ_ZERO_WS=True, FUSE_EARLY=True),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, GRID_GROUP=3),
                                      dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=None, GRID_GROUP=-1)],
                         ids=["atomics", "dq_tma_plain_stats", "dq_tma_stat_smem", "dq_tma_async",
                              "dq_tma_stat_smem_async", "order1", "order1_async", "order2", "dq_defer", "dq_ksplit",
                              "dq_ksplit_async", "dq_lag", "dq_lag_off1", "dq_lag_off2", "wg_off1", "lockstep",
                              "s14_lag_stage1", "s14_lag_pingpong", "s14_lag_pingpong_stage1", "s14_stage1",
                              "s15_fuse", "s15_fuse_ws", "s16_fuse_step", "s16_fuse_step_ws",
                              "s16_fuse_chunk4_ws", "s16_fuse_ws_early", "s16_group3", "s16_group_wave"])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", list(_CASES))
def test_fa3_backward_variants_gpu(case, dtype, switches, monkeypatch):
    """The module's switches (dQ by atomics instead of the TMA reduce-add; lse/delta by plain loads or through the
    stages; the double-buffered dQ staging; the consumer's matmul order MMA_ORDER 1 / 2, session 13) are exact on
    every case (run11d: atomics run11a, plain stats run11c).
    DQ_ASYNC's second staging tiles do not fit d=128 with 3 stages (262 KB > 227 KB of shared memory, run11d): a
    ScheduleError that names the schedule, nothing launched; nor do DQ_LAG's four dS^T buffers (session 14: 263 760 B).
    Session 14's (run15, run16: exact): DQ_LAG (step t's dQ in step t+1; the registry's at d=128 2 stages since
    run15) with WG_OFFSET 0 / 1 / 2, WG_OFFSET without it, the lockstep (DQ_LAG off: the kernel before run15), each
    without DQ_STAGE1 (one staging tile, waited for at reuse; the registry's at d=128 since run16), DQ_STAGE1 with
    DQ_LAG + WG_OFFSET 1 (= the registered kernel at d=128 2 stages) and without DQ_LAG, PINGPONG (the consumers take
    turns issuing their matmuls) with and without it."""
    for name, value in switches.items():
        monkeypatch.setattr(hb, name, value)
    if ((switches["DQ_ASYNC"] or switches.get("DQ_LAG")) and _CASES[case][0][5] == 128
            and _CASES[case][3] == 3):
        with pytest.raises(ScheduleError, match="shared memory"):
            _run(case, dtype, "variants")
        return
    p, s, (q, k, v, do), grads = _run(case, dtype, "variants")
    _check_grads(p, q, k, v, do, grads, dtype)


#: FUSE_STEP (session 16) at 2 stages on shapes _CASES has only at 3 stages or not at all
_STEP_CASES = {
    "d128_causal_br_q_lt_kv_s2": ((1, 4, 2, 512, 1024, 128), True, "bottom_right", 2, "q_fastest"),
    "d128_full_gqa_s2": ((2, 8, 2, 1024, 768, 128), False, "top_left", 2, "q_fastest"),
    "d128_causal_tl_gqa_s2": ((1, 8, 2, 768, 768, 128), True, "top_left", 2, "heads_fastest"),
}


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("chunk", [1, 3, 16], ids=["chunk1", "chunk3", "chunk16"])
@pytest.mark.parametrize("zero_ws", [False, True])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", list(_STEP_CASES))
def test_fa3_backward_fuse_step_gpu(case, dtype, zero_ws, chunk, monkeypatch):
    """The conversion per (chunk of Q blocks, column half) in the loop (FUSE_STEP) is exact where it runs -- GQA,
    causal with seq_q < seq_kv bottom-right (Q blocks need more K/V blocks than the diagonal), heads varying fastest,
    chunks of 1, of 3 (a partial last chunk) and of 16 (a whole head here) -- and leaves the counters (and with the
    workspace, dQacc) zero.  (run19 ran the chunk-1 form of session 16's first version: 12 passed.)"""
    monkeypatch.setattr(hb, "DQ_FUSE", True)
    monkeypatch.setattr(hb, "DQ_ZERO_WS", zero_ws)
    monkeypatch.setattr(hb, "FUSE_STEP", chunk)
    monkeypatch.setitem(_CASES, case, _STEP_CASES[case])
    p, s, (q, k, v, do), grads = _run(case, dtype, "fuse_step")
    st = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    acc = torch.empty((p.batch, p.heads_q, p.seq_q, p.head_dim), dtype=torch.float32, device=q.device)
    _, kw = hb.fa3_bwd_args(p, s, q, k, v, do, st, st, acc, k, v, dq=q, cnt=st)
    assert kw["FUSE_STEP"] == chunk, kw
    _check_grads(p, q, k, v, do, grads, dtype)
    torch.cuda.synchronize()
    assert int(torch.count_nonzero(hb.fuse_counters(q.device, hb.fuse_counter_count(p, s, 1)))) == 0
    if zero_ws:
        ws = hb.dq_workspace(q.device, (p.batch, p.heads_q, p.seq_q, p.head_dim))
        assert int(torch.count_nonzero(ws)) == 0


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("step", [False, True], ids=["end", "step"])
@pytest.mark.parametrize("case", ["d128_full_gqa_s3", "d128_causal_br_rows_see_nothing", "d64_full_mqa",
                                  "d128_full", "d128_causal_tl", "d128_causal_br_q_lt_kv"])
def test_fa3_backward_zero_ws_gpu(case, step, monkeypatch):
    """The folded conversion with the zeroed workspace (session 15, DQ_FUSE + DQ_ZERO_WS): three backward passes in a
    row are each exact, the workspace and the counters are zero after each (the last warpgroup of every head_kv and
    column half converted and re-zeroed its rows, and reset its counter), and a pass with other inputs between two
    of the same inputs gives the same dQ up to the reduce-adds' order."""
    monkeypatch.setattr(hb, "DQ_FUSE", True)
    monkeypatch.setattr(hb, "DQ_ZERO_WS", True)
    monkeypatch.setattr(hb, "FUSE_STEP", step)  # session 16: per (Q block, column half) where it runs
    shape = _CASES[case][0]
    dq0 = None
    for rep, tag in enumerate(("a", "b", "a")):
        p, s, (q, k, v, do), grads = _run(case, "bf16", "zero_ws" + tag)
        _check_grads(p, q, k, v, do, grads, "bf16")
        torch.cuda.synchronize()
        ws = hb.dq_workspace(q.device, (shape[0], shape[1], shape[3], shape[5]))
        assert int(torch.count_nonzero(ws)) == 0, f"pass {rep}: the workspace is not left zero"
        assert int(torch.count_nonzero(hb.fuse_counters(q.device, hb.fuse_counter_count(p, s, step)))) == 0
        if rep == 0:
            dq0 = grads[0].float().clone()
    torch.testing.assert_close(grads[0].float(), dq0, rtol=1e-2, atol=1e-2)


def test_fa3_backward_fuse_diag3_rules():
    """FUSE_DIAG 3 (session 18, a timing diagnostic): the folded conversion without writing the zeros back --
    DQ_REZERO off though the workspace is on; the other diagnostics and the real kernel keep it."""
    import unittest.mock as um
    p = AttentionProblem(1, 2, 2, 1024, 1024, 128)
    s = Schedule(ALG, "bwd", 64, 128, 4, 2)
    q = torch.empty(1, 2, 1024, 128, dtype=torch.bfloat16)
    st = torch.empty(1, 2, 1024)

    def kw_of(diag):
        with um.patch.multiple(hb, DQ_FUSE=True, DQ_ZERO_WS=True, FUSE_STEP=0, FUSE_DIAG=diag):
            return hb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, 128), q, q, dq=q, cnt=st)[1]
    for diag, rezero in ((0, True), (1, True), (2, True), (3, False)):
        kw = kw_of(diag)
        assert kw["DQ_FUSE"] and kw["FUSE_DIAG"] == diag and kw["DQ_REZERO"] == rezero, kw


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("switches", [{}, dict(DQ_ASYNC=False), dict(DQ_KSPLIT=True)],
                         ids=["registered", "sync", "ksplit"])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", [c for c in _CASES if c.startswith("d64")])
def test_fa3_backward_bm128_gpu(case, dtype, switches, monkeypatch):
    """128-row Q blocks at d=64 (`FA3_BWD_BLOCK_MS`, session 13): exact on the d=64 cases (their seq_q divide 128),
    with the registry's switches, with single-buffered dQ staging and with DQ_KSPLIT (run14: exact, slower).
    (DQ_DEFER does not pair with them: ptxas serialises every wgmma there.)"""
    for name, value in switches.items():
        monkeypatch.setattr(hb, name, value)
    p, s, (q, k, v, do), grads = _run(case, dtype, "bm128", block_m=128)
    from memsim.algorithms_hopper import fa3_bwd_applies
    assert s.block_m == 128 and fa3_bwd_applies(p, s)
    _check_grads(p, q, k, v, do, grads, dtype)


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("case", [c for c in _CASES if c.startswith("d64")])
def test_fa3_backward_kv_regs_gpu(case, monkeypatch):
    """The KV_REGS variant (K_w, V_w as register operands of S^T and dP^T; d=64: no spills) is exact too."""
    monkeypatch.setattr(hb, "KV_REGS", True)
    p, s, (q, k, v, do), grads = _run(case, "bf16", "kv_regs")
    _check_grads(p, q, k, v, do, grads, "bf16")


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
def test_fa3_backward_gpu_repeatable():
    """dK and dV are bit-identical run to run (no race between the partitions); dQ's atomic order is free, so it is
    compared by the rule's scale: two runs differ by at most fp32 rounding of the sums."""
    _, _, _, a = _run("d128_causal_tl", "bf16", "repeat")
    _, _, _, b = _run("d128_causal_tl", "bf16", "repeat")
    assert torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    assert (a[0].float() - b[0].float()).abs().max().item() <= 1e-2 * a[0].float().abs().max().item()


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("shape", [(2, 4, 2, 512, 1024, 128), (1, 3, 3, 300, 517, 64)], ids=["own_launch", "fallback"])
def test_fa3_backward_registry_path_gpu(shape, causal):
    """kernels.attention with a (hopper_fa3 fwd, hopper_fa3 bwd) pair, autograd: the Gluon launches where they apply,
    hopper's launches on ragged lengths; O and the gradients exact."""
    from memsim.algorithms_hopper import fa3_bwd_applies
    q, k, v, do = make_inputs(*shape, "bf16", "cuda", seed_of("fa3_bwd", "registry", shape, causal))
    p = kernels.problem_for(q, k, v, causal=causal)
    pair = (Schedule(ALG, "fwd", 128, 128, 4, 2), Schedule(ALG, "bwd", 64, 128, 4, 2))
    assert fa3_bwd_applies(p, pair[1]) == (shape[3] % 128 == 0)
    ref = kernels.reference(q, k, v, do=do, causal=causal)
    ys = yardsticks(q, k, v, do=do, causal=causal)
    qg, kg, vg = (t.detach().clone().requires_grad_() for t in (q, k, v))
    o = kernels.attention(qg, kg, vg, is_causal=causal, enable_gqa=True, schedule=pair)
    o.backward(do)
    assert kernels.last_schedule() == pair
    check_rule("o", o.detach(), ref[0], dtype="bf16", **ys["o"])
    for name, g, gr in zip(("dq", "dk", "dv"), (qg.grad, kg.grad, vg.grad), ref[2:]):
        check_rule(name, g, gr, dtype="bf16", **ys[name])


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_fa3_backward_default_path_gpu(causal):
    """kernels.attention with no schedule at d=64 N=1024 on the H100: the default's backward is hopper_fa3 with
    128-row Q blocks (HOPPER_FA3_BWD_FASTEST, run13b); O and the gradients exact."""
    q, k, v, do = make_inputs(2, 8, 8, 1024, 1024, 64, "bf16", "cuda", seed_of("fa3_bwd", "default", causal))
    ref = kernels.reference(q, k, v, do=do, causal=causal)
    ys = yardsticks(q, k, v, do=do, causal=causal)
    qg, kg, vg = (t.detach().clone().requires_grad_() for t in (q, k, v))
    o = kernels.attention(qg, kg, vg, is_causal=causal)
    o.backward(do)
    bwd = kernels.last_schedule()[1]
    if torch.cuda.get_device_properties(0).multi_processor_count == 132:
        assert (bwd.algorithm, bwd.block_m, bwd.block_n) == ("hopper_fa3", 128, 128), bwd
    check_rule("o", o.detach(), ref[0], dtype="bf16", **ys["o"])
    for name, g, gr in zip(("dq", "dk", "dv"), (qg.grad, kg.grad, vg.grad), ref[2:]):
        check_rule(name, g, gr, dtype="bf16", **ys[name])


def test_fa3_backward_refusals():
    """What the Gluon launch does not run is refused with the reason (the registry runs hopper bwd's launches
    there instead: test_fa3_backward_registry_launches)."""
    p = AttentionProblem(1, 2, 2, 256, 256, 128, dtype="bf16")
    for s, p2 in ((Schedule(ALG, "bwd", 128, 128, 4, 2), p), (Schedule(ALG, "bwd", 64, 64, 4, 2), p),
                  (Schedule(ALG, "bwd", 64, 128, 8, 2), p), (Schedule(ALG, "bwd", 64, 128, 4, 1), p),
                  (Schedule(ALG, "bwd", 64, 128, 4, 2), AttentionProblem(1, 2, 2, 256, 320, 128, dtype="bf16")),
                  (Schedule(ALG, "bwd", 64, 128, 4, 2), AttentionProblem(1, 2, 2, 256, 256, 32, dtype="bf16")),
                  (Schedule(ALG, "bwd", 64, 128, 4, 2), AttentionProblem(1, 2, 2, 256, 256, 64, dtype="fp32"))):
        with pytest.raises(ScheduleError, match="hopper_fa3_bwd launch runs"):
            hb.check_fa3_bwd(p2, s)
    s = Schedule(ALG, "bwd", 64, 128, 4, 2)
    hb.check_fa3_bwd(p, s)
    hb.check_fa3_bwd(AttentionProblem(1, 2, 2, 256, 256, 64, dtype="bf16"), Schedule(ALG, "bwd", 128, 128, 4, 2))
    with pytest.raises(ScheduleError, match="hopper_fa3_bwd launch runs"):  # 128-row Q blocks need seq_q % 128
        hb.check_fa3_bwd(AttentionProblem(1, 2, 2, 192, 256, 64, dtype="bf16"), Schedule(ALG, "bwd", 128, 128, 4, 2))
    t = torch.empty(1, 2, 256, 256, dtype=torch.bfloat16)[..., :128]
    with pytest.raises(ValueError, match="contiguous"):
        hb.check_fa3_bwd(p, s, (("q", t),))
    q = torch.zeros(1, 2, 256, 128, dtype=torch.bfloat16)
    with pytest.raises(NotImplementedError, match="interpreter"):
        hb.fa3_bwd_dkdvdq(p, s, (2, 2, 1), q, q, q, q, None, None, None, q, q)


@pytest.mark.parametrize("order", ["q_fastest", "heads_fastest"])
def test_fa3_backward_registry_launches(order):
    """The registry entry: the Gluon launch (grid = one CTA per (K/V block, batch*head_kv)) between hopper bwd's
    preprocess and conversion where `fa3_bwd_applies`, hopper bwd's launches otherwise; the SRAM formula; the byte
    contract equals hopper bwd's under the new name."""
    from memsim.algorithms import spec_for
    p = AttentionProblem(2, 8, 2, 1024, 2048, 128, dtype="bf16", causal=True)
    s = Schedule(ALG, "bwd", 64, 128, 4, 2, order)
    pre, main, conv = kernel_launches(p, s)
    assert (pre.name, main.name, conv.name) == ("hopper_bwd_preprocess", "hopper_fa3_bwd", "hopper_bwd_dq_convert")
    nb, bhkv = 2048 // 128, 2 * 2
    assert main.grid == ((nb, bhkv, 1) if order == "q_fastest" else (bhkv, nb, 1))
    # K_j + V_j + 2 stages x (Q_i + dO_i) + two dS^T tiles (+ the two dQ staging tiles of the TMA reduce-add)
    # (+ 2 stages x (lse_i + delta_i) of STAT_SMEM)
    # (+ two more dS^T tiles where the registry's DQ_LAG is on: d=128, 2 stages, session 14)
    from memsim.algorithms_hopper import FA3_BWD_DQ_BY_TMA, FA3_BWD_STAT_SMEM, fa3_bwd_dq_lag
    assert fa3_bwd_dq_lag(p, s) and not fa3_bwd_dq_lag(p, Schedule(ALG, "bwd", 64, 128, 4, 3, order))
    assert sram_bytes_per_cta(p, s) == (2 * 128 * 128 * 2 + 2 * 2 * 64 * 128 * 2 + 4 * 128 * 64 * 2
                                        + (64 * 128 * 4 if FA3_BWD_DQ_BY_TMA else 0)
                                        + (2 * 2 * 64 * 4 if FA3_BWD_STAT_SMEM else 0)) == 230400
    s3 = Schedule(ALG, "bwd", 64, 128, 4, 3, order)
    assert sram_bytes_per_cta(p, s3) == sram_bytes_per_cta(p, s) - 2 * 128 * 64 * 2 + 2 * 64 * 128 * 2 + 2 * 64 * 4
    h = Schedule("hopper", "bwd", 64, 128, 4, 2, order)
    ours, theirs = spec_for(ALG, "bwd").contract(p, s), spec_for("hopper", "bwd").contract(p, h)
    assert ours["hopper_fa3_bwd"] == theirs["hopper_bwd_dkdvdq"]
    assert ours["hopper_bwd_preprocess"] == theirs["hopper_bwd_preprocess"]
    # ragged lengths: hopper bwd's launches and bytes
    pr = AttentionProblem(1, 2, 2, 300, 517, 128, dtype="bf16")
    assert [x.name for x in kernel_launches(pr, s)] == ["hopper_bwd_preprocess", "hopper_bwd_dkdvdq",
                                                        "hopper_bwd_dq_convert"]
    # d=64, 2 stages: the dQ staging double-buffered (the registry's fa3_bwd_dq_async), 3 stages: not
    p64 = AttentionProblem(1, 4, 4, 1024, 1024, 64, dtype="bf16")
    base = 2 * 128 * 64 * 2 + 2 * 128 * 64 * 2 + (64 * 64 * 4 if FA3_BWD_DQ_BY_TMA else 0)
    stats = 2 * 64 * 4 if FA3_BWD_STAT_SMEM else 0
    for st, dbl in ((2, True), (3, False)):
        s64 = Schedule(ALG, "bwd", 64, 128, 4, st)
        assert sram_bytes_per_cta(p64, s64) == (base + st * 2 * 64 * 64 * 2 + st * stats
                                                + (64 * 64 * 4 if dbl and FA3_BWD_DQ_BY_TMA else 0))
    # d=64 with 128-row Q blocks (session 13): double-buffered dQ staging at 2 stages; 3 stages do not fit
    s128 = Schedule(ALG, "bwd", 128, 128, 4, 2)
    assert [x.name for x in kernel_launches(p64, s128)][1] == "hopper_fa3_bwd"
    assert sram_bytes_per_cta(p64, s128) == (2 * 128 * 64 * 2 + 2 * 2 * 128 * 64 * 2 + 2 * 128 * 128 * 2
                                             + (2 * 128 * 64 * 4 if FA3_BWD_DQ_BY_TMA else 0)
                                             + (2 * 2 * 128 * 4 if FA3_BWD_STAT_SMEM else 0)) == 231424
    with pytest.raises(ScheduleError):  # 128-row Q blocks at d=128: not a Gluon launch the registry has
        hb.check_fa3_bwd(AttentionProblem(1, 2, 2, 1024, 1024, 128, dtype="bf16"), s128)
    # the defaults: the Gluon tiles (d=64: 128-row Q blocks since run13b)
    for d, bm in ((64, 128), (128, 64)):
        t = spec_for(ALG, "bwd").default_tiles(AttentionProblem(1, 2, 2, 1024, 1024, d, dtype="bf16"), "gpu")
        assert (t["block_m"], t["block_n"], t["num_warps"], t["num_stages"]) == (bm, 128, 4, 2)


_COMPILE = r"""
import json, re, sys
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import make_backend
from triton.experimental.gluon._runtime import GluonASTSource
from triton.runtime.jit import create_function_from_signature
from kernels import hopper_gluon_bwd as kb
from kernels.compiled_facts import ptxas_report
from kernels.sass import disassemble
from memsim.schedule import AttentionProblem, Schedule, sram_bytes_per_cta
d, causal = int(sys.argv[1]), sys.argv[2] == "causal"
if sys.argv[3] == "1":
    kb.DQ_ASYNC = True
if len(sys.argv) > 4 and sys.argv[4] == "ksplit":
    kb.DQ_KSPLIT = True
if len(sys.argv) > 4 and sys.argv[4].startswith("lag"):
    kb.DQ_LAG = True
    kb.WG_OFFSET = int(sys.argv[4][3:] or 0)
if len(sys.argv) <= 4 or sys.argv[4] != "registered":  # the switches' own figures: without session 22's EPI_TMA
    kb.EPI_TMA = False
p = AttentionProblem(1, 2, 2, 1024, 1024, d, dtype="bf16", causal=causal)
s = Schedule("hopper_fa3", "bwd", 64, 128, 4, 2)
q = torch.empty(1, 2, 1024, d, dtype=torch.bfloat16)
st = torch.empty(1, 2, 1024, dtype=torch.float32)
args, kw = kb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, d), q, q)
jf = kb._hopper_fa3_bwd
target = GPUTarget("cuda", 90, 32)
backend = make_backend(target)
binder = create_function_from_signature(jf.signature, jf.params, backend)
bound, spec, opts = binder(*args, **kw)
opts, sig, consts, attrs = jf._pack_args(backend, kw, bound, spec, opts)
k = triton.compile(GluonASTSource(jf, sig, consts, attrs), target=target, options=opts.__dict__)
sass = disassemble(k.asm["cubin"])
print(json.dumps({"warps": k.metadata.num_warps, "shared": k.metadata.shared, "sram": sram_bytes_per_cta(p, s),
                  "local": ptxas_report(k.asm["ptx"], "sm90", opts)["local_bytes_per_thread"],
                  "setmaxnreg": re.findall(r"USETMAXREG\.(\w+)\.CTAPOOL (?:\w+, )?(0x[0-9a-f]+)", sass),
                  "hgmma": len(re.findall(r"\bHGMMA\.", sass)), "red": len(re.findall(r"\bREDG\.E\.ADD\.F32", sass)),
                  "tma_red": len(re.findall(r"\bUTMAREDG\.2D\.ADD", sass)),
                  "depbar": len(re.findall(r"WARPGROUP\.DEPBAR", sass))}))
"""


@pytest.mark.parametrize("prepared", [False, True], ids=["registered", "dq_async"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("mask", ["causal", "full"])
def test_fa3_backward_compiles_for_sm90a(mask, d, prepared):
    """The launch compiled for sm_90a on the CPU (a subprocess without TRITON_INTERPRET): 12 warps (producer
    warpgroup + two consumer warpgroups), setmaxnreg 24 / 240, wgmma (HGMMA) and the dQ adds (TMA reduce-adds, or
    REDG atomics) in the SASS, the registry's SRAM formula within 1 KB below the compiled shared memory (mbarriers).
    Local memory: none with lse/delta through the stages (the registry's setting); 152-168 B at d=128 without."""
    import json
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _COMPILE, str(d), mask, "1" if prepared else "0", "registered"],
                       capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"sm_90a compile failed:\n{r.stderr[-3000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["warps"] == 12
    # with lse/delta by plain loads (run11c) ptxas kept 152 B (full) / 168 B (causal) a thread in local memory at
    # d=128 -- lse_i and delta_i (16 values each) live across the matmuls; through the stages (STAT_SMEM, the
    # registry's setting since run11d) none.  DQ_ASYNC (exact on the H100, run11d; not the setting): shared memory +
    # the second dQ staging tile of each warpgroup
    # (session 14: with the registry's DQ_LAG at d=128, 8 B causal; session 22: 8 B too where the registry's EPI_TMA
    # runs -- the non-causal N=1024 compile here)
    from memsim.algorithms_hopper import FA3_BWD_STAT_SMEM, fa3_bwd_epi_tma
    lag_causal = d == 128 and not prepared and (mask == "causal" or fa3_bwd_epi_tma(
        AttentionProblem(1, 2, 2, 1024, 1024, d, dtype="bf16", causal=mask == "causal"),
        Schedule("hopper_fa3", "bwd", 64, 128, 4, 2)))
    assert got["local"] == (0 if d == 64 or FA3_BWD_STAT_SMEM else {"full": 152, "causal": 168}[mask]) + (
        8 if lag_causal else 0)
    budgets = set(map(tuple, got["setmaxnreg"]))
    assert ("DEALLOC", "0x18") in budgets and ("TRY_ALLOC", "0xf0") in budgets
    from memsim.algorithms_hopper import fa3_bwd_dq_async, fa3_bwd_dq_lag
    p0, s0 = AttentionProblem(1, 2, 2, 1024, 1024, d, dtype="bf16"), Schedule("hopper_fa3", "bwd", 64, 128, 4, 2)
    registered_async = fa3_bwd_dq_async(p0, s0)
    assert registered_async == (d == 64)  # run11e: 1.12x at d=64, a tie at d=128
    assert fa3_bwd_dq_lag(p0, s0) == (d == 128)  # run15: DQ_LAG 1.03-1.06x at d=128
    extra = 64 * d * 4 if prepared and not registered_async else 0
    # d=128 with DQ_ASYNC forced on: the registry's DQ_LAG yields (both would not fit): two dS^T tiles fewer
    extra -= 2 * 128 * 64 * 2 if prepared and fa3_bwd_dq_lag(p0, s0) else 0
    assert 0 <= got["shared"] - got["sram"] - extra < 1024
    assert got["hgmma"] > 0
    from memsim.algorithms_hopper import FA3_BWD_DQ_BY_TMA
    if FA3_BWD_DQ_BY_TMA:  # dQ by the copy engine's bulk reduce-add, no per-thread atomics
        assert got["tma_red"] > 0 and got["red"] == 0
    else:
        assert got["red"] > 0 and got["tma_red"] == 0


@pytest.mark.parametrize("d", [64, 128])
def test_fa3_backward_ksplit_compiles_for_sm90a(d):
    """DQ_KSPLIT (session 13; each warpgroup reduce-adds its own K/V rows' share of dQ, no dS^T exchange; run14 on an
    H100: exact, 0.84-0.94x the registered kernel, off) compiles for sm_90a without serialised wgmma (ptxas's C7512 would turn every wait into a
    WARPGROUP.DEPBAR: 64 at d=128), no spills non-causal, shared memory = the registry's SRAM (the exchange's mbarrier
    unused)."""
    import json
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _COMPILE, str(d), "full", "0", "ksplit"], capture_output=True,
                       text=True, env=env, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"sm_90a compile failed:\n{r.stderr[-3000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["warps"] == 12 and got["local"] == 0 and got["tma_red"] > 0
    assert got["depbar"] <= 12, got
    # (the registry's DQ_LAG, d=128 since session 14, does not pair with DQ_KSPLIT: two dS^T tiles fewer)
    from memsim.algorithms_hopper import fa3_bwd_dq_lag
    lag = fa3_bwd_dq_lag(AttentionProblem(1, 2, 2, 1024, 1024, d, dtype="bf16"),
                         Schedule("hopper_fa3", "bwd", 64, 128, 4, 2))
    assert 0 <= got["shared"] - got["sram"] + (2 * 128 * 64 * 2 if lag else 0) < 1024


@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("mask", ["causal", "full"])
def test_fa3_backward_lag_compiles_for_sm90a(mask, offset):
    """DQ_LAG (session 14: step t's dQ in step t+1, four dS^T buffers, no per-step lockstep; WG_OFFSET: consumer 1
    starts later) compiles for sm_90a at d=128 without serialised wgmma (12 waits: the registered kernel's 8 + the
    peeled first step and the last step's dQ), no spills non-causal (8 B causal, as the registered kernel's 0 / 0),
    shared memory = the registry's SRAM (four dS^T buffers: 230 480 B, under the 227 KB a block may have)."""
    import json
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _COMPILE, "128", mask, "0", f"lag{offset}"], capture_output=True,
                       text=True, env=env, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"sm_90a compile failed:\n{r.stderr[-3000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["warps"] == 12 and got["tma_red"] > 0
    assert got["local"] <= (8 if mask == "causal" else 0), got
    assert got["depbar"] <= 12, got
    assert 0 <= got["shared"] - got["sram"] < 1024  # the registry's SRAM counts the four tiles (DQ_LAG its default)
    assert got["shared"] <= 232448


@pytest.mark.parametrize("zero_ws", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_fa3_backward_dq_fuse_registry_and_model(causal, zero_ws, monkeypatch):
    """The folded dQ conversion (session 15, `FA3_BWD_DQ_FUSE`) on both sides: two launches (no
    ``hopper_bwd_dq_convert``) where the rule applies (head dim, seq_q <= max_seq_q), three elsewhere; the byte
    contract moves the conversion's bytes into the pass (and with the zeroed workspace the zeroing's writes from the
    preprocess to the pass) with the totals unchanged; memsim predicts each launch's contract bytes, and the pass's
    time grows by what the conversion cost (more than nothing, less than the launch it replaces); the kernel's
    switches follow the registry."""
    import memsim
    import memsim.algorithms_hopper as ah
    from memsim.algorithms import spec_for
    hw = memsim.load_hardware("h100-sxm")
    p = AttentionProblem(2, 4, 2, 1024, 1024, 128, dtype="bf16", causal=causal)
    s = Schedule(ALG, "bwd", 64, 128, 4, 2)
    spec = spec_for(ALG, "bwd")
    monkeypatch.setitem(ah.FA3_BWD_DQ_FUSE, "head_dims", ())
    base, base_comp, base_sim = spec.contract(p, s), spec.compulsory_dram_bytes(p, s), memsim.simulate(p, s, hw)
    assert not ah.fa3_bwd_dq_fuse(p, s)
    monkeypatch.setitem(ah.FA3_BWD_DQ_FUSE, "head_dims", (128,))
    monkeypatch.setitem(ah.FA3_BWD_DQ_FUSE, "dtypes", ("bf16",))
    monkeypatch.setitem(ah.FA3_BWD_DQ_FUSE, "causal", (False, True))
    monkeypatch.setitem(ah.FA3_BWD_DQ_FUSE, "zero_ws", zero_ws)
    assert ah.fa3_bwd_dq_fuse(p, s) and ah.fa3_bwd_dq_zero_ws(p, s) == zero_ws
    assert [x.name for x in kernel_launches(p, s)] == ["hopper_bwd_preprocess", "hopper_fa3_bwd"]
    big = AttentionProblem(1, 2, 2, 8192, 8192, 128, dtype="bf16", causal=causal)
    assert [x.name for x in kernel_launches(big, s)][2] == "hopper_bwd_dq_convert"  # over max_seq_q
    acc = 2 * 4 * 1024 * 128 * 4
    got, comp = spec.contract(p, s), spec.compulsory_dram_bytes(p, s)
    conv = base["hopper_bwd_dq_convert"]
    for key in ("global_read_bytes", "global_write_bytes", "flops", "exp_count"):
        zero_move = acc if (zero_ws and key == "global_write_bytes") else 0
        assert got["hopper_fa3_bwd"][key] == base["hopper_fa3_bwd"][key] + conv[key] + zero_move, key
        assert got["hopper_bwd_preprocess"][key] == base["hopper_bwd_preprocess"][key] - zero_move, key
        assert sum(v[key] for v in got.values()) == sum(v[key] for v in base.values()), key
    assert [sum(v[i] for v in comp.values()) for i in (0, 1)] == [sum(v[i] for v in base_comp.values())
                                                                  for i in (0, 1)]
    sim = memsim.simulate(p, s, hw).to_dict()
    kern = {k["name"]: k for k in sim["kernels"]}
    assert set(kern) == {"hopper_bwd_preprocess", "hopper_fa3_bwd"}
    for name in kern:
        for key in ("global_read_bytes", "global_write_bytes"):
            assert kern[name][key] == got[name][key], (name, key)
    old = {k["name"]: k for k in base_sim.to_dict()["kernels"]}
    assert old["hopper_fa3_bwd"]["time_s"] < kern["hopper_fa3_bwd"]["time_s"]
    assert (kern["hopper_fa3_bwd"]["time_s"] - old["hopper_fa3_bwd"]["time_s"]
            < old["hopper_bwd_dq_convert"]["time_s"])
    # the kernel's switches follow the registry (None = the registry's)
    q = torch.empty(2, 4, 1024, 128, dtype=torch.bfloat16)
    kv = torch.empty(2, 2, 1024, 128, dtype=torch.bfloat16)
    st = torch.empty(2, 4, 1024, dtype=torch.float32)
    _, kw = hb.fa3_bwd_args(p, s, q, kv, kv, q, st, st, torch.empty(2, 4, 1024, 128), kv, kv)
    assert kw["DQ_FUSE"] and kw["DQ_REZERO"] == zero_ws
    monkeypatch.setattr(hb, "DQ_FUSE", False)
    _, kw = hb.fa3_bwd_args(p, s, q, kv, kv, q, st, st, torch.empty(2, 4, 1024, 128), kv, kv)
    assert not kw["DQ_FUSE"] and not kw["DQ_REZERO"]


def test_fa3_backward_dq_fuse_registered_cells():
    """Where the registry folds the conversion in (run17: d=128, fp16, non-causal, N <= 4096, with the zeroed
    workspace; run19, session 16: bf16 too) and where it keeps three launches (causal, N=16384 and d=64: not
    measured faster)."""
    from memsim.algorithms_hopper import fa3_bwd_dq_fuse, fa3_bwd_dq_zero_ws
    s = Schedule(ALG, "bwd", 64, 128, 4, 2)
    for n in (1024, 4096):
        for dt in ("fp16", "bf16"):
            p = AttentionProblem(16384 // n, 16, 16, n, n, 128, dtype=dt)
            assert fa3_bwd_dq_fuse(p, s) and fa3_bwd_dq_zero_ws(p, s)
            assert [x.name for x in kernel_launches(p, s)] == ["hopper_bwd_preprocess", "hopper_fa3_bwd"]
    for p in (AttentionProblem(16, 16, 16, 1024, 1024, 128, dtype="bf16", causal=True),
              AttentionProblem(16, 16, 16, 1024, 1024, 128, dtype="fp16", causal=True),
              AttentionProblem(1, 16, 16, 16384, 16384, 128, dtype="fp16"),
              AttentionProblem(16, 32, 32, 1024, 1024, 64, dtype="fp16")):
        sp = s if p.head_dim == 128 else Schedule(ALG, "bwd", 128, 128, 4, 2)
        assert not fa3_bwd_dq_fuse(p, sp)
        assert kernel_launches(p, sp)[-1].name == "hopper_bwd_dq_convert"


@pytest.mark.parametrize("mask", ["causal", "full"])
def test_fa3_backward_dq_fuse_compiles_for_sm90a(mask):
    """DQ_FUSE + DQ_ZERO_WS at d=128 2 stages (the registered DQ_LAG + DQ_STAGE1 kernel) compiles for sm_90a: one
    GPU-scope acq_rel atomic issued by one thread per consumer warpgroup (ATOMG.E.ADD.STRONG.GPU), the full bulk
    wait (cp.async.bulk.wait_group 0, not .read) + fence.proxy.async.global before it, the wgmma waits of the
    registered kernel (12: nothing serialised), 32 B more shared memory (the atomic's broadcast slot)."""
    import json
    import os
    import subprocess
    import sys
    script = _COMPILE.replace('args, kw = kb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, d), q, q)',
                              'args, kw = kb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, d), q, q, '
                              'dq=q, cnt=torch.empty(8, dtype=torch.int32), dq_fuse=True, zero_ws=True)\n'
                              'assert kw["DQ_FUSE"] and kw["DQ_REZERO"] and kw["DQ_LAG"] and kw["DQ_STAGE1"]')
    script = script.replace('"depbar": len(', '"atom": len(re.findall(r"ATOMG\\.E\\.ADD\\.STRONG\\.GPU", sass)), '
                                              '"bulk_wait": k.asm["ptx"].count("cp.async.bulk.wait_group 0;"), '
                                              '"depbar": len(')
    assert "dq_fuse=True" in script and '"atom"' in script
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", script, "128", mask, "0"], capture_output=True, text=True, env=env,
                       timeout=300)
    if r.returncode != 0:
        pytest.fail(f"sm_90a compile failed:\n{r.stderr[-3000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["warps"] == 12 and got["tma_red"] > 0 and got["atom"] == 2 and got["bulk_wait"] >= 2, got
    assert got["depbar"] <= 12, got
    assert 0 <= got["shared"] - got["sram"] < 1024 and got["shared"] <= 232448, got
    assert got["local"] <= (40 if mask == "causal" else 0), got


@pytest.mark.parametrize("mask", ["causal", "full"])
def test_fa3_backward_fuse_step_compiles_for_sm90a(mask):
    """FUSE_STEP (session 16; chunks of 8 Q blocks) on the registered d=128 2-stage kernel (DQ_LAG + DQ_STAGE1) with
    the workspace compiles for sm_90a: three arrival sites per consumer warpgroup (in the loop, after the loop's
    last-but-one tile, after the last) -- six GPU-scope acq_rel atomics, each behind the full bulk wait
    (cp.async.bulk.wait_group 0); the registered kernel's wgmma waits (12: nothing serialised); the same shared
    memory as the end-of-CTA form.  The local-memory bound is the compile's own figure (32 B full, 48 B causal in
    session 16: scalars reloaded per step, L1 hits), a guard against growth, not a goal."""
    import json
    import os
    import subprocess
    import sys
    script = _COMPILE.replace('args, kw = kb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, d), q, q)',
                              'args, kw = kb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, d), q, q, '
                              'dq=q, cnt=torch.empty(64, dtype=torch.int32), dq_fuse=True, zero_ws=True, '
                              'fuse_step=8)\n'
                              'assert kw["FUSE_STEP"] == 8 and kw["DQ_REZERO"] and kw["DQ_LAG"] and kw["DQ_STAGE1"]')
    script = script.replace('"depbar": len(', '"atom": len(re.findall(r"ATOMG\\.E\\.ADD\\.STRONG\\.GPU", sass)), '
                                              '"bulk_wait": k.asm["ptx"].count("cp.async.bulk.wait_group 0;"), '
                                              '"depbar": len(')
    assert "fuse_step=8" in script and '"atom"' in script
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", script, "128", mask, "0"], capture_output=True, text=True, env=env,
                       timeout=300)
    if r.returncode != 0:
        pytest.fail(f"sm_90a compile failed:\n{r.stderr[-3000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["warps"] == 12 and got["tma_red"] > 0 and got["atom"] == 6 and got["bulk_wait"] >= 6, got
    assert got["depbar"] <= 12, got
    assert 0 <= got["shared"] - got["sram"] < 1024 and got["shared"] <= 232448, got
    assert got["local"] <= (48 if mask == "causal" else 32), got


@pytest.mark.parametrize("early", [False, True], ids=["late", "early"])
def test_fa3_backward_fuse_early_compiles_for_sm90a(early):
    """FUSE_EARLY (session 16) only moves the end-of-CTA count-in before the dK/dV stores: the same two GPU-scope
    atomics, the same wgmma waits, no local memory at d=128 non-causal (the registered fold: 0 B)."""
    import json
    import os
    import subprocess
    import sys
    script = _COMPILE.replace('args, kw = kb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, d), q, q)',
                              f'kb.FUSE_EARLY = {early}\n'
                              'args, kw = kb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, d), q, q, '
                              'dq=q, cnt=torch.empty(8, dtype=torch.int32), dq_fuse=True, zero_ws=True)\n'
                              f'assert kw["FUSE_EARLY"] == {early} and kw["FUSE_STEP"] == 0')
    script = script.replace('"depbar": len(', '"atom": len(re.findall(r"ATOMG\\.E\\.ADD\\.STRONG\\.GPU", sass)), '
                                              '"depbar": len(')
    assert "FUSE_EARLY" in script and '"atom"' in script
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", script, "128", "full", "0"], capture_output=True, text=True, env=env,
                       timeout=300)
    if r.returncode != 0:
        pytest.fail(f"sm_90a compile failed:\n{r.stderr[-3000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["warps"] == 12 and got["atom"] == 2 and got["depbar"] <= 12 and got["local"] == 0, got


def test_fa3_backward_grid_group_order():
    """GRID_GROUP's launch order (session 16), replayed on the host: a bijection of the (K/V block, batch*head_kv)
    grid, groups of n heads (the last one smaller), K/V block 0 of every head of a group before block 1; the switch
    runs only causal on the (K/V blocks, batch*head_kv) grid; -1 is one wave (132 SMs off a GPU)."""
    for n_kv, n_bh, g in ((8, 4, 3), (8, 256, 16), (2, 5, 2), (32, 64, 4)):
        seen = []
        for lin in range(n_kv * n_bh):
            grp, r = divmod(lin, g * n_kv)
            gsz = min(n_bh - grp * g, g)
            seen.append((r // gsz, grp * g + r % gsz))
        assert sorted(seen) == [(j, b) for j in range(n_kv) for b in range(n_bh)]
        first = seen[:min(g, n_bh) * 1]
        assert all(j == 0 for j, _ in first)
    p = AttentionProblem(16, 16, 16, 1024, 1024, 128, causal=True)
    s = Schedule(ALG, "bwd", 64, 128, 4, 2)
    import unittest.mock as um
    with um.patch.object(hb, "GRID_GROUP", -1):
        assert hb._grid_group(p, s, "cpu") == 16
        assert hb._grid_group(AttentionProblem(4, 16, 16, 4096, 4096, 128, causal=True), s, "cpu") == 4
        assert hb._grid_group(AttentionProblem(1, 16, 16, 16384, 16384, 128, causal=True), s, "cpu") == 0
        assert hb._grid_group(AttentionProblem(16, 16, 16, 1024, 1024, 128), s, "cpu") == 0
    with um.patch.object(hb, "GRID_GROUP", 0):
        assert hb._grid_group(p, s, "cpu") == 0


def test_fa3_backward_run21_rules():
    """Session 17 (run21): the registry's FUSE_EARLY where the fold runs at N <= 1024, GRID_GROUP -1 (one wave's
    heads: 4 at N=4096) causal at seq_kv 4096 only; the module's switches None follow them, 0 / False turn them off."""
    import unittest.mock as um
    from memsim.algorithms_hopper import fa3_bwd_dq_fuse, fa3_bwd_fuse_early, fa3_bwd_grid_group
    s = Schedule(ALG, "bwd", 64, 128, 4, 2)
    for n, causal, dtype in itertools.product((1024, 4096, 16384), (False, True), ("bf16", "fp16")):
        p = AttentionProblem(16384 // n, 16, 16, n, n, 128, causal=causal, dtype=dtype)
        assert fa3_bwd_fuse_early(p, s) == (not causal and n == 1024)
        assert not fa3_bwd_fuse_early(p, s) or fa3_bwd_dq_fuse(p, s)
        assert fa3_bwd_grid_group(p, s) == (-1 if causal and n == 4096 else 0)
        with um.patch.object(hb, "GRID_GROUP", None):
            assert hb._grid_group(p, s, "cpu") == (4 if causal and n == 4096 else 0)
    p64 = AttentionProblem(4, 16, 16, 4096, 4096, 64, causal=True)
    assert fa3_bwd_grid_group(p64, Schedule(ALG, "bwd", 128, 128, 4, 2)) == 0
    p = AttentionProblem(1, 2, 2, 1024, 1024, 128)
    q = torch.empty(1, 2, 1024, 128, dtype=torch.bfloat16)
    st = torch.empty(1, 2, 1024)
    for early, want in ((None, True), (False, False), (True, True)):
        with um.patch.object(hb, "FUSE_EARLY", early), um.patch.object(hb, "DQ_FUSE", None):
            _, kw = hb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, 128), q, q, dq=q,
                                    cnt=torch.empty(4, dtype=torch.int32))
            assert kw["DQ_FUSE"] and kw["FUSE_EARLY"] == want


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("ctas", [3, 5])
@pytest.mark.parametrize("case", ["d128_full", "d128_causal_tl", "d128_causal_br_rows_see_nothing",
                                  "d128_causal_tl_q_gt_kv", "d128_one_block", "d128_full_gqa_s2",
                                  "d128_causal_tl_gqa_s2", "d128_causal_br_q_lt_kv_s2"])
def test_fa3_backward_persistent_gpu(case, ctas, monkeypatch):
    """PERSISTENT (session 16): the registered d=128 2-stage kernel as a walk over a host table, with 3 or 5 CTAs so
    that each walks many items -- several heads, causal lengths from 0 (K/V blocks no row sees: dK = dV = 0) to all
    Q blocks, GQA -- exact by the rule."""
    monkeypatch.setattr(hb, "DQ_FUSE", False)
    monkeypatch.setitem(_CASES, case, _CASES.get(case) or _STEP_CASES[case])
    monkeypatch.setattr(hb, "PERSISTENT", True)
    monkeypatch.setattr(hb, "PERSISTENT_CTAS", ctas)
    p, s, (q, k, v, do), grads = _run(case, "bf16", "persistent")
    st = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    acc = torch.empty((p.batch, p.heads_q, p.seq_q, p.head_dim), dtype=torch.float32, device=q.device)
    _, kw = hb.fa3_bwd_args(p, s, q, k, v, do, st, st, acc, k, v)
    assert kw["PERSISTENT"], kw
    _check_grads(p, q, k, v, do, grads, "bf16")


def test_fa3_backward_persistent_walk():
    """PERSISTENT's host walk (session 16): every (K/V block, batch*head_kv) item once, sections of one wave's heads
    in order, longest first inside a section, the CTAs' work within one item's steps of each other (LPT)."""
    s = Schedule(ALG, "bwd", 64, 128, 4, 2)
    for p in (AttentionProblem(16, 16, 16, 1024, 1024, 128, causal=True), AttentionProblem(16, 16, 16, 1024, 1024, 128),
              AttentionProblem(4, 16, 16, 4096, 4096, 128, causal=True),
              AttentionProblem(1, 4, 2, 512, 1024, 128, causal=True, causal_align="bottom_right")):
        n_kv, n_m = p.seq_kv // 128, p.seq_q // 64
        ctas = min(132, p.batch * p.heads_kv * n_kv)
        walk = hb.fa3_bwd_walk(p, s, ctas)
        assert sorted(e for w in walk for e in w) == list(range(p.batch * p.heads_kv * n_kv))

        def steps(j):
            return n_m - min(max(j * 128 - p.causal_offset, 0) // 64, n_m) if p.causal else n_m
        loads = [sum(p.group_size * steps(e % n_kv) + 1 for e in w) for w in walk]
        assert max(loads) - min(loads) <= p.group_size * n_m + 1, (max(loads), min(loads))
        sec = max(1, ctas // n_kv)
        for w in walk:  # each CTA's items: sections in order
            secs = [(e // n_kv) // sec for e in w]
            assert secs == sorted(secs)
        t = hb.fa3_bwd_walk_table(p, s, "cpu", ctas)
        assert int(t[0]) == 0 and int(t[ctas]) == t.numel() - ctas - 1


@pytest.mark.parametrize("mask", ["causal", "full"])
def test_fa3_backward_persistent_compiles_for_sm90a(mask):
    """PERSISTENT compiles for sm_90a at d=128 2 stages: the registered kernel's wgmma waits (12: nothing serialised),
    no REDG (dQ by the TMA reduce-add), shared memory + one mbarrier (kv_free).  The local bytes are the compile's own
    figure in session 16 (40 B: the walk's per-item scalars, reloaded per item, none inside the step loop), a guard
    against growth, not a goal."""
    import json
    import os
    import subprocess
    import sys
    script = _COMPILE.replace('args, kw = kb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, d), q, q)',
                              'kb.PERSISTENT = True\n'
                              'args, kw = kb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, d), q, q, '
                              'walk=torch.empty(8, dtype=torch.int32), dq_fuse=False)\n'
                              'assert kw["PERSISTENT"]')
    assert "PERSISTENT" in script
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", script, "128", mask, "0"], capture_output=True, text=True, env=env,
                       timeout=300)
    if r.returncode != 0:
        pytest.fail(f"sm_90a compile failed:\n{r.stderr[-3000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["warps"] == 12 and got["tma_red"] > 0 and got["red"] == 0 and got["depbar"] <= 12, got
    assert 0 <= got["shared"] - got["sram"] < 1024 and got["shared"] <= 232448, got
    assert got["local"] <= 40, got


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("variant", ["plain", "walk_f3"])
def test_fa3_backward_stamps_gpu(variant):
    """STAMPS (session 22's timing diagnostic): every item writes its milestones in order on one SM (producer start
    <= K/V issue; per warpgroup K/V wait <= first S^T <= loop end <= last dQ <= end) -- the probe
    benchmarks/hopper_fa3_bwd_stamps.py reads."""
    import numpy as np
    from benchmarks.hopper_fa3_bwd_stamps import VARIANTS, run_stamps, summarize
    p, s, st, _ = run_stamps(128, 1024, True, "bf16", VARIANTS[variant])
    assert st.shape == (p.batch * p.heads_kv * (p.seq_kv // 128), hb.STAMP_SLOTS)
    ix = {nm: i for i, nm in enumerate(hb.STAMP_NAMES)}
    assert (st[:, ix["w0_end"]] > 0).all() and (st[:, ix["w1_end"]] > 0).all()
    for w in ("w0", "w1"):
        chain = [st[:, ix[f"{w}_{m}"]] for m in ("first_s", "loop_end", "last_dq", "end")]
        for a, b in zip(chain, chain[1:]):
            assert (a <= b).all(), w
    assert (st[:, ix["p_start"]] <= st[:, ix["p_kv_issued"]]).all()
    r = summarize(p, s, st, hb.STAMP_NAMES)
    assert 1.0 < r["ghz"] < 2.2 and r["fit_per_step_us"] > 0, r


def test_fa3_backward_session22_rules():
    """STAMPS never with the fold (it writes into the counters' argument), off by default; the removed switches
    (WG_BAND, KV_PREFETCH, STREAM_SPLIT, WALK_PF, EPI_EARLY) are gone from the module; the walk's LPT item cost is a
    host knob whose table is cached per cost."""
    import unittest.mock as um
    assert hb.STAMPS is False and hb.WALK_ITEM_COST == 1
    for gone in ("WG_BAND", "KV_PREFETCH", "STREAM_SPLIT", "WALK_PF", "EPI_EARLY", "stream_groups"):
        assert not hasattr(hb, gone), gone
    s2 = Schedule(ALG, "bwd", 64, 128, 4, 2)
    q = torch.empty(1, 2, 1024, 128, dtype=torch.bfloat16)
    st = torch.empty(1, 2, 1024)
    acc = torch.empty(1, 2, 1024, 128)
    with um.patch.multiple(hb, STAMPS=True, DQ_FUSE=True):
        _, kw = hb.fa3_bwd_args(AttentionProblem(1, 2, 2, 1024, 1024, 128), s2, q, q, q, q, st, st, acc, q, q,
                                dq=q, cnt=st)
    assert kw["DQ_FUSE"] and not kw["STAMPS"]
    # the walk's LPT item cost: the table is cached per cost
    pc = AttentionProblem(16, 16, 16, 1024, 1024, 128, causal=True)
    w1 = hb.fa3_bwd_walk(pc, s2, 132)
    with um.patch.object(hb, "WALK_ITEM_COST", 5):
        w5 = hb.fa3_bwd_walk(pc, s2, 132)
        t5 = hb.fa3_bwd_walk_table(pc, s2, "cpu", 132)
    assert w1 != w5 and sorted(sum(w5, [])) == list(range(16 * 16 * 8))
    assert not torch.equal(t5, hb.fa3_bwd_walk_table(pc, s2, "cpu", 132))


def test_fa3_backward_stamps_summary():
    """The stamps probe's arithmetic on a synthetic launch: items of 2-16 steps at a known clock, fixed cost and per
    step cost -- the fit returns them, the segments their means."""
    import numpy as np
    from benchmarks.hopper_fa3_bwd_stamps import summarize
    p = AttentionProblem(2, 16, 16, 1024, 1024, 128, causal=True)
    s = Schedule(ALG, "bwd", 64, 128, 4, 2)
    items, ghz, step, ix = 2 * 16 * 8, 1.5, 3000, {nm: i for i, nm in enumerate(hb.STAMP_NAMES)}
    st = np.zeros((items, hb.STAMP_SLOTS), dtype=np.int64)
    t = np.zeros(8)
    for e in range(items):  # 8 SMs, each item: gap 600, fill 1500, first 450, (n-1) steps, last dQ 900, epi 300
        m, n = e % 8, 16 - 2 * (e % 8)
        t0 = t[m] + 600
        row = dict(smid=m, p_start=t0, p_kv_issued=t0 + 30, p_last_issued=t0 + 60, w0_kv=t0 + 1500,
                   w0_first_s=t0 + 1950, w1_start=t0 + 1990, w1_first_s=t0 + 2300)
        row["w0_loop_end"] = row["w0_first_s"] + (n - 1) * step
        row["w1_loop_end"] = row["w0_loop_end"] + 150
        row["w0_last_dq"] = row["w0_loop_end"] + 900
        row["w1_last_dq"] = row["w0_last_dq"] + 150
        row["w0_end"] = row["w0_last_dq"] + 300
        row["w1_end"] = row["w0_end"] + 150
        row["gt_start"], row["gt_w0_end"] = int(t0 / ghz), int(row["w0_end"] / ghz)
        for k_, v_ in row.items():
            st[e, ix[k_]] = v_
        t[m] = row["w1_end"]
    r = summarize(p, s, st, hb.STAMP_NAMES)
    assert abs(r["ghz"] - ghz) < 0.01
    assert abs(r["fit_per_step_us"] - step / ghz * 1e-3) < 0.01
    g = r["seg_us"]
    assert abs(g["fill"] - 1.0) < 0.01 and abs(g["last_dq"] - 0.6) < 0.01 and abs(g["epilogue"] - 0.2) < 0.01
    assert abs(r["launch_gap_us"] - 0.4) < 0.01 and abs(g["prev_end_to_w0_kv"] - 1.4) < 0.01


@pytest.mark.parametrize("variant", ["stamps", "epi_tma", "walk_epi_tma"])
def test_fa3_backward_session22_compiles_for_sm90a(variant):
    """Session 22's switches compile for sm_90a at d=128 causal 2 stages: 12 warps, dQ by the TMA reduce-add only,
    the registered kernel's wgmma waits (12) and shared memory (+ the walk's one mbarrier), local memory no more than
    the session's compile (8 B the grid, 40 B the walk), no L2 prefetches; STAMPS clock reads, EPI_TMA two TMA stores
    a consumer warpgroup (4 in all: each consumer is compiled twice) and no plain global stores."""
    import json
    import os
    import subprocess
    import sys
    sw = {"stamps": "kb.STAMPS = True\nkb.EPI_TMA = False\n", "epi_tma": "kb.EPI_TMA = True\n",
          "walk_epi_tma": "kb.PERSISTENT = True\nkb.EPI_TMA = True\n"}[variant]
    script = _COMPILE.replace('args, kw = kb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, d), q, q)',
                              sw + 'kb.DQ_FUSE = False\n'
                              'args, kw = kb.fa3_bwd_args(p, s, q, q, q, q, st, st, torch.empty(1, 2, 1024, d), q, q, '
                              'cnt=torch.empty(64, dtype=torch.int64), walk=torch.empty(8, dtype=torch.int32))\n'
                              f'assert kw["{variant.upper().replace("WALK_EPI_TMA", "EPI_TMA")}"]')
    script = script.replace('"depbar": len(', '"pf": len(re.findall(r"UBLKPF\\.L2", sass)), '
                            '"clk": len(re.findall(r"SR_CLOCK", sass)), "tmastg": len(re.findall(r"UTMASTG", sass)), '
                            '"stg": len(re.findall(r"\\bSTG\\.", sass)), "depbar": len(')
    assert '"pf"' in script and "kb.DQ_FUSE = False" in script
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", script, "128", "causal", "0"], capture_output=True, text=True, env=env,
                       timeout=300)
    if r.returncode != 0:
        pytest.fail(f"sm_90a compile failed:\n{r.stderr[-3000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["warps"] == 12 and got["tma_red"] > 0 and got["red"] == 0 and got["depbar"] == 12, got
    assert got["shared"] <= 232448 and got["local"] <= (40 if variant.startswith("walk") else 8), got
    assert got["pf"] == 0, got
    assert (got["tmastg"] == 4 and got["stg"] == 0) if "epi_tma" in variant else got["tmastg"] == 0, got
    assert (got["clk"] > 0) == (variant == "stamps"), got


@pytest.mark.skipif(not _gpu(), reason="Gluon kernels run on an sm_90 GPU only (no interpreter)")
@pytest.mark.parametrize("form", ["three_launches", "fold", "walk"])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", ["d128_full", "d128_causal_tl", "d128_causal_br_rows_see_nothing",
                                  "d128_causal_tl_q_gt_kv", "d128_one_block", "d128_full_gqa_s2",
                                  "d128_causal_tl_gqa_s2"])
def test_fa3_backward_epi_tma_gpu(case, dtype, form, monkeypatch):
    """EPI_TMA (session 22: dK_w, dV_w through the warpgroup's dQ staging tile by TMA stores) writes the same numbers:
    dK, dV bit for bit the plain stores' (same values, one writer each), dQ by the rule -- the three launches, the
    folded conversion (its workspace), and PERSISTENT's walk (3 CTAs: the tile reused by the next item's dQ)."""
    monkeypatch.setitem(_CASES, case, _CASES.get(case) or _STEP_CASES[case])
    monkeypatch.setattr(hb, "DQ_FUSE", form == "fold")
    monkeypatch.setattr(hb, "DQ_ZERO_WS", form == "fold")
    monkeypatch.setattr(hb, "PERSISTENT", form == "walk")
    monkeypatch.setattr(hb, "PERSISTENT_CTAS", 3)
    monkeypatch.setattr(hb, "EPI_TMA", False)
    _, _, _, (_, dk0, dv0) = _run(case, dtype, "epi_tma")
    monkeypatch.setattr(hb, "EPI_TMA", True)
    p, s, (q, k, v, do), grads = _run(case, dtype, "epi_tma")
    st = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    acc = torch.empty((p.batch, p.heads_q, p.seq_q, p.head_dim), dtype=torch.float32, device=q.device)
    _, kw = hb.fa3_bwd_args(p, s, q, k, v, do, st, st, acc, torch.empty_like(k), torch.empty_like(v), dq=q,
                            cnt=torch.empty(8, dtype=torch.int32, device=q.device), walk=st)
    assert kw["EPI_TMA"] and kw["DQ_FUSE"] == (form == "fold") and kw["PERSISTENT"] == (form == "walk"), kw
    _check_grads(p, q, k, v, do, grads, dtype)
    assert torch.equal(grads[1], dk0) and torch.equal(grads[2], dv0)


def test_fa3_backward_epi_tma_rules():
    """EPI_TMA only on the DQ_STAGE1 kernel (d=128, 2 stages; not DQ_ASYNC, no timing diagnostic), then DK and DV are
    passed as TMA descriptors of 64 x d boxes (the args' places 10, 11).  None (the module's
    default) follows the registry's `fa3_bwd_epi_tma`: d=128 2 stages, seq_kv <= 4096, not beside the late fold
    (non-causal seq_q 2048-4096), False turns it off."""
    import unittest.mock as um
    from memsim.algorithms_hopper import fa3_bwd_epi_tma
    assert hb.EPI_TMA is None
    s2 = Schedule(ALG, "bwd", 64, 128, 4, 2)
    for n, causal, dtype in itertools.product((1024, 2048, 4096, 8192, 16384), (False, True), ("bf16", "fp16")):
        p = AttentionProblem(16384 // n, 16, 16, n, n, 128, causal=causal, dtype=dtype)
        assert fa3_bwd_epi_tma(p, s2) == (n <= 4096 and (causal or n <= 1024)), (n, causal)
        assert not fa3_bwd_epi_tma(p, Schedule(ALG, "bwd", 64, 128, 4, 3))
    p = AttentionProblem(1, 2, 2, 1024, 1024, 128, causal=True)
    q = torch.empty(1, 2, 1024, 128, dtype=torch.bfloat16)
    st = torch.empty(1, 2, 1024)
    acc = torch.empty(1, 2, 1024, 128)
    for sw, want in ((None, True), (False, False), (True, True)):
        with um.patch.multiple(hb, EPI_TMA=sw, DQ_FUSE=False):
            assert hb.fa3_bwd_args(p, s2, q, q, q, q, st, st, acc, q, q)[1]["EPI_TMA"] == want
    s2, s3 = Schedule(ALG, "bwd", 64, 128, 4, 2), Schedule(ALG, "bwd", 64, 128, 4, 3)
    q = torch.empty(1, 2, 1024, 128, dtype=torch.bfloat16)
    st = torch.empty(1, 2, 1024)
    acc = torch.empty(1, 2, 1024, 128)
    for causal in (False, True):
        p = AttentionProblem(1, 2, 2, 1024, 1024, 128, causal=causal)
        for s, diag, want in ((s2, 0, True), (s3, 0, False), (s2, 2, False)):
            with um.patch.object(hb, "EPI_TMA", True):
                args, kw = hb.fa3_bwd_args(p, s, q, q, q, q, st, st, acc, q, q, diag=diag, dq=q, cnt=st)
            assert kw["EPI_TMA"] == want, (causal, s.num_stages, diag)
            assert isinstance(args[10], hb.TensorDescriptor) == want and isinstance(args[11], hb.TensorDescriptor) == want
            if want:
                assert list(args[10].block_shape) == [64, 128] and args[10].shape[0] == 2 * 1024
    p64 = AttentionProblem(1, 2, 2, 1024, 1024, 64, causal=True)
    q64 = torch.empty(1, 2, 1024, 64, dtype=torch.bfloat16)
    with um.patch.object(hb, "EPI_TMA", True):
        _, kw = hb.fa3_bwd_args(p64, Schedule(ALG, "bwd", 128, 128, 4, 2), q64, q64, q64, q64, st, st,
                                torch.empty(1, 2, 1024, 64), q64, q64)
    assert not kw["EPI_TMA"]


def test_store_wavefront_probe_compiles_for_sm90a():
    """benchmarks/hopper_fa3_store_wavefronts.py (session 22, prepared for the model's store term): its probe compiles
    for sm_90a -- a 64 x 128 bf16 tile from the wgmma accumulator layout is 32 plain 4-byte stores a thread (+ the
    clock's one), or shared-memory stores and one TMA store."""
    import json
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "benchmarks/hopper_fa3_store_wavefronts.py", "--compile-only"],
                       capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"sm_90a compile failed:\n{r.stderr[-3000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["0"]["STG"] == 33 and got["0"]["UTMASTG"] == 0, got
    assert got["1"]["STG"] == 1 and got["1"]["UTMASTG"] == 1, got
