"""hopper: a Hopper forward pass in plain Triton -- TMA tensor descriptors, a warp-specialised K/V loop.

What it takes from FlashAttention-3 (as far as plain `triton.language` 3.6 reaches):
  * every tile moves through the tensor-memory accelerator: `tl.make_tensor_descriptor` builds one
    2-D descriptor per (tensor, head) inside the kernel (shape [seq, d], the head's own row stride), so a
    ragged tail is clipped by the copy engine at that head's last row -- nothing of the next head is
    read -- and O is stored through a descriptor too.  The descriptors live in a small global scratch
    (4 x 128 bytes per CTA) that `triton.set_allocator` provides;
  * ``WARP_SPEC`` (num_warps 4, num_stages 2, fp16/bf16): the K/V loop is
    `tl.range(..., warp_specialize=True)`; Triton 3.6's Hopper partitioner turns the CTA into a producer
    warpgroup that only issues the TMA loads and two consumer warpgroups (64 Q rows each) that run the
    matmuls and the softmax, handing buffers over through mbarriers, with setmaxnreg moving registers
    from the producer to the consumers (12 warps in all; checked in the sm_90a compile);
  * causal: blocks no row sees are never loaded.  The partitioner takes one straight-line loop per
    kernel, so the warp-specialised variant computes the causal mask on every visible block (the
    unmasked/diagonal split that FA3 does costs a second loop, which the partitioner refuses); the
    software-pipelined variant (other schedules) keeps flash2's split: off-diagonal blocks with no
    mask arithmetic, then the masked diagonal band and ragged tail.
  * causal: the Q blocks run longest first (grid position p runs Q block Mb - 1 - p), so the short CTAs of
    the triangle fill the end of the grid instead of leaving SMs idle behind the longest ones.
What it does not do (yet): no explicit ping-pong between the two consumer warpgroups nor the
intra-warpgroup overlap of softmax(j) with QK(j+1) (left to Triton's scheduler).  The persistent grid is the
separate registry entry ``hopper_ws`` fwd (`_hopper_fwd_persistent`, launcher at the bottom).

Launch and bytes: one launch ``hopper_fwd``, one CTA per (Q block, batch*head_q), axis order from
`Schedule.grid_order` -- the grid of `memsim.schedule.kernel_launches`.  The TMA loads move exactly
flash2_fwd's bytes (Q_i once; K_j, V_j once per visible block, clipped to the rows that exist; O_i and
lse_i written once): see the contract text in `memsim/algorithms_hopper.py`.

Numerics as flash2: scores in the log2 domain (``scale*log2(e)`` folded into one FMA with the running
max), fp32 accumulation, lse stored in natural-log units, a row that sees no key gives O = 0, lse = -inf.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from memsim.algorithms_hopper import longest_first as longest_first_rule
from memsim.algorithms_hopper import persistent as persistent_rule
from memsim.algorithms_hopper import warp_specialised
from memsim.schedule import AttentionProblem, Schedule, ScheduleError, kernel_launches

from ._common import LOG2E, dot_precision, lse_forward
from ._tl import LN2, _kv_split, cvt, mma, q_block, qkvo_descs, softmax_rescale
from .registry import ForwardResult, launcher

#: bytes of one TMA descriptor in the device-side scratch (CUtensorMap is 128 bytes)
TMA_DESCRIPTOR_BYTES = 128
#: descriptors one hopper_fwd CTA builds: Q, K, V, O
DESCRIPTORS_PER_CTA = 4


@triton.jit
def _f3_softmax_pv(acc, l_i, m_i, s, v_desc, start_n, qk_scale2, SAFE: tl.constexpr, PREC: tl.constexpr):
    """The online softmax of one K/V block (raw scores s, the scale folded into the exponent) with V_j loaded
    through TMA after the statistics, as both K/V loops below do: (acc, l_i, m_i) after the block.  Loading V_j
    before the statistics (`kernels._tl.online_softmax`, which takes V_j loaded) changes the sm_90a code of both
    loops (40 fewer instructions in the warp-specialised one), so this keeps hopper's order."""
    p, alpha, l_i, m_i = softmax_rescale(l_i, m_i, s, qk_scale2, SAFE=SAFE, RAW=True)
    v = v_desc.load([start_n, 0])
    acc = acc * alpha[:, None] + mma(cvt(p, v.dtype, PREC), v, PREC)
    return acc, l_i, m_i


