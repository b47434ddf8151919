"""FlashAttention-2 forward and backward (deterministic, no atomics) in Triton.

Launches and bytes follow memsim/schedule.py's contract exactly:
  flash2_fwd            grid (Mb, B*Hq)   [or (B*Hq, Mb) with grid_order heads_fastest]
  flash2_bwd_preprocess grid (Mb, B*Hq)
  flash2_bwd_dkdv       grid (Nb, B*Hkv)
  flash2_bwd_dq         grid (Mb, B*Hq)
Scores live in the log2 domain: s2 = (q.k) * scale * log2(e), so exp2 replaces exp and the running
max is subtracted before every exponential (large logits cannot overflow).  The logsumexp that is
stored (and returned) is in natural-log units: lse = ln(sum_j exp(scale * q.k_j)).

Masking: a column c is visible from row r when c < seq_kv and (not causal or c <= r + offset);
offset = 0 (top_left, SDPA's is_causal) or seq_kv - seq_q (bottom_right).  Each K/V (or Q) loop is
split in two: blocks that every row of the tile sees entirely (no mask arithmetic), then the blocks
that need a mask (the diagonal band and the ragged tail).  Blocks that no row sees are never loaded.
Each loop body is one @triton.jit helper (`_fwd_kv_loop`, `_dkdv_q_loop`, `_dq_kv_loop`) called twice,
with the constexpr MASKED choosing the variant; Triton inlines them, so the launched kernels keep
their names (`_flash2_fwd`, `_flash2_bwd_preprocess`, `_flash2_bwd_dkdv`, `_flash2_bwd_dq`).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from memsim.schedule import AttentionProblem, Schedule, kernel_launches

from . import _common
from ._common import dot_precision, lse_forward, strides3
from ._tl import LN2, LOG2E, _kv_split, cvt, grid_ids, mma, online_softmax, q_block
from .registry import ForwardResult, launcher


@triton.jit
def _fwd_kv_loop(acc, l_i, m_i, q, kT_ptrs, v_ptrs, stride_kn, stride_vn, offs_m, offs_n, lo, hi,
                 SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                 BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr, PREC: tl.constexpr):
    """K/V blocks [lo, hi) of one Q block: the online softmax.  Each iteration reads K_j, V_j (cols x d
    each) -- nothing else touches memory.  MASKED: the diagonal band and the ragged tail (column and
    causal masks, rows that may see nothing yet); otherwise every row sees the whole block."""
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        if MASKED:
            kT = tl.load(kT_ptrs + start_n * stride_kn, mask=cols[None, :] < SEQ_KV, other=0.0)
        else:
            kT = tl.load(kT_ptrs + start_n * stride_kn)
        s = mma(q, kT, PREC) * qk_scale2
        if MASKED:
            visible = cols[None, :] < SEQ_KV
            if CAUSAL:
                visible = visible & (cols[None, :] <= offs_m[:, None] + CAUSAL_OFFSET)
            s = tl.where(visible, s, float("-inf"))
            v = tl.load(v_ptrs + start_n * stride_vn, mask=cols[:, None] < SEQ_KV, other=0.0)
        else:
            v = tl.load(v_ptrs + start_n * stride_vn)
        # MASKED: a row may have nothing visible yet
        acc, l_i, m_i = online_softmax(acc, l_i, m_i, s, v, qk_scale2, SAFE=MASKED, RAW=False, PREC=PREC)
    return acc, l_i, m_i


@triton.jit
def _flash2_fwd(Q, K, V, O, LSE, stride_q, stride_k, stride_v, stride_o, H, SEQ_Q, SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                CAUSAL: tl.constexpr, Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    pid_bh, b, h, hkv, start_m, offs_m = q_block(H, GROUP, BLOCK_M, Q_FASTEST)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    # stride_x: the (batch, head, row) strides of x (`kernels._common.lse_forward`)
    q_ptrs = Q + b * stride_q[0] + h * stride_q[1] + offs_m[:, None] * stride_q[2] + offs_d[None, :]
    # K is read transposed (d x cols) so the score tile is a plain dot(q, kT)
    kT_ptrs = K + b * stride_k[0] + hkv * stride_k[1] + offs_n[None, :] * stride_k[2] + offs_d[:, None]
    v_ptrs = V + b * stride_v[0] + hkv * stride_v[1] + offs_n[:, None] * stride_v[2] + offs_d[None, :]

    # SRAM/registers for the whole CTA: Q_i (read once), acc (rows x d fp32), m_i, l_i
    q = tl.load(q_ptrs, mask=offs_m[:, None] < SEQ_Q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    full_end, hi = _kv_split(start_m, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, BLOCK_M, BLOCK_N, CAUSAL)
    acc, l_i, m_i = _fwd_kv_loop(acc, l_i, m_i, q, kT_ptrs, v_ptrs, stride_k[2], stride_v[2], offs_m, offs_n,
                                 0, full_end, SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                                 BLOCK_N=BLOCK_N, MASKED=False, CAUSAL=CAUSAL, PREC=PREC)
    acc, l_i, m_i = _fwd_kv_loop(acc, l_i, m_i, q, kT_ptrs, v_ptrs, stride_k[2], stride_v[2], offs_m, offs_n,
                                 full_end, hi, SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                                 BLOCK_N=BLOCK_N, MASKED=True, CAUSAL=CAUSAL, PREC=PREC)

    # epilogue: O_i and lse_i written once; a row that saw nothing gets O = 0, lse = -inf
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    o = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.math.log2(l_safe)) * LN2)
    o_ptrs = O + b * stride_o[0] + h * stride_o[1] + offs_m[:, None] * stride_o[2] + offs_d[None, :]
    tl.store(o_ptrs, cvt(o, O.dtype.element_ty, PREC), mask=offs_m[:, None] < SEQ_Q)
    tl.store(LSE + pid_bh.to(tl.int64) * SEQ_Q + offs_m, lse, mask=offs_m < SEQ_Q)


@triton.jit
def _flash2_bwd_preprocess(O, DO, DELTA,
                           stride_ob, stride_oh, stride_om,
                           stride_dob, stride_doh, stride_dom,
                           H, SEQ_Q,
                           HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, Q_FASTEST: tl.constexpr):
    # reads O_i and dO_i (rows x d each), writes delta_i = rowsum(dO * O) (rows x fp32)
    pid_m, pid_bh = grid_ids(Q_FASTEST)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    rmask = offs_m[:, None] < SEQ_Q
    o = tl.load(O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :],
                mask=rmask, other=0.0).to(tl.float32)
    do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dom + offs_d[None, :],
                 mask=rmask, other=0.0).to(tl.float32)
    delta = tl.sum(o * do, 1)
    tl.store(DELTA + pid_bh.to(tl.int64) * SEQ_Q + offs_m, delta, mask=offs_m < SEQ_Q)


@triton.jit
def _dkdv_q_loop(dk, dv, k, v, qT_ptrs, do_ptrs, lse_ptrs, delta_ptrs, stride_qm, stride_dom,
                 offs_n, offs_m0, lo, hi, SEQ_Q, qk_scale2, CAUSAL_OFFSET,
                 BLOCK_M: tl.constexpr, MASKED: tl.constexpr, PREC: tl.constexpr):
    """Q blocks [lo, hi) against the resident K_j, V_j: accumulate dK_j, dV_j.  Each iteration reads
    Q_i, dO_i (rows x d) and lse_i, delta_i (rows x fp32).  MASKED: the diagonal band (causal mask);
    otherwise every row sees the whole K/V block.  Ragged rows (>= SEQ_Q) need no mask: they load
    q = dO = 0 and lse = +inf, so p = 0."""
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + offs_m0
        rm = rows < SEQ_Q
        qT = tl.load(qT_ptrs + start_m * stride_qm, mask=rm[None, :], other=0.0)
        lse2 = tl.load(lse_ptrs + start_m, mask=rm, other=float("inf")) * LOG2E
        qkT = mma(k, qT, PREC) * qk_scale2
        if MASKED:
            visible = offs_n[:, None] <= rows[None, :] + CAUSAL_OFFSET
            pT = tl.where(visible, tl.math.exp2(qkT - lse2[None, :]), 0.0)
        else:
            pT = tl.math.exp2(qkT - lse2[None, :])
        do = tl.load(do_ptrs + start_m * stride_dom, mask=rm[:, None], other=0.0)
        dv += mma(cvt(pT, do.dtype, PREC), do, PREC)
        delta = tl.load(delta_ptrs + start_m, mask=rm, other=0.0)
        dpT = mma(v, tl.trans(do), PREC)
        dsT = pT * (dpT - delta[None, :])
        dk += mma(cvt(dsT, qT.dtype, PREC), tl.trans(qT), PREC)
    return dk, dv


@triton.jit
def _kv_block(HKV, BLOCK_N: tl.constexpr, Q_FASTEST: tl.constexpr):
    """The K/V block of a CTA of a (K/V block, batch*head_kv) grid: (b, hkv, start_n, offs_n), offs_n its
    columns (the dK/dV pass; `kernels._tl.q_block` is the Q-block twin)."""
    pid_n, pid_bhkv = grid_ids(Q_FASTEST)
    b = (pid_bhkv // HKV).to(tl.int64)
    hkv = (pid_bhkv % HKV).to(tl.int64)
    start_n = pid_n * BLOCK_N
    return b, hkv, start_n, start_n + tl.arange(0, BLOCK_N)


@triton.jit
def _dkdv_setup(K, V, stride_k, stride_v, HKV, SEQ_Q, SEQ_KV, CAUSAL_OFFSET,
                HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
                Q_FASTEST: tl.constexpr, LOAD_KV: tl.constexpr = True):
    """The prologue of a dK/dV CTA (flash2's and hopper's fused pass): (b, hkv, offs_n, offs_m0, offs_d, cmask, k,
    v, dk, dv, lo, mid).  Reads K_j, V_j (cols x d) once -- resident for the whole CTA with the fp32 accumulators
    dK_j, dV_j (zeros).  Q blocks [lo, mid) are the causal diagonal band (rows r >= start_n - offset see part of
    column block j), [mid, SEQ_Q) see all of it; non-causal: lo = mid = 0."""
    b, hkv, start_n, offs_n = _kv_block(HKV, BLOCK_N, Q_FASTEST)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    cmask = offs_n[:, None] < SEQ_KV
    if LOAD_KV:
        k = tl.load(K + b * stride_k[0] + hkv * stride_k[1] + offs_n[:, None] * stride_k[2] + offs_d[None, :],
                    mask=cmask, other=0.0)
        v = tl.load(V + b * stride_v[0] + hkv * stride_v[1] + offs_n[:, None] * stride_v[2] + offs_d[None, :],
                    mask=cmask, other=0.0)
    else:  # the caller loads K_j, V_j itself (hopper_ws's TMA loads); placeholders, never read
        k = tl.zeros([BLOCK_N, HEAD_DIM], dtype=K.dtype.element_ty)
        v = tl.zeros([BLOCK_N, HEAD_DIM], dtype=V.dtype.element_ty)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    if CAUSAL:
        first_row = tl.maximum(start_n - CAUSAL_OFFSET, 0)
        # no row sees this block: both loops empty (lo = mid >= SEQ_Q)
        lo = tl.where(first_row < SEQ_Q, (first_row // BLOCK_M) * BLOCK_M, tl.cdiv(SEQ_Q, BLOCK_M) * BLOCK_M)
        row_full = tl.minimum(start_n + BLOCK_N, SEQ_KV) - 1 - CAUSAL_OFFSET
        mid = tl.minimum(tl.maximum(row_full, lo), SEQ_Q)
        mid = tl.cdiv(mid, BLOCK_M) * BLOCK_M
        mid = tl.maximum(mid, lo)
    else:
        lo = 0
        mid = 0
    return b, hkv, offs_n, offs_m0, offs_d, cmask, k, v, dk, dv, lo, mid


@triton.jit
def _dkdv_store(DK, DV, stride_dk, stride_dv, b, hkv, offs_n, offs_d, cmask, dk, dv, sm_scale, PREC: tl.constexpr):
    """The epilogue of a dK/dV CTA: dK_j = scale * dk and dV_j written once, in the outputs' dtype."""
    dk = dk * sm_scale
    tl.store(DK + b * stride_dk[0] + hkv * stride_dk[1] + offs_n[:, None] * stride_dk[2] + offs_d[None, :],
             cvt(dk, DK.dtype.element_ty, PREC), mask=cmask)
    tl.store(DV + b * stride_dv[0] + hkv * stride_dv[1] + offs_n[:, None] * stride_dv[2] + offs_d[None, :],
             cvt(dv, DV.dtype.element_ty, PREC), mask=cmask)


