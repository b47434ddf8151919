"""Decode attention over a (paged) KV cache: split-KV with GQA packing, plus a combine launch.

Launches and bytes follow memsim/inference.py's contract exactly:
  decode_split    grid (S, B * units * split_d)   units = heads_kv (GQA packed) or heads_q
  decode_combine  grid (rows, B * units) only when S > 1; rows = query heads per CTA x Nq
A split CTA keeps its query rows (all query heads of one KV head x the new tokens) in registers and
streams K/V tiles of its key range once: one KV tile load serves every query head of the group.  With split_d > 1
the split_d CTAs of a (split, unit) each stream the whole K tiles and head_dim / split_d columns of V, and write those
columns (DecodeSchedule.split_d; session 14).
Scores live in the log2 domain (exp2); the partial results carry their log2-sum-exp, which the
combine launch merges (the max is subtracted before every exponential).

Layouts (flash_attn_with_kvcache): q (B, Nq, Hq, d); k_cache / v_cache (B, Ncache, Hkv, d), or
(num_pages, page_size, Hkv, d) with block_table (B, max_pages) int32; cache_seqlens (B,) int32.
Query row r of sequence b sits at cache position L_b - Nq + r and sees keys c <= L_b - Nq + r.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from memsim.inference import (COMBINE_NUM_WARPS, DecodeProblem, DecodeSchedule, DeviceFacts, auto_num_splits,
                              block_m_for, combine_block_s, estimate_time_graph_s, fused_block_splits, fused_combine,
                              decode_launches, heads_per_cta, loop_compute_s, split_regs_per_thread,
                              split_shared_bytes, units_per_seq)
from memsim.schedule import KERNEL_HEAD_DIMS, ScheduleError, require_bool

from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from ._common import DTYPE_NAMES, LOG2E, dot_precision, interpreting
from ._tl import cvt, mma
from .registry import ForwardResult, launcher


@triton.jit
def _decode_split(Q, K, V, O, OP, LSEP, SEQLENS, BT, CU_Q,
                  stride_qb, stride_qn, stride_qh,
                  stride_kb, stride_kn, stride_kh,
                  stride_vb, stride_vn, stride_vh,
                  stride_ob, stride_on, stride_oh,
                  stride_btb,
                  UNITS, NQ, qk_scale2, NUM_SPLITS,
                  GROUP: tl.constexpr, G_TOTAL: tl.constexpr, HEAD_DIM: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PAGE_SIZE: tl.constexpr,
                  SPLIT: tl.constexpr, PAGE_PREFETCH: tl.constexpr, PREC: tl.constexpr,
                  VARLEN: tl.constexpr, PDL: tl.constexpr = False, CNT=None, FUSED: tl.constexpr = False,
                  RP: tl.constexpr = 1, BLOCK_SF: tl.constexpr = 1, SPLIT_D: tl.constexpr = 1,
                  EARLY: tl.constexpr = False):
    if PDL:  # the combine launch (a programmatic dependent launch) may start once every split CTA has started
        gdc_launch_dependents()
    pid_s = tl.program_id(0)
    # SPLIT_D CTAs per (split, unit), adjacent on the grid: each reads the unit's K tiles whole and DV columns of V
    pid_u = tl.program_id(1) // SPLIT_D
    part = tl.program_id(1) % SPLIT_D
    DV: tl.constexpr = HEAD_DIM // SPLIT_D
    b = pid_u // UNITS
    h0 = (pid_u % UNITS) * GROUP          # first query head of this CTA
    hk = (h0 // G_TOTAL).to(tl.int64)     # its KV head
    b64 = b.to(tl.int64)
    L = tl.load(SEQLENS + b)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    offs_dv = part * DV + tl.arange(0, DV)   # this CTA's columns of V and O
    if EARLY:
        # one split on a contiguous cache of capacity >= BLOCK_N (DecodeSchedule.early_tile; the launcher checks it):
        # the first tile's addresses do not depend on L -- only its mask does -- so its K and V loads go out now, beside
        # the length's, one round trip before the loop's first loads (registers; keys 0..BLOCK_N-1 read whole)
        kT0 = tl.load(K + hk * stride_kh + (b64 * stride_kb + offs_n.to(tl.int64) * stride_kn)[None, :] + offs_d[:, None])
        v0 = tl.load(V + hk * stride_vh + (b64 * stride_vb + offs_n.to(tl.int64) * stride_vn)[:, None]
                     + offs_dv[None, :])
    if VARLEN:  # packed queries: sequence b's nq rows start at row CU_Q[b] (NQ is the longest)
        q_start = tl.load(CU_Q + b).to(tl.int64)
        nq = tl.load(CU_Q + b + 1) - tl.load(CU_Q + b)
        L = tl.where(nq > 0, L, 0)        # a sequence with no query token reads nothing
    else:
        q_start = 0
        nq = NQ
    chunk = tl.cdiv(tl.cdiv(L, NUM_SPLITS), BLOCK_N) * BLOCK_N
    k0 = pid_s * chunk
    k1 = tl.minimum(k0 + chunk, L)
    has_keys = k1 > k0                    # empty split (or empty cache): no loads, no partial written

    # rows m = r * GROUP + g: token r of the group's query head h0 + g (the heads of one token are adjacent)
    offs_m = tl.arange(0, BLOCK_M)
    r = offs_m // GROUP
    g = offs_m % GROUP
    row_ok = r < nq
    q_off = b64 * stride_qb + (q_start + r).to(tl.int64) * stride_qn + (h0 + g).to(tl.int64) * stride_qh
    # SRAM/registers: the query rows (read once), acc (rows x DV fp32), m_i, l_i
    if EARLY:  # (not masked by has_keys: the first tile's math needs q before the loop)
        q = tl.load(Q + q_off[:, None] + offs_d[None, :], mask=row_ok[:, None], other=0.0)
    else:
        q = tl.load(Q + q_off[:, None] + offs_d[None, :], mask=row_ok[:, None] & has_keys, other=0.0)
    qpos = L - nq + r                     # bottom-right: row r sees keys c <= qpos
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, DV], dtype=tl.float32)

    # each iteration reads K_j (cols x d) and V_j (cols x DV: this CTA's columns) of this split's keys -- and, paged, the table entries
    # of its pages: one entry when a tile lies in one page (PAGE_SIZE a multiple of BLOCK_N), else one per key.
    # PAGE_PREFETCH loads the next tile's entries one iteration ahead (loop-carried), so no K/V address
    # waits on a table load issued in the same iteration.  Addresses are one base per tile (a scalar) plus
    # loop-invariant row offsets; with a power-of-two page that divides the tile (PAGE_ROWS), key n of every tile
    # is row n % PAGE_SIZE of the tile's page n // PAGE_SIZE, so those terms are loop-invariant too.
    ONE_PAGE: tl.constexpr = PAGE_SIZE > 0 and PAGE_SIZE % BLOCK_N == 0
    PAGE_ROWS: tl.constexpr = (PAGE_SIZE > 0 and PAGE_SIZE < BLOCK_N and BLOCK_N % PAGE_SIZE == 0
                               and (PAGE_SIZE & (PAGE_SIZE - 1)) == 0)
    PS: tl.constexpr = PAGE_SIZE if PAGE_ROWS else 1
    j_of_n = offs_n // PS                 # PAGE_ROWS: page of key n within its tile, and its row in that page
    rk_of_n = (offs_n % PS).to(tl.int64) * stride_kn
    rv_of_n = (offs_n % PS).to(tl.int64) * stride_vn
    bt_row = BT + b64 * stride_btb
    if PAGE_SIZE > 0 and PAGE_PREFETCH:
        if ONE_PAGE:
            page_next = tl.load(bt_row + k0 // PAGE_SIZE, mask=has_keys, other=0).to(tl.int64)
        elif PAGE_ROWS:
            page_next = tl.load(bt_row + k0 // PS + j_of_n, mask=(k0 + offs_n) < k1, other=0).to(tl.int64)
        else:
            page_next = tl.load(bt_row + (k0 + offs_n) // PAGE_SIZE, mask=(k0 + offs_n) < k1, other=0).to(tl.int64)
    lo = k0
    if EARLY:  # the first tile (k0 = 0), as an iteration of the loop below computes it; keys past L masked, their V
        kmask0 = offs_n < k1  # rows zeroed (whatever the cache holds there)
        s0 = mma(q, kT0, PREC) * qk_scale2
        s0 = tl.where(kmask0[None, :] & (offs_n[None, :] <= qpos[:, None]), s0, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s0, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.math.exp2(m_i - m_safe)
        p0 = tl.math.exp2(s0 - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p0, 1)
        v0 = tl.where(kmask0[:, None], v0, tl.zeros_like(v0))
        acc = acc * alpha[:, None] + mma(cvt(p0, v0.dtype, PREC), v0, PREC)
        m_i = m_new
        lo = k0 + BLOCK_N
    for start_n in range(lo, k1, BLOCK_N):
        cols = start_n + offs_n
        kmask = cols < k1
        if PAGE_SIZE > 0:
            if PAGE_PREFETCH:
                page = page_next
                nxt = start_n + BLOCK_N
                if ONE_PAGE:
                    page_next = tl.load(bt_row + nxt // PAGE_SIZE, mask=nxt < k1, other=0).to(tl.int64)
                elif PAGE_ROWS:
                    page_next = tl.load(bt_row + nxt // PS + j_of_n, mask=(nxt + offs_n) < k1, other=0).to(tl.int64)
                else:
                    page_next = tl.load(bt_row + (nxt + offs_n) // PAGE_SIZE, mask=(nxt + offs_n) < k1,
                                        other=0).to(tl.int64)
            else:
                if ONE_PAGE:
                    page = tl.load(bt_row + start_n // PAGE_SIZE).to(tl.int64)
                elif PAGE_ROWS:
                    page = tl.load(bt_row + start_n // PS + j_of_n, mask=kmask, other=0).to(tl.int64)
                else:
                    page = tl.load(bt_row + cols // PAGE_SIZE, mask=kmask, other=0).to(tl.int64)
            if ONE_PAGE:  # one base per tile (a scalar) + the loop-invariant row offsets
                r0 = tl.cast(start_n % PAGE_SIZE, tl.int64)
                k_row = (page * stride_kb + r0 * stride_kn) + offs_n.to(tl.int64) * stride_kn
                v_row = (page * stride_vb + r0 * stride_vn) + offs_n.to(tl.int64) * stride_vn
            elif PAGE_ROWS:
                k_row = page * stride_kb + rk_of_n
                v_row = page * stride_vb + rv_of_n
            else:
                k_row = page * stride_kb + (cols % PAGE_SIZE).to(tl.int64) * stride_kn
                v_row = page * stride_vb + (cols % PAGE_SIZE).to(tl.int64) * stride_vn
        else:  # one base per tile (a scalar) + the loop-invariant row offsets
            n0 = tl.cast(start_n, tl.int64)
            k_row = (b64 * stride_kb + n0 * stride_kn) + offs_n.to(tl.int64) * stride_kn
            v_row = (b64 * stride_vb + n0 * stride_vn) + offs_n.to(tl.int64) * stride_vn
        kT = tl.load(K + hk * stride_kh + k_row[None, :] + offs_d[:, None], mask=kmask[None, :], other=0.0)
        s = mma(q, kT, PREC) * qk_scale2
        visible = kmask[None, :] & (cols[None, :] <= qpos[:, None])
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)   # a row that has seen nothing yet
        alpha = tl.math.exp2(m_i - m_safe)
        p = tl.math.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + hk * stride_vh + v_row[:, None] + offs_dv[None, :], mask=kmask[:, None], other=0.0)
        acc = acc * alpha[:, None] + mma(cvt(p, v.dtype, PREC), v, PREC)
        m_i = m_new

    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    o = acc / l_safe[:, None]
    if SPLIT:
        # partial: O_s (rows x d fp32, normalised; this CTA's DV columns) and its log2-sum-exp (part 0 writes it:
        # the SPLIT_D CTAs of a unit compute the same statistics), only for a non-empty split
        rows = NQ * GROUP
        base = (pid_u.to(tl.int64) * NUM_SPLITS + pid_s) * rows + offs_m
        wmask = (offs_m < rows) & has_keys
        if VARLEN:
            wmask = wmask & row_ok
        tl.store(OP + base[:, None] * HEAD_DIM + offs_dv[None, :], o, mask=wmask[:, None])
        tl.store(LSEP + base, tl.where(empty, float("-inf"), m_i + tl.math.log2(l_safe)), mask=wmask & (part == 0))
        if FUSED:
            # the combine folded in: every split CTA of this (sequence, unit) counts itself in after its partial is
            # written (the CTA barrier orders every thread's stores before the one thread's release at GPU scope);
            # the last to arrive (acquire) merges the unit's n_b partials -- RP rows (the next power of two >= rows)
            # x BLOCK_SF splits per round, from the L2 (.cg) -- writes O, and sets the counter back to 0
            tl.debug_barrier()
            arrived = tl.atomic_add(CNT + pid_u, 1, sem="acq_rel", scope="gpu")
            if arrived == NUM_SPLITS * SPLIT_D - 1:
                tl.store(CNT + pid_u, 0)  # no CTA of this unit touches it again in this launch
                n_b = tl.where(L > 0, tl.cdiv(L, tl.maximum(chunk, 1)), 0)
                offs_f = tl.arange(0, BLOCK_SF)
                offs_r = tl.arange(0, RP)
                r_c = offs_r // GROUP
                g_c = offs_r % GROUP
                r_ok = offs_r < rows
                if VARLEN:
                    r_ok = r_ok & (r_c < nq)
                m_c = tl.full([RP], float("-inf"), dtype=tl.float32)
                l_c = tl.zeros([RP], dtype=tl.float32)
                acc_c = tl.zeros([RP, HEAD_DIM], dtype=tl.float32)
                for s0 in range(0, n_b, BLOCK_SF):
                    ss = s0 + offs_f
                    ok = (ss < n_b)[:, None] & r_ok[None, :]
                    pb = (pid_u.to(tl.int64) * NUM_SPLITS + ss)[:, None] * rows + offs_r[None, :]
                    lse = tl.load(LSEP + pb, mask=ok, other=float("-inf"), cache_modifier=".cg")
                    o_s = tl.load(OP + pb[:, :, None] * HEAD_DIM + offs_d[None, None, :], mask=ok[:, :, None],
                                  other=0.0, cache_modifier=".cg")
                    m_new = tl.maximum(m_c, tl.max(lse, 0))
                    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
                    alpha = tl.math.exp2(m_c - m_safe)
                    w = tl.math.exp2(lse - m_safe[None, :])
                    l_c = l_c * alpha + tl.sum(w, 0)
                    acc_c = acc_c * alpha[:, None] + tl.sum(w[:, :, None] * o_s, 0)
                    m_c = m_new
                o_c = acc_c / tl.where(l_c == 0.0, 1.0, l_c)[:, None]
                oc_off = (b64 * stride_ob + (q_start + r_c).to(tl.int64) * stride_on
                          + (h0 + g_c).to(tl.int64) * stride_oh)
                tl.store(O + oc_off[:, None] + offs_d[None, :], cvt(o_c, O.dtype.element_ty, PREC), mask=r_ok[:, None])
    else:
        o_off = b64 * stride_ob + (q_start + r).to(tl.int64) * stride_on + (h0 + g).to(tl.int64) * stride_oh
        tl.store(O + o_off[:, None] + offs_dv[None, :], cvt(o, O.dtype.element_ty, PREC), mask=row_ok[:, None])


@triton.jit
def _decode_combine(O, OP, LSEP, SEQLENS, CU_Q,
                    stride_ob, stride_on, stride_oh,
                    UNITS, NQ, NUM_SPLITS,
                    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr,
                    BLOCK_N: tl.constexpr, PREC: tl.constexpr, VARLEN: tl.constexpr, PDL: tl.constexpr = False):
    # one CTA per output row (query token r of head h0 + g): reads the n_b non-empty partials of that
    # row (d x 4 + 4 bytes each), BLOCK_S of them per round trip, and writes the row of O once
    m = tl.program_id(0)
    pid_u = tl.program_id(1)
    b = pid_u // UNITS
    h0 = (pid_u % UNITS) * GROUP
    L = tl.load(SEQLENS + b)
    r = m // GROUP
    g = m % GROUP
    if VARLEN:  # a row past this sequence's nq query tokens moves nothing
        q_start = tl.load(CU_Q + b).to(tl.int64)
        row_ok = r < tl.load(CU_Q + b + 1) - tl.load(CU_Q + b)
        L = tl.where(row_ok, L, 0)
    else:
        q_start = 0
    chunk = tl.cdiv(tl.cdiv(L, NUM_SPLITS), BLOCK_N) * BLOCK_N
    n_b = tl.where(L > 0, tl.cdiv(L, tl.maximum(chunk, 1)), 0)
    rows = NQ * GROUP
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, HEAD_DIM)
    if PDL:  # started before the split launch ended: its partials are visible after this wait
        gdc_wait()
    m_i = tl.max(tl.full([BLOCK_S], float("-inf"), dtype=tl.float32), 0)
    l_i = tl.sum(tl.zeros([BLOCK_S], dtype=tl.float32), 0)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    for s0 in range(0, n_b, BLOCK_S):
        ss = s0 + offs_s
        smask = ss < n_b
        base = (pid_u.to(tl.int64) * NUM_SPLITS + ss) * rows + m
        lse = tl.load(LSEP + base, mask=smask, other=float("-inf"))
        o_s = tl.load(OP + base[:, None] * HEAD_DIM + offs_d[None, :], mask=smask[:, None], other=0.0)
        m_new = tl.maximum(m_i, tl.max(lse, 0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.math.exp2(m_i - m_safe)
        w = tl.math.exp2(lse - m_safe)
        l_i = l_i * alpha + tl.sum(w, 0)
        acc = acc * alpha + tl.sum(w[:, None] * o_s, 0)
        m_i = m_new
    o = acc / tl.where(l_i == 0.0, 1.0, l_i)
    o_off = b.to(tl.int64) * stride_ob + (q_start + r).to(tl.int64) * stride_on + (h0 + g).to(tl.int64) * stride_oh
    if VARLEN:
        tl.store(O + o_off + offs_d, cvt(o, O.dtype.element_ty, PREC), mask=row_ok & (offs_d < HEAD_DIM))
    else:  # every launched row is a row of O
        tl.store(O + o_off + offs_d, cvt(o, O.dtype.element_ty, PREC))


# --- checks ---------------------------------------------------------------------------------------
def _device_ok(name, t):
    if t.device.type == "cuda":
        if interpreting():
            raise RuntimeError(f"{name} is on {t.device} but TRITON_INTERPRET=1 runs kernels on the CPU")
    elif t.device.type == "cpu":
        if not interpreting():
            raise RuntimeError(f"{name} is a CPU tensor; the Triton kernels need a CUDA device "
                               f"(or TRITON_INTERPRET=1 set before importing triton)")
    else:
        raise RuntimeError(f"{name} is on unsupported device {t.device}")


def check_decode_inputs(q, k_cache, v_cache, cache_seqlens, block_table=None, *, cu_seqlens_q=None,
                        max_seqlen_q=None, check_values=True):
    """Shapes, dtypes, devices and (when `check_values`) the contents of cache_seqlens, block_table and
    cu_seqlens_q.

    Returns (B, Nq, Hq, Hkv, d, page_size or None, capacity); with cu_seqlens_q (packed queries, q of shape
    (total_q, Hq, d)) Nq is max_seqlen_q (read from cu_seqlens_q when not given).  Raises ValueError/TypeError
    naming the argument that does not agree and what is allowed."""
    require_bool("check_values", check_values)
    varlen = cu_seqlens_q is not None
    if varlen:
        if not isinstance(q, torch.Tensor):
            raise TypeError(f"q must be a torch.Tensor, got {type(q).__name__}")
        if q.dim() != 3:
            raise ValueError(f"with cu_seqlens_q, q must be 3-D (total_q, heads_q, head_dim): the sequences' query "
                             f"tokens packed one after another; got shape {tuple(q.shape)}")
        q = q.unsqueeze(0)
    elif max_seqlen_q is not None:
        raise ValueError("max_seqlen_q goes with cu_seqlens_q (packed queries of several lengths); without it every "
                         "sequence has q.shape[1] query tokens")
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D, got shape {tuple(t.shape)}; q is (batch, seq_q, heads_q, head_dim), "
                             f"k_cache/v_cache (batch, seq_cache, heads_kv, head_dim) or (num_pages, page_size, "
                             f"heads_kv, head_dim) with a block_table")
        if t.dtype not in DTYPE_NAMES:
            raise TypeError(f"{name} has dtype {t.dtype}; supported: float16, bfloat16, float32")
        if t.numel() and t.stride(-1) != 1:
            raise ValueError(f"{name} must have a contiguous last dimension (stride 1), got strides {tuple(t.stride())}")
        _device_ok(name, t)
    if not (q.dtype == k_cache.dtype == v_cache.dtype):
        raise TypeError(f"q, k_cache, v_cache must share one dtype, got {q.dtype}, {k_cache.dtype}, {v_cache.dtype}")
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache and v_cache must have the same shape, got {tuple(k_cache.shape)} and "
                         f"{tuple(v_cache.shape)}")
    B, Nq, Hq, d = q.shape
    if varlen:
        B, Nq = _check_cu_seqlens_q(cu_seqlens_q, max_seqlen_q, cache_seqlens, q.shape[1], q.device, check_values)
    _, page_or_n, Hkv, dk = k_cache.shape
    if dk != d:
        raise ValueError(f"q and k_cache must have the same head_dim, got {d} and {dk}")
    if d not in KERNEL_HEAD_DIMS:
        raise ScheduleError(f"head_dim {d} is not supported by the kernels; supported: {KERNEL_HEAD_DIMS}")
    if Hkv == 0 or Hq % Hkv:
        raise ValueError(f"heads of q ({Hq}) must be a multiple of heads of k_cache ({Hkv}) (GQA/MQA)")
    if min(B, Nq, Hq) == 0 and not (varlen and Hq and B):
        raise ValueError(f"empty q {tuple(q.shape)}")
    if not isinstance(cache_seqlens, torch.Tensor) or cache_seqlens.dtype != torch.int32 \
            or tuple(cache_seqlens.shape) != (B,):
        got = (f"{tuple(cache_seqlens.shape)} {cache_seqlens.dtype}" if isinstance(cache_seqlens, torch.Tensor)
               else type(cache_seqlens).__name__)
        raise ValueError(f"cache_seqlens must be an int32 tensor of shape ({B},) (one length per sequence), got {got}")
    if cache_seqlens.device != q.device or k_cache.device != q.device or v_cache.device != q.device:
        raise RuntimeError("q, k_cache, v_cache, cache_seqlens (and block_table) must be on one device")
    if block_table is None:
        if k_cache.shape[0] != B:
            raise ValueError(f"contiguous k_cache must have batch {B} in dim 0 like q, got {tuple(k_cache.shape)}; "
                             f"a paged cache needs block_table")
        page_size, capacity = None, page_or_n
    else:
        if not isinstance(block_table, torch.Tensor) or block_table.dtype != torch.int32 or block_table.dim() != 2 \
                or block_table.shape[0] != B:
            got = (f"{tuple(block_table.shape)} {block_table.dtype}" if isinstance(block_table, torch.Tensor)
                   else type(block_table).__name__)
            raise ValueError(f"block_table must be an int32 tensor of shape ({B}, max_pages_per_seq), got {got}")
        if block_table.device != q.device:
            raise RuntimeError(f"block_table is on {block_table.device}, q on {q.device}")
        if block_table.numel() and block_table.stride(-1) != 1:
            raise ValueError(f"block_table must have a contiguous last dimension, got strides {tuple(block_table.stride())}")
        page_size, capacity = page_or_n, page_or_n * block_table.shape[1]
        if page_size == 0:
            raise ValueError("paged k_cache has page_size 0 (dim 1)")
    if check_values:
        lens = cache_seqlens.cpu()
        lo, hi = int(lens.min()), int(lens.max())
        if lo < 0 or hi > capacity:
            bad = int(((lens < 0) | (lens > capacity)).nonzero()[0])
            raise ValueError(f"cache_seqlens[{bad}] = {int(lens[bad])} is outside 0..{capacity} (the tokens the cache "
                             f"holds per sequence{'' if block_table is None else ': page_size x max_pages_per_seq'})")
        if block_table is not None:
            num_pages = k_cache.shape[0]
            bt = block_table.cpu()
            need = (lens.to(torch.int64) + page_size - 1) // page_size
            used = torch.arange(bt.shape[1])[None, :] < need[:, None]
            bad = used & ((bt < 0) | (bt >= num_pages))
            if bool(bad.any()):
                bb, pp = (int(x) for x in bad.nonzero()[0])
                raise ValueError(f"block_table[{bb}, {pp}] = {int(bt[bb, pp])} names no page: pages in use must be in "
                                 f"0..{num_pages - 1} (k_cache has {num_pages} pages)")
    return B, Nq, Hq, Hkv, d, page_size, capacity


def _check_cu_seqlens_q(cu, max_seqlen_q, cache_seqlens, total_q, device, check_values):
    """(B, max_seqlen_q) of packed queries: cu_seqlens_q int32 (B + 1,), B = len(cache_seqlens); cu[0] = 0,
    non-decreasing, cu[B] = total_q; every length <= max_seqlen_q (which is read from cu when None)."""
    if not isinstance(cache_seqlens, torch.Tensor) or cache_seqlens.dim() != 1:
        raise ValueError("cache_seqlens must be a 1-D int32 tensor (one length per sequence); with cu_seqlens_q its "
                         "length is the batch")
    B = cache_seqlens.shape[0]
    if not isinstance(cu, torch.Tensor) or cu.dtype != torch.int32 or tuple(cu.shape) != (B + 1,):
        got = f"{tuple(cu.shape)} {cu.dtype}" if isinstance(cu, torch.Tensor) else type(cu).__name__
        raise ValueError(f"cu_seqlens_q must be an int32 tensor of shape ({B + 1},) (batch + 1 offsets into q's "
                         f"rows, cu_seqlens_q[b + 1] - cu_seqlens_q[b] = query tokens of sequence b), got {got}")
    if cu.device != device:
        raise RuntimeError(f"cu_seqlens_q is on {cu.device}, q on {device}")
    if max_seqlen_q is not None and (isinstance(max_seqlen_q, bool) or not isinstance(max_seqlen_q, int)
                                     or max_seqlen_q < 0):
        raise ValueError(f"max_seqlen_q must be a non-negative int (the longest query of the batch), got "
                         f"{max_seqlen_q!r}")
    if not check_values:
        if max_seqlen_q is None:
            raise ValueError("max_seqlen_q is needed when the values are not checked (check_values=False or under "
                             "CUDA-graph capture): the kernels' row tile follows it and cu_seqlens_q stays on the device")
        return B, max_seqlen_q
    c = cu.cpu().to(torch.int64)
    n = c[1:] - c[:-1]
    if int(c[0]) != 0 or int(c[-1]) != total_q:
        raise ValueError(f"cu_seqlens_q must run from 0 to q.shape[0] = {total_q}, got {int(c[0])} .. {int(c[-1])}")
    if bool((n < 0).any()):
        bad = int((n < 0).nonzero()[0])
        raise ValueError(f"cu_seqlens_q must not decrease: cu_seqlens_q[{bad + 1}] = {int(c[bad + 1])} < "
                         f"cu_seqlens_q[{bad}] = {int(c[bad])}")
    longest = int(n.max()) if B else 0
    if max_seqlen_q is None:
        max_seqlen_q = longest
    elif longest > max_seqlen_q:
        bad = int((n > max_seqlen_q).nonzero()[0])
        raise ValueError(f"sequence {bad} has {int(n[bad])} query tokens (cu_seqlens_q), more than max_seqlen_q = "
                         f"{max_seqlen_q}")
    return B, max_seqlen_q


# --- the split-count choice -------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def device_facts(device_index: int | None) -> DeviceFacts:
    """The split rule's figures: the h100-sxm preset, with the SM count of the device in use."""
    from memsim.hardware import load_hardware
    hw = load_hardware("h100-sxm")
    sms = None
    if device_index is not None and torch.cuda.is_available():
        sms = torch.cuda.get_device_properties(device_index).multi_processor_count
    return DeviceFacts.from_hardware(hw, num_sms=sms)


