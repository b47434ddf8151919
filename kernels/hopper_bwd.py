"""hopper bwd: the backward with dQ fused into the dK/dV pass through fp32 atomic adds (FlashAttention-2/3's
``dQaccum``), so every score tile is recomputed once instead of twice.

Why: flash2's backward recomputes S = QK^T and dP = dO V^T in two passes (dK/dV per K/V block, then dQ per Q
block): 7 tile matmuls per (Q block, K/V block) pair against the 5 the FLOP count charges (S, dP, dV, dK, dQ).
Here one pass does the 5; the price is an fp32 read-modify-write of the pair's dQ rows in L2 (the atomic
adds) and a small conversion pass.  Numerics as flash2 (fp32 accumulation everywhere, ds rounded to the input
dtype before its two matmuls, as flash2's dK does); the sum order of dQ's atomic adds is not fixed, so dQ is
not bitwise deterministic run to run (flash2's backward is: `kernels.attention` keeps flash2 when
`torch.are_deterministic_algorithms_enabled()` or flash_attn_func(deterministic=True)).

Launches (grids of `memsim.schedule.kernel_launches`; bytes in `memsim/algorithms_hopper.py`):
  hopper_bwd_preprocess   grid (Mb, B*Hq): reads O_i, dO_i; writes delta_i = rowsum(dO*O) and zeroes dQacc_i
                          (rows x d fp32)
  hopper_bwd_dkdvdq       grid (Nb, B*Hkv): K_j, V_j resident; for each q head of the GQA group and each Q block
                          i that sees block j: reads Q_i, dO_i, lse_i, delta_i; adds dS_ij K_j (rows x d fp32) to
                          dQacc_i atomically; writes dK_j, dV_j once
  hopper_bwd_dq_convert   grid (Mb, B*Hq): reads dQacc_i, writes dQ_i = scale * dQacc_i in the input dtype
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from memsim.algorithms_hopper import warp_specialised, ws_dq_schedule, ws_stat_pad
from memsim.schedule import AttentionProblem, Schedule, kernel_launches

from . import _common
from ._common import dot_precision, strides3
from ._tl import LOG2E, _kv_split, cvt, grid_ids, head_desc, mma, q_block, qkvo_descs
from .flash2 import _dkdv_setup, _dkdv_store, _flash2_bwd_dq, _flash2_bwd_preprocess, _lse_spec
from .registry import launcher


@triton.jit
def _dq_rows(H, SEQ_Q, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, Q_FASTEST: tl.constexpr):
    """(b, h, offs_m, offs_d, row mask, stat_rows, acc_offs) of a (Q block, batch*head_q) CTA: stat_rows the rows'
    offsets in the (B*Hq, SEQ_Q) statistics (delta), acc_offs the dQacc_i tile's offsets in (B*Hq, SEQ_Q, d)."""
    pid_m, pid_bh = grid_ids(Q_FASTEST)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    stat_rows = pid_bh.to(tl.int64) * SEQ_Q + offs_m
    return ((pid_bh // H).to(tl.int64), (pid_bh % H).to(tl.int64), offs_m, offs_d, offs_m[:, None] < SEQ_Q, stat_rows,
            stat_rows[:, None] * HEAD_DIM + offs_d[None, :])


@triton.jit
def _hopper_bwd_preprocess(O, DO, DELTA, DQACC,
                           stride_ob, stride_oh, stride_om,
                           stride_dob, stride_doh, stride_dom,
                           H, SEQ_Q,
                           HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, Q_FASTEST: tl.constexpr,
                           ZERO: tl.constexpr = True):
    # reads O_i and dO_i (rows x d each); writes delta_i = rowsum(dO * O) (rows x fp32) and zeroes dQacc_i
    # (rows x d fp32: the accumulator the dK/dV/dQ pass adds into).  flash2's preprocess plus the zeroing: its kernel
    # is not called inline here because the tests wrap every launch kernel by name.  ZERO False (hopper_fa3 bwd with
    # its dQacc workspace kept zero by the pass, kernels.hopper_gluon_bwd.DQ_ZERO_WS): delta only.
    b, h, offs_m, offs_d, rmask, stat_rows, acc_offs = _dq_rows(H, SEQ_Q, HEAD_DIM, BLOCK_M, Q_FASTEST)
    o = tl.load(O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :],
                mask=rmask, other=0.0).to(tl.float32)
    do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dom + offs_d[None, :],
                 mask=rmask, other=0.0).to(tl.float32)
    tl.store(DELTA + stat_rows, tl.sum(o * do, 1), mask=offs_m < SEQ_Q)
    if ZERO:
        tl.store(DQACC + acc_offs, tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32), mask=rmask)