@triton.jit
def _flash2_bwd_dkdv(Q, K, V, DO, LSE, DELTA, DK, DV, stride_q, stride_k, stride_v, stride_do, stride_dk, stride_dv,
                     HKV, SEQ_Q, SEQ_KV, qk_scale2, sm_scale, CAUSAL_OFFSET,
                     GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                     BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, Q_FASTEST: tl.constexpr,
                     PREC: tl.constexpr):
    # stride_x: the (batch, head, row) strides of x.  Resident for the whole CTA: K_j, V_j (cols x d), dK_j, dV_j
    # accumulators (fp32); Q blocks [lo, mid) need the causal mask, [mid, SEQ_Q) see the whole block
    b, hkv, offs_n, offs_m0, offs_d, cmask, k, v, dk, dv, lo, mid = _dkdv_setup(
        K, V, stride_k, stride_v, HKV, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, HEAD_DIM, BLOCK_M, BLOCK_N, CAUSAL, Q_FASTEST)

    for g in range(GROUP):
        h = hkv * GROUP + g
        bh = b * (HKV * GROUP) + h
        # Q and dO are read transposed (d x rows): the tiles below are (cols x rows)
        qT_ptrs = Q + b * stride_q[0] + h * stride_q[1] + offs_m0[None, :] * stride_q[2] + offs_d[:, None]
        do_ptrs = DO + b * stride_do[0] + h * stride_do[1] + offs_m0[:, None] * stride_do[2] + offs_d[None, :]
        lse_ptrs = LSE + bh * SEQ_Q + offs_m0
        delta_ptrs = DELTA + bh * SEQ_Q + offs_m0
        dk, dv = _dkdv_q_loop(dk, dv, k, v, qT_ptrs, do_ptrs, lse_ptrs, delta_ptrs, stride_q[2], stride_do[2],
                              offs_n, offs_m0, lo, mid, SEQ_Q, qk_scale2, CAUSAL_OFFSET,
                              BLOCK_M=BLOCK_M, MASKED=True, PREC=PREC)  # diagonal band
        dk, dv = _dkdv_q_loop(dk, dv, k, v, qT_ptrs, do_ptrs, lse_ptrs, delta_ptrs, stride_q[2], stride_do[2],
                              offs_n, offs_m0, mid, SEQ_Q, SEQ_Q, qk_scale2, CAUSAL_OFFSET,
                              BLOCK_M=BLOCK_M, MASKED=False, PREC=PREC)  # rows that see the whole block

    _dkdv_store(DK, DV, stride_dk, stride_dv, b, hkv, offs_n, offs_d, cmask, dk, dv, sm_scale, PREC)