@functools.lru_cache(maxsize=4096)
def _auto(problem: DecodeProblem, base: DecodeSchedule, device_index):
    return auto_num_splits(problem, base, device_facts(device_index))


#: kernels.decode's default schedule folds the combine into the split launch (combine_fused) at split counts up to this
#: (session 13, H100, benchmarks/decode_cold.py --combine pdl,fused over rotated caches, reports/h100-sxm/decode/
#: cold-session13/: fused at S = 2 0.7-3.0 us faster than the programmatic dependent launch, e.g. 8 x 1k 17.47 ->
#: 16.80 us, 8 x 8k 91.43 -> 90.74, 64 x 1k 100.6 -> 97.6; at S >= 4 slower, e.g. 1 x 8k S = 16 17.06 -> 17.94: its
#: partial tiles -- BLOCK_SF x rows x d fp32 per round -- raise the kernel's registers, 128 -> 181 at S = 16, and ptxas
#: then compiles the K/V loop into 424 SASS instructions per tile instead of 379; at S = 2, 143 registers and 383)
FUSED_DEFAULT_MAX_SPLITS = 2


def default_decode_schedule(device) -> DecodeSchedule:
    """The tiles kernels.decode uses without a schedule.  On the GPU the combine is a programmatic dependent launch
    of the split launch (combine_pdl; session 12, H100, benchmarks/decode_cold.py --pdl 0,1 over rotated caches: 0.3-1.2
    us faster at every one-wave split launch measured, e.g. 1 x 8k S = 16 17.48 -> 17.06 us, 8 x 1k S = 2 17.69 ->
    17.42; multi-wave launches of many combine CTAs up to 3 % slower, 8 x 1k S = 16 19.36 -> 19.93: not an auto pick;
    reports/h100-sxm/decode/cold-session12/); decode_plan then folds it into the split launch at S <= 2
    (`FUSED_DEFAULT_MAX_SPLITS`)."""
    if torch.device(device).type != "cuda":
        return DecodeSchedule(block_n=16, num_warps=1, num_stages=1)
    return DecodeSchedule(block_n=64, num_warps=4, num_stages=3, combine_pdl=True)