@triton.jit
def _dkdvdq_q_loop(dk, dv, k, v, qT_ptrs, do_ptrs, q_desc, do_desc, lse_ptrs, delta_ptrs, dq_ptrs, dq_desc,
                   stride_qm, stride_dom, offs_n, offs_m0, lo, hi, SEQ_Q, qk_scale2, CAUSAL_OFFSET,
                   HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, MASKED: tl.constexpr, PREC: tl.constexpr,
                   DQ_TMA: tl.constexpr, LOAD_TMA: tl.constexpr):
    """Q blocks [lo, hi) against the resident K_j, V_j: accumulate dK_j, dV_j and add dS K_j into dQacc_i.
    Each iteration reads Q_i, dO_i (rows x d) and lse_i, delta_i (rows x fp32), and adds rows x d fp32 to
    dQacc_i (atomic, relaxed: only the sum matters).  MASKED: the diagonal band (causal mask).  Ragged rows
    (>= SEQ_Q) load q = dO = 0 and lse = +inf, so p = ds = 0 (and their atomic adds are masked off); ragged
    columns (>= SEQ_KV) load k = v = 0, so their dS never reaches dQ (dS K_j adds 0) and their dK, dV rows are
    never stored."""
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + offs_m0
        rm = rows < SEQ_Q
        if LOAD_TMA:  # Q_i by the copy engine (rows past SEQ_Q zero-filled), used transposed
            qT = tl.trans(q_desc.load([start_m, 0]))
        else:
            qT = tl.load(qT_ptrs + start_m * stride_qm, mask=rm[None, :], other=0.0)
        lse2 = tl.load(lse_ptrs + start_m, mask=rm, other=float("inf")) * LOG2E
        qkT = mma(k, qT, PREC) * qk_scale2
        if MASKED:
            visible = offs_n[:, None] <= rows[None, :] + CAUSAL_OFFSET
            pT = tl.where(visible, tl.math.exp2(qkT - lse2[None, :]), 0.0)
        else:
            pT = tl.math.exp2(qkT - lse2[None, :])
        if LOAD_TMA:
            do = do_desc.load([start_m, 0])
        else:
            do = tl.load(do_ptrs + start_m * stride_dom, mask=rm[:, None], other=0.0)
        dv += mma(cvt(pT, do.dtype, PREC), do, PREC)
        delta = tl.load(delta_ptrs + start_m, mask=rm, other=0.0)
        dpT = mma(v, tl.trans(do), PREC)
        dsT = cvt(pT * (dpT - delta[None, :]), qT.dtype, PREC)
        dk += mma(dsT, tl.trans(qT), PREC)
        dq = mma(tl.trans(dsT), k, PREC)  # (rows x d): this pair's share of dQ_i, unscaled
        if DQ_TMA:  # one bulk reduce-add by the copy engine (cp.reduce.async.bulk.tensor), rows past SEQ_Q clipped
            dq_desc.atomic_add([start_m, 0], dq)
        else:       # per-thread vector atomics (atom.global.add.v4.f32); what the interpreter runs
            tl.atomic_add(dq_ptrs + start_m * HEAD_DIM, dq, mask=rm[:, None], sem="relaxed")
    return dk, dv