@triton.jit
def _f3_kv_loop_ws(acc, l_i, m_i, q, k_desc, v_desc, rel_m, offs_n, hi, SEQ_KV, qk_scale2, diag,
                   BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, MASK_COLS: tl.constexpr, PREC: tl.constexpr):
    """All K/V blocks [0, hi) of one Q block in ONE warp-specialised loop.  Triton 3.6's Hopper
    partitioner (a producer warpgroup that issues the TMA loads, two consumer warpgroups of 64 rows
    each, mbarrier hand-offs, setmaxnreg) takes one straight-line loop per kernel: a second loop, or a
    branch inside this one, makes it give up (silently, or with a compiler crash; checked by compiling
    for sm_90a).  So the masks are computed for every block when there is anything to mask: the causal
    mask (CAUSAL) and the ragged-tail column mask (MASK_COLS: seq_kv % block_n != 0); a non-causal
    problem with full blocks computes none.  Each iteration reads K_j, V_j (TMA, by the producer)."""
    for start_n in tl.range(0, hi, BLOCK_N, warp_specialize=True):
        k = k_desc.load([start_n, 0])
        s = mma(q, tl.trans(k), PREC)
        if MASK_COLS or CAUSAL:
            # column c = start_n + offs_n is visible from row r = start_m + rel_m when c <= r + offset,
            # i.e. offs_n - rel_m <= diag - start_n (diag = start_m + offset, a scalar)
            if MASK_COLS:
                visible = offs_n[None, :] < SEQ_KV - start_n
                if CAUSAL:
                    visible = visible & (offs_n[None, :] - rel_m[:, None] <= diag - start_n)
            else:
                visible = offs_n[None, :] - rel_m[:, None] <= diag - start_n
            s = tl.where(visible, s, float("-inf"))
        # causal: a row may have nothing visible yet; otherwise column 0 is visible to every row
        acc, l_i, m_i = _f3_softmax_pv(acc, l_i, m_i, s, v_desc, start_n, qk_scale2, SAFE=CAUSAL, PREC=PREC)
    return acc, l_i, m_i


@triton.jit
def _f3_kv_loop(acc, l_i, m_i, q, k_desc, v_desc, offs_m, offs_n, lo, hi, SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr, PREC: tl.constexpr):
    """K/V blocks [lo, hi) of one Q block: the online softmax.  Each iteration reads K_j, V_j (cols x d
    each, TMA, rows past SEQ_KV clipped and zero-filled) -- nothing else touches memory; Triton's
    software pipeliner keeps num_stages - 1 loads in flight (no warp specialisation).  MASKED: the
    diagonal band and the ragged tail (column and causal masks, rows that may see nothing yet);
    otherwise every row sees the whole block and no mask is computed."""
    for start_n in tl.range(lo, hi, BLOCK_N):
        k = k_desc.load([start_n, 0])
        s = mma(q, tl.trans(k), PREC)  # raw q.k; the scale is folded into the exponent (RAW)
        if MASKED:
            cols = start_n + offs_n
            visible = cols[None, :] < SEQ_KV
            if CAUSAL:
                visible = visible & (cols[None, :] <= offs_m[:, None] + CAUSAL_OFFSET)
            s = tl.where(visible, s, float("-inf"))
        acc, l_i, m_i = _f3_softmax_pv(acc, l_i, m_i, s, v_desc, start_n, qk_scale2, SAFE=MASKED, PREC=PREC)
    return acc, l_i, m_i


