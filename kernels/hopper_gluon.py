"""hopper_fa3: a forward with FlashAttention-3's structure, written in Gluon (`triton.experimental.gluon`).

Tiles of BLOCK_M = 128 query rows x one batch*head_q, walked by a persistent grid of min(tiles, 132) CTAs (the
registry's rule `fa3_persistent`: what measured faster, run9b and run10b): non-causal, CTA c computes tiles c, c + G, ...
(`memsim.algorithms_hopper.persistent_tiles`' order); causal, the entries of a host-built int32 table
(`memsim.algorithms_hopper.fa3_walk`: sections of kv heads whose K+V fit 16 MiB, Q blocks longest first inside a
section, each tile to the least-loaded CTA).  One CTA per tile (longest first when causal) stays the fallback
(`fa3_forward(persistent=False)`).  Three partitions per CTA (`gl.warp_specialize`):
  * the producer (the default partition, 4 warps, 24 registers; one thread issues): TMA loads of Q_i (two 64-row
    halves; in the persistent walk the next tile's once both consumers are done with this one's) and, per K/V block
    j, K_j and V_j into a ring of STAGES shared-memory stages, in FA3's order K_0, then
    (K_j, V_{j-1}) for j = 1.., then V_last, each stage handed over on a "ready" mbarrier (expected bytes) and taken
    back on an "empty" mbarrier both consumers arrive on (K_j as soon as S_j is done, V_j once P_j V_j is);
  * two consumer warpgroups (workers, 4 warps and 240 registers each), one per 64-row half of the Q block, sharing
    the K/V ring.  Each is written with FA3's intra-warpgroup overlap: step j issues S_j = Q K_j^T and
    O += P_{j-1} V_{j-1} as async wgmma, waits for S_j alone, runs the online softmax of S_j, then waits for P V and
    rescales O.  BUT ptxas (Triton 3.6's) moves that last wait above the softmax's MUFU.EX2 (sm_90a SASS), so inside
    one warpgroup the softmax does not overlap P V.  WAIT_FENCE (a switch, off by default) stores l_i to shared
    scratch before that wait, which keeps it below the exponentials in the SASS -- but measured no faster (run10b,
    0.97-1.03x): the ping-pong between the two warpgroups already keeps the tensor cores fed (notes/hopper.md,
    session 10);
  * ping-pong between the consumers: a warpgroup issues its two wgmma of a step only on its turn (an mbarrier per
    warpgroup; after issuing it hands the turn to the other), so the tensor cores run one group's matmuls while the
    other group computes its softmax.
Registers: setmaxnreg from the launch's maxnreg 168 x 12 warps -- 24 for the producer, 240 per consumer.
Causal: K/V blocks no row of the tile sees are never loaded; each consumer splits its blocks into those its 64 rows
see whole (no mask arithmetic) and the diagonal band (masked); block 0 (computed alone, before the steps) runs without
the mask where the consumer's rows see it whole (BLOCK0_UNMASKED), masked otherwise (the diagonal's tile, rows that
may see nothing).

Descriptors: built on the host (`TensorDescriptor`, kernel parameters): no per-CTA descriptor set-up in device
scratch, unlike hopper/hopper_ws.  They are 2-D over all rows [B*H*N, d], so the launcher needs contiguous q, k, v, o
and lengths that BLOCK_M and BLOCK_N divide (no tile crosses a head); the registry entry
(`memsim.algorithms_hopper.fa3_applies`) runs hopper's per-tile launch otherwise.

Bytes: exactly flash2_fwd's per tile (Q_i once, K_j + V_j per visible block, O_i and lse_i written once).
Numerics as hopper: raw scores, scale*log2(e) folded into one FMA with the running max, fp32 accumulation, lse in
natural-log units, a row that sees no key gives O = 0 and lse = -inf.

Gluon does not run in Triton's CPU interpreter: the sm_90a compile is checked on the CPU
(`benchmarks/hopper_gluon_compile.py --kernel fa3`), the numbers only on a GPU (tests/test_kernels_hopper_gluon.py).
"""
from __future__ import annotations

import torch
import triton

from memsim.algorithms_hopper import PERSISTENT_CTAS, fa3_applies, fa3_persistent, fa3_walk
from memsim.schedule import AttentionProblem, Schedule, ScheduleError

from ._common import LOG2E
from .registry import ForwardResult, launcher

try:  # Triton >= 3.5 ships Gluon; an older Triton can still import the module (the launcher refuses)
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, tma
    from triton.experimental.gluon.language.nvidia.hopper import warpgroup_mma, warpgroup_mma_wait
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
except ImportError:  # pragma: no cover - older Triton
    gluon = None