#: the other tile kernels.decode's default weighs (session 14): two CTAs per (split, unit), each reading the unit's
#: whole K tile and half the columns of V (DecodeSchedule.split_d), 128-key tiles, at ONE split -- a launch of as many
#: CTAs as the rule's 2-way key split, with no partials or combine.  H100, rotated caches, CUDA graphs: the split_d A/B
#: (reports/h100-sxm/decode/splitd-session14/: 8 x 1k 16.84 -> 15.57 us, 71 % of the read rate; 8 x 8k 90.93 -> 89.47)
#: and benchmark run 8 (reports/h100-sxm/decode/bench-session14-run8/: the pick beside the session-13 default in the
#: same run, contiguous 8 x 1k / 8k / 16k / 32k / 128k 0.908 / 0.981 / 0.995 / 0.987 / 0.987 of its time).  Weighed
#: only there -- contiguous caches whose default-tile pick is S = 2 -- because elsewhere run 8 measured it slower where
#: the rule's form said faster: paged caches at 8k+ keys (16-row pages 1.066-1.090x, 64-row 1.015-1.045x; faster only
#: at 8 x 1k, 0.971 / 0.895x) and batch 64 (64 x 1k 1.002x, 64 x 8k 1.027x): memsim/MODEL.md decode, the split_d row
SPLIT_D_TILE = {"block_n": 128, "split_d": 2, "num_splits": 1}


