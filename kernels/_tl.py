"""Small @triton.jit helpers shared by the kernels (inlined into them; no launches of their own)."""
import triton
import triton.language as tl

from . import _common

#: log2(e) and ln(2) as compile-time constants for kernel bodies (host code uses kernels._common's floats):
#: scores live in the log2 domain (exp2 instead of exp), the stored logsumexp in natural-log units
LOG2E = tl.constexpr(_common.LOG2E)
LN2 = tl.constexpr(_common.LN2)


@triton.jit
def mma(a, b, PREC: tl.constexpr):
    """tl.dot with fp32 accumulation.  PREC: "ieee" (fp32 inputs, no tf32), "tf32" (the default, for
    fp16/bf16 it means plain tensor-core dots), or "bf16emu": Triton's CPU interpreter multiplies
    bf16 operands wrongly (3.6), so there they are widened to fp32 first -- bf16 products are exact
    in fp32, so the result is what the tensor cores compute."""
    if PREC == "bf16emu":
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=PREC)


@triton.jit
def cvt(x, DST: tl.constexpr, PREC: tl.constexpr):
    """x.to(DST), rounding to nearest even.  Under "bf16emu" (the CPU interpreter) a conversion to
    bf16 is done by hand: Triton 3.6's interpreter truncates fp32 -> bf16 (and its "rtne" mode
    mis-rounds when the mantissa carries), which would make bf16 results look worse than on a GPU."""
    if PREC == "bf16emu":
        if DST == tl.bfloat16:
            bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
            bits = bits + 0x7FFF + ((bits >> 16) & 1)
            y = (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
        else:
            y = x.to(DST)
    else:
        y = x.to(DST)
    return y


@triton.jit
def _kv_split(start_m, SEQ_Q, SEQ_KV, CAUSAL_OFFSET,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr):
    """(full_end, hi) for Q block start_m: K/V columns [0, full_end) are seen entirely by every row,
    [full_end, hi) need a mask, columns >= hi are seen by no row (never loaded)."""
    if CAUSAL:
        row_end = tl.minimum(start_m + BLOCK_M, SEQ_Q)
        hi = tl.minimum(tl.maximum(row_end + CAUSAL_OFFSET, 0), SEQ_KV)
        full_end = tl.minimum(tl.maximum(start_m + CAUSAL_OFFSET + 1, 0), SEQ_KV)
        full_end = (full_end // BLOCK_N) * BLOCK_N
    else:
        hi = SEQ_KV
        full_end = (SEQ_KV // BLOCK_N) * BLOCK_N
    return full_end, hi


@triton.jit
def head_desc(X, b, h, stride, ROWS, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr):
    """The TMA descriptor of one (batch b, head h) of a (B, H, N, d) tensor X: 2-D [ROWS, d] with the head's row stride
    (stride = X's (batch, head, row) strides), boxes of BLOCK rows; the copy engine clips every tile at this head's
    last row (loads zero-fill, stores drop the rows past it)."""
    return tl.make_tensor_descriptor(X + b * stride[0] + h * stride[1], shape=[ROWS, HEAD_DIM], strides=[stride[2], 1],
                                     block_shape=[BLOCK, HEAD_DIM])


@triton.jit
def qkvo_descs(Q, K, V, O, b, h, hkv, stride_q, stride_k, stride_v, stride_o, SEQ_Q, SEQ_KV,
               HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """`head_desc` of Q and O (q head h, boxes of BLOCK_M rows) and of K and V (kv head hkv, BLOCK_N rows): the four
    descriptors of a (Q block, batch*head) CTA (hopper's forward; O is dQ in the warp-specialised dQ pass)."""
    return (head_desc(Q, b, h, stride_q, SEQ_Q, HEAD_DIM, BLOCK_M), head_desc(K, b, hkv, stride_k, SEQ_KV, HEAD_DIM, BLOCK_N),
            head_desc(V, b, hkv, stride_v, SEQ_KV, HEAD_DIM, BLOCK_N), head_desc(O, b, h, stride_o, SEQ_Q, HEAD_DIM, BLOCK_M))


@triton.jit
def grid_ids(Q_FASTEST: tl.constexpr):
    """(block index, batch*head index) of this CTA on a 2-D grid: axis 0 is the block axis when Q_FASTEST
    (`Schedule.grid_order` "q_fastest"), the head axis otherwise ("heads_fastest")."""
    if Q_FASTEST:
        pid_blk = tl.program_id(0)
        pid_bh = tl.program_id(1)
    else:
        pid_blk = tl.program_id(1)
        pid_bh = tl.program_id(0)
    return pid_blk, pid_bh


@triton.jit
def head_ids(pid_bh, H, GROUP: tl.constexpr):
    """(b, h, hkv), int64, of batch*head_q index pid_bh: the batch, the q head and the kv head its GQA group
    of GROUP q heads reads."""
    b = (pid_bh // H).to(tl.int64)
    h = pid_bh % H
    hkv = (h // GROUP).to(tl.int64)
    return b, h.to(tl.int64), hkv


@triton.jit
def q_block(H, GROUP: tl.constexpr, BLOCK_M: tl.constexpr, Q_FASTEST: tl.constexpr):
    """The Q block of a CTA of a (Q block, batch*head_q) grid: (pid_bh, b, h, hkv, start_m, offs_m) with offs_m
    = start_m + arange(BLOCK_M), its rows."""
    pid_m, pid_bh = grid_ids(Q_FASTEST)
    b, h, hkv = head_ids(pid_bh, H, GROUP)
    start_m = pid_m * BLOCK_M
    return pid_bh, b, h, hkv, start_m, start_m + tl.arange(0, BLOCK_M)


@triton.jit
def softmax_rescale(l_i, m_i, s, qk_scale2, SAFE: tl.constexpr, RAW: tl.constexpr):
    """One K/V block of the online softmax, before its values: (p, alpha, l_i, m_new) from the block's scores s
    (log2 units, or RAW: raw q.k with the scale qk_scale2 folded into the max and the exponent; masked scores
    -inf).  p = exp2(s - m_new) (rows x cols), alpha = exp2(m_old - m_new) rescales the running sums: the caller
    does acc = acc * alpha[:, None] + p @ V_j (`online_softmax` does all of it).  SAFE: a row may have seen
    nothing visible yet (m = -inf; exponents taken against 0 instead, so p = 0, not NaN)."""
    if RAW:
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale2)
    else:
        m_new = tl.maximum(m_i, tl.max(s, 1))
    if SAFE:
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        m_safe = m_new
    alpha = tl.math.exp2(m_i - m_safe)
    if RAW:
        p = tl.math.exp2(s * qk_scale2 - m_safe[:, None])
    else:
        p = tl.math.exp2(s - m_safe[:, None])
    return p, alpha, l_i * alpha + tl.sum(p, 1), m_new


@triton.jit
def online_softmax(acc, l_i, m_i, s, v, qk_scale2, SAFE: tl.constexpr, RAW: tl.constexpr, PREC: tl.constexpr):
    """One K/V block of the online softmax with its values v (cols x d): (acc, l_i, m_i) after the block
    (`softmax_rescale`, then acc = acc * alpha + p @ v, fp32)."""
    p, alpha, l_i, m_new = softmax_rescale(l_i, m_i, s, qk_scale2, SAFE, RAW)
    acc = acc * alpha[:, None] + mma(cvt(p, v.dtype, PREC), v, PREC)
    return acc, l_i, m_new
