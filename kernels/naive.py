"""Standard (naive) attention: S and P materialised in HBM, as the 2022 paper's baseline.

Forward, three launches (memsim/schedule.py's contract):
  naive_qk      grid (Mb, Nb, B*Hq)  S_ij = scale * Q_i K_j^T, written in the S/P dtype
  naive_softmax grid (Mb, B*Hq)      full rows of S read once, causal mask, P written once
  naive_pv      grid (Mb, B*Hq)      O_i = sum_j P_ij V_j
Backward, five launches (P kept from the forward pass):
  naive_bwd_dv  grid (Nb, B*Hkv)     dV_j = sum_{g,i} P_ij^T dO_i
  naive_bwd_dp  grid (Mb, Nb, B*Hq)  dP_ij = dO_i V_j^T
  naive_bwd_ds  grid (Mb, B*Hq)      dS = P * (dP - rowsum(P * dP)), written over dP
  naive_bwd_dq  grid (Mb, B*Hq)      dQ_i = scale * sum_j dS_ij K_j
  naive_bwd_dk  grid (Nb, B*Hkv)     dK_j = scale * sum_{g,i} dS_ij^T Q_i
The matmul launches are plain tiled GEMMs (fp32 accumulators in registers, operand tiles pipelined
through shared memory by num_stages); every tile is computed, causal or not -- the mask is applied in
the softmax, as standard attention does.  S, P and dP are (B*Hq, seq_q, seq_kv) contiguous buffers.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from memsim.schedule import AttentionProblem, Schedule, kernel_launches, naive_rows_per_step

from ._common import dot_precision, interpreting, TORCH_DTYPES, strides3
from ._tl import LOG2E, cvt, grid_ids, head_ids, mma
from .registry import ForwardResult, launcher


@triton.jit
def _pids_2d(Q_FASTEST: tl.constexpr):
    if Q_FASTEST:
        pm, pn, pbh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    else:
        pm, pn, pbh = tl.program_id(1), tl.program_id(2), tl.program_id(0)
    return pm, pn, pbh


# Three matmul shapes, each used by a forward and a backward launch.  The bodies are shared
# @triton.jit functions (inlined by Triton); each launch keeps its own kernel name for ncu.

@triton.jit
def _score_tile(A, B, C,
                stride_ab, stride_ah, stride_am,
                stride_bb, stride_bh, stride_bn,
                H, SEQ_Q, SEQ_KV, scale,
                GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    # C_ij = scale * A_i B_j^T: reads A_i (rows x d, a q-head tensor) and B_j (cols x d, a kv-head
    # tensor) once each, d deep with no k-loop; writes the (rows x cols) tile of C in HBM
    pid_m, pid_n, pid_bh = _pids_2d(Q_FASTEST)
    b, h, hkv = head_ids(pid_bh, H, GROUP)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    a = tl.load(A + b * stride_ab + h * stride_ah + rows[:, None] * stride_am + offs_d[None, :],
                mask=rows[:, None] < SEQ_Q, other=0.0)
    bT = tl.load(B + b * stride_bb + hkv * stride_bh + cols[None, :] * stride_bn + offs_d[:, None],
                 mask=cols[None, :] < SEQ_KV, other=0.0)
    c = mma(a, bT, PREC) * scale
    c_ptrs = C + pid_bh.to(tl.int64) * SEQ_Q * SEQ_KV + rows[:, None] * SEQ_KV + cols[None, :]
    tl.store(c_ptrs, cvt(c, C.dtype.element_ty, PREC), mask=(rows[:, None] < SEQ_Q) & (cols[None, :] < SEQ_KV))


@triton.jit
def _rows_times(X, Y, OUT,
                stride_yb, stride_yh, stride_yn,
                stride_ob, stride_oh, stride_om,
                H, SEQ_Q, SEQ_KV, scale,
                GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    # OUT_i = scale * X_i Y: OUT_i resident (fp32 accumulator); each iteration reads X_ij (rows x
    # cols, the materialised matrix) and Y_j (cols x d, a kv-head tensor)
    pid_m, pid_bh = grid_ids(Q_FASTEST)
    b, h, hkv = head_ids(pid_bh, H, GROUP)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    rm = rows[:, None] < SEQ_Q
    x_ptrs = X + pid_bh.to(tl.int64) * SEQ_Q * SEQ_KV + rows[:, None] * SEQ_KV + offs_n[None, :]
    y_ptrs = Y + b * stride_yb + hkv * stride_yh + offs_n[:, None] * stride_yn + offs_d[None, :]
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for start_n in range(0, SEQ_KV, BLOCK_N):
        cols = start_n + offs_n
        x = tl.load(x_ptrs + start_n, mask=rm & (cols[None, :] < SEQ_KV), other=0.0)
        y = tl.load(y_ptrs + start_n * stride_yn, mask=cols[:, None] < SEQ_KV, other=0.0)
        acc += mma(cvt(x, y.dtype, PREC), y, PREC)
    acc = acc * scale
    tl.store(OUT + b * stride_ob + h * stride_oh + rows[:, None] * stride_om + offs_d[None, :],
             cvt(acc, OUT.dtype.element_ty, PREC), mask=rm)


@triton.jit
def _cols_times(X, Y, OUT,
                stride_yb, stride_yh, stride_ym,
                stride_ob, stride_oh, stride_on,
                HKV, SEQ_Q, SEQ_KV, scale,
                GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    # OUT_j = scale * sum over the GQA group of X_ij^T Y_i: OUT_j resident (fp32 accumulator); each
    # iteration reads X_ij (transposed, cols x rows) and Y_i (rows x d, a q-head tensor)
    pid_n, pid_bhkv = grid_ids(Q_FASTEST)
    b = (pid_bhkv // HKV).to(tl.int64)
    hkv = (pid_bhkv % HKV).to(tl.int64)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    cm = cols[:, None] < SEQ_KV
    acc = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    for g in range(GROUP):
        h = hkv * GROUP + g
        bh = b * (HKV * GROUP) + h
        xT_ptrs = X + bh * SEQ_Q * SEQ_KV + offs_m[None, :] * SEQ_KV + cols[:, None]
        y_ptrs = Y + b * stride_yb + h * stride_yh + offs_m[:, None] * stride_ym + offs_d[None, :]
        for start_m in range(0, SEQ_Q, BLOCK_M):
            rows = start_m + offs_m
            xT = tl.load(xT_ptrs + start_m * SEQ_KV, mask=cm & (rows[None, :] < SEQ_Q), other=0.0)
            y = tl.load(y_ptrs + start_m * stride_ym, mask=rows[:, None] < SEQ_Q, other=0.0)
            acc += mma(cvt(xT, y.dtype, PREC), y, PREC)
    acc = acc * scale
    tl.store(OUT + b * stride_ob + hkv * stride_oh + cols[:, None] * stride_on + offs_d[None, :],
             cvt(acc, OUT.dtype.element_ty, PREC), mask=cm)


@triton.jit
def _naive_qk(Q, K, S, sqb, sqh, sqm, skb, skh, skn, H, SEQ_Q, SEQ_KV, sm_scale,
              GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    # S_ij = scale * Q_i K_j^T
    _score_tile(Q, K, S, sqb, sqh, sqm, skb, skh, skn, H, SEQ_Q, SEQ_KV, sm_scale,
                GROUP, HEAD_DIM, BLOCK_M, BLOCK_N, Q_FASTEST, PREC)


@triton.jit
def _naive_softmax(S, P, SEQ_Q, SEQ_KV, CAUSAL_OFFSET,
                   BLOCK_M: tl.constexpr, ROWS: tl.constexpr, NPOW2: tl.constexpr,
                   CAUSAL: tl.constexpr, Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    # block_m rows of S, ROWS full rows at a time in registers: S read once, P written once
    pid_m, pid_bh = grid_ids(Q_FASTEST)
    base = pid_bh.to(tl.int64) * SEQ_Q * SEQ_KV
    cols = tl.arange(0, NPOW2)
    for r0 in range(0, BLOCK_M, ROWS):
        rows = pid_m * BLOCK_M + r0 + tl.arange(0, ROWS)
        inb = (rows[:, None] < SEQ_Q) & (cols[None, :] < SEQ_KV)
        ptrs = base + rows[:, None] * SEQ_KV + cols[None, :]
        s = tl.load(S + ptrs, mask=inb, other=float("-inf")).to(tl.float32)
        visible = inb
        if CAUSAL:
            visible = visible & (cols[None, :] <= rows[:, None] + CAUSAL_OFFSET)
        s = tl.where(visible, s, float("-inf"))
        m = tl.max(s, 1)
        m = tl.where(m == float("-inf"), 0.0, m)  # fully masked row: P = 0, not NaN
        e = tl.math.exp2((s - m[:, None]) * LOG2E)
        denom = tl.sum(e, 1)
        denom = tl.where(denom == 0.0, 1.0, denom)
        p = e / denom[:, None]
        tl.store(P + ptrs, cvt(p, P.dtype.element_ty, PREC), mask=inb)


@triton.jit
def _naive_pv(P, V, O, svb, svh, svn, sob, soh, som, H, SEQ_Q, SEQ_KV,
              GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    # O_i = P_i V
    _rows_times(P, V, O, svb, svh, svn, sob, soh, som, H, SEQ_Q, SEQ_KV, 1.0,
                GROUP, HEAD_DIM, BLOCK_M, BLOCK_N, Q_FASTEST, PREC)


@triton.jit
def _naive_bwd_dv(P, DO, DV, sdob, sdoh, sdom, sdvb, sdvh, sdvn, HKV, SEQ_Q, SEQ_KV,
                  GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    # dV_j = sum over the group of P_j^T dO
    _cols_times(P, DO, DV, sdob, sdoh, sdom, sdvb, sdvh, sdvn, HKV, SEQ_Q, SEQ_KV, 1.0,
                GROUP, HEAD_DIM, BLOCK_M, BLOCK_N, Q_FASTEST, PREC)


@triton.jit
def _naive_bwd_dp(DO, V, DP, sdob, sdoh, sdom, svb, svh, svn, H, SEQ_Q, SEQ_KV,
                  GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    # dP_ij = dO_i V_j^T
    _score_tile(DO, V, DP, sdob, sdoh, sdom, svb, svh, svn, H, SEQ_Q, SEQ_KV, 1.0,
                GROUP, HEAD_DIM, BLOCK_M, BLOCK_N, Q_FASTEST, PREC)


@triton.jit
def _naive_bwd_ds(P, DP, SEQ_Q, SEQ_KV,
                  BLOCK_M: tl.constexpr, ROWS: tl.constexpr, NPOW2: tl.constexpr, Q_FASTEST: tl.constexpr,
                  PREC: tl.constexpr):
    # full rows of P and dP read once; dS written over dP
    pid_m, pid_bh = grid_ids(Q_FASTEST)
    base = pid_bh.to(tl.int64) * SEQ_Q * SEQ_KV
    cols = tl.arange(0, NPOW2)
    for r0 in range(0, BLOCK_M, ROWS):
        rows = pid_m * BLOCK_M + r0 + tl.arange(0, ROWS)
        inb = (rows[:, None] < SEQ_Q) & (cols[None, :] < SEQ_KV)
        ptrs = base + rows[:, None] * SEQ_KV + cols[None, :]
        p = tl.load(P + ptrs, mask=inb, other=0.0).to(tl.float32)
        dp = tl.load(DP + ptrs, mask=inb, other=0.0).to(tl.float32)
        rowsum = tl.sum(p * dp, 1)
        ds = p * (dp - rowsum[:, None])
        tl.store(DP + ptrs, cvt(ds, DP.dtype.element_ty, PREC), mask=inb)


@triton.jit
def _naive_bwd_dq(DS, K, DQ, skb, skh, skn, sdqb, sdqh, sdqm, H, SEQ_Q, SEQ_KV, sm_scale,
                  GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    # dQ_i = scale * dS_i K
    _rows_times(DS, K, DQ, skb, skh, skn, sdqb, sdqh, sdqm, H, SEQ_Q, SEQ_KV, sm_scale,
                GROUP, HEAD_DIM, BLOCK_M, BLOCK_N, Q_FASTEST, PREC)


@triton.jit
def _naive_bwd_dk(DS, Q, DK, sqb, sqh, sqm, sdkb, sdkh, sdkn, HKV, SEQ_Q, SEQ_KV, sm_scale,
                  GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  Q_FASTEST: tl.constexpr, PREC: tl.constexpr):
    # dK_j = scale * sum over the group of dS_j^T Q
    _cols_times(DS, Q, DK, sqb, sqh, sqm, sdkb, sdkh, sdkn, HKV, SEQ_Q, SEQ_KV, sm_scale,
                GROUP, HEAD_DIM, BLOCK_M, BLOCK_N, Q_FASTEST, PREC)


# --- launchers ------------------------------------------------------------------------------------


def _prec(problem, schedule):
    prec = dot_precision(problem)
    if schedule.sp_dtype == "bf16" and interpreting():
        prec = "bf16emu"
    return prec


_rows_per_step = naive_rows_per_step  # one rule, in memsim.schedule (the model counts the same loop trips)


def sp_torch_dtype(problem: AttentionProblem, schedule: Schedule):
    return TORCH_DTYPES[schedule.sp_dtype or problem.dtype]


def _p_spec(p: AttentionProblem, s: Schedule):
    return ((p.batch * p.heads_q, p.seq_q, p.seq_kv), sp_torch_dtype(p, s),
            "P of a naive forward with the same sp_dtype")


@launcher("naive", "fwd")
def naive_forward(problem: AttentionProblem, schedule: Schedule, q, k, v) -> ForwardResult:
    """The three forward launches; o, and P saved for the backward."""
    qk, sm, pv = kernel_launches(problem, schedule)
    assert (qk.name, sm.name, pv.name) == ("naive_qk", "naive_softmax", "naive_pv")
    p, s = problem, schedule
    qf = s.grid_order == "q_fastest"
    spd = sp_torch_dtype(p, s)
    bh = p.batch * p.heads_q
    S = torch.empty((bh, p.seq_q, p.seq_kv), dtype=spd, device=q.device)
    P = torch.empty((bh, p.seq_q, p.seq_kv), dtype=spd, device=q.device)
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    kw = dict(GROUP=p.group_size, HEAD_DIM=p.head_dim, BLOCK_M=s.block_m, BLOCK_N=s.block_n, Q_FASTEST=qf,
              PREC=_prec(p, s), num_warps=s.num_warps, num_stages=s.num_stages)
    _naive_qk[qk.grid](q, k, S, *strides3(q), *strides3(k), p.heads_q, p.seq_q, p.seq_kv, p.scale, **kw)
    rows, npow2 = _rows_per_step(p.seq_kv, s.block_m)
    _naive_softmax[sm.grid](S, P, p.seq_q, p.seq_kv, p.causal_offset, BLOCK_M=s.block_m, ROWS=rows,
                            NPOW2=npow2, CAUSAL=p.causal, Q_FASTEST=qf, PREC=kw["PREC"], num_warps=s.num_warps)
    del S
    _naive_pv[pv.grid](P, v, o, *strides3(v), *strides3(o), p.heads_q, p.seq_q, p.seq_kv, **kw)
    return ForwardResult(o, None, {"P": P}, schedule)


@launcher("naive", "bwd", needs={"P": _p_spec})
def naive_backward(problem: AttentionProblem, schedule: Schedule, q, k, v, o, do, saved):
    """The five backward launches with the forward's P (checked by kernels.registry.check_saved);
    returns (dq, dk, dv)."""
    P = saved["P"]
    names = tuple(launch.name for launch in kernel_launches(problem, schedule))
    assert names == ("naive_bwd_dv", "naive_bwd_dp", "naive_bwd_ds", "naive_bwd_dq", "naive_bwd_dk"), names
    l_dv, l_dp, l_ds, l_dq, l_dk = kernel_launches(problem, schedule)
    p, s = problem, schedule
    qf = s.grid_order == "q_fastest"
    kw = dict(GROUP=p.group_size, HEAD_DIM=p.head_dim, BLOCK_M=s.block_m, BLOCK_N=s.block_n, Q_FASTEST=qf,
              PREC=_prec(p, s), num_warps=s.num_warps, num_stages=s.num_stages)
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    dP = torch.empty_like(P)
    _naive_bwd_dv[l_dv.grid](P, do, dv, *strides3(do), *strides3(dv), p.heads_kv, p.seq_q, p.seq_kv, **kw)
    _naive_bwd_dp[l_dp.grid](do, v, dP, *strides3(do), *strides3(v), p.heads_q, p.seq_q, p.seq_kv, **kw)
    rows, npow2 = _rows_per_step(p.seq_kv, s.block_m)
    _naive_bwd_ds[l_ds.grid](P, dP, p.seq_q, p.seq_kv, BLOCK_M=s.block_m, ROWS=rows, NPOW2=npow2,
                             Q_FASTEST=qf, PREC=kw["PREC"], num_warps=s.num_warps)
    _naive_bwd_dq[l_dq.grid](dP, k, dq, *strides3(k), *strides3(dq), p.heads_q, p.seq_q, p.seq_kv, p.scale, **kw)
    _naive_bwd_dk[l_dk.grid](dP, q, dk, *strides3(q), *strides3(dk), p.heads_kv, p.seq_q, p.seq_kv, p.scale, **kw)
    return dq, dk, dv


def naive_qk_only(problem: AttentionProblem, schedule: Schedule, q, k):
    """Just the naive_qk launch (S = scale * Q K^T); for comparing its GEMM with cuBLAS."""
    qk = kernel_launches(problem, schedule)[0]
    p, s = problem, schedule
    S = torch.empty((p.batch * p.heads_q, p.seq_q, p.seq_kv), dtype=sp_torch_dtype(p, s), device=q.device)
    _naive_qk[qk.grid](q, k, S, *strides3(q), *strides3(k), p.heads_q, p.seq_q, p.seq_kv, p.scale,
                       GROUP=p.group_size, HEAD_DIM=p.head_dim, BLOCK_M=s.block_m, BLOCK_N=s.block_n,
                       Q_FASTEST=s.grid_order == "q_fastest", PREC=_prec(p, s), num_warps=s.num_warps,
                       num_stages=s.num_stages)
    return S


def naive_pv_only(problem: AttentionProblem, schedule: Schedule, P, v):
    """Just the naive_pv launch (O = P V); for comparing its GEMM with cuBLAS."""
    pv = kernel_launches(problem, schedule)[2]
    p, s = problem, schedule
    o = torch.empty((p.batch, p.heads_q, p.seq_q, p.head_dim), dtype=v.dtype, device=v.device)
    _naive_pv[pv.grid](P, v, o, *strides3(v), *strides3(o), p.heads_q, p.seq_q, p.seq_kv,
                       GROUP=p.group_size, HEAD_DIM=p.head_dim, BLOCK_M=s.block_m, BLOCK_N=s.block_n,
                       Q_FASTEST=s.grid_order == "q_fastest", PREC=_prec(p, s), num_warps=s.num_warps,
                       num_stages=s.num_stages)
    return o