#: rows of Q per consumer warpgroup (one wgmma M)
HALF_M = 64
#: registers per thread: consumers (setmaxnreg), producer, and the launch cap (12 warps x 168 <= 64K registers)
CONSUMER_REGS, PRODUCER_REGS, MAXNREG = 240, 24, 168
#: the consumers' l_i scratch store before the wait for P V (`_hopper_fa3_fwd`'s WAIT_FENCE): the launch's default.
#: Off: exact on the H100 both ways (run10a), but not faster (run10b, medians of 4: the walk 0.97-1.00x at d=128
#: non-causal, 0.98-1.00x causal, 0.94-0.99x at d=64; per tile 0.99-1.05x).
WAIT_FENCE = False
#: causal: the first K/V block without the mask where a consumer's 64 rows see it whole (`_hopper_fa3_fwd`'s
#: BLOCK0_UNMASKED; before session 10's end block 0 always ran masked).  On: exact on the H100 (run10e, 8 causal
#: cases), the walk bf16 d=64 N=1024 / 4096 298 / 424 vs 288 / 417, d=128 422 / 591 vs 417 / 602 (medians of 3,
#: spreads 1-4 % but 24 % at d=128 N=1024): one step's mask arithmetic less per tile, at most a few %.
BLOCK0_UNMASKED = True

