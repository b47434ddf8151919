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