@triton.jit
def _hopper_bwd_dkdvdq(Q, K, V, DO, LSE, DELTA, DK, DV, DQACC,
                       stride_q, stride_k, stride_v, stride_do, stride_dk, stride_dv, HKV, SEQ_Q, SEQ_KV, qk_scale2, sm_scale, CAUSAL_OFFSET,
                       GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, Q_FASTEST: tl.constexpr,
                       PREC: tl.constexpr, DQ_TMA: tl.constexpr, LOAD_TMA: tl.constexpr):
    # stride_x: the (batch, head, row) strides of x.  Resident for the whole CTA: K_j, V_j (cols x d), dK_j, dV_j
    # accumulators (fp32); Q blocks [lo, mid) need the causal mask, [mid, SEQ_Q) see the whole block (flash2's
    # prologue)
    b, hkv, offs_n, offs_m0, offs_d, cmask, k, v, dk, dv, lo, mid = _dkdv_setup(
        K, V, stride_k, stride_v, HKV, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, HEAD_DIM, BLOCK_M, BLOCK_N, CAUSAL, Q_FASTEST)

    for g in range(GROUP):
        h = hkv * GROUP + g
        bh = b * (HKV * GROUP) + h
        qT_ptrs = Q + b * stride_q[0] + h * stride_q[1] + offs_m0[None, :] * stride_q[2] + offs_d[:, None]
        do_ptrs = DO + b * stride_do[0] + h * stride_do[1] + offs_m0[:, None] * stride_do[2] + offs_d[None, :]
        lse_ptrs = LSE + bh * SEQ_Q + offs_m0
        delta_ptrs = DELTA + bh * SEQ_Q + offs_m0
        dq_ptrs = DQACC + bh * SEQ_Q * HEAD_DIM + offs_m0[:, None] * HEAD_DIM + offs_d[None, :]
        if LOAD_TMA:  # this head's Q and dO rows: [SEQ_Q, d] with the head's row stride, boxes of BLOCK_M rows
            q_desc = head_desc(Q, b, h, stride_q, SEQ_Q, HEAD_DIM, BLOCK_M)
            do_desc = head_desc(DO, b, h, stride_do, SEQ_Q, HEAD_DIM, BLOCK_M)
        else:
            q_desc = qT_ptrs  # unused
            do_desc = do_ptrs  # unused
        if DQ_TMA:  # this head's dQacc rows: [SEQ_Q, d] fp32, boxes of BLOCK_M rows
            dq_desc = tl.make_tensor_descriptor(DQACC + bh * SEQ_Q * HEAD_DIM, shape=[SEQ_Q, HEAD_DIM],
                                                strides=[HEAD_DIM, 1], block_shape=[BLOCK_M, HEAD_DIM])
        else:
            dq_desc = dq_ptrs  # unused
        dk, dv = _dkdvdq_q_loop(dk, dv, k, v, qT_ptrs, do_ptrs, q_desc, do_desc, lse_ptrs, delta_ptrs, dq_ptrs,
                                dq_desc, stride_q[2], stride_do[2], offs_n, offs_m0, lo, mid, SEQ_Q, qk_scale2,
                                CAUSAL_OFFSET, HEAD_DIM=HEAD_DIM, BLOCK_M=BLOCK_M, MASKED=True, PREC=PREC,
                                DQ_TMA=DQ_TMA, LOAD_TMA=LOAD_TMA)  # diagonal band
        dk, dv = _dkdvdq_q_loop(dk, dv, k, v, qT_ptrs, do_ptrs, q_desc, do_desc, lse_ptrs, delta_ptrs, dq_ptrs,
                                dq_desc, stride_q[2], stride_do[2], offs_n, offs_m0, mid, SEQ_Q, SEQ_Q, qk_scale2,
                                CAUSAL_OFFSET, HEAD_DIM=HEAD_DIM, BLOCK_M=BLOCK_M, MASKED=False, PREC=PREC,
                                DQ_TMA=DQ_TMA, LOAD_TMA=LOAD_TMA)  # whole block seen

    _dkdv_store(DK, DV, stride_dk, stride_dv, b, hkv, offs_n, offs_d, cmask, dk, dv, sm_scale, PREC)