def _split_d_candidate(p: DecodeProblem, s: DecodeSchedule, c: int) -> DecodeSchedule | None:
    """SPLIT_D_TILE on schedule `s`, where kernels.decode weighs it: a contiguous cache whose default-tile pick is
    c = 2 splits, a head dim it divides into parts of >= 16, and a loop the model knows (memsim/decode_compiled_sm90.json:
    a measured or class compute per tile); else None."""
    from dataclasses import replace
    if p.paged or c != 2:
        return None
    alt = replace(s, **SPLIT_D_TILE, combine_fused=False)
    if p.head_dim % alt.split_d or p.head_dim // alt.split_d < 16 or \
            loop_compute_s(p, alt, device_facts(None)) is None:
        return None
    return alt


#: the other K/V tiles kernels.decode's default weighs, each at the rule's own split count for it and the default
#: combine (session 15): 128-key tiles (two tiles of 64 KB in flight; 139 KB of shared memory, one CTA per SM).  H100,
#: rotated caches, CUDA graphs, SDPA cuDNN in the same process.  Call 1 (reports/h100-sxm/decode/s15-call1/, 02:41 UTC):
#: 64 x 8k the session-14 default (S = 4, 64-key tiles) 718.0 us, bn128 S = 1 693.7 (1.004x cuDNN); 64 x 1k 95.67 ->
#: 93.70 (bn32 92.38, cuDNN 92.13).  Call 2 (reports/h100-sxm/decode/s15-call2/, 02:53 UTC, the rule's picks beside
#: the session-14 default in the same run, predicted before the call): contiguous 64 x 1k / 8k / 16k / 32k 0.984 /
#: 0.964 / 0.984 / 0.988 of the time, 1.005-1.007x cuDNN from 8k on; on PAGED caches mixed (16-row pages 0.934 / 0.992
#: / 0.998 / 1.013 at batch 64 and 1.118 at 8 x 1k; 64-row 1.018 / 0.989 / 0.986 / 1.002, 8 x 1k 0.997) -- there the
#: form, whose 128-key paged loops take the compute per tile of a class ratio measured on 64-key tiles, was 11 % fast
#: at 8 x 1k paged16.  So a tile is weighed only where the `loop` microbenchmark measured that loop itself
#: (`_own_loop_measured`): today the contiguous 128-key tile.  Session 16 (reports/h100-sxm/decode/s16-call1/, 04:30
#: UTC) measured the paged 128-key loops themselves (ncu, one CTA per SM, hidden: 16-row pages 1.778 us per tile, 64-row
#: 1.698; the class ratio had priced them 1.586 / 1.552) and they are in the table; with them the form moves 114 paged
#: picks of a 648-shape grid to the 128-key tile, 8 of them timed in call 2: 5 faster (0.934-0.998), 3 slower (64 x 1k
#: paged64 1.018, 64 x 32k paged16 / paged64 at S = 3 1.013 / 1.002).  Not adopted on paged caches
#: (`TILE_CANDIDATES_PAGED`) until the moved picks are timed: notes/decode.md, session 16.
TILE_CANDIDATES = ({"block_n": 128},)
TILE_CANDIDATES_PAGED = False


