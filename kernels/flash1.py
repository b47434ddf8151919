"""FlashAttention (2022) forward, Algorithm 1's loop order, in Triton.

One CTA per batch*head_q (launch ``flash1_fwd``, grid (B*Hq, 1, 1)).  K/V blocks j are the outer
loop, Q blocks i the inner one, and the running output O_i with its statistics m_i, l_i lives in
an fp32 workspace in HBM that is re-read and re-written at every step -- the traffic the 2022
paper's analysis counts, Theta(N^2 d^2 / M), which the simulator predicts for this schedule.

Per (j, i) step that is not fully masked: Q_i is read; unless this is block i's first visit
(j == 0) O_i (rows x d fp32), m_i, l_i (rows fp32 each) are read from the workspace; unless it is
block i's last visit they are written back; on the last visit O_i (problem dtype) and lse_i are
written instead.  The workspace holds the unnormalised accumulator and m in log2 units.
One addition to the contract: Q blocks that no key can reach (bottom_right causal with
seq_q - seq_kv >= block_m) are never visited, so their O = 0 and lse = -inf are written up front.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from memsim.schedule import AttentionProblem, Schedule

from ._common import dot_precision, lse_forward
from ._tl import LN2, cvt, head_ids, mma, online_softmax
from .registry import ForwardResult, launcher


@triton.jit
def _flash1_fwd(Q, K, V, O, LSE, OWS, MWS, LWS, stride_q, stride_k, stride_v, stride_o,
                H, SEQ_Q, SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                CAUSAL: tl.constexpr, PREC: tl.constexpr):
    pid_bh = tl.program_id(0)
    b, h, hkv = head_ids(pid_bh, H, GROUP)
    bh = pid_bh.to(tl.int64)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_base = Q + b * stride_q[0] + h * stride_q[1]  # stride_x: x's (batch, head, row) strides
    o_base = O + b * stride_o[0] + h * stride_o[1]
    ows_base = OWS + bh * SEQ_Q * HEAD_DIM
    stat_base = bh * SEQ_Q

    if CAUSAL:  # Q blocks no key reaches: written once here, never visited below
        dead_end = (tl.maximum(-CAUSAL_OFFSET, 0) // BLOCK_M) * BLOCK_M
        for start_m in range(0, dead_end, BLOCK_M):
            rows = start_m + offs_m0
            tl.store(o_base + rows[:, None] * stride_o[2] + offs_d[None, :],
                     tl.zeros([BLOCK_M, HEAD_DIM], dtype=O.dtype.element_ty), mask=rows[:, None] < SEQ_Q)
            tl.store(LSE + stat_base + rows, tl.full([BLOCK_M], float("-inf"), tl.float32), mask=rows < SEQ_Q)

    for start_n in range(0, SEQ_KV, BLOCK_N):
        # outer loop: K_j, V_j read once and kept in SRAM for the whole inner loop
        cols = start_n + offs_n0
        cm = cols < SEQ_KV
        kT = tl.load(K + b * stride_k[0] + hkv * stride_k[1] + cols[None, :] * stride_k[2] + offs_d[:, None],
                     mask=cm[None, :], other=0.0)
        v = tl.load(V + b * stride_v[0] + hkv * stride_v[1] + cols[:, None] * stride_v[2] + offs_d[None, :],
                    mask=cm[:, None], other=0.0)
        if CAUSAL:
            first_row = tl.maximum(start_n - CAUSAL_OFFSET, 0)
            lo = tl.where(first_row < SEQ_Q, (first_row // BLOCK_M) * BLOCK_M, SEQ_Q)
        else:
            lo = 0
        for start_m in range(lo, SEQ_Q, BLOCK_M):
            rows = start_m + offs_m0
            rm = rows < SEQ_Q
            # last visible K/V block of this Q block
            if CAUSAL:
                row_end = tl.minimum(start_m + BLOCK_M, SEQ_Q)
                hi = tl.minimum(tl.maximum(row_end + CAUSAL_OFFSET, 0), SEQ_KV)
            else:
                hi = SEQ_KV
            last = start_n + BLOCK_N >= hi
            # inner loop reads: Q_i; O_i, m_i, l_i from the workspace unless first visit
            q = tl.load(q_base + rows[:, None] * stride_q[2] + offs_d[None, :], mask=rm[:, None], other=0.0)
            rd = rm & (start_n > 0)
            acc = tl.load(ows_base + rows[:, None] * HEAD_DIM + offs_d[None, :], mask=rd[:, None], other=0.0)
            m_i = tl.load(MWS + stat_base + rows, mask=rd, other=float("-inf"))
            l_i = tl.load(LWS + stat_base + rows, mask=rd, other=0.0)

            s = mma(q, kT, PREC) * qk_scale2
            visible = cm[None, :]
            if CAUSAL:
                visible = visible & (cols[None, :] <= rows[:, None] + CAUSAL_OFFSET)
            s = tl.where(visible, s, float("-inf"))
            acc, l_i, m_new = online_softmax(acc, l_i, m_i, s, v, qk_scale2, SAFE=True, RAW=False, PREC=PREC)

            # write back to the workspace, or (last visit) the final O_i and lse_i
            wr = rm & (start_n + BLOCK_N < hi)
            tl.store(ows_base + rows[:, None] * HEAD_DIM + offs_d[None, :], acc, mask=wr[:, None])
            tl.store(MWS + stat_base + rows, m_new, mask=wr)
            tl.store(LWS + stat_base + rows, l_i, mask=wr)
            fin = rm & last
            empty = l_i == 0.0
            l_safe = tl.where(empty, 1.0, l_i)
            o = acc / l_safe[:, None]
            lse = tl.where(empty, float("-inf"), (m_new + tl.math.log2(l_safe)) * LN2)
            tl.store(o_base + rows[:, None] * stride_o[2] + offs_d[None, :], cvt(o, O.dtype.element_ty, PREC),
                     mask=fin[:, None])
            tl.store(LSE + stat_base + rows, lse, mask=fin)
            tl.debug_barrier()  # the workspace written here is read by other threads of this CTA later



@launcher("flash1", "fwd")
def flash1_forward(problem: AttentionProblem, schedule: Schedule, q, k, v) -> ForwardResult:
    """Launch flash1_fwd; o and lse (as flash2's forward: a flash2 backward can follow).  The fp32 workspace
    (O, m, l of every row) is allocated here and freed after the launch."""
    p = problem
    rows = (p.batch * p.heads_q, p.seq_q)
    workspace = (torch.empty((*rows, p.head_dim), dtype=torch.float32, device=q.device),
                 torch.empty(rows, dtype=torch.float32, device=q.device),
                 torch.empty(rows, dtype=torch.float32, device=q.device))
    return lse_forward(_flash1_fwd, problem, schedule, q, k, v, workspace=workspace, PREC=dot_precision(p))