@triton.jit
def _hopper_bwd_dkdv_ws(Q, K, V, DO, LSE, DELTA, DK, DV,
                        stride_q, stride_k, stride_v, stride_do, stride_dk, stride_dv, HKV,
                        SEQ_Q, SEQ_KV, qk_scale2, sm_scale, CAUSAL_OFFSET, STAT_STRIDE,
                        GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, Q_FASTEST: tl.constexpr,
                        PREC: tl.constexpr, WARP_SPEC: tl.constexpr = True):
    """dK_j, dV_j of one K/V block (hopper_ws bwd's ``hopper_bwd_dkdv_ws``; also `LOOP = "ws"`: flash2's dK/dV pass, 4
    tile matmuls per pair) as ONE warp-specialised
    loop over every (q head of the GQA group, Q block) that sees block j.  Triton 3.6's Hopper partitioner then runs a
    producer warpgroup issuing the TMA loads and two consumer warpgroups of BLOCK_N / 2 K/V rows each (setmaxnreg
    232), checked in the sm_90a compile (benchmarks/hopper_bwd_compile.py --loop ws).  What the partitioner needs,
    learnt by compiling: one straight-line loop (the causal mask is computed on every visited block); no pointer
    load anywhere in the kernel (K_j, V_j, Q_i, dO_i, lse_i and delta_i all come by TMA: an assertion in WSLowerToken
    otherwise); no dQ in the loop (dS K_j reduces over the K/V rows the two consumers split: "Unexpected
    asyncTaskIds" in WSDataPartition; a plain atomic add of it was silently dropped with 64-row tiles), so dQ is a
    separate pass; BLOCK_N = 128 (with 64 both consumers ran the whole tile, duplicated).
    Per step: Q_i, dO_i (rows x d, 3-D descriptors [heads, SEQ_Q, d]) and lse_i, delta_i (BLOCK_M fp32; 2-D
    descriptors [B*Hq, SEQ_Q] with row stride STAT_STRIDE, a multiple of 4: the launcher pads them when SEQ_Q is
    not), rows past SEQ_Q zero-filled by the copy engine (lse then set to +inf: p = 0)."""
    b, hkv, offs_n, offs_m0, offs_d, cmask, k, v, dk, dv, lo, mid = _dkdv_setup(
        K, V, stride_k, stride_v, HKV, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, HEAD_DIM, BLOCK_M, BLOCK_N, CAUSAL, Q_FASTEST,
        LOAD_KV=False)
    # K_j, V_j by TMA (rows past SEQ_KV zero-filled), not by _dkdv_setup's pointer loads (the partitioner asserts on any
    # pointer load; they were dead code on the GPU, but the interpreter ran them and its byte count saw K/V twice)
    start_n = tl.program_id(0 if Q_FASTEST else 1) * BLOCK_N
    k = head_desc(K, b, hkv, stride_k, SEQ_KV, HEAD_DIM, BLOCK_N).load([start_n, 0])
    v = head_desc(V, b, hkv, stride_v, SEQ_KV, HEAD_DIM, BLOCK_N).load([start_n, 0])
    H = HKV * GROUP
    q_desc = tl.make_tensor_descriptor(Q + b * stride_q[0], shape=[H, SEQ_Q, HEAD_DIM],
                                       strides=[stride_q[1], stride_q[2], 1], block_shape=[1, BLOCK_M, HEAD_DIM])
    do_desc = tl.make_tensor_descriptor(DO + b * stride_do[0], shape=[H, SEQ_Q, HEAD_DIM],
                                        strides=[stride_do[1], stride_do[2], 1], block_shape=[1, BLOCK_M, HEAD_DIM])
    n_bh = tl.num_programs(1 if Q_FASTEST else 0) * GROUP  # B*Hq rows of statistics
    lse_desc = tl.make_tensor_descriptor(LSE, shape=[n_bh, SEQ_Q], strides=[STAT_STRIDE, 1], block_shape=[1, BLOCK_M])
    delta_desc = tl.make_tensor_descriptor(DELTA, shape=[n_bh, SEQ_Q], strides=[STAT_STRIDE, 1],
                                           block_shape=[1, BLOCK_M])
    # K/V row indices relative to the tile (rel_n) plus the scalar start_n: the partitioner splits the K/V rows over
    # the consumer warpgroups and mangles start + arange (the forward's data-partitioning bug, notes/hopper.md)
    rel_n = tl.arange(0, BLOCK_N)
    nblk = tl.cdiv(SEQ_Q - lo, BLOCK_M)
    for it in tl.range(0, GROUP * nblk, warp_specialize=WARP_SPEC):
        g = it // nblk
        start_m = lo + (it - g * nblk) * BLOCK_M
        h = (hkv * GROUP + g).to(tl.int32)
        bh = (b * H + h).to(tl.int32)
        rm = offs_m0 < SEQ_Q - start_m
        q = q_desc.load([h, start_m, 0]).reshape(BLOCK_M, HEAD_DIM)
        lse2 = tl.where(rm, lse_desc.load([bh, start_m]).reshape(BLOCK_M), float("inf")) * LOG2E
        qkT = mma(k, tl.trans(q), PREC) * qk_scale2
        if CAUSAL:  # K/V row start_n + c visible from Q row start_m + r when c - r <= start_m + offset - start_n
            visible = rel_n[:, None] - offs_m0[None, :] <= start_m + CAUSAL_OFFSET - start_n
            pT = tl.where(visible, tl.math.exp2(qkT - lse2[None, :]), 0.0)
        else:
            pT = tl.math.exp2(qkT - lse2[None, :])
        do = do_desc.load([h, start_m, 0]).reshape(BLOCK_M, HEAD_DIM)
        dv += mma(cvt(pT, do.dtype, PREC), do, PREC)
        delta = delta_desc.load([bh, start_m]).reshape(BLOCK_M)
        dpT = mma(v, tl.trans(do), PREC)
        dsT = pT * (dpT - delta[None, :])
        dk += mma(cvt(dsT, q.dtype, PREC), q, PREC)
    # rows as rel_n against base pointers moved to start_n: offs_n = start_n + arange is what the partitioner splits
    # wrong (the second consumer's rows came out 64 too far: dK and dV of K/V rows 64-127 stored at 128-191, run3)
    _dkdv_store(DK + start_n * stride_dk[2], DV + start_n * stride_dv[2], stride_dk, stride_dv, b, hkv, rel_n, offs_d,
                rel_n[:, None] < SEQ_KV - start_n, dk, dv, sm_scale, PREC)