def _own_loop_measured(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts) -> bool:
    """Whether the `loop` microbenchmark measured this loop's own compute per tile (memsim/decode_compiled_sm90.json
    "measured_loop" holds a variant of the same tile, stages, warps, head dim, dtype, layout and rows), not only its
    layout class's ratio."""
    from memsim.inference import _loop_key_base, measured_loop_compute
    base = _loop_key_base(p, s) + "-"
    return any(k.startswith(base) for k in ((measured_loop_compute(f.name) or {}).get("variants") or {}))


def _tile_candidates(p: DecodeProblem, s: DecodeSchedule, device_index) -> list:
    """(schedule, why) of each TILE_CANDIDATES tile on schedule `s` at the rule's split count for that tile and the
    default combine, where the preset admits the tile (shared memory, registers: at least one CTA per SM) and the
    `loop` microbenchmark measured the tile's own loop (`_own_loop_measured`); none on a paged cache unless
    TILE_CANDIDATES_PAGED."""
    from dataclasses import replace
    f = device_facts(device_index)
    out = []
    if p.paged and not TILE_CANDIDATES_PAGED:
        return out
    for t in TILE_CANDIDATES:
        alt = replace(s, **t)
        if alt == s or not _own_loop_measured(p, alt, f) or loop_compute_s(p, alt, f) is None or \
                f.ctas_per_sm(split_shared_bytes(p, alt), alt.num_warps, split_regs_per_thread(p, alt)) < 1:
            continue
        c, why = _auto(p, alt, device_index)
        out.append((replace(alt, num_splits=c, combine_fused=1 < c <= FUSED_DEFAULT_MAX_SPLITS),
                    f"block_n {alt.block_n}: {why}"))
    return out