@triton.jit
def _hopper_fwd(Q, K, V, O, LSE, stride_q, stride_k, stride_v, stride_o, H, SEQ_Q, SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                CAUSAL: tl.constexpr, Q_FASTEST: tl.constexpr, PREC: tl.constexpr, WARP_SPEC: tl.constexpr,
                MASK_COLS: tl.constexpr, LONGEST_FIRST: tl.constexpr):
    pid_bh, b, h, hkv, start_m, offs_m = q_block(H, GROUP, BLOCK_M, Q_FASTEST)
    if LONGEST_FIRST:
        # causal: Q block index reversed, so the CTAs dispatched first are the ones with the most K/V blocks and the
        # short ones fill the tail of the grid (grid position p runs Q block Mb - 1 - p; the model's workload does
        # the same: memsim/workloads_hopper.py)
        start_m = (tl.cdiv(SEQ_Q, BLOCK_M) - 1) * BLOCK_M - start_m
        offs_m = start_m + tl.arange(0, BLOCK_M)
    # row indices: rel_m (0..BLOCK_M) relative to the tile plus the scalar start_m.  The warp-specialised
    # path never uses offs_m = start_m + arange (dead code there): Triton 3.6's Hopper data partitioner,
    # splitting the 128 rows over two consumer warpgroups, rewrites that sum as (start_m + 64) + arange(64, 128)
    # in the second one -- rows 64 too far (seen in the sm_90a TTGIR; it made the causal mask and the lse rows
    # wrong on the H100)
    rel_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)

    # one 2-D descriptor per (tensor, head): [rows, d] with the head's row stride; the copy engine
    # clips every tile at this head's last row (loads zero-fill, stores drop the rows past it); stride_x: the
    # (batch, head, row) strides of x
    q_desc, k_desc, v_desc, o_desc = qkvo_descs(Q, K, V, O, b, h, hkv, stride_q, stride_k, stride_v, stride_o, SEQ_Q,
                                                SEQ_KV, HEAD_DIM, BLOCK_M, BLOCK_N)

    # resident for the whole CTA: Q_i (read once, TMA), acc (rows x d fp32), m_i, l_i
    q = q_desc.load([start_m, 0])
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    # K/V columns [0, full_end): every row sees them whole; [full_end, hi): masked; >= hi: never loaded
    full_end, hi = _kv_split(start_m, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, BLOCK_M, BLOCK_N, CAUSAL)
    if WARP_SPEC:
        acc, l_i, m_i = _f3_kv_loop_ws(acc, l_i, m_i, q, k_desc, v_desc, rel_m, offs_n, hi, SEQ_KV, qk_scale2,
                                       start_m + CAUSAL_OFFSET, BLOCK_N=BLOCK_N, CAUSAL=CAUSAL, MASK_COLS=MASK_COLS,
                                       PREC=PREC)
    else:
        acc, l_i, m_i = _f3_kv_loop(acc, l_i, m_i, q, k_desc, v_desc, offs_m, offs_n, 0, full_end, SEQ_KV,
                                    qk_scale2, CAUSAL_OFFSET, BLOCK_N=BLOCK_N, MASKED=False, CAUSAL=CAUSAL,
                                    PREC=PREC)
        acc, l_i, m_i = _f3_kv_loop(acc, l_i, m_i, q, k_desc, v_desc, offs_m, offs_n, full_end, hi, SEQ_KV,
                                    qk_scale2, CAUSAL_OFFSET, BLOCK_N=BLOCK_N, MASKED=True, CAUSAL=CAUSAL,
                                    PREC=PREC)

    # epilogue: O_i (TMA store, rows past SEQ_Q dropped) and lse_i written once; a row that saw
    # nothing gets O = 0, lse = -inf
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    o = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.math.log2(l_safe)) * LN2)
    o_desc.store([start_m, 0], cvt(o, O.dtype.element_ty, PREC))
    tl.store(LSE + pid_bh.to(tl.int64) * SEQ_Q + start_m + rel_m, lse, mask=rel_m < SEQ_Q - start_m)