@triton.jit
def _hopper_bwd_dq_ws(Q, K, V, DO, LSE, DELTA, DQ, stride_q, stride_k, stride_v, stride_do, stride_dq,
                      H, SEQ_Q, SEQ_KV, qk_scale2, sm_scale, CAUSAL_OFFSET, STAT_STRIDE,
                      GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      CAUSAL: tl.constexpr, Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    """dQ_i of one Q block (`LOOP = "ws"`: flash2's dQ pass, 3 tile matmuls per pair) as ONE warp-specialised loop over
    the K/V blocks it sees -- the forward's structure: a producer warpgroup loading K_j, V_j by TMA, two consumer
    warpgroups of BLOCK_M / 2 Q rows (every dot's M is the Q rows, so the partitioner can split them).  Resident: Q_i,
    dO_i (TMA), lse_i, delta_i (2-D descriptors, row stride STAT_STRIDE), the dQ_i accumulator; written once by a TMA
    store (rows past SEQ_Q dropped).  Ragged K/V columns need no mask: K_j, V_j rows past SEQ_KV are zero-filled, so
    their dS K_j adds 0; ragged Q rows have lse = +inf (p = 0).  Causal: the mask on every visited block."""
    pid_bh, b, h, hkv, start_m, offs_m = q_block(H, GROUP, BLOCK_M, Q_FASTEST)
    # row indices as rel_m + the scalar start_m (the partitioner's start + arange bug, notes/hopper.md)
    rel_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    q_desc, k_desc, v_desc, dq_desc = qkvo_descs(Q, K, V, DQ, b, h, hkv, stride_q, stride_k, stride_v, stride_dq,
                                                 SEQ_Q, SEQ_KV, HEAD_DIM, BLOCK_M, BLOCK_N)
    do_desc = head_desc(DO, b, h, stride_do, SEQ_Q, HEAD_DIM, BLOCK_M)
    n_bh = tl.num_programs(1 if Q_FASTEST else 0)
    lse_desc = tl.make_tensor_descriptor(LSE, shape=[n_bh, SEQ_Q], strides=[STAT_STRIDE, 1], block_shape=[1, BLOCK_M])
    delta_desc = tl.make_tensor_descriptor(DELTA, shape=[n_bh, SEQ_Q], strides=[STAT_STRIDE, 1],
                                           block_shape=[1, BLOCK_M])
    q = q_desc.load([start_m, 0])
    do = do_desc.load([start_m, 0])
    lse2 = tl.where(rel_m < SEQ_Q - start_m, lse_desc.load([pid_bh.to(tl.int32), start_m]).reshape(BLOCK_M),
                    float("inf")) * LOG2E
    delta = delta_desc.load([pid_bh.to(tl.int32), start_m]).reshape(BLOCK_M)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    full_end, hi = _kv_split(start_m, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, BLOCK_M, BLOCK_N, CAUSAL)
    diag = start_m + CAUSAL_OFFSET
    for start_n in tl.range(0, hi, BLOCK_N, warp_specialize=True):
        k = k_desc.load([start_n, 0])
        qk = mma(q, tl.trans(k), PREC) * qk_scale2
        p = tl.math.exp2(qk - lse2[:, None])
        if CAUSAL:  # column start_n + c visible from row start_m + r when c - r <= diag - start_n
            p = tl.where(offs_n[None, :] - rel_m[:, None] <= diag - start_n, p, 0.0)
        v = v_desc.load([start_n, 0])
        dp = mma(do, tl.trans(v), PREC)
        ds = p * (dp - delta[:, None])
        dq += mma(cvt(ds, k.dtype, PREC), k, PREC)
    dq_desc.store([start_m, 0], cvt(dq * sm_scale, DQ.dtype.element_ty, PREC))


@triton.jit
def _hopper_bwd_dq_convert(DQACC, DQ, stride_dqb, stride_dqh, stride_dqm, H, SEQ_Q, sm_scale,
                           HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, Q_FASTEST: tl.constexpr,
                           PREC: tl.constexpr):
    # reads dQacc_i (rows x d fp32), writes dQ_i = scale * dQacc_i (rows x d, the input dtype)
    b, h, offs_m, offs_d, rmask, stat_rows, acc_offs = _dq_rows(H, SEQ_Q, HEAD_DIM, BLOCK_M, Q_FASTEST)
    acc = tl.load(DQACC + acc_offs, mask=rmask, other=0.0)
    tl.store(DQ + b * stride_dqb + h * stride_dqh + offs_m[:, None] * stride_dqm + offs_d[None, :],
             cvt(acc * sm_scale, DQ.dtype.element_ty, PREC), mask=rmask)


#: how dQ's partial sums reach dQacc on a GPU: "atomic" (per-thread vector atomics, atom.global.add.v4.f32) or "tma"
#: (a bulk reduce-add per (Q block, K/V block) pair, issued by the copy engine from a shared-memory staging tile;
#: needs sm_90).  The
#: interpreter always runs "atomic" (it has no TMA reduce).  Same bytes either way; a module switch so one benchmark
#: run can time both (benchmarks/hopper_bench.py --dq-reduce).
DQ_REDUCE = "atomic"  # measured faster than "tma" (run2: 4-10 %, benchmarks/results/hopper-h100-2026-11-26-run2.json)


def dq_reduce_by_tma(device) -> bool:
    if DQ_REDUCE not in ("tma", "atomic"):
        raise ValueError(f"kernels.hopper_bwd.DQ_REDUCE must be 'tma' or 'atomic', got {DQ_REDUCE!r}")
    return (DQ_REDUCE == "tma" and device.type == "cuda" and not _common.interpreting()
            and tuple(torch.cuda.get_device_capability(device)) >= (9, 0))


#: how Q_i and dO_i reach the fused pass: "tma" (tensor descriptors, where the layout allows: 16-byte aligned base and
#: strides; the interpreter runs them too) or "pointer" (masked loads).  A module switch so one benchmark run can time
#: both (benchmarks/hopper_bench.py); the bytes are the same.
LOADS = "pointer"  # "tma" (with DQ_REDUCE "tma") was 4-10 % slower on the H100 (run2); kept to try again


def _tma_layout(*tensors) -> bool:
    """Whether TMA descriptors can address these (B, H, N, d) tensors: a 16-byte aligned base and batch/head/row
    strides (and an sm_90 GPU; "meta" tensors -- compiled facts -- count as an aligned GPU tensor)."""
    t0 = tensors[0]
    if t0.device.type == "meta":
        return True
    if t0.device.type == "cuda" and tuple(torch.cuda.get_device_capability(t0.device)) < (9, 0):
        return False
    for t in tensors:
        e = t.element_size()
        if t.data_ptr() % 16 or any((t.stride(i) * e) % 16 and t.shape[i] > 1 for i in range(3)):
            return False
    return True


def loads_by_tma(q, do) -> bool:
    if LOADS not in ("tma", "pointer"):
        raise ValueError(f"kernels.hopper_bwd.LOADS must be 'tma' or 'pointer', got {LOADS!r}")
    return LOADS == "tma" and _tma_layout(q, do)


#: the backward's structure: "split" (default: the fused `_hopper_bwd_dkdvdq`, per q head the masked diagonal band then
#: the unmasked blocks, Triton's software pipeliner, dQ by atomics) or the EXPERIMENT "ws" (benchmarks only): the
#: warp-specialised dK/dV pass `_hopper_bwd_dkdv_ws` + the warp-specialised dQ pass `_hopper_bwd_dq_ws` (its tiles:
#: `WS_DQ_TILES`), FA2's two passes.  Its launches are NOT the hopper bwd contract.  The warp-specialised dK/dV pass
#: with flash2's dQ pass (sessions 3-4's "ws+f2dq", exact on the H100 in run4) is the registry algorithm ``hopper_ws``
#: bwd (`hopper_ws_backward` below).
LOOP = "split"
#: (block_m, block_n, num_warps, num_stages) of the dQ pass under LOOP "ws" (WS: 2 consumer WGs of 64 rows)
WS_DQ_TILES = {"ws": (128, 64, 4, 2)}
#: LOOP "ws" hung on the H100 (run3: a Triton 3.6 partitioner bug): refused on a GPU unless this is set True (a GPU
#: re-test)
WS_ON_GPU = False


def loop_ws(problem: AttentionProblem, q, do) -> bool:
    """Whether the hopper backward runs the "ws" experiment: LOOP "ws", a 2-byte dtype and a TMA-able layout of q and dO
    (the interpreter runs it too: the loop is then a plain loop)."""
    if LOOP == "ws+f2dq":
        raise ValueError("kernels.hopper_bwd.LOOP='ws+f2dq' is now the registry algorithm hopper_ws: "
                         "Schedule('hopper_ws', 'bwd', 64, 128, 4, 2)")
    if LOOP not in ("split", "ws"):
        raise ValueError(f"kernels.hopper_bwd.LOOP must be 'split' or 'ws', got {LOOP!r}")
    if LOOP == "ws" and q.device.type == "cuda" and not WS_ON_GPU:
        raise NotImplementedError(
            "kernels.hopper_bwd.LOOP='ws' hung on the H100 (run3, 2026-11-26, Triton 3.6: a partitioner bug splitting "
            "the [1, BLOCK_M] lse/delta TMA loads, benchmarks/hopper_triton_ws_tma_split_bug.py); interpreter only "
            "unless WS_ON_GPU = True (notes/hopper.md); the registry algorithm hopper_ws runs on a GPU")
    return LOOP != "split" and problem.element_bytes == 2 and _tma_layout(q, do)


def _ws_dkdv(p: AttentionProblem, s: Schedule, grid, q, k, v, do, lse, delta, dk, dv):
    """Launch the warp-specialised dK/dV pass; returns the (padded when seq_q % 4 != 0) lse and delta it read: TMA's
    row stride must be a multiple of 16 bytes (copies only then; `memsim.algorithms_hopper.ws_stat_pad`)."""
    pad = ws_stat_pad(p)
    lse_t, delta_t = (torch.nn.functional.pad(x.reshape(-1, p.seq_q), (0, pad)) if pad else x for x in (lse, delta))
    _hopper_bwd_dkdv_ws[grid](q, k, v, do, lse_t, delta_t, dk, dv, strides3(q), strides3(k), strides3(v), strides3(do),
                              strides3(dk), strides3(dv), p.heads_kv, p.seq_q, p.seq_kv, p.scale * _common.LOG2E,
                              p.scale, p.causal_offset, p.seq_q + pad, GROUP=p.group_size, HEAD_DIM=p.head_dim,
                              BLOCK_M=s.block_m, BLOCK_N=s.block_n, CAUSAL=p.causal,
                              Q_FASTEST=s.grid_order == "q_fastest", PREC=dot_precision(p),
                              WARP_SPEC=warp_specialised(p, s), num_warps=s.num_warps, num_stages=s.num_stages)
    return lse_t, delta_t, pad


def check_ws_layout(name: str, t) -> None:
    """hopper_ws bwd moves every tile by TMA: a 16-byte aligned base and batch/head/row strides."""
    if not _tma_layout(t):
        raise ValueError(f"hopper_ws bwd loads {name} through TMA descriptors, which need a 16-byte aligned start and "
                         f"batch/head/row strides that are multiples of 16 bytes; {name} has strides "
                         f"{tuple(t.stride())} ({t.element_size()}-byte elements). Use .contiguous() or flash2")


@launcher("hopper_ws", "bwd", needs={"lse": _lse_spec})
def hopper_ws_backward(problem: AttentionProblem, schedule: Schedule, q, k, v, o, do, saved):
    """flash2's preprocess, the warp-specialised dK/dV pass (every tile by TMA), flash2's dQ pass at
    `ws_dq_schedule`'s tiles; returns (dq, dk, dv).  Deterministic (no atomics).  dO is made contiguous when TMA cannot
    address it (the incoming gradient: a copy is harmless); q, k, v must be TMA-able."""
    pre, main, dqk = kernel_launches(problem, schedule)
    assert (pre.name, main.name, dqk.name) == ("flash2_bwd_preprocess", "hopper_bwd_dkdv_ws", "flash2_bwd_dq")
    p, s = problem, schedule
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_ws_layout(name, t)
    if not _tma_layout(do):
        do = do.contiguous()
    from .hopper import _scratch
    triton.set_allocator(_scratch)
    lse = saved["lse"]
    qf = s.grid_order == "q_fastest"
    delta = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    _flash2_bwd_preprocess[pre.grid](o, do, delta, *strides3(o), *strides3(do), p.heads_q, p.seq_q, HEAD_DIM=p.head_dim,
                                     BLOCK_M=s.block_m, Q_FASTEST=qf, num_warps=s.num_warps, num_stages=s.num_stages)
    _ws_dkdv(p, s, main.grid, q, k, v, do, lse, delta, dk, dv)
    sq = ws_dq_schedule(s)
    _flash2_bwd_dq[dqk.grid](q, k, v, do, lse, delta, dq, *strides3(q), *strides3(k), *strides3(v), *strides3(do),
                             *strides3(dq), p.heads_q, p.seq_q, p.seq_kv, p.scale * _common.LOG2E, p.scale,
                             p.causal_offset, GROUP=p.group_size, HEAD_DIM=p.head_dim, BLOCK_M=sq.block_m,
                             BLOCK_N=sq.block_n, CAUSAL=p.causal, Q_FASTEST=qf, PREC=dot_precision(p),
                             num_warps=sq.num_warps, num_stages=sq.num_stages)
    return dq, dk, dv


def dqacc_buffers(p: AttentionProblem, q, k, v, dqacc: bool = True):
    """(delta, dQacc, dq, dk, dv) of a backward whose fused pass adds dQ into an fp32 accumulator (hopper bwd,
    hopper_fa3 bwd): delta (B, Hq, Nq) and dQacc (B, Hq, Nq, d) fp32 (None when `dqacc` is False: the caller has a
    workspace), the gradients in the inputs' dtypes."""
    delta = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    dqacc = (torch.empty((p.batch, p.heads_q, p.seq_q, p.head_dim), dtype=torch.float32, device=q.device)
             if dqacc else None)
    return (delta, dqacc, torch.empty(q.shape, dtype=q.dtype, device=q.device),
            torch.empty(k.shape, dtype=k.dtype, device=k.device), torch.empty(v.shape, dtype=v.dtype, device=v.device))


def dqacc_preprocess(p: AttentionProblem, s: Schedule, grid, o, do, delta, dqacc, zero: bool = True) -> None:
    """The launch ``hopper_bwd_preprocess``: delta = rowsum(dO * O), dQacc zeroed (unless `zero` is False)."""
    _hopper_bwd_preprocess[grid](o, do, delta, dqacc, *strides3(o), *strides3(do), p.heads_q, p.seq_q,
                                 HEAD_DIM=p.head_dim, BLOCK_M=s.block_m, Q_FASTEST=s.grid_order == "q_fastest",
                                 ZERO=zero, num_warps=s.num_warps, num_stages=s.num_stages)


def dqacc_convert(p: AttentionProblem, s: Schedule, grid, dqacc, dq) -> None:
    """The launch ``hopper_bwd_dq_convert``: dQ = scale * dQacc in dQ's dtype."""
    _hopper_bwd_dq_convert[grid](dqacc, dq, *strides3(dq), p.heads_q, p.seq_q, p.scale,
                                 Q_FASTEST=s.grid_order == "q_fastest", PREC=dot_precision(p), HEAD_DIM=p.head_dim,
                                 BLOCK_M=s.block_m, num_warps=s.num_warps, num_stages=s.num_stages)


@launcher("hopper", "bwd", needs={"lse": _lse_spec})
def hopper_backward(problem: AttentionProblem, schedule: Schedule, q, k, v, o, do, saved):
    """Launch preprocess, the fused dK/dV/dQ pass and the dQ conversion with the forward's saved lse;
    returns (dq, dk, dv).  dQacc (B, Hq, Nq, d) fp32 and delta (B, Hq, Nq) fp32 are the extra memory."""
    lse = saved["lse"]
    pre, main, conv = kernel_launches(problem, schedule)
    assert (pre.name, main.name, conv.name) == ("hopper_bwd_preprocess", "hopper_bwd_dkdvdq", "hopper_bwd_dq_convert")
    p, s = problem, schedule
    qf = s.grid_order == "q_fastest"
    prec = dot_precision(p)
    delta, dqacc, dq, dk, dv = dqacc_buffers(p, q, k, v)
    common = dict(HEAD_DIM=p.head_dim, BLOCK_M=s.block_m, num_warps=s.num_warps, num_stages=s.num_stages)
    dq_tma = dq_reduce_by_tma(q.device)
    load_tma = loads_by_tma(q, do)
    ws = loop_ws(p, q, do)
    if dq_tma or load_tma or ws:
        from .hopper import _scratch
        triton.set_allocator(_scratch)
    dqacc_preprocess(p, s, pre.grid, o, do, delta, dqacc)
    args = (q, k, v, do, lse, delta, dk, dv, dqacc, strides3(q), strides3(k), strides3(v), strides3(do), strides3(dk),
            strides3(dv), p.heads_kv, p.seq_q, p.seq_kv, p.scale * _common.LOG2E, p.scale, p.causal_offset)
    consts = dict(GROUP=p.group_size, BLOCK_N=s.block_n, CAUSAL=p.causal, Q_FASTEST=qf, PREC=prec, **common)
    if ws:  # the experiment: WS dK/dV pass, then the WS dQ pass writes dQ itself (dQacc stays zero, unread)
        lse_t, delta_t, pad = _ws_dkdv(p, s, main.grid, q, k, v, do, lse, delta, dk, dv)
        bm, bn, w, st = WS_DQ_TILES[LOOP]
        grid = (triton.cdiv(p.seq_q, bm), p.batch * p.heads_q)
        _hopper_bwd_dq_ws[grid if qf else grid[::-1]](
            q, k, v, do, lse_t, delta_t, dq, strides3(q), strides3(k), strides3(v), strides3(do), strides3(dq),
            p.heads_q, p.seq_q, p.seq_kv, p.scale * _common.LOG2E, p.scale, p.causal_offset, p.seq_q + pad,
            GROUP=p.group_size, HEAD_DIM=p.head_dim, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=p.causal, Q_FASTEST=qf, PREC=prec,
            num_warps=w, num_stages=st)
        return dq, dk, dv
    else:
        _hopper_bwd_dkdvdq[main.grid](*args, DQ_TMA=dq_tma, LOAD_TMA=load_tma, **consts)
    dqacc_convert(p, s, conv.grid, dqacc, dq)
    return dq, dk, dv