#: The 32-key tile at one split where the form's pick takes more than one wave of its CTAs, the 32-key launch fits ONE
#: wave (5 CTAs per SM on the H100 preset, 4 on 16-row pages with page_prefetch) and the cache is short (session 18).
#: Why: the same bytes, but a multi-wave launch ends with its slowest SMs' last CTAs (session 17: ~3.6 us after the
#: median CTA at 64 x 1k for the 128-key tile), and on paged caches the form's multi-split picks add a combine; the
#: 32-key launch has every CTA resident from the start.  H100 80GB HBM3, bf16, 32 / 8 heads, d = 128, one query token,
#: rotated caches, CUDA-graph medians, old and new interleaved in one process, every repeat of the new below every
#: repeat of the old unless said:
#: * contiguous (old: bn128 S = 1; reports/h100-sxm/decode/s18-call1/tile.json, 07:18 UTC): bn32 / bn128 time 0.990
#:   (64 x 1k, 512 CTAs), 0.972 (48 x 1k), 0.993 (80 x 1k, 640 CTAs), 0.965 (64 x 512), 0.962 (32 x 1k), 0.994
#:   (64 x 2k), 0.976 (32 x 2k); s18-call2/paged.json (07:30 UTC) again 0.988 / 0.964 / 0.975 at 64 / 32 / 48 x 1k but
#:   1.003 at 64 x 2k (a tie over the two runs); and 1.088 at 128 x 1k (1024 CTAs, 1.55 waves of the 32-key tile);
#:   session 16: 0.954 / 0.971 / 0.996 at 33 / 66 / 64 x 1k, 1.088 at 99 x 1k (792 CTAs).
#: * paged, page_prefetch on (s18-call2/paged.json; old: the form's bn64 pick): 64 x 1k paged16 S = 4 0.884, paged64
#:   S = 1 (512 CTAs on 396 slots) 0.974; 64 x 2k paged16 S = 4 0.935, paged64 S = 3 0.941; where the old pick fits one
#:   wave (48 / 32 x 1k, bn64 S = 1) bn32 ran 0.983 / 0.994 (48 x 1k) and 1.000 / 1.002 (32 x 1k, ties): not moved.
#: The graph form ranks the old picks first at these shapes (its residual: 32 x 1k contiguous predicted bn128 46.97
#: vs bn32 48.72 us, measured 49.27 vs 47.40), so this is a measured rule, not the form's pick.  SHORT_TILE_MAX_KEYS is
#: the longest cache it was measured on, SHORT_TILE_ROWS the measured CTAs' query rows (4 query heads per KV head, one
#: token), SHORT_TILE_PAGES the measured layouts -- not fitted thresholds; other rows per CTA (32 / 32, 64 / 8 heads:
#: untimed) and longer caches keep the form's pick.  On a grid of 648 (batch 1-128 x 512-128k x 32/8, 32/32, 64/8
#: heads x contiguous, 16- and 64-row pages) it moves 12 picks: 32 / 64 x 512 / 1k / 2k contiguous and 64 x 512 / 1k /
#: 2k paged16 / paged64, all at 32 / 8 heads (64 x 512 paged untimed).
SHORT_TILE = {"block_n": 32}
SHORT_TILE_MAX_KEYS = 2048
SHORT_TILE_ROWS = 4
SHORT_TILE_PAGES = (None, 16, 64)
#: SHORT_TILE also in place of a form's pick that fits one wave itself (session 20), on a contiguous cache where the
#: 32-key launch averages at least SHORT_TILE_ONE_WAVE_MIN_PER_SM CTAs per SM.  Measured (H100 80GB HBM3, as above;
#: reports/h100-sxm/decode/s20-call3/sweep3.json, 12:21 UTC, one process, the default twice): where the form picks
#: bn64 at one split (3 CTAs per SM, one wave) bn32 / bn64 ran 0.968 at 24 x 1k (192 CTAs, 1.45 per SM), 0.940 at
#: 36 x 1k (288), 0.954 at 40 x 1k (320), 0.950 at 40 x 2k (320; session 16 0.955) -- 1.019-1.092x cuDNN where bn64
#: was 0.986-1.027x -- and 1.032 at 20 x 1k (160 CTAs, 1.21 per SM: most SMs hold one CTA, whose 32-key loop is the
#: slower per byte).  The edge is the fewest CTAs per SM measured faster (24 x 1k), not fitted; paged caches and other
#: rows per CTA were not timed this way and keep the form's one-wave pick.  The graph form ranks bn64 first at all
#: five (it is 5-7 % fast on bn64 there): a measured rule, not the form's pick.
SHORT_TILE_ONE_WAVE_MIN_PER_SM = 1.45


def _short_tile_candidate(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts) -> DecodeSchedule | None:
    """SHORT_TILE at one split in place of the form's pick `s`, where the rule above applies (the pick does not fit one
    wave, or on a contiguous cache the 32-key launch has >= SHORT_TILE_ONE_WAVE_MIN_PER_SM CTAs per SM), else None."""
    from dataclasses import replace
    if p.page_size not in SHORT_TILE_PAGES or p.max_seq_q != 1 or p.capacity_kv > SHORT_TILE_MAX_KEYS or \
            heads_per_cta(p, s) * p.max_seq_q != SHORT_TILE_ROWS:
        return None
    alt = replace(s, **SHORT_TILE, num_splits=1, split_d=1, combine_fused=False)
    if alt == s or loop_compute_s(p, alt, f) is None:
        return None

    def ctas_slots(x: DecodeSchedule) -> tuple:
        g = decode_launches(p, x)[0].grid
        per_sm = f.ctas_per_sm(split_shared_bytes(p, x), x.num_warps, split_regs_per_thread(p, x))
        return g[0] * g[1] * g[2], f.num_sms * per_sm
    (c_alt, n_alt), (c_s, n_s) = ctas_slots(alt), ctas_slots(s)
    one_wave_too = p.page_size is None and c_alt >= SHORT_TILE_ONE_WAVE_MIN_PER_SM * f.num_sms  # (session 20)
    return alt if c_alt <= n_alt and (c_s > n_s or one_wave_too) else None


#: kernels.decode's default loads the first K/V tile beside the sequence length (DecodeSchedule.early_tile) where the
#: card ran it faster -- a measured rule, like SHORT_TILE: on the SHORT_TILE pick (32-key tile, one split, contiguous,
#: 4 query rows) with a capacity of at most EARLY_TILE_MAX_KEYS keys, more than EARLY_TILE_MIN_PER_SM CTAs per SM on
#: average, and the early launch in one wave (its kernel holds 102 registers, not 96: 4 CTAs per SM, not 5).
#: H100, session 19 call 1 (reports/h100-sxm/decode/s19-call1/: the default pick and the same schedule with early_tile
#: interleaved, rotated caches, CUDA graphs; every repeat apart): 64 x 512 0.978, 64 x 1k 0.990 (91.90 us = 1.003x
#: cuDNN, the old default 0.993x), 48 x 1k 0.993 -- faster; 32 x 1k (2 CTAs per SM) 1.002, 64 x 2k 1.003 -- not;
#: one CTA per SM slower (8 x 1k split_d +6.3 %, 16 x 1k +1.4 %, 8 x 8k +0.8 %, 64 x 8k +1.0 %, 128 x 1k +6.4 %), and
#: 80 x 1k, two waves at 4 per SM, +9.5 %.  Why (the model's `early_bubble_s`): Triton puts the loop's prologue loads
#: after the peeled tile's math, so a CTA streams its first tile alone and then waits it -- hidden where the SM's other
#: CTAs keep the DRAM busy.  The edges are the measured shapes' (2k keys: slower), not fitted.  Session 20 (call 4,
#: reports/h100-sxm/decode/s20-call4/, the picks SHORT_TILE_ONE_WAVE_MIN_PER_SM moved, with and without early_tile):
#: 34 x 1k (2.06 CTAs per SM) 1.010-1.015, 36 x 768 (2.18) 1.003, 38 x 1k (2.30) 0.999, 42 x 1k (2.55) 1.001 -- a
#: tie or a loss below 48 x 1k's 2.91 per SM (0.993-0.997, the fewest measured faster), so the edge moved from 2 to
#: 2.9 CTAs per SM (44 x 1k, 2.67: a tie in call 3).
EARLY_TILE_DEFAULT = True
EARLY_TILE_MAX_KEYS = 1024
EARLY_TILE_MIN_PER_SM = 2.9


def _early_tile_candidate(p: DecodeProblem, s: DecodeSchedule) -> DecodeSchedule | None:
    """`s` with early_tile, where it applies (one split, contiguous, capacity >= block_n, the early kernel compiled
    in memsim/decode_compiled_sm90.json), else None."""
    from dataclasses import replace
    from memsim.inference import _compiled_table, decode_loop_key
    if s.num_splits != 1 or p.paged or p.capacity_kv < s.block_n or s.early_tile:
        return None
    alt = replace(s, early_tile=True)
    return alt if decode_loop_key(p, alt) in _compiled_table() else None


def _early_tile_rule(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts) -> DecodeSchedule | None:
    """The pick `s` with early_tile where the measured rule above (EARLY_TILE_DEFAULT) applies, else None."""
    alt = _early_tile_candidate(p, s) if EARLY_TILE_DEFAULT else None
    if alt is None or s.block_n != SHORT_TILE["block_n"] or s.split_d != 1 or p.max_seq_q != 1 or \
            p.capacity_kv > EARLY_TILE_MAX_KEYS or heads_per_cta(p, s) * p.max_seq_q != SHORT_TILE_ROWS:
        return None
    g = decode_launches(p, alt)[0].grid
    ctas = g[0] * g[1] * g[2]
    slots = f.num_sms * f.ctas_per_sm(split_shared_bytes(p, alt), alt.num_warps, split_regs_per_thread(p, alt))
    return alt if EARLY_TILE_MIN_PER_SM * f.num_sms < ctas <= slots else None