@triton.jit
def _dq_kv_loop(dq, q, do, lse2, delta, kT_ptrs, vT_ptrs, stride_kn, stride_vn, offs_m, offs_n, lo, hi,
                SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr, PREC: tl.constexpr):
    """K/V blocks [lo, hi) of one Q block: accumulate dQ_i.  Each iteration reads K_j, V_j (cols x d
    each).  MASKED: the diagonal band and the ragged tail; otherwise every row sees the whole block."""
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        cm = cols[None, :] < SEQ_KV
        if MASKED:
            kT = tl.load(kT_ptrs + start_n * stride_kn, mask=cm, other=0.0)
            vT = tl.load(vT_ptrs + start_n * stride_vn, mask=cm, other=0.0)
        else:
            kT = tl.load(kT_ptrs + start_n * stride_kn)
            vT = tl.load(vT_ptrs + start_n * stride_vn)
        qk = mma(q, kT, PREC) * qk_scale2
        if MASKED:
            visible = cm
            if CAUSAL:
                visible = visible & (cols[None, :] <= offs_m[:, None] + CAUSAL_OFFSET)
            p = tl.where(visible, tl.math.exp2(qk - lse2[:, None]), 0.0)
        else:
            p = tl.math.exp2(qk - lse2[:, None])
        dp = mma(do, vT, PREC)
        ds = p * (dp - delta[:, None])
        dq += mma(cvt(ds, kT.dtype, PREC), tl.trans(kT), PREC)
    return dq