@triton.jit
def _hopper_fwd_persistent(Q, K, V, O, LSE, H, SEQ_Q, SEQ_KV, qk_scale2, CAUSAL_OFFSET, BATCH,
                           GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                           BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, PREC: tl.constexpr, Q_FASTEST: tl.constexpr,
                           WARP_SPEC: tl.constexpr):
    """hopper_ws fwd (the launch ``hopper_fwd_persistent``): min(tiles, 132) CTAs walk the (Q block, batch*head) tiles
    with a stride of the grid size, the WHOLE tile body inside one `tl.range(..., warp_specialize=WARP_SPEC)` loop, so
    the producer warpgroup can load tile t+1's Q_i, K_j, V_j while the consumers finish tile t's epilogue (FA3's
    persistent kernel), and the four descriptors are built once per CTA instead of once per tile.  Triton 3.6's
    partitioner rejects 3-/4-D descriptor tiles here (WSDataPartition, seen compiling for sm_90a), so the descriptors
    are 2-D over all rows [B*H*N, d]: contiguous tensors and lengths that the tiles divide only (the registry entry
    runs hopper's per-tile launch otherwise; no tile crosses a head).  Tile order
    (`memsim.algorithms_hopper.persistent_tiles`): Q blocks of one head in a row (Q_FASTEST) or the heads of one Q
    block; causal: longest first (every head's last Q block, then the one before, ...).  Same bytes per tile as
    `_hopper_fwd`.  WARP_SPEC: 2-byte dtypes with num_warps 4 and num_stages 2 (`warp_specialised`); otherwise the
    same loop software-pipelined."""
    q_desc = tl.make_tensor_descriptor(Q, shape=[BATCH * H * SEQ_Q, HEAD_DIM], strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_M, HEAD_DIM])
    k_desc = tl.make_tensor_descriptor(K, shape=[BATCH * (H // GROUP) * SEQ_KV, HEAD_DIM], strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_N, HEAD_DIM])
    v_desc = tl.make_tensor_descriptor(V, shape=[BATCH * (H // GROUP) * SEQ_KV, HEAD_DIM], strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_N, HEAD_DIM])
    o_desc = tl.make_tensor_descriptor(O, shape=[BATCH * H * SEQ_Q, HEAD_DIM], strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_M, HEAD_DIM])
    n_m = SEQ_Q // BLOCK_M
    n_bh = BATCH * H
    rel_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    for tile in tl.range(tl.program_id(0), n_m * n_bh, tl.num_programs(0), warp_specialize=WARP_SPEC):
        if CAUSAL:  # longest first: the last Q block of every head, then the one before, ...
            pid_m = n_m - 1 - tile // n_bh
            pid_bh = tile % n_bh
        elif Q_FASTEST:
            pid_m = tile % n_m
            pid_bh = tile // n_m
        else:
            pid_m = tile // n_bh
            pid_bh = tile % n_bh
        start_m = pid_m * BLOCK_M
        kv_row0 = (pid_bh // H * (H // GROUP) + pid_bh % H // GROUP) * SEQ_KV  # first K/V row of the tile's kv head
        q = q_desc.load([pid_bh * SEQ_Q + start_m, 0])
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        if CAUSAL:
            hi = tl.minimum(tl.maximum(start_m + BLOCK_M + CAUSAL_OFFSET, 0), SEQ_KV)
        else:
            hi = SEQ_KV
        diag = start_m + CAUSAL_OFFSET
        for start_n in range(0, hi, BLOCK_N):
            k = k_desc.load([kv_row0 + start_n, 0])
            s = mma(q, tl.trans(k), PREC)
            if CAUSAL:
                s = tl.where(offs_n[None, :] - rel_m[:, None] <= diag - start_n, s, float("-inf"))
            p, alpha, l_i, m_i = softmax_rescale(l_i, m_i, s, qk_scale2, SAFE=CAUSAL, RAW=True)
            v = v_desc.load([kv_row0 + start_n, 0])
            acc = acc * alpha[:, None] + mma(cvt(p, v.dtype, PREC), v, PREC)
        empty = l_i == 0.0
        l_safe = tl.where(empty, 1.0, l_i)
        o_desc.store([pid_bh * SEQ_Q + start_m, 0], cvt(acc / l_safe[:, None], O.dtype.element_ty, PREC))
        tl.store(LSE + pid_bh.to(tl.int64) * SEQ_Q + start_m + rel_m,
                 tl.where(empty, float("-inf"), (m_i + tl.math.log2(l_safe)) * LN2))


# --- launcher --------------------------------------------------------------------------------------

def check_tma_layout(name: str, t: torch.Tensor) -> None:
    """TMA needs a 16-byte aligned base and 16-byte multiples for the batch, head and row strides."""
    e = t.element_size()
    bad = [f"stride({i}) = {t.stride(i)} elements ({t.stride(i) * e} bytes)" for i in range(3)
           if (t.stride(i) * e) % 16 and t.shape[i] > 1]
    if t.data_ptr() % 16:
        bad.insert(0, f"data_ptr() % 16 = {t.data_ptr() % 16}")
    if bad:
        raise ValueError(f"the hopper algorithm loads {name} through TMA descriptors, which need a 16-byte aligned "
                         f"start and batch/head/row strides that are multiples of 16 bytes; {name} has {', '.join(bad)}. "
                         f"Use .contiguous() or the flash2 algorithm")


def check_capability(capability: tuple[int, int], device_name: str = "this GPU") -> None:
    """TMA tensor descriptors (and wgmma) need compute capability 9.0 or newer."""
    if tuple(capability) < (9, 0):
        raise ScheduleError(f"the hopper algorithm needs a Hopper-class GPU (compute capability >= 9.0: TMA tensor "
                            f"descriptors); {device_name} is sm_{capability[0]}{capability[1]}. Use flash2")


def _scratch(size: int, alignment: int, stream):
    """Device memory for the descriptors the kernel builds (Triton asks for grid x 4 x 128 bytes)."""
    return torch.empty(size, dtype=torch.int8, device="cuda" if torch.cuda.is_available() else "cpu")


def descriptor_scratch_bytes(num_ctas: int) -> int:
    return num_ctas * DESCRIPTORS_PER_CTA * TMA_DESCRIPTOR_BYTES


def warp_specialise(problem: AttentionProblem, schedule: Schedule) -> bool:
    """Whether the K/V loop is the warp-specialised one (`memsim.algorithms_hopper.warp_specialised`,
    which the SRAM formula reads too): 2-byte dtypes, num_warps = 4 (one consumer warpgroup's worth:
    Triton 3.6's Hopper partitioner then runs a producer warpgroup and two 64-row consumer warpgroups,
    12 warps in all; with 8 it leaves the loop alone) and num_stages = 2 (3 compiled but gave NaN on the
    H100).  Otherwise the two-loop software-pipelined variant runs.  The interpreter runs whichever the
    schedule picks (both are tested there)."""
    return warp_specialised(problem, schedule)


#: causal problems run their Q blocks longest first (`memsim.algorithms_hopper.longest_first`); a module switch only so
#: that one benchmark run can time the old order beside it (benchmarks/hopper_bench.py --fwd-order both)
LONGEST_FIRST = True


def longest_first(problem: AttentionProblem) -> bool:
    return LONGEST_FIRST and longest_first_rule(problem)


def _persistent_grid(problem: AttentionProblem, schedule: Schedule) -> tuple[int]:
    """The registry's grid of hopper_ws fwd: (min(tiles, 132),) whatever the GPU's SM count (still exact elsewhere,
    only not one CTA per SM; kernels.api picks it only on 132-SM GPUs)."""
    (launch,) = kernel_launches(problem, schedule)
    assert launch.name == "hopper_fwd_persistent", launch
    return launch.grid[:1]


def check_persistent_layout(name: str, t: torch.Tensor) -> None:
    """The persistent forward's 2-D descriptors span every (batch, head)'s rows with row stride d: contiguous only."""
    if t.device.type != "meta" and not t.is_contiguous():
        raise ValueError(f"hopper_ws fwd (the persistent forward) addresses {name} as one [batch*heads*seq, d] TMA "
                         f"descriptor, so {name} must be contiguous; it has strides {tuple(t.stride())} for shape "
                         f"{tuple(t.shape)}. Use .contiguous() or the hopper algorithm")


@launcher("hopper_ws", "fwd")
def hopper_ws_forward(problem: AttentionProblem, schedule: Schedule, q, k, v) -> ForwardResult:
    """hopper_ws fwd: the persistent forward where the tiles divide both lengths (contiguous q, k, v), else hopper's
    per-tile launch (`memsim.algorithms_hopper.persistent`, the registry entry's rule)."""
    p, s = problem, schedule
    if not persistent_rule(p, s):
        return hopper_forward(p, s, q, k, v)
    if q.device.type == "cuda":
        check_capability(torch.cuda.get_device_capability(q.device), torch.cuda.get_device_name(q.device))
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.device.type != "meta":
            check_tma_layout(name, t)
        check_persistent_layout(name, t)
    triton.set_allocator(_scratch)
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    _hopper_fwd_persistent[_persistent_grid(p, s)](
        q, k, v, o, lse, p.heads_q, p.seq_q, p.seq_kv, p.scale * LOG2E, p.causal_offset, p.batch,
        GROUP=p.group_size, HEAD_DIM=p.head_dim, BLOCK_M=s.block_m, BLOCK_N=s.block_n, CAUSAL=p.causal,
        PREC=dot_precision(p), Q_FASTEST=s.grid_order == "q_fastest", WARP_SPEC=warp_specialise(p, s),
        num_warps=s.num_warps, num_stages=s.num_stages)
    return ForwardResult(o, lse, {"lse": lse}, schedule)


@launcher("hopper", "fwd")
def hopper_forward(problem: AttentionProblem, schedule: Schedule, q, k, v) -> ForwardResult:
    """Launch hopper_fwd; o and lse (B, Hq, Nq) fp32 in natural-log units, saved for the backward
    (flash2's backward reads the same lse)."""
    p, s = problem, schedule
    if q.device.type == "cuda":
        check_capability(torch.cuda.get_device_capability(q.device), torch.cuda.get_device_name(q.device))
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.device.type != "meta":
            check_tma_layout(name, t)
    triton.set_allocator(_scratch)
    return lse_forward(_hopper_fwd, p, s, q, k, v, Q_FASTEST=s.grid_order == "q_fastest", PREC=dot_precision(p),
                       WARP_SPEC=warp_specialise(p, s), MASK_COLS=p.seq_kv % s.block_n != 0,
                       LONGEST_FIRST=longest_first(p))


# --- EXPERIMENT (issue 9 items 2-3): the forward in Gluon with explicit wgmma pipelining -------------------------
# Not a registry entry: benchmarks/hopper_bench.py --gluon and the GPU tests run it through `gluon_forward`.  Gluon
# does not run in the interpreter, so its only evidence is a GPU run (notes/hopper.md, session 5).
try:  # Triton >= 3.5 ships Gluon; the interpreter-only CI machine imports this module too
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import mbarrier as gl_mbarrier
    from triton.experimental.gluon.language.nvidia.hopper import tma as gl_tma
    from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared as gl_fence_async_shared
    from triton.experimental.gluon.language.nvidia.hopper import warpgroup_mma, warpgroup_mma_wait
except ImportError:  # pragma: no cover - older Triton
    gluon = None

if gluon is not None:
    @gluon.jit
    def _gl_softmax_step(s, cols0, rows, m_i, l_i, SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                         MASK: gl.constexpr, CAUSAL: gl.constexpr):
        """One block's online-softmax statistics from raw scores s (the S accumulator's layout): (p, alpha, m, l),
        log2 domain (scale folded into qk_scale2); MASK: ragged columns and the causal mask; a row that has seen
        nothing keeps m = -inf (p = 0, alpha = 1)."""
        s2 = s * qk_scale2
        if MASK:
            visible = cols0[None, :] < SEQ_KV
            if CAUSAL:
                visible = visible & (cols0[None, :] <= rows[:, None] + CAUSAL_OFFSET)
            s2 = gl.where(visible, s2, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(s2, 1))
        m_safe = gl.where(m_new == float("-inf"), 0.0, m_new)
        p = gl.exp2(s2 - m_safe[:, None])
        alpha = gl.exp2(gl.where(m_i == float("-inf"), 0.0, m_i) - m_safe)
        l_new = l_i * alpha + gl.sum(p, 1)
        return p, alpha, m_new, l_new

    @gluon.jit
    def _gl_head_desc(T, b, h, stride, SEQ, HEAD_DIM: gl.constexpr, ROWS: gl.constexpr, layout: gl.constexpr):
        """One (batch, head)'s [SEQ, d] rows as a TMA descriptor with boxes of ROWS rows (clipped at the head's end);
        stride: the (batch, head, row) strides."""
        return gl_tma.make_tensor_descriptor(T + b * stride[0] + h * stride[1], shape=[SEQ, HEAD_DIM],
                                             strides=[stride[2], 1], block_shape=[ROWS, HEAD_DIM], layout=layout)

    @gluon.jit
    def _hopper_fwd_gluon(Q, K, V, O, LSE, stride_q, stride_k, stride_v, stride_o, H, SEQ_Q, SEQ_KV, qk_scale2,
                          CAUSAL_OFFSET, GROUP: gl.constexpr, HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr,
                          BLOCK_N: gl.constexpr, CAUSAL: gl.constexpr, MASK_COLS: gl.constexpr,
                          num_warps: gl.constexpr):
        """One CTA per (Q block, batch*head_q), the grid and bytes of hopper_fwd (same 2-D per-head TMA descriptors),
        with FlashAttention-3's intra-warpgroup pipelining written out: in step j the tensor cores get
        S_j = Q K_j^T and O += P_{j-1} V_{j-1} (both async wgmma) while the CUDA cores compute the softmax of S_j
        once S_j is done; K/V in a 2-stage TMA ring (mbarriers), the loads of block j+1 issued as soon as block
        j-1's stage is free.  num_warps 8: two warpgroups of BLOCK_M / 2 rows each run every wgmma.  Causal: the
        mask on every block (MASK); ragged tails clipped by TMA, masked columns."""
        dtype: gl.constexpr = Q.dtype.element_ty
        pid_m = gl.program_id(0)
        pid_bh = gl.program_id(1)
        b = pid_bh // H
        h = pid_bh % H
        hkv = h // GROUP
        start_m = pid_m * BLOCK_M
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                           instr_shape=[16, BLOCK_N, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                           instr_shape=[16, HEAD_DIM, 16])
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        q_smem_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_M, HEAD_DIM], dtype)
        kv_smem_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, HEAD_DIM], dtype)
        q_desc = _gl_head_desc(Q, b, h, stride_q, SEQ_Q, HEAD_DIM, BLOCK_M, q_smem_layout)
        k_desc = _gl_head_desc(K, b, hkv, stride_k, SEQ_KV, HEAD_DIM, BLOCK_N, kv_smem_layout)
        v_desc = _gl_head_desc(V, b, hkv, stride_v, SEQ_KV, HEAD_DIM, BLOCK_N, kv_smem_layout)
        o_desc = _gl_head_desc(O, b, h, stride_o, SEQ_Q, HEAD_DIM, BLOCK_M, q_smem_layout)
        q_smem = gl.allocate_shared_memory(dtype, [BLOCK_M, HEAD_DIM], q_smem_layout)
        k_smem = gl.allocate_shared_memory(dtype, [2, BLOCK_N, HEAD_DIM], kv_smem_layout)
        v_smem = gl.allocate_shared_memory(dtype, [2, BLOCK_N, HEAD_DIM], kv_smem_layout)
        q_bar = gl.allocate_shared_memory(gl.int64, [1], gl_mbarrier.MBarrierLayout())
        k_bar = gl.allocate_shared_memory(gl.int64, [2, 1], gl_mbarrier.MBarrierLayout())
        v_bar = gl.allocate_shared_memory(gl.int64, [2, 1], gl_mbarrier.MBarrierLayout())
        gl_mbarrier.init(q_bar, count=1)
        for i in gl.static_range(2):
            gl_mbarrier.init(k_bar.index(i), count=1)
            gl_mbarrier.init(v_bar.index(i), count=1)

        if CAUSAL:
            hi = gl.minimum(gl.maximum(start_m + BLOCK_M + CAUSAL_OFFSET, 0), SEQ_KV)
        else:
            hi = SEQ_KV
        n_blocks = gl.cdiv(hi, BLOCK_N)
        kv_bytes: gl.constexpr = BLOCK_N * HEAD_DIM * dtype.primitive_bitwidth // 8
        gl_mbarrier.expect(q_bar, BLOCK_M * HEAD_DIM * dtype.primitive_bitwidth // 8)
        gl_tma.async_copy_global_to_shared(q_desc, [start_m, 0], q_bar, q_smem)
        for i in gl.static_range(2):  # blocks 0 and 1 into stages 0 and 1
            gl_mbarrier.expect(k_bar.index(i), kv_bytes, pred=i < n_blocks)
            gl_tma.async_copy_global_to_shared(k_desc, [i * BLOCK_N, 0], k_bar.index(i), k_smem.index(i),
                                               pred=i < n_blocks)
            gl_mbarrier.expect(v_bar.index(i), kv_bytes, pred=i < n_blocks)
            gl_tma.async_copy_global_to_shared(v_desc, [i * BLOCK_N, 0], v_bar.index(i), v_smem.index(i),
                                               pred=i < n_blocks)

        row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
        col_s: gl.constexpr = gl.SliceLayout(0, s_layout)
        row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
        rows = start_m + gl.arange(0, BLOCK_M, layout=row_s)
        offs_n = gl.arange(0, BLOCK_N, layout=col_s)
        m_i = gl.full([BLOCK_M], float("-inf"), gl.float32, layout=row_s)
        l_i = gl.zeros([BLOCK_M], gl.float32, layout=row_s)
        acc = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
        s_zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_layout)
        p_op = gl.zeros([BLOCK_M, BLOCK_N], dtype, layout=p_layout)
        MASK: gl.constexpr = CAUSAL or MASK_COLS

        gl_mbarrier.wait(q_bar, 0)
        if n_blocks > 0:  # S_0, its softmax: P_0 waits for V_0 in step 1
            gl_mbarrier.wait(k_bar.index(0), 0)
            s_tok = warpgroup_mma(q_smem, k_smem.index(0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            s = warpgroup_mma_wait(num_outstanding=0, deps=(s_tok,))
            p, alpha, m_i, l_i = _gl_softmax_step(s, offs_n, rows, m_i, l_i, SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                                                  MASK=MASK, CAUSAL=CAUSAL)
            p_op = gl.convert_layout(p.to(dtype), p_layout)
        for j in range(1, n_blocks):
            st = j % 2
            pst = 1 - st
            # tensor cores: S_j = Q K_j^T, then O += P_{j-1} V_{j-1}; CUDA cores: the softmax of S_j meanwhile
            gl_mbarrier.wait(k_bar.index(st), (j // 2) & 1)
            s_tok = warpgroup_mma(q_smem, k_smem.index(st).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            gl_mbarrier.wait(v_bar.index(pst), ((j - 1) // 2) & 1)
            o_tok = warpgroup_mma(p_op, v_smem.index(pst), acc, is_async=True)
            s = warpgroup_mma_wait(num_outstanding=1, deps=(s_tok,))
            p, alpha, m_i, l_i = _gl_softmax_step(s, j * BLOCK_N + offs_n, rows, m_i, l_i, SEQ_KV, qk_scale2,
                                                  CAUSAL_OFFSET, MASK=MASK, CAUSAL=CAUSAL)
            acc = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok,))
            acc = acc * gl.convert_layout(alpha, row_o)[:, None]
            p_op = gl.convert_layout(p.to(dtype), p_layout)
            # block j-1's stage is free (S_{j-1} and P_{j-1} V_{j-1} are done): load block j+1 into it
            nxt = j + 1 < n_blocks
            gl_mbarrier.expect(k_bar.index(pst), kv_bytes, pred=nxt)
            gl_tma.async_copy_global_to_shared(k_desc, [(j + 1) * BLOCK_N, 0], k_bar.index(pst), k_smem.index(pst),
                                               pred=nxt)
            gl_mbarrier.expect(v_bar.index(pst), kv_bytes, pred=nxt)
            gl_tma.async_copy_global_to_shared(v_desc, [(j + 1) * BLOCK_N, 0], v_bar.index(pst), v_smem.index(pst),
                                               pred=nxt)
        if n_blocks > 0:  # the last O += P V
            last = (n_blocks - 1) % 2
            gl_mbarrier.wait(v_bar.index(last), ((n_blocks - 1) // 2) & 1)
            o_tok = warpgroup_mma(p_op, v_smem.index(last), acc, is_async=True)
            acc = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok,))
        gl_mbarrier.invalidate(q_bar)
        for i in gl.static_range(2):
            gl_mbarrier.invalidate(k_bar.index(i))
            gl_mbarrier.invalidate(v_bar.index(i))

        # epilogue: O_i by TMA (rows past SEQ_Q dropped), lse_i; a row that saw nothing: O = 0, lse = -inf
        empty = l_i == 0.0
        l_safe = gl.where(empty, 1.0, l_i)
        o = acc / gl.convert_layout(l_safe, row_o)[:, None]
        lse = gl.where(empty, float("-inf"), (m_i + gl.log2(l_safe)) * 0.6931471805599453)
        o_smem = gl.allocate_shared_memory(dtype, [BLOCK_M, HEAD_DIM], q_smem_layout)
        o_smem.store(o.to(dtype))
        gl_fence_async_shared()
        gl_tma.async_copy_shared_to_global(o_desc, [start_m, 0], o_smem)
        gl.store(LSE + pid_bh.to(gl.int64) * SEQ_Q + rows, lse, mask=rows < SEQ_Q)
        gl_tma.store_wait(0)


def gluon_forward(problem: AttentionProblem, schedule: Schedule, q, k, v) -> ForwardResult:
    """The Gluon forward (EXPERIMENT): hopper_fwd's grid and bytes, FA3's intra-warpgroup pipelining in explicit
    async wgmma.  fp16/bf16, d 64/128, num_warps 8, block_m 128, block_n 64/128; sm_90 GPU only."""
    p, s = problem, schedule
    if gluon is None:
        raise NotImplementedError("the Gluon forward needs triton.experimental.gluon (Triton >= 3.5)")
    if p.dtype not in ("fp16", "bf16") or p.head_dim not in (64, 128) or s.num_warps != 8 or s.block_m != 128 \
            or s.block_n not in (64, 128):
        raise ScheduleError(f"the Gluon forward runs fp16/bf16, d 64/128, block_m 128, block_n 64/128, num_warps 8; "
                            f"got {p.dtype}, d={p.head_dim}, {s.block_m}x{s.block_n} w{s.num_warps}")
    if q.device.type != "cuda":
        raise NotImplementedError("Gluon kernels do not run in Triton's CPU interpreter; use hopper or flash2")
    check_capability(torch.cuda.get_device_capability(q.device), torch.cuda.get_device_name(q.device))
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tma_layout(name, t)
    triton.set_allocator(_scratch)
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(p.seq_q, s.block_m), p.batch * p.heads_q)
    _hopper_fwd_gluon[grid](q, k, v, o, lse, tuple(q.stride()[:3]), tuple(k.stride()[:3]), tuple(v.stride()[:3]),
                            tuple(o.stride()[:3]), p.heads_q, p.seq_q, p.seq_kv, p.scale * LOG2E, p.causal_offset,
                            GROUP=p.group_size, HEAD_DIM=p.head_dim, BLOCK_M=s.block_m, BLOCK_N=s.block_n,
                            CAUSAL=p.causal, MASK_COLS=p.seq_kv % s.block_n != 0, num_warps=s.num_warps)
    return ForwardResult(o, lse, {"lse": lse}, schedule, problem)