def _rank_time_s(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts) -> float:
    """The graph form's time as the split rule ranks with it (`memsim.inference.RULE_RATE_SPREAD`)."""
    from memsim.inference import RULE_RATE_SPREAD
    return estimate_time_graph_s(p, s, f, rate_spread=RULE_RATE_SPREAD)["time_s"]


@functools.lru_cache(maxsize=4096)
def _auto_tile(problem: DecodeProblem, base: DecodeSchedule, device_index, gpu: bool):
    """(schedule, why): the rule's split count on `base` with the default's combine there (fused at S <=
    FUSED_DEFAULT_MAX_SPLITS on the GPU), or on the GPU whichever of `_split_d_candidate` and `_tile_candidates`
    `estimate_time_graph_s` predicts fastest (the default tile on a tie)."""
    from dataclasses import replace
    c, why = _auto(problem, base, device_index)
    sc = replace(base, num_splits=c)
    if not gpu:
        return sc, why
    sc = replace(sc, combine_fused=1 < c <= FUSED_DEFAULT_MAX_SPLITS)
    f = device_facts(device_index)
    best, best_why, t_best = sc, why, _rank_time_s(problem, sc, f)
    alt = _split_d_candidate(problem, base, c)
    cands = ([(alt, f"split_d {alt.split_d}, block_n {alt.block_n}, 1 split")] if alt is not None else []) + \
        _tile_candidates(problem, base, device_index)
    for s2, w2 in cands:
        t2 = _rank_time_s(problem, s2, f)
        if t2 < t_best:
            best, best_why, t_best = s2, (f"{w2}: predicted {t2 * 1e6:.1f} us in a CUDA graph vs "
                                          f"{_rank_time_s(problem, sc, f) * 1e6:.1f} us at the "
                                          f"default tile's {why}"), t2
    short = _short_tile_candidate(problem, best, f)
    if short is not None:
        best, best_why = short, (f"block_n {short.block_n}, 1 split: {problem.batch * units_per_seq(problem, short)}"
                                 f" CTAs fit one wave of the {short.block_n}-key tile (measured rule, "
                                 f"SHORT_TILE) in place of {best_why}")
    early = _early_tile_rule(problem, best, f)
    if early is not None:
        best, best_why = early, f"{best_why}; the first tile beside the length (measured rule, EARLY_TILE_DEFAULT)"
    return best, best_why


def choose_schedule(p: DecodeProblem, s: DecodeSchedule, device) -> tuple:
    """(schedule, why) kernels.decode runs for problem `p` from base schedule `s` (the default's, or a paged one with
    page_prefetch): on the GPU the rule's split count (`memsim.inference.auto_num_splits`) with the default combine
    (`_default_combine`), or SPLIT_D_TILE where `_split_d_candidate` applies and the model predicts it faster
    (`_auto_tile`); in the interpreter the rule's split count on `s`."""
    dev = torch.device(device)
    idx = dev.index if dev.type == "cuda" else None
    if idx is None and dev.type == "cuda":
        idx = torch.cuda.current_device()
    if dev.type != "cuda":  # the interpreter: the rule's split count on the given tile
        from dataclasses import replace
        c, why = _auto(p, s, idx)
        return replace(s, num_splits=c), why
    return _auto_tile(p, s, idx, True)


#: kernels.decode's default on a paged cache on the GPU loads the block-table entries of the next K/V tile one tile
#: ahead (DecodeSchedule.page_prefetch), so that the tile loop stays pipelined (without it Triton keeps one buffer:
#: the K/V addresses depend on a load in the same iteration).  Until session 15 the default left it off, while every
#: benchmark row of the goals ran it on.  H100, benchmark run 5 (reports/h100-sxm/decode/bench-session11-run5/, caches
#: rotated, 2026-11-26 17:35 UTC): on all 28 paged shapes (batch 1 / 8 / 64, 1k-128k, 16- and 64-row pages, each at
#: its auto split count) prefetch on took 0.910-1.000x the time of prefetch off (64 x 1k paged16 98.13 vs 107.84 us,
#: 8 x 1k paged16 19.03 vs 20.00); exact on the card with and without it (kernels.decode_testing's prefetch cases).
PAGED_PREFETCH_DEFAULT = True


def _default_combine(s: DecodeSchedule, num_splits: int, device) -> DecodeSchedule:
    """The default schedule's combine at this split count: folded into the split launch up to FUSED_DEFAULT_MAX_SPLITS
    on the GPU, else the programmatic dependent launch."""
    from dataclasses import replace
    if torch.device(device).type != "cuda":
        return s
    return replace(s, combine_fused=1 < num_splits <= FUSED_DEFAULT_MAX_SPLITS)


def decode_plan(q, k_cache, v_cache, cache_seqlens, *, cu_seqlens_q=None, max_seqlen_q=None, block_table=None,
                scale=None, num_splits=None, schedule: DecodeSchedule | None = None, check_values: bool = True):
    """(DecodeProblem, DecodeSchedule, why) that `decode` would run.

    The problem has every sequence at the cache *capacity* (the lengths stay on the device) and, with packed
    queries (cu_seqlens_q), every sequence at max_seqlen_q query tokens; with
    num_splits=None the split count is `memsim.inference.auto_num_splits` on that problem for this
    device (the closed form of the model's mechanism), and `why` says what it weighed.  With a `schedule`,
    its num_splits is used unless num_splits="auto" (then the rule runs on that schedule's tiles)."""
    require_bool("check_values", check_values)
    if scale is not None:
        from .api import _check_scale  # True would be taken as the number 1.0
        scale = _check_scale("scale", scale)
    B, Nq, Hq, Hkv, d, page, cap = check_decode_inputs(q, k_cache, v_cache, cache_seqlens, block_table,
                                                       cu_seqlens_q=cu_seqlens_q, max_seqlen_q=max_seqlen_q,
                                                       check_values=check_values)
    if Nq == 0:
        raise ValueError("no query token in the batch (cu_seqlens_q all equal): there is nothing to plan")
    p = DecodeProblem(Hq, Hkv, d, (Nq,) * B, (cap,) * B, dtype=DTYPE_NAMES[q.dtype], page_size=page, scale=scale,
                      capacity_kv=cap)
    s = schedule if schedule is not None else default_decode_schedule(q.device)
    if schedule is None and page is not None and q.device.type == "cuda" and PAGED_PREFETCH_DEFAULT:
        from dataclasses import replace as _replace
        s = _replace(s, page_prefetch=True)
    if not isinstance(s, DecodeSchedule):
        raise TypeError(f"schedule must be a memsim.inference.DecodeSchedule, got {type(s).__name__}")
    from dataclasses import replace
    if num_splits is not None and num_splits != "auto":
        if isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 1:
            raise ValueError(f"num_splits must be None (automatic), 'auto' or a positive int, got {num_splits!r}")
        if schedule is None:
            s = _default_combine(s, num_splits, q.device)
        return p, replace(s, num_splits=num_splits), f"num_splits={num_splits} (given)"
    if schedule is not None and num_splits is None:
        return p, s, f"num_splits={s.num_splits} (from the schedule)"
    if schedule is None:  # the default: its tile or SPLIT_D_TILE, the split count and combine (`choose_schedule`)
        s, why = choose_schedule(p, s, q.device)
        return p, s, why
    idx = q.device.index if q.device.type == "cuda" else None
    if idx is None and q.device.type == "cuda":
        idx = torch.cuda.current_device()
    c, why = _auto(p, s, idx)
    return p, replace(s, num_splits=c), why