@triton.jit
def _flash2_bwd_dq(Q, K, V, DO, LSE, DELTA, DQ,
                   stride_qb, stride_qh, stride_qm,
                   stride_kb, stride_kh, stride_kn,
                   stride_vb, stride_vh, stride_vn,
                   stride_dob, stride_doh, stride_dom,
                   stride_dqb, stride_dqh, stride_dqm,
                   H, SEQ_Q, SEQ_KV, qk_scale2, sm_scale, CAUSAL_OFFSET,
                   GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   CAUSAL: tl.constexpr, Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    pid_bh, b, h, hkv, start_m, offs_m = q_block(H, GROUP, BLOCK_M, Q_FASTEST)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    rm = offs_m < SEQ_Q
    # resident: Q_i, dO_i (rows x d), lse_i, delta_i, the dQ_i accumulator (fp32) -- each read once
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :],
                mask=rm[:, None], other=0.0)
    do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dom + offs_d[None, :],
                 mask=rm[:, None], other=0.0)
    lse2 = tl.load(LSE + pid_bh.to(tl.int64) * SEQ_Q + offs_m, mask=rm, other=float("inf")) * LOG2E
    delta = tl.load(DELTA + pid_bh.to(tl.int64) * SEQ_Q + offs_m, mask=rm, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    kT_ptrs = K + b * stride_kb + hkv * stride_kh + offs_n[None, :] * stride_kn + offs_d[:, None]
    vT_ptrs = V + b * stride_vb + hkv * stride_vh + offs_n[None, :] * stride_vn + offs_d[:, None]

    full_end, hi = _kv_split(start_m, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, BLOCK_M, BLOCK_N, CAUSAL)
    dq = _dq_kv_loop(dq, q, do, lse2, delta, kT_ptrs, vT_ptrs, stride_kn, stride_vn, offs_m, offs_n,
                     0, full_end, SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                     BLOCK_N=BLOCK_N, MASKED=False, CAUSAL=CAUSAL, PREC=PREC)
    dq = _dq_kv_loop(dq, q, do, lse2, delta, kT_ptrs, vT_ptrs, stride_kn, stride_vn, offs_m, offs_n,
                     full_end, hi, SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                     BLOCK_N=BLOCK_N, MASKED=True, CAUSAL=CAUSAL, PREC=PREC)

    dq = dq * sm_scale
    tl.store(DQ + b * stride_dqb + h * stride_dqh + offs_m[:, None] * stride_dqm + offs_d[None, :],
             cvt(dq, DQ.dtype.element_ty, PREC), mask=rm[:, None])


# --- launchers ------------------------------------------------------------------------------------

def _prec(problem):
    return dot_precision(problem)



def _lse_spec(p: AttentionProblem, s: Schedule):
    return (p.batch, p.heads_q, p.seq_q), torch.float32, "the forward's fp32 logsumexp"


@launcher("flash2", "fwd")
def flash2_forward(problem: AttentionProblem, schedule: Schedule, q, k, v) -> ForwardResult:
    """Launch flash2_fwd; o and lse (B, Hq, Nq) fp32 in natural-log units, saved for the backward."""
    return lse_forward(_flash2_fwd, problem, schedule, q, k, v, Q_FASTEST=schedule.grid_order == "q_fastest",
                       PREC=_prec(problem))


@launcher("flash2", "bwd", needs={"lse": _lse_spec})
def flash2_backward(problem: AttentionProblem, schedule: Schedule, q, k, v, o, do, saved):
    """Launch preprocess, dK/dV and dQ passes with the forward's saved lse; returns (dq, dk, dv)."""
    lse = saved["lse"]
    pre, dkdv, dqk = kernel_launches(problem, schedule)
    assert (pre.name, dkdv.name, dqk.name) == ("flash2_bwd_preprocess", "flash2_bwd_dkdv", "flash2_bwd_dq")
    p, s = problem, schedule
    qf = s.grid_order == "q_fastest"
    delta = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    common = dict(HEAD_DIM=p.head_dim, BLOCK_M=s.block_m, num_warps=s.num_warps, num_stages=s.num_stages)
    _flash2_bwd_preprocess[pre.grid](o, do, delta, *strides3(o), *strides3(do), p.heads_q, p.seq_q,
                                     Q_FASTEST=qf, **common)
    _flash2_bwd_dkdv[dkdv.grid](
        q, k, v, do, lse, delta, dk, dv, strides3(q), strides3(k), strides3(v), strides3(do), strides3(dk), strides3(dv),
        p.heads_kv, p.seq_q, p.seq_kv, p.scale * _common.LOG2E, p.scale, p.causal_offset,
        GROUP=p.group_size, BLOCK_N=s.block_n, CAUSAL=p.causal, Q_FASTEST=qf, PREC=_prec(p), **common)
    _flash2_bwd_dq[dqk.grid](
        q, k, v, do, lse, delta, dq, *strides3(q), *strides3(k), *strides3(v), *strides3(do), *strides3(dq),
        p.heads_q, p.seq_q, p.seq_kv, p.scale * _common.LOG2E, p.scale, p.causal_offset,
        GROUP=p.group_size, BLOCK_N=s.block_n, CAUSAL=p.causal, Q_FASTEST=qf, PREC=_prec(p), **common)
    return dq, dk, dv