if gluon is not None:
    @gluon.jit
    def _fa3_tile(t, pid1, BH, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, H, WALK, GROUP: gl.constexpr, BLOCK_M: gl.constexpr,
                  BLOCK_N: gl.constexpr, CAUSAL: gl.constexpr, Q_FASTEST: gl.constexpr, PERSISTENT: gl.constexpr):
        """Tile t's (start_m, pid_bh, q_row, kv_row, n_blocks): its first query row, batch*head_q index, first row
        of the [B*H*N, d] Q and K/V views, and K/V blocks any of its rows sees.  Per-tile grid: t, pid1 are the
        program ids (axis order by Q_FASTEST); persistent: tile t of the walk (memsim.algorithms_hopper.
        persistent_tiles' order; causal: entry t of the host's table WALK, q_block * BH + bh, `fa3_walk`'s
        balanced order).  Per-tile causal: longest first (the last Q blocks, which see the most keys, first)."""
        n_m = SEQ_Q // BLOCK_M
        if PERSISTENT:
            if CAUSAL:
                code = gl.load(WALK + t)
                pid_m = code // BH
                pid_bh = code % BH
            elif Q_FASTEST:
                pid_m = t % n_m
                pid_bh = t // n_m
            else:
                pid_m = t // BH
                pid_bh = t % BH
        else:
            if Q_FASTEST:
                pid_m = t
                pid_bh = pid1
            else:
                pid_m = pid1
                pid_bh = t
            if CAUSAL:
                pid_m = n_m - 1 - pid_m
        start_m = pid_m * BLOCK_M
        q_row = pid_bh * SEQ_Q + start_m
        kv_row = (pid_bh // H * (H // GROUP) + pid_bh % H // GROUP) * SEQ_KV
        if CAUSAL:
            n_blocks = gl.cdiv(gl.minimum(gl.maximum(start_m + BLOCK_M + CAUSAL_OFFSET, 0), SEQ_KV), BLOCK_N)
        else:
            n_blocks = SEQ_KV // BLOCK_N
        return start_m, pid_bh, q_row, kv_row, n_blocks

    @gluon.jit
    def _fa3_load(desc, row, ready, empty, smem, g, STAGES: gl.constexpr):
        """Block number g (counted over the CTA's whole walk) of K or V into stage g % STAGES, once both consumers
        released that stage's previous block (mbarriers start as if phase 1 had completed: the first STAGES waits
        pass at once)."""
        st = g % STAGES
        mbarrier.wait(empty.index(st), ((g // STAGES) & 1) ^ 1)
        mbarrier.expect(ready.index(st), desc.block_type.nbytes)
        tma.async_copy_global_to_shared(desc, [row, 0], ready.index(st), smem.index(st))

    @gluon.jit
    def _fa3_producer(q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_bar, q_empty, k_ready, v_ready, k_empty,
                      v_empty, t0, t_step, n_tiles, pid1, BH, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, H, WALK, GROUP: gl.constexpr,
                      BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr, CAUSAL: gl.constexpr,
                      Q_FASTEST: gl.constexpr, PERSISTENT: gl.constexpr):
        """TMA loads only.  Per tile: Q_i's two halves (once both consumers released the previous tile's), then K_0,
        (K_j, V_{j-1}) for j >= 1, V_last -- the order the consumers use them in."""
        HALF: gl.constexpr = q_desc.block_type.shape[0]
        g = 0  # K/V blocks loaded so far
        n = 0  # tiles so far
        for t in range(t0, n_tiles, t_step):
            start_m, pid_bh, q_row, kv_row, n_blocks = _fa3_tile(t, pid1, BH, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, H, WALK,
                                                                 GROUP, BLOCK_M, BLOCK_N, CAUSAL, Q_FASTEST,
                                                                 PERSISTENT)
            mbarrier.wait(q_empty, (n & 1) ^ 1)
            for w in gl.static_range(2):
                mbarrier.expect(q_bar.index(w), q_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(q_desc, [q_row + w * HALF, 0], q_bar.index(w), q_smem.index(w))
            if n_blocks > 0:
                _fa3_load(k_desc, kv_row, k_ready, k_empty, k_smem, g, STAGES)
            for j in range(1, n_blocks):
                _fa3_load(k_desc, kv_row + j * BLOCK_N, k_ready, k_empty, k_smem, g + j, STAGES)
                _fa3_load(v_desc, kv_row + (j - 1) * BLOCK_N, v_ready, v_empty, v_smem, g + j - 1, STAGES)
            if n_blocks > 0:
                _fa3_load(v_desc, kv_row + (n_blocks - 1) * BLOCK_N, v_ready, v_empty, v_smem, g + n_blocks - 1,
                          STAGES)
            g += n_blocks
            n += 1

    @gluon.jit
    def _fa3_softmax(s, m_i, l_i, qk_scale2, cols, rows, CAUSAL_OFFSET, MASKED: gl.constexpr):
        """The online softmax of one block from raw scores s: (p, alpha, m, l), m in raw units, the exponent one FMA
        (s * scale*log2e - m * scale*log2e).  MASKED: the causal mask (column c visible from row r when
        c <= r + CAUSAL_OFFSET) and rows that may have seen nothing yet (m = -inf: exponents against 0, p = 0)."""
        if MASKED:
            s = gl.where(cols[None, :] <= rows[:, None] + CAUSAL_OFFSET, s, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(s, 1))
        if MASKED:
            m_sc = gl.where(m_new == float("-inf"), 0.0, m_new * qk_scale2)
        else:
            m_sc = m_new * qk_scale2
        p = gl.exp2(s * qk_scale2 - m_sc[:, None])
        alpha = gl.exp2(m_i * qk_scale2 - m_sc)
        l_new = l_i * alpha + gl.sum(p, 1)
        return p, alpha, m_new, l_new

    @gluon.jit
    def _fa3_step(j, g, acc, m_i, l_i, p_op, turn_ph, scratch, q_h, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty,
                  my_turn, other_turn, qk_scale2, rows, offs_n, CAUSAL_OFFSET, s_zero,
                  BLOCK_N: gl.constexpr, STAGES: gl.constexpr, MASKED: gl.constexpr, o_layout: gl.constexpr,
                  p_layout: gl.constexpr, WAIT_FENCE: gl.constexpr):
        """Step j >= 1 of a tile (g: block j's number over the walk) for one consumer warpgroup: on its turn,
        S_j = Q K_j^T and O += P_{j-1} V_{j-1} (async wgmma, in that order), the turn handed over; the softmax of S_j
        while P_{j-1} V_{j-1} runs; O rescaled."""
        st = g % STAGES
        pst = (g - 1) % STAGES
        mbarrier.wait(k_ready.index(st), (g // STAGES) & 1)
        mbarrier.wait(my_turn, turn_ph)
        s_tok = warpgroup_mma(q_h, k_smem.index(st).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        mbarrier.wait(v_ready.index(pst), ((g - 1) // STAGES) & 1)
        o_tok = warpgroup_mma(p_op, v_smem.index(pst), acc, is_async=True)
        mbarrier.arrive(other_turn, count=1)
        s = warpgroup_mma_wait(num_outstanding=1, deps=(s_tok,))
        mbarrier.arrive(k_empty.index(st), count=1)
        p, alpha, m_i, l_i = _fa3_softmax(s, m_i, l_i, qk_scale2, j * BLOCK_N + offs_n, rows, CAUSAL_OFFSET,
                                          MASKED=MASKED)
        if WAIT_FENCE:  # l_i needs every exponential of the step: ptxas keeps the wait for P V below this store
            scratch.store(l_i)
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok,))
        mbarrier.arrive(v_empty.index(pst), count=1)
        acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
        p_op = gl.convert_layout(p.to(p_op.dtype), p_layout)
        return acc, m_i, l_i, p_op, turn_ph ^ 1

    @gluon.jit
    def _fa3_consumer(o_desc, q_smem, o_smem, k_smem, v_smem, q_bar, q_empty, k_ready, v_ready, k_empty, v_empty,
                      turn, LSE, t0, t_step, n_tiles, pid1, BH, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, H, WALK, qk_scale2,
                      WG: gl.constexpr, GROUP: gl.constexpr, HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr,
                      BLOCK_N: gl.constexpr, STAGES: gl.constexpr, CAUSAL: gl.constexpr, Q_FASTEST: gl.constexpr,
                      PERSISTENT: gl.constexpr, WAIT_FENCE: gl.constexpr, BLOCK0_UNMASKED: gl.constexpr):
        """Consumer warpgroup WG (0 or 1): rows start_m + WG*64 .. +63 of each of its tiles.  Resident per tile: its
        Q half (shared memory), O (64 x d fp32), m, l, P_{j-1} (registers).  Epilogue: O through shared memory
        (per-tile grid: the Q half, free once the last S is done; persistent: its own staging tile, so the producer
        can load the next Q meanwhile) and TMA; lse by plain stores."""
        HALF: gl.constexpr = q_smem.type.shape[1]
        dtype: gl.constexpr = q_smem.dtype
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, BLOCK_N, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, HEAD_DIM, 16])
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        q_h = q_smem.index(WG)
        if PERSISTENT:
            o_h = o_smem.index(WG)
        else:
            o_h = q_h
        my_turn = turn.index(WG)
        other_turn = turn.index(1 - WG)
        offs_n = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
        s_zero = gl.zeros([HALF, BLOCK_N], gl.float32, layout=s_layout)
        if WAIT_FENCE:  # l_i's 64-float scratch (WAIT_FENCE in _fa3_step)
            scratch = gl.allocate_shared_memory(gl.float32, [HALF], gl.SwizzledSharedLayout(1, 1, 1, [0]))
        else:
            scratch = q_h
        # my k-th turn completes phase k of my barrier's count (warpgroup 0 starts: its first wait passes at once)
        turn_ph = 1 - WG
        g = 0  # K/V blocks consumed so far
        n = 0  # tiles so far
        for t in range(t0, n_tiles, t_step):
            start_m, pid_bh, q_row, kv_row, n_blocks = _fa3_tile(t, pid1, BH, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, H, WALK,
                                                                 GROUP, BLOCK_M, BLOCK_N, CAUSAL, Q_FASTEST,
                                                                 PERSISTENT)
            rows = start_m + WG * HALF + gl.arange(0, HALF, layout=gl.SliceLayout(1, s_layout))
            m_i = gl.full([HALF], float("-inf"), gl.float32, layout=gl.SliceLayout(1, s_layout))
            l_i = gl.zeros([HALF], gl.float32, layout=gl.SliceLayout(1, s_layout))
            acc = gl.zeros([HALF, HEAD_DIM], gl.float32, layout=o_layout)
            p_op = gl.zeros([HALF, BLOCK_N], dtype, layout=p_layout)
            # blocks [0, n_full) are seen whole by all 64 rows (causal); block 0 runs masked unless BLOCK0_UNMASKED
            # and n_full >= 1 (the rows see it whole; rows that may see nothing need the mask's -inf guard)
            if CAUSAL:
                n_full = gl.minimum(gl.maximum(start_m + WG * HALF + CAUSAL_OFFSET + 1, 0) // BLOCK_N, n_blocks)
            else:
                n_full = n_blocks
            whole0 = n_full >= 1
            n_full = gl.maximum(n_full, 1)

            mbarrier.wait(q_bar.index(WG), n & 1)
            if n_blocks > 0:  # block 0: S_0 and its softmax; P_0 V_0 goes with S_1
                st0 = g % STAGES
                mbarrier.wait(k_ready.index(st0), (g // STAGES) & 1)
                mbarrier.wait(my_turn, turn_ph)
                s_tok = warpgroup_mma(q_h, k_smem.index(st0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
                mbarrier.arrive(other_turn, count=1)
                turn_ph = turn_ph ^ 1
                s = warpgroup_mma_wait(num_outstanding=0, deps=(s_tok,))
                mbarrier.arrive(k_empty.index(st0), count=1)
                if CAUSAL and BLOCK0_UNMASKED:
                    if whole0:
                        p, alpha, m_i, l_i = _fa3_softmax(s, m_i, l_i, qk_scale2, offs_n, rows, CAUSAL_OFFSET,
                                                          MASKED=False)
                    else:
                        p, alpha, m_i, l_i = _fa3_softmax(s, m_i, l_i, qk_scale2, offs_n, rows, CAUSAL_OFFSET,
                                                          MASKED=True)
                else:
                    p, alpha, m_i, l_i = _fa3_softmax(s, m_i, l_i, qk_scale2, offs_n, rows, CAUSAL_OFFSET,
                                                      MASKED=CAUSAL)
                p_op = gl.convert_layout(p.to(dtype), p_layout)
            for j in range(1, n_full):  # whole blocks: no mask arithmetic
                acc, m_i, l_i, p_op, turn_ph = _fa3_step(
                    j, g + j, acc, m_i, l_i, p_op, turn_ph, scratch, q_h, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty,
                    my_turn, other_turn, qk_scale2, rows, offs_n, CAUSAL_OFFSET, s_zero, BLOCK_N=BLOCK_N,
                    STAGES=STAGES, MASKED=False, o_layout=o_layout, p_layout=p_layout,
                    WAIT_FENCE=WAIT_FENCE)
            for j in range(n_full, n_blocks):  # the diagonal band (causal only: n_full = n_blocks otherwise)
                acc, m_i, l_i, p_op, turn_ph = _fa3_step(
                    j, g + j, acc, m_i, l_i, p_op, turn_ph, scratch, q_h, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty,
                    my_turn, other_turn, qk_scale2, rows, offs_n, CAUSAL_OFFSET, s_zero, BLOCK_N=BLOCK_N,
                    STAGES=STAGES, MASKED=True, o_layout=o_layout, p_layout=p_layout,
                    WAIT_FENCE=WAIT_FENCE)
            if PERSISTENT:  # every S of the tile is done: the producer may load the next tile's Q half
                mbarrier.arrive(q_empty, count=1)
            if n_blocks > 0:  # the last P V
                lst = (g + n_blocks - 1) % STAGES
                mbarrier.wait(v_ready.index(lst), ((g + n_blocks - 1) // STAGES) & 1)
                o_tok = warpgroup_mma(p_op, v_smem.index(lst), acc, is_async=True)
                acc = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok,))
                mbarrier.arrive(v_empty.index(lst), count=1)

            # epilogue: a row that saw nothing: O = 0, lse = -inf
            empty = l_i == 0.0
            l_safe = gl.where(empty, 1.0, l_i)
            o = acc / gl.convert_layout(l_safe, gl.SliceLayout(1, o_layout))[:, None]
            lse = gl.where(empty, float("-inf"), (m_i * qk_scale2 + gl.log2(l_safe)) * 0.6931471805599453)
            tma.store_wait(0)  # the previous tile's O store has read the staging tile
            o_h.store(o.to(dtype))
            fence_async_shared()
            tma.async_copy_shared_to_global(o_desc, [q_row + WG * HALF, 0], o_h)
            gl.store(LSE + pid_bh.to(gl.int64) * SEQ_Q + rows, lse)
            g += n_blocks
            n += 1
        tma.store_wait(0)

    @gluon.jit
    def _hopper_fa3_fwd(q_desc, k_desc, v_desc, o_desc, LSE, WALK, H, BH, SEQ_Q, SEQ_KV, qk_scale2, CAUSAL_OFFSET,
                        GROUP: gl.constexpr, HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                        STAGES: gl.constexpr, CAUSAL: gl.constexpr, Q_FASTEST: gl.constexpr,
                        PERSISTENT: gl.constexpr, CONSUMER_REGS: gl.constexpr, WAIT_FENCE: gl.constexpr,
                        BLOCK0_UNMASKED: gl.constexpr):
        """The launch ``hopper_fa3_fwd``.  Per-tile (PERSISTENT False): grid (Q blocks, batch*head_q) or (batch*head_q,
        Q blocks) by `Schedule.grid_order`, one tile per CTA.  Persistent: grid (CTAs,), CTA c walks tiles c, c + G,
        ... (`memsim.algorithms_hopper.persistent_tiles`' order); its producer loads tile t+1's Q_i, K_j, V_j while
        the consumers finish tile t.  Persistent causal: WALK is the host's int32 table (`fa3_walk_table`): G + 1
        offsets, then the tiles (q_block * BH + bh) CTA by CTA; CTA c computes entries offs[c] .. offs[c+1] - 1.
        Otherwise WALK is not read.  WAIT_FENCE: each consumer stores l_i to shared scratch before waiting for
        P_{j-1} V_{j-1} (ptxas then keeps that wait below the softmax's exponentials: FA3's in-warpgroup overlap)."""
        dtype: gl.constexpr = q_desc.dtype
        HALF: gl.constexpr = q_desc.block_type.shape[0]
        gl.static_assert(BLOCK_M == 2 * HALF)
        if PERSISTENT:
            if CAUSAL:  # the host's balanced table
                t0 = gl.load(WALK + gl.program_id(0))
                n_tiles = gl.load(WALK + gl.program_id(0) + 1)
                t_step = 1
                WALK = WALK + gl.num_programs(0) + 1
            else:
                t0 = gl.program_id(0)
                t_step = gl.num_programs(0)
                n_tiles = SEQ_Q // BLOCK_M * BH
            pid1 = 0
        else:  # one tile: t = program_id(0), pid1 = program_id(1)
            t0 = gl.program_id(0)
            t_step = 1
            n_tiles = t0 + 1
            pid1 = gl.program_id(1)

        q_smem = gl.allocate_shared_memory(dtype, [2, HALF, HEAD_DIM], q_desc.layout)
        if PERSISTENT:
            o_smem = gl.allocate_shared_memory(dtype, [2, HALF, HEAD_DIM], o_desc.layout)
        else:
            o_smem = q_smem
        k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], k_desc.layout)
        v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], v_desc.layout)
        q_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        q_empty = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        turn = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        mbarrier.init(q_empty, count=2)  # both consumer warpgroups release the Q block
        for w in gl.static_range(2):
            mbarrier.init(q_bar.index(w), count=1)
            mbarrier.init(turn.index(w), count=1)
        for i in gl.static_range(STAGES):
            mbarrier.init(k_ready.index(i), count=1)
            mbarrier.init(v_ready.index(i), count=1)
            mbarrier.init(k_empty.index(i), count=2)  # both consumer warpgroups release a stage
            mbarrier.init(v_empty.index(i), count=2)

        gl.warp_specialize([
            (_fa3_producer, (q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_bar, q_empty, k_ready, v_ready,
                             k_empty, v_empty, t0, t_step, n_tiles, pid1, BH, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, H, WALK,
                             GROUP, BLOCK_M, BLOCK_N, STAGES, CAUSAL, Q_FASTEST, PERSISTENT)),
            (_fa3_consumer, (o_desc, q_smem, o_smem, k_smem, v_smem, q_bar, q_empty, k_ready, v_ready, k_empty,
                             v_empty, turn, LSE, t0, t_step, n_tiles, pid1, BH, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, H,
                             WALK, qk_scale2, 0, GROUP, HEAD_DIM, BLOCK_M, BLOCK_N, STAGES, CAUSAL, Q_FASTEST,
                             PERSISTENT, WAIT_FENCE, BLOCK0_UNMASKED)),
            (_fa3_consumer, (o_desc, q_smem, o_smem, k_smem, v_smem, q_bar, q_empty, k_ready, v_ready, k_empty,
                             v_empty, turn, LSE, t0, t_step, n_tiles, pid1, BH, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, H,
                             WALK, qk_scale2, 1, GROUP, HEAD_DIM, BLOCK_M, BLOCK_N, STAGES, CAUSAL, Q_FASTEST,
                             PERSISTENT, WAIT_FENCE, BLOCK0_UNMASKED)),
        ], [4, 4], [CONSUMER_REGS, CONSUMER_REGS])


def fa3_descriptors(p: AttentionProblem, s: Schedule, q, k, v, o):
    """The four host-side TMA descriptors: [B*H*N, d] row views of q, k, v, o; Q/O boxes of 64 rows (one consumer
    warpgroup's half), K/V boxes of block_n rows; NVMMA-swizzled shared layouts."""
    gdt = {torch.float16: gl.float16, torch.bfloat16: gl.bfloat16}[q.dtype]
    d = p.head_dim
    half = gl.NVMMASharedLayout.get_default_for([HALF_M, d], gdt)
    kv = gl.NVMMASharedLayout.get_default_for([s.block_n, d], gdt)
    rows = lambda t: t.reshape(-1, d)  # noqa: E731 -- a view (contiguous checked by the caller)
    return (TensorDescriptor.from_tensor(rows(q), [HALF_M, d], half),
            TensorDescriptor.from_tensor(rows(k), [s.block_n, d], kv),
            TensorDescriptor.from_tensor(rows(v), [s.block_n, d], kv),
            TensorDescriptor.from_tensor(rows(o), [HALF_M, d], half))


def fa3_grid(p: AttentionProblem, s: Schedule, persistent: bool | None = None) -> tuple:
    """The launch grid: persistent (min(tiles, 132) CTAs) or one CTA per tile in the schedule's axis order.
    persistent None: the registry's rule (`memsim.algorithms_hopper.fa3_persistent`: the walk); True or False: that
    variant (benchmarks and tests compare both)."""
    mb, bh = p.seq_q // s.block_m, p.batch * p.heads_q
    if fa3_persistent(p, s) if persistent is None else persistent:
        return (min(mb * bh, PERSISTENT_CTAS),)
    return (mb, bh) if s.grid_order == "q_fastest" else (bh, mb)


_WALK_TABLES: dict = {}


def fa3_walk_table(p: AttentionProblem, s: Schedule, device, section_heads: int | None = None) -> torch.Tensor:
    """`memsim.algorithms_hopper.fa3_walk` as the kernel's int32 table: G + 1 offsets (CTA c's entries are offs[c] ..
    offs[c+1] - 1), then every tile's q_block * B*Hq + bh, CTA by CTA.  Cached per device, problem, tiles and
    sections (a few KB): a launch's host time must stay below the kernel's (run10b: rebuilding the key from the walk
    itself cost ~110 us a call, more than the 165 us kernel at N=1024 on the device's host; the timings went noisy)."""
    key = (str(device), p, s.block_m, s.block_n, section_heads)
    t = _WALK_TABLES.get(key)
    if t is None:
        walk = fa3_walk(p, s, section_heads)
        bh, offs, codes = p.batch * p.heads_q, [0], []
        for tiles in walk:
            codes += [m * bh + h for m, h in tiles]
            offs.append(len(codes))
        t = torch.tensor(offs + codes, dtype=torch.int32, device=device)
        if len(_WALK_TABLES) >= 64:
            _WALK_TABLES.clear()
        _WALK_TABLES[key] = t
    return t


def fa3_args(p: AttentionProblem, s: Schedule, q, k, v, o, lse, persistent: bool | None = None,
             wait_fence: bool | None = None, section_heads: int | None = None, block0_unmasked: bool | None = None):
    """(positional args, keyword args) of `_hopper_fa3_fwd` -- shared by the launcher and the CPU compile check;
    persistent as in `fa3_grid`; wait_fence None: `WAIT_FENCE`; section_heads: the causal walk's sections
    (None: the registry's)."""
    if persistent is None:
        persistent = fa3_persistent(p, s)
    walk = fa3_walk_table(p, s, q.device, section_heads) if persistent and p.causal else lse  # lse: not read
    args = (*fa3_descriptors(p, s, q, k, v, o), lse, walk, p.heads_q, p.batch * p.heads_q, p.seq_q, p.seq_kv,
            p.scale * LOG2E, p.causal_offset)
    kw = dict(GROUP=p.group_size, HEAD_DIM=p.head_dim, BLOCK_M=s.block_m, BLOCK_N=s.block_n, STAGES=s.num_stages,
              CAUSAL=p.causal, Q_FASTEST=s.grid_order == "q_fastest",
              PERSISTENT=persistent, CONSUMER_REGS=CONSUMER_REGS,
              WAIT_FENCE=WAIT_FENCE if wait_fence is None else wait_fence,
              BLOCK0_UNMASKED=BLOCK0_UNMASKED if block0_unmasked is None else block0_unmasked, num_warps=4,
              maxnreg=MAXNREG)
    return args, kw


def check_fa3(p: AttentionProblem, s: Schedule, tensors=()) -> None:
    """What the Gluon launch runs (ScheduleError otherwise): fp16/bf16, d 64/128, block_m 128, block_n 64/128,
    num_warps 4 (one consumer warpgroup), num_stages 2-3, lengths the tiles divide, contiguous tensors."""
    if p.dtype not in ("fp16", "bf16") or p.head_dim not in (64, 128) or s.block_m != 2 * HALF_M \
            or s.block_n not in (64, 128) or s.num_warps != 4 or s.num_stages not in (2, 3):
        raise ScheduleError(f"the hopper_fa3 launch runs fp16/bf16, d 64/128, block_m 128, block_n 64/128, "
                            f"num_warps 4, num_stages 2-3; got {p.dtype}, d={p.head_dim}, {s.block_m}x{s.block_n} "
                            f"w{s.num_warps} s{s.num_stages}")
    if p.seq_q % s.block_m or p.seq_kv % s.block_n:
        raise ScheduleError(f"the hopper_fa3 launch needs lengths the tiles divide (seq_q % {s.block_m}, seq_kv % "
                            f"{s.block_n}); got {p.seq_q}, {p.seq_kv}")
    for name, t in tensors:
        if not t.is_contiguous():
            raise ValueError(f"hopper_fa3 reads {name} through a [B*H*N, d] TMA descriptor: it must be contiguous; it "
                             f"has strides {tuple(t.stride())} for shape {tuple(t.shape)}")


def fa3_sram_bytes(p: AttentionProblem, s: Schedule, persistent: bool | None = None) -> int:
    """Shared memory of the launch: the registry's figure for its own rule (`sram_bytes_per_cta`), or with the walk
    forced on or off: Q_i, stages x (K_j + V_j), and the persistent walk's own O staging tile."""
    from memsim.schedule import sram_bytes_per_cta
    if persistent is None or persistent == fa3_persistent(p, s):
        return sram_bytes_per_cta(p, s)
    o_stage = s.block_m * p.head_dim * p.element_bytes
    return sram_bytes_per_cta(p, s) + (o_stage if persistent else -o_stage)


def check_fa3_sram(p: AttentionProblem, s: Schedule, persistent, limit_bytes: int, device: str) -> int:
    """ScheduleError before the launch where the tiles do not fit the card's shared memory (Triton would stop with
    OutOfResources after compiling): e.g. d=128 128x128 with 3 stages fits one tile per CTA (229 760 B) but not the
    persistent walk, which stages O in its own tile (+32 KB)."""
    need = fa3_sram_bytes(p, s, persistent)
    if need > limit_bytes:
        walk = fa3_persistent(p, s) if persistent is None else persistent
        raise ScheduleError(f"hopper_fa3 fwd {s.block_m}x{s.block_n} with {s.num_stages} stages at d={p.head_dim} "
                            f"({'the persistent walk' if walk else 'one tile per CTA'}) needs {need} bytes of shared "
                            f"memory per CTA; {device} allows {limit_bytes}: use 2 stages or block_n 64")
    return need


def fa3_forward(problem: AttentionProblem, schedule: Schedule, q, k, v, persistent: bool | None = None,
                wait_fence: bool | None = None, section_heads: int | None = None,
                block0_unmasked: bool | None = None) -> ForwardResult:
    """Launch `_hopper_fa3_fwd` (sm_90 GPU only; "meta" tensors too, for `kernels.compiled_facts`' capture): o, and
    lse (B, Hq, Nq) fp32 in natural-log units.  persistent: the walk or one tile per CTA (None: the registry's rule,
    `fa3_persistent`; True/False outside the registry, for the benchmarks' comparison); wait_fence and
    section_heads: as `fa3_args` (the benchmarks' variants)."""
    p, s = problem, schedule
    if gluon is None:
        raise NotImplementedError("hopper_fa3 needs triton.experimental.gluon (Triton >= 3.5)")
    check_fa3(p, s, (("q", q), ("k", k), ("v", v)))
    if q.device.type not in ("cuda", "meta"):
        raise NotImplementedError("Gluon kernels do not run in Triton's CPU interpreter: hopper_fa3's own launch "
                                  "(fp16/bf16, d 64/128, 128-row tiles that divide the lengths) needs an sm_90 GPU; "
                                  "use hopper or flash2 here")
    if q.device.type == "cuda":
        from .hopper import check_capability
        check_capability(torch.cuda.get_device_capability(q.device), torch.cuda.get_device_name(q.device))
        check_fa3_sram(p, s, persistent, torch.cuda.get_device_properties(q.device).shared_memory_per_block_optin,
                       torch.cuda.get_device_name(q.device))
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    args, kw = fa3_args(p, s, q, k, v, o, lse, persistent, wait_fence, section_heads, block0_unmasked)
    _hopper_fa3_fwd[fa3_grid(p, s, persistent)](*args, **kw)
    return ForwardResult(o, lse, {"lse": lse}, schedule, problem)


@launcher("hopper_fa3", "fwd")
def hopper_fa3_forward(problem: AttentionProblem, schedule: Schedule, q, k, v) -> ForwardResult:
    """hopper_fa3 fwd: the Gluon launch where `memsim.algorithms_hopper.fa3_applies` (the registry entry's rule),
    else hopper's per-tile launch with the same schedule."""
    if not fa3_applies(problem, schedule):
        from .hopper import hopper_forward
        return hopper_forward(problem, schedule, q, k, v)
    return fa3_forward(problem, schedule, q, k, v)