def decode(q, k_cache, v_cache, cache_seqlens, *, cu_seqlens_q=None, max_seqlen_q=None, block_table=None, scale=None,
           num_splits=None, schedule: DecodeSchedule | None = None, check_values: bool = True):
    """Attention of q (B, Nq, Hq, d) over each sequence's first cache_seqlens[b] cached keys.

    Queries are aligned bottom-right (row r sees keys c <= cache_seqlens[b] - Nq + r); a row that sees
    no key gets 0.  Queries of several lengths (speculative decode, chunked prefill): q packed as (total_q, Hq, d)
    with cu_seqlens_q int32 (B + 1,) (sequence b's nq_b = cu_seqlens_q[b + 1] - cu_seqlens_q[b] tokens are rows
    cu_seqlens_q[b] ..; nq_b may be 0) and max_seqlen_q (the longest; read from cu_seqlens_q when None, which
    needs the value check); the result has q's shape, row r of sequence b sees keys c <= cache_seqlens[b] - nq_b + r.
    k_cache/v_cache: (B, Ncache, Hkv, d), or (num_pages, page_size, Hkv, d) with
    block_table (B, max_pages) int32.  num_splits=None chooses the split count with
    memsim.inference.auto_num_splits (see `decode_plan`).  Outside CUDA-graph capture the contents of
    cache_seqlens and block_table are checked first (a device sync: about 0.2 ms of host time per eager
    call on the H100 machine); inside a capture, or with check_values=False, only shapes are."""
    require_bool("check_values", check_values)  # "no" and not capturing would be truthy
    capturing = q.device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    if cu_seqlens_q is not None and isinstance(q, torch.Tensor) and q.dim() == 3 and q.shape[0] == 0:
        check_decode_inputs(q, k_cache, v_cache, cache_seqlens, block_table, cu_seqlens_q=cu_seqlens_q,
                            max_seqlen_q=max_seqlen_q, check_values=check_values and not capturing)
        return torch.empty_like(q)  # no query token in the batch: nothing to compute, nothing launched
    p, s, _ = decode_plan(q, k_cache, v_cache, cache_seqlens, cu_seqlens_q=cu_seqlens_q, max_seqlen_q=max_seqlen_q,
                          block_table=block_table, scale=scale, num_splits=num_splits, schedule=schedule,
                          check_values=check_values and not capturing)
    return decode_launch(p, s, q, k_cache, v_cache, cache_seqlens, block_table, cu_seqlens_q)


def decode_launch(p: DecodeProblem, s: DecodeSchedule, q, k_cache, v_cache, cache_seqlens, block_table=None,
                  cu_seqlens_q=None):
    """Launch exactly `decode_launches(p, s)` (inputs already checked).  With cu_seqlens_q, q is packed
    (total_q, Hq, d) and p.max_seq_q is the longest query (the row tile, the combine's rows)."""
    varlen = cu_seqlens_q is not None
    if varlen:
        q = q.unsqueeze(0)
    B, Nq, Hq, d = q.shape
    if varlen:
        B, Nq = p.batch, p.max_seq_q
    G = p.group_size
    gpc = heads_per_cta(p, s)
    units = units_per_seq(p, s)
    bm = block_m_for(gpc * Nq)
    prec = dot_precision(p)  # DecodeProblem has .dtype like AttentionProblem
    qk_scale2 = p.scale * LOG2E
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    launches = decode_launches(p, s)
    S = s.num_splits
    paged = block_table is not None
    if s.early_tile and (paged or k_cache.shape[1] < s.block_n):  # (the kernel reads keys 0..block_n-1 unmasked)
        raise ScheduleError(f"early_tile needs a contiguous cache of at least block_n = {s.block_n} rows; got "
                            f"{'a paged cache' if paged else f'{k_cache.shape[1]} rows'}")
    bt = block_table if paged else cache_seqlens  # any int32 tensor: never read when not paged
    cu = cu_seqlens_q if varlen else cache_seqlens  # never read without VARLEN
    sqb, sob = (0, 0) if varlen else (q.stride(0), o.stride(0))  # packed: a sequence's rows start at cu[b]
    if S > 1:
        op = torch.empty((B * units * S * gpc * Nq * d,), dtype=torch.float32, device=q.device)
        lsep = torch.empty((B * units * S * gpc * Nq,), dtype=torch.float32, device=q.device)
    else:
        op = lsep = o  # never written
    grid = launches[0].grid[:2]
    # programmatic dependent launch of the combine (sm_90 and later: griddepcontrol; the interpreter and meta tensors
    # run without it, and so do older GPUs, where the schedule's flag is ignored -- same launches, same bytes)
    fused = fused_combine(s)
    fused_args = {}
    if fused:
        rp, bsf = fused_block_splits(p, s)
        fused_args = dict(CNT=combine_counters(q.device, B * units), FUSED=True, RP=rp, BLOCK_SF=bsf)
    pdl = bool(s.combine_pdl and S > 1 and not fused and q.device.type == "cuda" and not interpreting()
               and torch.cuda.get_device_capability(q.device)[0] >= 9)
    pdl_launch = {"launch_pdl": True} if pdl else {}
    _decode_split[grid](
        q, k_cache, v_cache, o, op, lsep, cache_seqlens, bt, cu,
        sqb, q.stride(1), q.stride(2),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        sob, o.stride(1), o.stride(2),
        bt.stride(0) if paged else 0,
        units, Nq, qk_scale2, S,
        GROUP=gpc, G_TOTAL=G, HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=s.block_n,
        PAGE_SIZE=p.page_size if paged else 0, SPLIT=S > 1, PAGE_PREFETCH=s.page_prefetch, PREC=prec,
        VARLEN=varlen, PDL=pdl, num_warps=s.num_warps, num_stages=s.num_stages, **fused_args,
        **({"SPLIT_D": s.split_d} if s.split_d > 1 else {}), **({"EARLY": True} if s.early_tile else {}))
    if S > 1 and not fused:
        _decode_combine[launches[1].grid[:2]](
            o, op, lsep, cache_seqlens, cu,
            sob, o.stride(1), o.stride(2),
            units, Nq, S,
            GROUP=gpc, HEAD_DIM=d, BLOCK_S=combine_block_s(S), BLOCK_N=s.block_n, PREC=prec, VARLEN=varlen,
            PDL=pdl,
            # (the GPU's warps also under kernels.decode_compiled's meta tensors: the table's registers are the card's)
            num_warps=1 if q.device.type == "cpu" else COMBINE_NUM_WARPS, num_stages=1, **pdl_launch)
    return o[0] if varlen else o


_COUNTERS: dict = {}


def combine_counters(device, n: int):
    """The fused combine's int32 counters, one per (sequence, unit), kept per device and zero between launches (the
    last split CTA of a unit resets its own).  Allocated (zeroed) outside CUDA-graph capture, at least 2^14 of them;
    a capture that needs more than were allocated raises (run one decode of that size outside capture first).  The
    launches of one device share them: decodes with combine_fused must not run concurrently on two streams."""
    dev = torch.device(device)
    key = (dev.type, dev.index if dev.index is not None or dev.type != "cuda" else torch.cuda.current_device())
    c = _COUNTERS.get(key)
    if c is None or c.numel() < n:
        if dev.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(f"the fused combine needs {n} counters on {dev} and has "
                               f"{0 if c is None else c.numel()}: run kernels.decode once outside CUDA-graph capture "
                               f"at this size (it allocates them), or use a schedule with combine_fused=False")
        c = torch.zeros(max(n, 1 << 14), dtype=torch.int32, device=dev)
        _COUNTERS[key] = c
    return c


@launcher("decode", "fwd")
def run_decode(problem: DecodeProblem, schedule: DecodeSchedule, q, k_cache, v_cache, cache_seqlens, block_table=None,
               cu_seqlens_q=None):
    """Registry launcher of ("decode", "fwd"): its arguments are decode's, not (q, k, v) -- a DecodeProblem
    has a cache and lengths.  Checks the tensors (shapes and contents), then launches exactly the schedule."""
    check_decode_inputs(q, k_cache, v_cache, cache_seqlens, block_table, cu_seqlens_q=cu_seqlens_q,
                        max_seqlen_q=problem.max_seq_q if cu_seqlens_q is not None else None)
    o = decode_launch(problem, schedule, q, k_cache, v_cache, cache_seqlens, block_table, cu_seqlens_q)
    return ForwardResult(o, None, {}, schedule)
