"""hopper_fa3 bwd: a backward with FlashAttention-3's structure, written in Gluon (`triton.experimental.gluon`).

Three launches (grids and bytes: `memsim.algorithms_hopper.HOPPER_FA3_BWD`):
  hopper_bwd_preprocess  hopper bwd's (kernels.hopper_bwd): delta_i = rowsum(dO_i * O_i), dQacc_i zeroed
  hopper_fa3_bwd         this module's Gluon kernel, one CTA per (K/V block of BLOCK_N = 128 rows, batch*head_kv):
                         K_j, V_j resident in shared memory, dK_j, dV_j accumulated in registers; for every q head of
                         the GQA group and every Q block i (BLOCK_M = 64 rows; 128 at d=64, the registry's default
                         there since session 13) that sees block j, the five tile
                         matmuls of the pair, dS_ij K_j added to dQacc_i by TMA bulk reduce-adds
  hopper_bwd_dq_convert  hopper bwd's: dQ_i = scale * dQacc_i in the input dtype
Where the registry folds the conversion in (`fa3_bwd_dq_fuse`, session 15: d=128 fp16 non-causal N <= 4096, bf16
since session 16; the switches `DQ_FUSE`, `DQ_ZERO_WS`) two launches: the last consumer warpgroup of each
(batch*head_kv, dQ column half) converts that half after every reduce-add into it has completed (per-head_kv
counters), and dQacc is a per-device workspace the pass leaves zero, so the preprocess computes delta only; at N <=
1024 each warpgroup counts in before its dK/dV stores (`fa3_bwd_fuse_early`, session 17: `FUSE_EARLY`).  Causal at
seq_kv 4096 the grid is launched in groups of one wave's heads, longest K/V block first (`fa3_bwd_grid_group`,
session 17: `GRID_GROUP`).

The kernel (`_hopper_fa3_bwd`), three partitions (`gl.warp_specialize`):
  * the producer (the default partition, 4 warps, 24 registers; one thread issues): TMA loads of K_j and V_j once,
    then Q_i and dO_i of each (q head, Q block) into a ring of STAGES shared-memory stages ("ready" mbarriers with
    expected bytes; "empty" mbarriers both consumers arrive on once their dK and dV matmuls have read the stage);
  * two consumer warpgroups (4 warps, 240 registers each); warpgroup w owns K/V rows w*64 .. w*64+63 of the block
    and their dK, dV accumulators (64 x d fp32 each, registers).  Per (q head, Q block) it computes, as async wgmma,
    S^T = K_w Q_i^T and dP^T = V_w dO_i^T (64 x BLOCK_M: the K/V rows are the wgmma's M, so P^T and dS^T come out
    in the layout the next matmuls take from registers), P^T = exp2(S^T * scale*log2e - lse_i*log2e) (lse_i, delta_i
    from the stage -- the producer's TMA, the registry's FA3_BWD_STAT_SMEM -- or, with `STAT_SMEM` off, by plain
    loads issued before the matmuls), dS^T = P^T (dP^T - delta_i), then dV_w += P^T dO_i and
    dK_w += dS^T Q_i (A from registers, B = the stage in shared memory).  dS^T goes to a double-buffered shared tile
    (BLOCK_N x BLOCK_M, each warpgroup its 64 rows); once both warpgroups have stored theirs (an mbarrier of count
    2), warpgroup w computes dQ_i[:, w*d/2 .. +d/2] = dS_ij K_j[:, w*d/2 ..] (A = the dS^T tile read transposed, B
    = a column half of K_j) and adds it to dQacc_i: by default (`DQ_TMA`, the registry's FA3_BWD_DQ_BY_TMA) one TMA
    bulk reduce-add of its BLOCK_M x d/2 fp32 tile, staged in shared memory (FlashAttention-3's way; Gluon 3.6 does
    not export it for Hopper: `_tma_reduce_add` calls Triton's descriptor reduce; at d=64 two staging tiles a
    warpgroup, `DQ_ASYNC`, the registry's `fa3_bwd_dq_async`); otherwise per-thread fp32 atomic
    adds (red.global.add.v2.f32; 8-9 % slower at d=128 N=16k, run11c).  One dS^T buffer is written while the other may
    still be read: a warpgroup passes iteration t's barrier only after the other finished iteration t-1 (it waits
    for its own dQ matmul before arriving), so buffer t % 2 is free when written at t.
    At d=128 with 2 stages (the registry's since session 14: `fa3_bwd_dq_lag`, `fa3_bwd_dq_stage1`) step t's dQ
    matmul and reduce-add run in step t+1 (`DQ_LAG`: four dS^T buffers, one count-2 mbarrier each; the wait is then
    for rows the other warpgroup stored a step earlier, so the two no longer leave a barrier together every step and
    one's exponentials run under the other's matmuls), warpgroup 1 starts once warpgroup 0 has its first S^T
    (`WG_OFFSET` 1), and each warpgroup stages its dQ tile by hand in its one staging tile, waiting for the copy
    engine's read of it only at the next store (`DQ_STAGE1`): 1.04-1.07x the lockstep kernel's whole backward
    (run16 medians on an H100).
Causal: K/V block j is visited only by Q blocks with a row that sees it (from ilo on); the Q blocks whose rows do not
all see every key of the block (the diagonal band, i < imid) apply the mask (key c visible from row r when
c <= r + causal_offset); a row that sees no key has lse = -inf: P = 0 for it (no NaN).
Epilogue: dK_j * scale and dV_j stored by plain stores from the registers (each warpgroup its 64 rows).

Bytes: hopper bwd's per pair (Q_i, dO_i, lse_i, delta_i read per visible pair; K_j, V_j once; dQacc rows x d x 4 added
per pair; dK_j, dV_j once).  Numerics as hopper bwd: fp32 accumulation, P and dS rounded to the input dtype before
their matmuls; dQ's sum order (reduce-adds from many CTAs) is not fixed: not bitwise deterministic.
Gluon does not run in Triton's CPU interpreter: the sm_90a compile is checked on the CPU
(`benchmarks/hopper_gluon_compile.py --kernel fa3bwd`), the numbers only on a GPU
(tests/test_kernels_hopper_gluon_bwd.py).
"""
from __future__ import annotations

import torch

from memsim.algorithms_hopper import (FA3_BWD_DQ_BY_TMA, FA3_BWD_DQ_LAG, FA3_BWD_STAT_SMEM, fa3_bwd_applies,
                                      fa3_bwd_dq_async, fa3_bwd_dq_fuse, fa3_bwd_dq_lag, fa3_bwd_dq_stage1,
                                      fa3_bwd_dq_zero_ws, fa3_bwd_epi_tma, fa3_bwd_fuse_early, fa3_bwd_grid_group)
from memsim.schedule import AttentionProblem, Schedule, ScheduleError, kernel_launches

from ._common import LOG2E
from .flash2 import _lse_spec
from .hopper_gluon import gluon
from .registry import launcher

if gluon is not None:  # Triton >= 3.5 ships Gluon (kernels.hopper_gluon imports it)
    from triton._C.libtriton import ir as _ir
    from triton.experimental.gluon.language._core import builtin as _builtin

    from .hopper_gluon import (TensorDescriptor, fence_async_shared, gl, mbarrier, tma, warpgroup_mma,
                               warpgroup_mma_wait)

#: K/V rows per consumer warpgroup (one wgmma M)
HALF_N = 64
#: registers per thread: consumers (setmaxnreg), producer, launch cap (12 warps x 168 <= 64K)
CONSUMER_REGS, PRODUCER_REGS, MAXNREG = 240, 24, 168
#: K_w, V_w held in registers as the A operands of S^T and dP^T (instead of read from shared memory by every wgmma)
KV_REGS = False
#: dQ's partial tiles added to dQacc by one TMA bulk reduce-add each (FlashAttention-3's way) instead of per-thread
#: fp32 atomics (red.global.add.v2.f32): the registry's `FA3_BWD_DQ_BY_TMA` (exact and faster on the H100, run11c);
#: a switch the benchmarks flip to time the atomics
DQ_TMA = FA3_BWD_DQ_BY_TMA
#: lse_i and delta_i loaded by the producer's TMA into each stage and read from shared memory when needed, instead of
#: plain loads issued before the matmuls whose 32 values a thread keeps live across them (at d=128 ptxas then spills
#: 152-168 B a thread; ncu run11b: 6.4 M spill requests): the registry's `FA3_BWD_STAT_SMEM` (exact and 1.06-1.21x
#: faster on the H100, run11d); a switch the benchmarks flip to time the plain loads
STAT_SMEM = FA3_BWD_STAT_SMEM
#: with DQ_TMA: two shared staging tiles per consumer warpgroup, stored and handed to the copy engine by hand
#: (`_tma_reduce_add_from_shared`), waiting only for the reduce of two iterations ago -- Triton's descriptor reduce
#: (DQ_TMA alone) waits for its staging read right after issuing it.  None: the registry's setting
#: (`fa3_bwd_dq_async`: d=64, 2 stages -- 1.12x there, a tie at d=128, run11e); True / False: the benchmarks' switch
DQ_ASYNC = None
#: the order of a consumer step's matmuls: 0 -- S^T, dP^T | dV, dK (issued together once dS^T is computed) | the dS^T
#: exchange, dQ, its reduce-add after dV and dK are done (nothing of this warpgroup's on the tensor core meanwhile);
#: 1 -- FlashAttention-3's: dV issued as soon as P^T is (it runs while dS^T is computed), then the exchange, dQ
#: issued before dK, and dQ's reduce-add staged while dK runs; 2 -- dV early only (else as 0).  A switch the benchmarks
#: flip (session 13).  (Tried on the CPU and dropped: as 1 with step i's dK left in flight into step i+1 -- ptxas
#: serialises every wgmma, C7512 "insufficient register resources", as session 11's cross-step pipelining did.)
MMA_ORDER = 0
#: with DQ_ASYNC (its two staging tiles per warpgroup; MMA_ORDER 0 / 2): step i's dQ tile kept in registers and staged
#: + reduce-added at step i+1 once S^T_{i+1}, dP^T_{i+1} are issued (the copy engine's hand-off under the tensor
#: core's work instead of between steps).  A switch the benchmarks flip (session 13)
DQ_DEFER = False
#: with DQ_TMA (MMA_ORDER 0 / 2): each consumer warpgroup adds its own 64 K/V rows' share of dQ_i (dS_i,w K_w, two
#: column halves of 32 fp32 registers each, one reduce-add each) instead of exchanging dS^T with the other warpgroup:
#: no cross-warpgroup barrier per step (the lockstep memsim models, FA3_BWD_LOCKSTEP), twice the reduce-adds' bytes.
#: Session 13b (run14, H100): exact (50 GPU tests) and slower on all 12 grid cells (the whole backward 0.84-0.94x, the
#: pass 0.80-0.83x: the doubled adds and K = 64 dQ matmuls cost more than the barrier did) -- off; a switch the
#: benchmarks flip
DQ_KSPLIT = False
#: with DQ_TMA (MMA_ORDER 0, not DQ_KSPLIT / DQ_DEFER): step t's dQ matmul runs in step t+1 (after that step's dV,
#: dK are issued and its dS^T stored): the wait for the other warpgroup's dS^T rows is then for rows it stored a step
#: earlier -- no lockstep forced every step (the registered kernel waits for this step's rows, so both warpgroups
#: leave the barrier together and do their exponentials at the same time while the tensor core idles).  Four dS^T
#: buffers and four count-2 mbarriers (a warpgroup may run up to a step ahead of the other: buffer t is rewritten at
#: t+4, when both have read it; three would race), + 2 x BLOCK_N x BLOCK_M x 2 bytes of shared memory (d=128:
#: 230 480 B compiled, under 227 KB).  None: the registry's setting (`fa3_bwd_dq_lag`: d=128, 2 stages, since run15
#: of session 14 -- 1.03-1.06x the lockstep there); True / False: the benchmarks' switch.  (Tried on the CPU and dropped: step t's dQ
#: issued right behind step t+1's S^T, dP^T so that it runs during the exponentials -- its 32 fp32 registers in
#: flight there make ptxas serialise every wgmma, C7512, 232-264 B local, as DQ_DEFER at d=128.)
DQ_LAG = None
#: a start-up offset of consumer warpgroup 1 (with DQ_LAG: it then persists; without it the per-step barrier
#: re-synchronises the two): 0 -- none; 1 -- warpgroup 1 starts once warpgroup 0 has its first S^T (its exponentials
#: then run while warpgroup 1's S^T, dP^T do); 2 -- once warpgroup 0 has issued its first dV, dK.  None: the
#: registry's (`FA3_BWD_DQ_LAG["wg_offset"]`) where DQ_LAG is on, else 0.  Session 14
WG_OFFSET = None
#: with DQ_TMA (MMA_ORDER 0, not DQ_ASYNC): one dQ staging tile per warpgroup (the shared memory of Triton's own
#: descriptor-reduce staging), stored and handed to the copy engine by hand, and the wait for the copy engine to have
#: read it moved from right after the issue (Triton's lowering: DEPBAR.LE SB0, 0x0 + a barrier in every step's tail)
#: to before the next step's store into it.  None: the registry's setting (`fa3_bwd_dq_stage1`: d=128, 2 stages,
#: since run16 of session 14 -- with DQ_LAG 1.01-1.06x on 5 of the 6 d=128 cells, a tie on one); True / False: the
#: benchmarks' switch
DQ_STAGE1 = None
#: with DQ_LAG: the two consumer warpgroups take turns issuing their matmuls -- warpgroup 0's S^T, dP^T, then 1's,
#: then 0's dV, dK (+ the previous step's dQ), then 1's, ... (two count-1 mbarriers; WG_OFFSET then unused): one
#: warpgroup's exponentials and dQ staging run while the other's matmuls do (FA3's forward ping-pong, here kept by
#: the turns instead of the start-up offset alone).  Session 14, a switch the benchmarks flip
PINGPONG = False
#: with DQ_TMA: the dQ conversion folded into the pass (session 15): each consumer warpgroup, after its last
#: reduce-add has completed (cp.async.bulk.wait_group 0, not only the staging read) and a proxy fence, counts itself
#: in on a per-(batch*head_kv, column half) counter (acq_rel, GPU scope); the last of the SEQ_KV / BLOCK_N warpgroups
#: of that half reads the half's dQacc rows of every q head of the group from the L2 (.cg), writes dQ = scale * dQacc
#: in the input dtype and sets the counter back to 0 -- no ``hopper_bwd_dq_convert`` launch (decode's fused combine
#: does the same, kernels.decode_kv `combine_counters`).  None: the registry's (`fa3_bwd_dq_fuse`); True / False:
#: the benchmarks' switch
DQ_FUSE = None
#: with DQ_FUSE: dQacc is a per-device workspace kept zero between launches -- the last warpgroup writes zeros back
#: over the rows it converted -- so the preprocess no longer zeroes it (it reads O, dO and writes delta only).  The
#: launches of one device share it: backward passes with it must not run concurrently on two streams (as decode's
#: fused combine).  None: the registry's (`fa3_bwd_dq_zero_ws`); True / False: the benchmarks' switch
DQ_ZERO_WS = None
#: timing diagnostics of DQ_FUSE (never the registry's; dQ then wrong): 1 -- the full wait + the counter, no
#: conversion (what the end-of-CTA completion wait costs); 2 -- the counter after the staging read only (no full
#: wait: a race), with the conversion (what the conversion costs).  Session 15, prepared for the next call.
#: 3 (session 18) -- the conversion without writing the zeros back (the workspace then not zero: every later dQ of
#: that workspace wrong): what the zeros cost (run23: 1.5-6 %; ZERO_NEXT -- the zeros by every CTA's producer warps
#: into the other of two workspaces, commit 3b5fec3 -- recovered at most a third of it and was removed)
FUSE_DIAG = 0
#: with DQ_FUSE and DQ_LAG + DQ_STAGE1 (d=128, 2 stages): the conversion per (chunk of FUSE_STEP Q blocks of a q
#: head, column half) inside the loop instead of per (batch*head_kv, column half) at the CTA's end (session 16): where
#: a step's tile ends its chunk, the staging tile's reuse wait becomes a full completion wait
#: (cp.async.bulk.wait_group 0 + fence.proxy.async.global: the reduce-adds issued up to a step earlier have landed),
#: the warpgroup counts itself in on the chunk's counter (acq_rel, GPU scope), and the last of the K/V blocks that
#: visit the chunk (all of them non-causal; causal those with j*BLOCK_N < (i+1)*BLOCK_M + offset, i its last Q
#: block) converts the chunk (and re-zeroes it with DQ_REZERO) -- the tail's one-warpgroup conversion of a whole
#: head spread over the pass.  Causal with seq_q > seq_kv (Q blocks no K/V block visits) keeps the end-of-CTA form.
#: 0 / False: off (the registry has no rule for it); n (True = 1): chunks of n Q blocks -- the benchmarks' switch.
#: run19 (chunks of 1, H100): exact, 0.76-0.91x the three-launch kernel (a full wait + GPU-scope atomic every step);
#: run20 (bf16 N=1024 non-causal, 3 rounds): chunks of 4 1.00x, of 16 (one per q head there) 1.05x = the end-of-CTA
#: form's own gain -- the arrivals cost more than spreading the conversion saves.  Not adopted
FUSE_STEP = 0
#: with DQ_FUSE (the end-of-CTA form): count in on the counter before the dK/dV epilogue stores instead of after
#: them -- the acq_rel atomic's MEMBAR.ALL.GPU waits for this thread's outstanding stores to be acknowledged, and
#: after the epilogue those are 2 x 16 KB of plain stores per warpgroup.  Session 16; run21 (H100, session 17):
#: exact, 1.02x the fold at N=1024 (both dtypes), a tie at N=4096.  None: the registry's (`fa3_bwd_fuse_early`:
#: d=128 non-causal N <= 1024, where the fold runs); True / False: the benchmarks' switch
FUSE_EARLY = None
#: causal, the (K/V blocks, batch*head_kv) grid: the launch order takes groups of n heads, every head's K/V block 0
#: (the longest) first, then block 1, ... (`_fa3_bwd_block`); -1: n = SMs // K/V blocks (one wave a group: 16 heads
#: at N=1024, 4 at 4096, 1 = the plain order at 16384 on an H100); 0: off (the plain order: longest first within a
#: head).  The heads-fastest grid (all heads' block 0 first) was 0.58-0.73x at N <= 4096 (session 14: every
#: concurrent CTA streams another head through the L2); one wave's heads keep 16 MB of Q, dO, dQacc live at N=1024.
#: Session 16; run21 (H100, session 17): exact, 1.02-1.03x the plain order at causal N=4096, a tie at N=1024.  None:
#: the registry's (`fa3_bwd_grid_group`: -1 at d=128 2 stages causal seq_kv 4096); n / -1 / 0: the benchmarks' switch
GRID_GROUP = None
#: the registered d=128 2-stage kernel (DQ_LAG + DQ_STAGE1 + STAT_SMEM, WG_OFFSET 1, three launches) as a persistent
#: walk: grid (min(items, SMs),), CTA c takes the items (K/V block, batch*head_kv) of a host table (`fa3_bwd_walk`:
#: sections of one wave's heads, longest first, LPT); its producer loads item t+1's K_j, V_j once both consumers have
#: done item t's last dQ matmul (kv_free) and its first stages while they finish item t (the stage ring, the dS^T
#: buffers and their barriers numbered over the whole walk).  For the short CTAs of causal N <= 4096 (2048 CTAs of
#: 2-16 steps at N=1024): the fill and drain of each CTA overlapped, the tail balanced.  Session 16, prepared (NOT
#: RUN): a switch the benchmarks flip (run22)
PERSISTENT = False
#: Removed in session 22 (measured, not helping; each lives at commit 0ba58c3 with its tests and diag switches):
#: WG_BAND (warpgroup 1 skips the causal step whose Q block sees none of its keys: run25 a tie), KV_PREFETCH (the
#: producer's L2 prefetch of the K/V tiles one wave ahead: run26 0.97-1.00x), STREAM_SPLIT (the three launches per
#: batch group on two streams: run27 host-bound, 1.02x on the GPU at best), WALK_PF (PERSISTENT's next item's K/V
#: prefetched into the L2: run32 0.98x, the first S^T later), EPI_EARLY (the plain dK/dV stores before the last dQ:
#: run32 1.06x (2 of 3), superseded by EPI_TMA)
#: PERSISTENT's CTAs: None -- the device's SMs (min items); n -- n (the GPU tests use a few, so that every CTA walks
#: many items of several heads and lengths)
PERSISTENT_CTAS = None
#: timing diagnostic (session 22; never the registry's, changes no number): per item (K/V block, batch*head_kv; the
#: walk entry with PERSISTENT) the SM's clock64 at its milestones, `STAMP_SLOTS` int64 a item in the buffer passed as
#: the counters' argument (CNT: unused where the conversion is not folded in) -- `STAMP_NAMES` says which slot is
#: which; benchmarks/hopper_fa3_bwd_stamps.py reads them back (where an item's fixed cost goes: launch gap, fill,
#: first step, drain)
STAMPS = False
STAMP_SLOTS = 16
STAMP_NAMES = ("smid", "p_start", "p_kv_issued", "p_last_issued", "w0_kv", "w0_first_s", "w0_loop_end",
               "w0_last_dq", "w0_end", "w1_start", "w1_first_s", "w1_loop_end", "w1_last_dq", "w1_end",
               "gt_start", "gt_w0_end")
#: PERSISTENT's host walk (LPT): an item's cost = its steps + WALK_ITEM_COST (its fill and drain counted in steps;
#: session 16's 1; run24 / run28's fits put the per-CTA fixed cost at 3-5 steps)
WALK_ITEM_COST = 1
#: with DQ_STAGE1 (d=128, 2 stages; not DQ_ASYNC): each consumer warpgroup's dK_w, dV_w leave through its dQ staging
#: tile (16 KB = one 64 x d bf16/fp16 tile) by TMA stores -- dK_w stored to shared memory, one bulk store, its read
#: waited for, then dV_w the same -- instead of 2 x 32 plain 4-byte stores a thread from the MMA layout (session 22's
#: stamps, run32: that epilogue takes 2.5 us of an item at causal N=1024, ~3 us in PERSISTENT's walk, against ~2.2
#: us a step).  DK, DV are then passed as TMA descriptors (64 x d boxes).  None: the registry's (`fa3_bwd_epi_tma`:
#: d=128 2 stages, seq_kv <= 4096, not beside the late fold -- run33 1.04-1.08x there); True / False: the benchmarks'
#: switch
EPI_TMA = None

if gluon is not None:
    @_builtin
    def _tma_reduce_add(desc, offsets, value, _semantic=None):
        """value (registers) added to the descriptor's box at offsets by the copy engine (cp.reduce.async.bulk.tensor
        .add): Triton's tensor-descriptor atomic add, which Gluon 3.6 does not export for Hopper; Triton's TMA lowering
        stages the value in shared memory, fences, issues the bulk reduce and waits until it has read the stage."""
        offsets = _semantic._convert_to_ir_values(offsets, require_i64=False)
        _semantic.builder.create_descriptor_reduce(_ir.DESCRIPTOR_REDUCE_KIND.ADD, desc.handle, value.handle, offsets)

    @_builtin
    def _tma_reduce_add_from_shared(desc, offsets, src, _semantic=None):
        """src (a shared-memory tile the caller stored and fenced) added to the descriptor's box at offsets by the copy
        engine (cp.reduce.async.bulk.tensor.add, one bulk group); `tma.store_wait(n)` waits until at most n such
        groups still read their shared memory."""
        offsets = _semantic._convert_to_ir_values(offsets, require_i64=False)
        _semantic.builder.create_async_tma_reduce(_ir.DESCRIPTOR_REDUCE_KIND.ADD, desc.handle, offsets, src.handle)

    @gluon.jit
    def _bulk_wait_on(t):
        """Every bulk async group this thread issued has completed -- its writes landed, not only its shared-memory
        read (cp.async.bulk.wait_group 0; Gluon's `tma.store_wait` is the .read form) -- and is ordered before the
        generic proxy (fence.proxy.async.global); issued once per element of t (the caller's tensor: its layout
        decides how often a thread issues it)."""
        gl.inline_asm_elementwise("cp.async.bulk.wait_group 0;\n\tfence.proxy.async.global;\n\tmov.u32 $0, 0;",
                                  "=r,r", [t], dtype=gl.int32, is_pure=False, pack=1)

    @gluon.jit
    def _bulk_wait_all():
        """`_bulk_wait_on` once per thread of the warpgroup (a 128-element tensor, one each)."""
        one: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
        _bulk_wait_on(gl.arange(0, 128, layout=one))

    @gluon.jit
    def _stamp(BUF, item, slot: gl.constexpr, KIND: gl.constexpr = 0):
        """STAMPS: slot `slot` of item `item` in BUF (int64, STAMP_SLOTS a item) -- KIND 0: this SM's clock64; 1:
        the global timer (ns); 2: the SM's id.  Read by every thread of a 4-warp partition (the same value lands)."""
        one: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
        z = gl.zeros([1], gl.int32, layout=one)
        if KIND == 2:
            t = gl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r,r", [z], dtype=gl.int32, is_pure=False,
                                          pack=1).to(gl.int64)
        elif KIND == 1:
            t = gl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l,r", [z], dtype=gl.int64, is_pure=False,
                                          pack=1)
        else:
            t = gl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l,r", [z], dtype=gl.int64, is_pure=False,
                                          pack=1)
        gl.store(BUF + (item.to(gl.int64) * 16 + slot) + z, t)

    @gluon.jit
    def _dq_stage_add(dq_desc, dq_buf, dq, row, col, WAIT: gl.constexpr):
        """dQ's tile through a staging tile of shared memory to the copy engine: (WAIT >= 0: first wait until at most
        WAIT bulk groups still read their shared memory) store it, fence, one bulk reduce-add at (row, col)."""
        if WAIT >= 0:
            tma.store_wait(WAIT)
        dq_buf.store(dq)
        fence_async_shared()
        _tma_reduce_add_from_shared(dq_desc, [row, col], dq_buf)

    @gluon.jit
    def _fuse_count_in(CNT, pid_bhkv, WG: gl.constexpr, t, WAIT: gl.constexpr):
        """The end-of-CTA fold's count-in: (WAIT: every reduce-add of this thread completed -- `_bulk_wait_on` t, or
        with t None `_bulk_wait_all`) the warpgroup's threads past a barrier, then one release/acquire add at GPU
        scope on the (batch*head_kv, column half) counter; (the counter's address, how many warpgroups had arrived
        before)."""
        if WAIT:
            if t is None:
                _bulk_wait_all()
            else:
                _bulk_wait_on(t)
        gl.thread_barrier()
        cnt = CNT + pid_bhkv * 2 + WG
        arrived = gl.atomic_add(cnt, 1, sem="acq_rel", scope="gpu")
        return cnt, arrived

    @gluon.jit
    def _fuse_boundary(row, SEQ_Q, BLOCK_M: gl.constexpr, CHUNK: gl.constexpr):
        """FUSE_STEP: whether the dQ tile at row (its Q block i of its head) is the last of its chunk of CHUNK Q
        blocks (or of the head) -- where a warpgroup counts itself in."""
        i = (row % SEQ_Q) // BLOCK_M
        return ((i + 1) % CHUNK == 0) | (i == SEQ_Q // BLOCK_M - 1)

    @gluon.jit
    def _fa3_bwd_fuse_chunk(CNT, DQACC, DQ, row, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, sm_scale, WG: gl.constexpr,
                            HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                            CAUSAL: gl.constexpr, DQ_REZERO: gl.constexpr, CHUNK: gl.constexpr, dtype: gl.constexpr):
        """FUSE_STEP: row is the last dQ tile of its chunk (CHUNK Q blocks of one q head) this warpgroup adds to, and
        every reduce-add it issued up to it has completed (the caller waited); count it in on the chunk's counter
        (per q head, chunk, column half), and the last K/V block to do so converts the chunk's tiles: dQ = scale *
        dQacc in the input dtype (.cg loads, from the L2; 32 rows at a time: the loop's dK, dV stay live), zeros
        written back with DQ_REZERO, the counter reset.  Every K/V block that visits a Q block of the chunk visits
        its last one (causal visibility grows with the row), so it arrives exactly once."""
        HALF_D: gl.constexpr = HEAD_DIM // 2
        n_m = SEQ_Q // BLOCK_M
        i = (row % SEQ_Q) // BLOCK_M
        c = i // CHUNK
        head0 = row - i * BLOCK_M
        gl.thread_barrier()  # every thread of the warpgroup past the wait before the one release at GPU scope
        cnt = CNT + ((row // SEQ_Q) * gl.cdiv(n_m, CHUNK) + c) * 2 + WG
        arrived = gl.atomic_add(cnt, 1, sem="acq_rel", scope="gpu")
        n_kv = SEQ_KV // BLOCK_N
        if CAUSAL:  # K/V block j visits Q block i when j * BLOCK_N < (i + 1) * BLOCK_M + offset
            need = gl.minimum(gl.cdiv(gl.maximum((i + 1) * BLOCK_M + CAUSAL_OFFSET, 0), BLOCK_N), n_kv)
        else:
            need = n_kv
        if arrived == need - 1:
            gl.store(cnt, 0)  # no warpgroup of this chunk touches it again in this launch
            cv_layout: gl.constexpr = gl.BlockedLayout([1, 4], [32 // (HALF_D // 4), HALF_D // 4], [4, 1], [1, 0])
            cr = gl.arange(0, BLOCK_M // 2, layout=gl.SliceLayout(1, cv_layout))
            cc = WG * HALF_D + gl.arange(0, HALF_D, layout=gl.SliceLayout(0, cv_layout))
            o = (head0.to(gl.int64) + cr)[:, None] * HEAD_DIM + cc[None, :]
            for h in range(2 * c * CHUNK, 2 * (i + 1)):  # the chunk's tiles, 32 rows at a time
                oh = o + h * (BLOCK_M // 2) * HEAD_DIM
                a = gl.load(DQACC + oh, cache_modifier=".cg")
                gl.store(DQ + oh, (a * sm_scale).to(dtype))
                if DQ_REZERO:  # the workspace left zero for the next launch
                    gl.store(DQACC + oh, gl.zeros([BLOCK_M // 2, HALF_D], gl.float32, layout=cv_layout))

    @gluon.jit
    def _lag_dq_add(dq_desc, dq_buf, dq, dq_row_prev, dq_row_pp, had_pp, CNT, DQACC, DQ, SEQ_Q, SEQ_KV, CAUSAL_OFFSET,
                    sm_scale, WG: gl.constexpr, HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                    CAUSAL: gl.constexpr, DQ_REZERO: gl.constexpr, FUSE_STEP: gl.constexpr,
                    DQ_TILES: gl.constexpr, dtype: gl.constexpr):
        """DQ_LAG with its DQ_TILES staging tiles: the previous step's dQ tile (rows dq_row_prev) staged and
        reduce-added, the oldest reduce waited for first.  With FUSE_STEP, where the tile before it (rows dq_row_pp;
        had_pp: there was one) ends its chunk, the wait is a full completion wait and, after the add, that chunk is
        counted in (and converted by its last K/V block, `_fa3_bwd_fuse_chunk`)."""
        if FUSE_STEP > 0:  # the tile before ends its chunk: wait until it has landed
            bnd = had_pp & _fuse_boundary(dq_row_pp, SEQ_Q, BLOCK_M, FUSE_STEP)
            if bnd:
                _bulk_wait_all()
            else:
                tma.store_wait(DQ_TILES - 1)
            _dq_stage_add(dq_desc, dq_buf, dq, dq_row_prev, WG * (HEAD_DIM // 2), -1)
            if bnd:
                _fa3_bwd_fuse_chunk(CNT, DQACC, DQ, dq_row_pp, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, sm_scale, WG, HEAD_DIM,
                                    BLOCK_M, BLOCK_N, CAUSAL, DQ_REZERO, FUSE_STEP, dtype)
        else:
            _dq_stage_add(dq_desc, dq_buf, dq, dq_row_prev, WG * (HEAD_DIM // 2), DQ_TILES - 1)

    @gluon.jit
    def _fa3_bwd_block(SEQ_Q, SEQ_KV, CAUSAL_OFFSET, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                       CAUSAL: gl.constexpr, Q_FASTEST: gl.constexpr, GRID_GROUP: gl.constexpr = 0):
        """(start_n, pid_bhkv, ilo, imid, nblk): the CTA's first K/V row and batch*head_kv; Q blocks [ilo, n_m) see
        block j (nblk of them), [ilo, imid) need the causal mask.  GRID_GROUP n > 0 (the (K/V blocks, batch*head_kv)
        grid only): the CTAs in launch order take groups of n heads, K/V block 0 of each of the n first, then block
        1, ... -- longest first (causal) over n heads, where the plain order is longest first within one head."""
        if Q_FASTEST and GRID_GROUP > 0:
            n_kv = gl.num_programs(0)
            lin = gl.program_id(1) * n_kv + gl.program_id(0)
            grp = lin // (GRID_GROUP * n_kv)
            r = lin - grp * (GRID_GROUP * n_kv)
            gsz = gl.minimum(gl.num_programs(1) - grp * GRID_GROUP, GRID_GROUP)  # the last group may be smaller
            pid_n = r // gsz
            pid_bhkv = grp * GRID_GROUP + r % gsz
        elif Q_FASTEST:
            pid_n = gl.program_id(0)
            pid_bhkv = gl.program_id(1)
        else:
            pid_n = gl.program_id(1)
            pid_bhkv = gl.program_id(0)
        start_n = pid_n * BLOCK_N
        n_m = SEQ_Q // BLOCK_M
        if CAUSAL:  # row r sees key c when c <= r + offset: first row seeing start_n, first seeing start_n + BN - 1
            ilo = gl.minimum(gl.maximum(start_n - CAUSAL_OFFSET, 0) // BLOCK_M, n_m)
            imid = gl.minimum(gl.cdiv(gl.maximum(start_n + BLOCK_N - 1 - CAUSAL_OFFSET, 0), BLOCK_M), n_m)
        else:
            ilo = 0
            imid = 0
        return start_n, pid_bhkv, ilo, imid, n_m - ilo

    @gluon.jit
    def _fa3_bwd_producer(q_desc, do_desc, k_desc, v_desc, lse_desc, delta_desc, q_smem, do_smem, k_smem, v_smem,
                          lse_smem, delta_smem, kv_bar, ready, empty, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, GROUP: gl.constexpr,
                          BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr, CAUSAL: gl.constexpr,
                          Q_FASTEST: gl.constexpr, STAT_SMEM: gl.constexpr, GRID_GROUP: gl.constexpr, SBUF,
                          STAMPS: gl.constexpr):
        """TMA loads only: K_j and V_j once, then (Q_i, dO_i; with STAT_SMEM also lse_i, delta_i) per iteration into
        stage it % STAGES once both consumers released that stage's previous pair (the empty barriers start as if
        phase 1 had completed).  STAMPS: the item's start, K/V issue and last issue (`STAMP_NAMES`)."""
        start_n, pid_bhkv, ilo, imid, nblk = _fa3_bwd_block(SEQ_Q, SEQ_KV, CAUSAL_OFFSET, BLOCK_M, BLOCK_N, CAUSAL,
                                                            Q_FASTEST, GRID_GROUP)
        if STAMPS:
            item = pid_bhkv * (SEQ_KV // BLOCK_N) + start_n // BLOCK_N
            _stamp(SBUF, item, 1)
            _stamp(SBUF, item, 14, 1)
            _stamp(SBUF, item, 0, 2)
        kv_row = pid_bhkv * SEQ_KV + start_n
        mbarrier.expect(kv_bar, k_desc.block_type.nbytes + v_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(k_desc, [kv_row, 0], kv_bar, k_smem)
        tma.async_copy_global_to_shared(v_desc, [kv_row, 0], kv_bar, v_smem)
        if STAMPS:
            _stamp(SBUF, item, 2)
        for it in range(GROUP * nblk):
            g = it // nblk
            q_row = (pid_bhkv * GROUP + g) * SEQ_Q + (ilo + it - g * nblk) * BLOCK_M
            st = it % STAGES
            mbarrier.wait(empty.index(st), ((it // STAGES) & 1) ^ 1)
            if STAT_SMEM:
                mbarrier.expect(ready.index(st), q_desc.block_type.nbytes + do_desc.block_type.nbytes
                                + lse_desc.block_type.nbytes + delta_desc.block_type.nbytes)
                bh = pid_bhkv * GROUP + g
                start_m = (ilo + it - g * nblk) * BLOCK_M
                tma.async_copy_global_to_shared(lse_desc, [bh, start_m], ready.index(st), lse_smem.index(st))
                tma.async_copy_global_to_shared(delta_desc, [bh, start_m], ready.index(st), delta_smem.index(st))
            else:
                mbarrier.expect(ready.index(st), q_desc.block_type.nbytes + do_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(q_desc, [q_row, 0], ready.index(st), q_smem.index(st))
            tma.async_copy_global_to_shared(do_desc, [q_row, 0], ready.index(st), do_smem.index(st))
        if STAMPS:
            _stamp(SBUF, item, 3)

    @gluon.jit
    def _fa3_bwd_epilogue(DK, DV, dk, dv, start_n, pid_bhkv, SEQ_KV, sm_scale, WG: gl.constexpr,
                          HALF_N: gl.constexpr, HEAD_DIM: gl.constexpr, kv_layout: gl.constexpr, dtype: gl.constexpr):
        """Consumer warpgroup WG's 64 rows of dK_j (scaled) and dV_j, plain stores from the registers."""
        r = start_n + WG * HALF_N + gl.arange(0, HALF_N, layout=gl.SliceLayout(1, kv_layout))
        c = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, kv_layout))
        offs = (pid_bhkv.to(gl.int64) * SEQ_KV + r)[:, None] * HEAD_DIM + c[None, :]
        gl.store(DK + offs, (dk * sm_scale).to(dtype))
        gl.store(DV + offs, dv.to(dtype))

    @gluon.jit
    def _fa3_bwd_epilogue_tma(dk_desc, dv_desc, dk, dv, row, sm_scale, tile):
        """EPI_TMA: dK_w (scaled) and then dV_w through `tile` (the warpgroup's dQ staging tile, free: every bulk
        group of this thread has read it) by TMA stores at K/V row `row`; the second store's read is waited for by the
        tile's next user (`tma.store_wait`)."""
        dtype: gl.constexpr = dk_desc.dtype
        buf = tile._reinterpret(dtype, dk_desc.block_type.shape, dk_desc.layout)
        buf.store((dk * sm_scale).to(dtype))
        fence_async_shared()
        tma.async_copy_shared_to_global(dk_desc, [row, 0], buf)
        tma.store_wait(0)
        buf.store(dv.to(dtype))
        fence_async_shared()
        tma.async_copy_shared_to_global(dv_desc, [row, 0], buf)

    @gluon.jit
    def _fa3_bwd_consumer(q_smem, do_smem, k_smem, v_smem, ds_smem, lse_flat, delta_flat, kv_bar, ready, empty, ds_bar,
                          dq_stage, LSE, DELTA, DQACC, dq_desc,
                          DK, DV, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, qk_scale2, sm_scale, WG: gl.constexpr,
                          GROUP: gl.constexpr, HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                          STAGES: gl.constexpr, CAUSAL: gl.constexpr, Q_FASTEST: gl.constexpr, DIAG: gl.constexpr,
                          KV_REGS: gl.constexpr, DQ_TMA: gl.constexpr, STAT_SMEM: gl.constexpr,
                          DQ_ASYNC: gl.constexpr, MMA_ORDER: gl.constexpr, DQ_DEFER: gl.constexpr,
                          DQ_KSPLIT: gl.constexpr, DQ_LAG: gl.constexpr, WG_OFFSET: gl.constexpr, go_bar,
                          DQ_STAGE1: gl.constexpr, PINGPONG: gl.constexpr, turn_bar, CNT, DQ,
                          DQ_FUSE: gl.constexpr, DQ_REZERO: gl.constexpr, FUSE_DIAG: gl.constexpr,
                          FUSE_STEP: gl.constexpr, FUSE_EARLY: gl.constexpr, GRID_GROUP: gl.constexpr,
                          STAMPS: gl.constexpr, EPI_TMA: gl.constexpr):
        """Consumer warpgroup WG: K/V rows start_n + WG*64 .. +63 and dQ columns WG*d/2 .. +d/2.  Resident: dK_w,
        dV_w (64 x d fp32, registers).  Per iteration it reads its stage (Q_i, dO_i), lse_i and delta_i (BLOCK_M
        fp32 each, plain loads), and adds BLOCK_M x d/2 fp32 to dQacc_i.  EPI_TMA: dK_w, dV_w by TMA stores through my dQ
        staging tile.  STAMPS (into CNT): the milestones of `STAMP_NAMES`."""
        dtype: gl.constexpr = q_smem.dtype
        HALF_D: gl.constexpr = HEAD_DIM // 2
        HALF_N: gl.constexpr = BLOCK_N // 2
        DQ_TILES: gl.constexpr = 2 if DQ_ASYNC else 1  # dQ staging tiles per warpgroup (DQ_ASYNC / DQ_STAGE1)
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, BLOCK_M, 16])
        kv_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                            instr_shape=[16, HEAD_DIM, 16])
        dq_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                            instr_shape=[16, HALF_D, 16])
        a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=kv_layout, k_width=2)
        start_n, pid_bhkv, ilo, imid, nblk = _fa3_bwd_block(SEQ_Q, SEQ_KV, CAUSAL_OFFSET, BLOCK_M, BLOCK_N, CAUSAL,
                                                            Q_FASTEST, GRID_GROUP)
        k_w = k_smem.slice(WG * HALF_N, HALF_N, dim=0)
        v_w = v_smem.slice(WG * HALF_N, HALF_N, dim=0)
        k_dq = k_smem.slice(WG * HALF_D, HALF_D, dim=1)
        offs_q = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, s_layout))
        kv_idx = start_n + WG * HALF_N + gl.arange(0, HALF_N, layout=gl.SliceLayout(1, s_layout))
        dq_r = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, dq_layout))
        dq_c = WG * HALF_D + gl.arange(0, HALF_D, layout=gl.SliceLayout(0, dq_layout))
        dq_offs = dq_r[:, None] * HEAD_DIM + dq_c[None, :]
        s_zero = gl.zeros([HALF_N, BLOCK_M], gl.float32, layout=s_layout)
        dq_zero = gl.zeros([BLOCK_M, HALF_D], gl.float32, layout=dq_layout)
        if DQ_DEFER:  # step i's dQ tile, staged and reduce-added in step i+1 once S^T, dP^T are issued
            dq_prev = dq_zero
            dq_row_prev = 0
        if DQ_LAG:  # the Q rows of the previous step (its dQ is computed in this one) and of the one before
            dq_row_prev = 0
            dq_row_pp = 0
        dk = gl.zeros([HALF_N, HEAD_DIM], gl.float32, layout=kv_layout)
        dv = gl.zeros([HALF_N, HEAD_DIM], gl.float32, layout=kv_layout)
        if STAMPS:
            item = pid_bhkv * (SEQ_KV // BLOCK_N) + start_n // BLOCK_N
        mbarrier.wait(kv_bar, 0)
        if STAMPS and WG == 0:
            _stamp(CNT, item, 4)
        if KV_REGS:  # K_w, V_w as register operands of S^T and dP^T (half the shared-memory reads of those matmuls)
            sa_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2)
            k_a = k_w.load(sa_layout)
            v_a = v_w.load(sa_layout)
        else:
            k_a = k_w
            v_a = v_w
        if WG_OFFSET > 0 and WG == 1:  # start once warpgroup 0 is WG_OFFSET stages into its first step
            if GROUP * nblk > 0:
                mbarrier.wait(go_bar, 0)
        if STAMPS and WG == 1:
            _stamp(CNT, item, 9)
        for it in range(GROUP * nblk):
            g = it // nblk
            i = ilo + it - g * nblk
            start_m = i * BLOCK_M
            stat = (pid_bhkv * GROUP + g).to(gl.int64) * SEQ_Q + start_m
            st = it % STAGES
            if not STAT_SMEM:  # plain loads, issued before the matmuls (their values stay live across them)
                lse = gl.load(LSE + stat + offs_q)
                delta = gl.load(DELTA + stat + offs_q)
            mbarrier.wait(ready.index(st), (it // STAGES) & 1)
            q_t = q_smem.index(st)
            do_t = do_smem.index(st)
            if PINGPONG:  # my turn to issue S^T, dP^T: turn-barrier completion 2 it - 1 (warpgroup 0), 2 it (1)
                if WG == 0:
                    if it > 0:
                        mbarrier.wait(turn_bar.index(0), 1)
                else:
                    mbarrier.wait(turn_bar.index(1), 0)
            s_tok = warpgroup_mma(k_a, q_t.permute((1, 0)), s_zero, use_acc=False, is_async=True)
            dp_tok = warpgroup_mma(v_a, do_t.permute((1, 0)), s_zero, use_acc=False, is_async=True)
            if PINGPONG:
                mbarrier.arrive(turn_bar.index(1 - WG), count=1)
            if DQ_DEFER:  # the previous step's dQ tile to the copy engine while S^T and dP^T run
                if it > 0:
                    dq_buf = dq_stage.index(WG * 2 + (it - 1) % 2)
                    _dq_stage_add(dq_desc, dq_buf, dq_prev, dq_row_prev, WG * HALF_D, 1)
            s = warpgroup_mma_wait(num_outstanding=1, deps=(s_tok,))
            if STAMPS:
                if it == 0:
                    _stamp(CNT, item, 5 + 5 * WG)
            if WG_OFFSET == 1 and WG == 0:
                if it == 0:
                    mbarrier.arrive(go_bar, count=1)
            if STAT_SMEM:  # from the stage, read when needed (shared-memory latency): no registers across the matmuls
                lse = lse_flat.index(st).load(gl.SliceLayout(0, s_layout))
            if CAUSAL:  # a row that sees no key (lse = -inf): exponents against +inf, P = 0
                lse2 = gl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)
            else:
                lse2 = lse * 1.4426950408889634
            p = gl.exp2(s * qk_scale2 - lse2[None, :])
            if CAUSAL:
                if i < imid:  # the diagonal band: key c visible from row r when c <= r + offset
                    p = gl.where(kv_idx[:, None] <= (start_m + offs_q)[None, :] + CAUSAL_OFFSET, p, 0.0)
            if MMA_ORDER >= 1:  # dV += P^T dO issued before the wait for dP^T: it runs while dS^T is computed
                p_op = gl.convert_layout(p.to(dtype), a_layout)
                dv_tok = warpgroup_mma(p_op, do_t, dv, is_async=True)
                dp = warpgroup_mma_wait(num_outstanding=1, deps=(dp_tok,))
            else:
                dp = warpgroup_mma_wait(num_outstanding=0, deps=(dp_tok,))
            if STAT_SMEM:
                delta = delta_flat.index(st).load(gl.SliceLayout(0, s_layout))
            ds = p * (dp - delta[None, :])
            ds_lo = ds.to(dtype)
            ds_op = gl.convert_layout(ds_lo, a_layout)
            if MMA_ORDER == 1 and DIAG == 0:
                # FlashAttention-3's order: dS^T exchanged, dQ issued before dK, dQ's reduce-add while dK runs
                ds_buf = ds_smem.index(it % 2)
                ds_buf.slice(WG * HALF_N, HALF_N, dim=0).store(ds_lo)
                fence_async_shared()
                gl.thread_barrier()
                mbarrier.arrive(ds_bar, count=1)
                mbarrier.wait(ds_bar, it & 1)
                dq_tok = warpgroup_mma(ds_buf.permute((1, 0)), k_dq, dq_zero, use_acc=False, is_async=True)
                dk_tok = warpgroup_mma(ds_op, q_t, dk, is_async=True)
                dv, dq = warpgroup_mma_wait(num_outstanding=1, deps=(dv_tok, dq_tok, p_op))[:2]
                if DQ_TMA and DQ_ASYNC:
                    dq_buf = dq_stage.index(WG * 2 + it % 2)
                    _dq_stage_add(dq_desc, dq_buf, dq, (pid_bhkv * GROUP + g) * SEQ_Q + start_m, WG * HALF_D, 1)
                elif DQ_TMA:
                    _tma_reduce_add(dq_desc, [(pid_bhkv * GROUP + g) * SEQ_Q + start_m, WG * HALF_D], dq)
                else:
                    gl.atomic_add(DQACC + stat * HEAD_DIM + dq_offs, dq, sem="relaxed")
                dk = warpgroup_mma_wait(num_outstanding=0, deps=(dk_tok, ds_op))[0]
                mbarrier.arrive(empty.index(st), count=1)
            else:
                if MMA_ORDER == 0:
                    p_op = gl.convert_layout(p.to(dtype), a_layout)
                    if PINGPONG:  # my turn to issue dV, dK (and the previous step's dQ): completion 2 it (0), 2 it + 1
                        mbarrier.wait(turn_bar.index(WG), WG)
                    dv_tok = warpgroup_mma(p_op, do_t, dv, is_async=True)
                dk_tok = warpgroup_mma(ds_op, q_t, dk, is_async=True)
                if WG_OFFSET == 2 and WG == 0:
                    if it == 0:
                        mbarrier.arrive(go_bar, count=1)
                if DIAG == 2:  # timing diagnostic only (dQ not computed): the dK/dV work alone
                    dv, dk = warpgroup_mma_wait(num_outstanding=0, deps=(dv_tok, dk_tok, p_op, ds_op))[:2]
                    mbarrier.arrive(empty.index(st), count=1)
                elif DQ_KSPLIT:
                    # my 64 K/V rows' share of dQ_i: dS_i,w K_w (K = 64) -- no other warpgroup's dS^T, no barrier;
                    # two column halves (32 fp32 registers each), each reduce-added: twice the adds' bytes
                    ds_own = ds_smem.index(it % 2).slice(WG * HALF_N, HALF_N, dim=0)
                    ds_own.store(ds_lo)
                    fence_async_shared()
                    gl.thread_barrier()
                    dq_row = (pid_bhkv * GROUP + g) * SEQ_Q + start_m
                    dq_tok = warpgroup_mma(ds_own.permute((1, 0)), k_w.slice(0, HALF_D, dim=1), dq_zero,
                                           use_acc=False, is_async=True)
                    dv, dk = warpgroup_mma_wait(num_outstanding=1, deps=(dv_tok, dk_tok, p_op, ds_op))[:2]
                    mbarrier.arrive(empty.index(st), count=1)
                    dq = warpgroup_mma_wait(num_outstanding=0, deps=(dq_tok,))
                    # the second half's matmul runs while the first half is handed to the copy engine
                    dq_tok = warpgroup_mma(ds_own.permute((1, 0)), k_w.slice(HALF_D, HALF_D, dim=1), dq_zero,
                                           use_acc=False, is_async=True)
                    for h in gl.static_range(2):
                        if h == 1:
                            dq = warpgroup_mma_wait(num_outstanding=0, deps=(dq_tok,))
                        if DQ_ASYNC:  # my two staging tiles, one per half: wait for the reduce of the other half
                            dq_buf = dq_stage.index(WG * 2 + h)
                            _dq_stage_add(dq_desc, dq_buf, dq, dq_row, h * HALF_D, 1)
                        else:
                            _tma_reduce_add(dq_desc, [dq_row, h * HALF_D], dq)
                elif DQ_LAG:
                    # dS^T of my 64 K/V rows into buffer it % 4, then the PREVIOUS step's dQ: its rows of both
                    # warpgroups were stored a step ago (no wait in steady state: the warpgroups need not leave a
                    # barrier together every step)
                    ds_buf = ds_smem.index(it % 4)
                    ds_buf.slice(WG * HALF_N, HALF_N, dim=0).store(ds_lo)
                    fence_async_shared()
                    gl.thread_barrier()
                    mbarrier.arrive(ds_bar.index(it % 4), count=1)
                    if it > 0:
                        mbarrier.wait(ds_bar.index((it - 1) % 4), ((it - 1) // 4) & 1)
                        dq_tok = warpgroup_mma(ds_smem.index((it - 1) % 4).permute((1, 0)), k_dq, dq_zero,
                                               use_acc=False, is_async=True)
                        if PINGPONG:  # my dV, dK, dQ are issued: the other warpgroup's turn
                            mbarrier.arrive(turn_bar.index(1 - WG), count=1)
                        dv, dk = warpgroup_mma_wait(num_outstanding=1, deps=(dv_tok, dk_tok, p_op, ds_op))[:2]
                        mbarrier.arrive(empty.index(st), count=1)
                        dq = warpgroup_mma_wait(num_outstanding=0, deps=(dq_tok,))
                        if DQ_ASYNC or DQ_STAGE1:  # my DQ_TILES staging tiles, the oldest reduce waited for here
                            dq_buf = dq_stage.index(WG * DQ_TILES + it % DQ_TILES)
                            _lag_dq_add(dq_desc, dq_buf, dq, dq_row_prev, dq_row_pp, it > 1, CNT, DQACC, DQ, SEQ_Q,
                                        SEQ_KV, CAUSAL_OFFSET, sm_scale, WG, HEAD_DIM, BLOCK_M, BLOCK_N, CAUSAL,
                                        DQ_REZERO, FUSE_STEP, DQ_TILES, dtype)
                        else:
                            _tma_reduce_add(dq_desc, [dq_row_prev, WG * HALF_D], dq)
                    else:
                        if PINGPONG:
                            mbarrier.arrive(turn_bar.index(1 - WG), count=1)
                        dv, dk = warpgroup_mma_wait(num_outstanding=0, deps=(dv_tok, dk_tok, p_op, ds_op))[:2]
                        mbarrier.arrive(empty.index(st), count=1)
                    dq_row_pp = dq_row_prev
                    dq_row_prev = (pid_bhkv * GROUP + g) * SEQ_Q + start_m
                else:
                    # dS^T of my 64 K/V rows into this iteration's buffer; dQ needs the other warpgroup's rows too
                    ds_buf = ds_smem.index(it % 2)
                    ds_buf.slice(WG * HALF_N, HALF_N, dim=0).store(ds_lo)
                    fence_async_shared()
                    gl.thread_barrier()
                    mbarrier.arrive(ds_bar, count=1)
                    if DIAG != 3:  # DIAG 3 (timing only, dQ may read the other's stale rows): no wait for them
                        mbarrier.wait(ds_bar, it & 1)
                    dq_tok = warpgroup_mma(ds_buf.permute((1, 0)), k_dq, dq_zero, use_acc=False, is_async=True)
                    dv, dk = warpgroup_mma_wait(num_outstanding=1, deps=(dv_tok, dk_tok, p_op, ds_op))[:2]
                    mbarrier.arrive(empty.index(st), count=1)
                    dq = warpgroup_mma_wait(num_outstanding=0, deps=(dq_tok,))
                    if DIAG == 1:  # timing diagnostic only: the adds predicated off by a condition never true
                        gl.atomic_add(DQACC + stat * HEAD_DIM + dq_offs, dq,
                                      mask=dq_offs < CAUSAL_OFFSET - SEQ_KV - SEQ_Q, sem="relaxed")
                    elif DQ_DEFER:
                        dq_prev = dq
                        dq_row_prev = (pid_bhkv * GROUP + g) * SEQ_Q + start_m
                    elif DQ_TMA and DQ_ASYNC:  # my two staging tiles: wait only for the reduce of two iterations ago
                        dq_buf = dq_stage.index(WG * 2 + it % 2)
                        _dq_stage_add(dq_desc, dq_buf, dq, (pid_bhkv * GROUP + g) * SEQ_Q + start_m, WG * HALF_D, 1)
                    elif DQ_TMA and DQ_STAGE1:  # my one staging tile: the previous step's reduce waited for here
                        dq_buf = dq_stage.index(WG)
                        _dq_stage_add(dq_desc, dq_buf, dq, (pid_bhkv * GROUP + g) * SEQ_Q + start_m, WG * HALF_D, 0)
                    elif DQ_TMA:  # one bulk reduce-add of the BLOCK_M x d/2 tile by the copy engine
                        _tma_reduce_add(dq_desc, [(pid_bhkv * GROUP + g) * SEQ_Q + start_m, WG * HALF_D], dq)
                    else:
                        gl.atomic_add(DQACC + stat * HEAD_DIM + dq_offs, dq, sem="relaxed")
        if STAMPS:
            _stamp(CNT, item, 6 + 5 * WG)
        if DQ_DEFER:  # the last step's dQ tile
            if GROUP * nblk > 0:
                dq_buf = dq_stage.index(WG * 2 + (GROUP * nblk - 1) % 2)
                _dq_stage_add(dq_desc, dq_buf, dq_prev, dq_row_prev, WG * HALF_D, 1)
        if DQ_LAG:  # the last step's dQ
            if GROUP * nblk > 0:
                last = GROUP * nblk - 1
                mbarrier.wait(ds_bar.index(last % 4), (last // 4) & 1)
                dq_tok = warpgroup_mma(ds_smem.index(last % 4).permute((1, 0)), k_dq, dq_zero, use_acc=False,
                                       is_async=True)
                dq = warpgroup_mma_wait(num_outstanding=0, deps=(dq_tok,))
                if DQ_ASYNC or DQ_STAGE1:
                    dq_buf = dq_stage.index(WG * DQ_TILES + (last + 1) % DQ_TILES)
                    _lag_dq_add(dq_desc, dq_buf, dq, dq_row_prev, dq_row_pp, last > 0, CNT, DQACC, DQ, SEQ_Q, SEQ_KV,
                                CAUSAL_OFFSET, sm_scale, WG, HEAD_DIM, BLOCK_M, BLOCK_N, CAUSAL, DQ_REZERO, FUSE_STEP,
                                DQ_TILES, dtype)
                else:
                    _tma_reduce_add(dq_desc, [dq_row_prev, WG * HALF_D], dq)
        if FUSE_STEP > 0:  # the last step's tile (the head's last Q block: a chunk's end)
            _bulk_wait_all()
            if GROUP * nblk > 0:
                _fa3_bwd_fuse_chunk(CNT, DQACC, DQ, dq_row_prev, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, sm_scale, WG,
                                    HEAD_DIM, BLOCK_M, BLOCK_N, CAUSAL, DQ_REZERO, FUSE_STEP, dtype)
        elif DQ_ASYNC or DQ_STAGE1:
            tma.store_wait(0)
        if STAMPS:
            _stamp(CNT, item, 7 + 5 * WG)
        if DQ_FUSE and FUSE_STEP == 0 and FUSE_EARLY:
            # FUSE_EARLY: the count-in (below) before the dK/dV stores, so that the release's MEMBAR.GPU does not
            # wait for 2 x 16 KB of plain stores of this warpgroup to be acknowledged
            cnt, arrived = _fuse_count_in(CNT, pid_bhkv, WG, None, FUSE_DIAG != 2)
        if EPI_TMA:  # my 64 rows of dK_j, dV_j through my (free) dQ staging tile, TMA stores
            _fa3_bwd_epilogue_tma(DK, DV, dk, dv, pid_bhkv * SEQ_KV + start_n + WG * HALF_N, sm_scale,
                                  dq_stage.index(WG))
        else:  # epilogue: my 64 rows of dK_j (scaled) and dV_j
            _fa3_bwd_epilogue(DK, DV, dk, dv, start_n, pid_bhkv, SEQ_KV, sm_scale, WG, HALF_N, HEAD_DIM, kv_layout,
                              dtype)
        if STAMPS:
            _stamp(CNT, item, 8 + 5 * WG)
            if WG == 0:
                _stamp(CNT, item, 15, 1)
        if DQ_FUSE and FUSE_STEP == 0:
            # the conversion folded in: every reduce-add this warpgroup issued has completed (wait_group without
            # .read) and is ordered before the generic proxy (fence.proxy.async.global); the barrier orders the
            # warpgroup's threads before the one release at GPU scope; the last of the K/V blocks' warpgroups of
            # this column half (acquire) converts the half for every q head of the group, from the L2
            if not FUSE_EARLY:
                cnt, arrived = _fuse_count_in(CNT, pid_bhkv, WG, offs_q, FUSE_DIAG != 2)
            if FUSE_DIAG == 1 and arrived == SEQ_KV // BLOCK_N - 1:
                gl.store(cnt, 0)
            if FUSE_DIAG != 1 and arrived == SEQ_KV // BLOCK_N - 1:
                gl.store(cnt, 0)  # no warpgroup of this half touches it again in this launch
                cv_layout: gl.constexpr = gl.BlockedLayout([1, 4], [32 // (HALF_D // 4), HALF_D // 4], [4, 1], [1, 0])
                cr = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, cv_layout))
                cc = WG * HALF_D + gl.arange(0, HALF_D, layout=gl.SliceLayout(0, cv_layout))
                cz = gl.zeros([BLOCK_M, HALF_D], gl.float32, layout=cv_layout)
                for g in range(GROUP):
                    base = (pid_bhkv * GROUP + g).to(gl.int64) * SEQ_Q
                    for m0 in range(0, SEQ_Q, 4 * BLOCK_M):  # four tiles' loads in flight before their stores
                        o0 = (base + m0 + cr)[:, None] * HEAD_DIM + cc[None, :]
                        o1 = o0 + BLOCK_M * HEAD_DIM
                        o2 = o1 + BLOCK_M * HEAD_DIM
                        o3 = o2 + BLOCK_M * HEAD_DIM
                        ok1 = ((m0 + BLOCK_M + cr) < SEQ_Q)[:, None] & (cc < HEAD_DIM)[None, :]
                        ok2 = ((m0 + 2 * BLOCK_M + cr) < SEQ_Q)[:, None] & (cc < HEAD_DIM)[None, :]
                        ok3 = ((m0 + 3 * BLOCK_M + cr) < SEQ_Q)[:, None] & (cc < HEAD_DIM)[None, :]
                        a0 = gl.load(DQACC + o0, cache_modifier=".cg")
                        a1 = gl.load(DQACC + o1, mask=ok1, other=0.0, cache_modifier=".cg")
                        a2 = gl.load(DQACC + o2, mask=ok2, other=0.0, cache_modifier=".cg")
                        a3 = gl.load(DQACC + o3, mask=ok3, other=0.0, cache_modifier=".cg")
                        gl.store(DQ + o0, (a0 * sm_scale).to(dtype))
                        gl.store(DQ + o1, (a1 * sm_scale).to(dtype), mask=ok1)
                        gl.store(DQ + o2, (a2 * sm_scale).to(dtype), mask=ok2)
                        gl.store(DQ + o3, (a3 * sm_scale).to(dtype), mask=ok3)
                        if DQ_REZERO:  # the workspace left zero for the next launch
                            gl.store(DQACC + o0, cz)
                            gl.store(DQACC + o1, cz, mask=ok1)
                            gl.store(DQACC + o2, cz, mask=ok2)
                            gl.store(DQACC + o3, cz, mask=ok3)
        if EPI_TMA:  # the dV store has read its tile before the CTA's shared memory goes
            tma.store_wait(0)

    @gluon.jit
    def _fa3_bwd_walk_item(WALK, e, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                           CAUSAL: gl.constexpr):
        """PERSISTENT: entry e of the walk table (after its G + 1 offsets) -> (start_n, pid_bhkv, ilo, imid, nblk)
        as `_fa3_bwd_block` (entry = batch*head_kv * K/V blocks + K/V block)."""
        n_kv = SEQ_KV // BLOCK_N
        x = gl.load(WALK + gl.num_programs(0) + 1 + e)
        pid_n = x % n_kv
        pid_bhkv = x // n_kv
        start_n = pid_n * BLOCK_N
        n_m = SEQ_Q // BLOCK_M
        if CAUSAL:
            ilo = gl.minimum(gl.maximum(start_n - CAUSAL_OFFSET, 0) // BLOCK_M, n_m)
            imid = gl.minimum(gl.cdiv(gl.maximum(start_n + BLOCK_N - 1 - CAUSAL_OFFSET, 0), BLOCK_M), n_m)
        else:
            ilo = 0
            imid = 0
        return start_n, pid_bhkv, ilo, imid, n_m - ilo

    @gluon.jit
    def _fa3_bwd_walk_producer(q_desc, do_desc, k_desc, v_desc, lse_desc, delta_desc, q_smem, do_smem, k_smem,
                               v_smem, lse_smem, delta_smem, kv_bar, kv_free, ready, empty, WALK, SEQ_Q, SEQ_KV,
                               CAUSAL_OFFSET, GROUP: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                               STAGES: gl.constexpr, CAUSAL: gl.constexpr, SBUF, STAMPS: gl.constexpr):
        """PERSISTENT: the producer over the CTA's walk entries: K_j, V_j of item t once both consumers are done
        with item t-1's (kv_free), then its (Q_i, dO_i, lse_i, delta_i) into the stage ring, numbered over the
        whole walk (so the next item's first stages load while the consumers finish this one).  STAMPS: as the plain
        producer's, per item."""
        pid = gl.program_id(0)
        e0 = gl.load(WALK + pid)
        e1 = gl.load(WALK + pid + 1)
        gs = 0
        for e in range(e0, e1):
            start_n, pid_bhkv, ilo, imid, nblk = _fa3_bwd_walk_item(WALK, e, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, BLOCK_M,
                                                                    BLOCK_N, CAUSAL)
            t = e - e0
            if STAMPS:
                item = pid_bhkv * (SEQ_KV // BLOCK_N) + start_n // BLOCK_N
                _stamp(SBUF, item, 1)
                _stamp(SBUF, item, 14, 1)
                _stamp(SBUF, item, 0, 2)
            if t > 0:
                mbarrier.wait(kv_free, (t - 1) & 1)
            kv_row = pid_bhkv * SEQ_KV + start_n
            mbarrier.expect(kv_bar, k_desc.block_type.nbytes + v_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(k_desc, [kv_row, 0], kv_bar, k_smem)
            tma.async_copy_global_to_shared(v_desc, [kv_row, 0], kv_bar, v_smem)
            if STAMPS:
                _stamp(SBUF, item, 2)
            for it in range(GROUP * nblk):
                gi = gs + it
                g = it // nblk
                bh = pid_bhkv * GROUP + g
                start_m = (ilo + it - g * nblk) * BLOCK_M
                st = gi % STAGES
                mbarrier.wait(empty.index(st), ((gi // STAGES) & 1) ^ 1)
                mbarrier.expect(ready.index(st), q_desc.block_type.nbytes + do_desc.block_type.nbytes
                                + lse_desc.block_type.nbytes + delta_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(lse_desc, [bh, start_m], ready.index(st), lse_smem.index(st))
                tma.async_copy_global_to_shared(delta_desc, [bh, start_m], ready.index(st), delta_smem.index(st))
                tma.async_copy_global_to_shared(q_desc, [bh * SEQ_Q + start_m, 0], ready.index(st), q_smem.index(st))
                tma.async_copy_global_to_shared(do_desc, [bh * SEQ_Q + start_m, 0], ready.index(st),
                                                do_smem.index(st))
            if STAMPS:
                _stamp(SBUF, item, 3)
            gs += GROUP * nblk

    @gluon.jit
    def _fa3_bwd_walk_consumer(q_smem, do_smem, k_smem, v_smem, ds_smem, lse_flat, delta_flat, kv_bar, kv_free,
                               ready, empty, ds_bar, go_bar, dq_stage, dq_desc, DK, DV, WALK, SEQ_Q, SEQ_KV,
                               CAUSAL_OFFSET, qk_scale2, sm_scale, WG: gl.constexpr, GROUP: gl.constexpr,
                               HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                               STAGES: gl.constexpr, CAUSAL: gl.constexpr, KV_REGS: gl.constexpr, SBUF,
                               STAMPS: gl.constexpr, EPI_TMA: gl.constexpr):
        """PERSISTENT: consumer warpgroup WG over the CTA's walk -- per item the registered d=128 step (STAT_SMEM,
        MMA_ORDER 0, DQ_LAG with the stage / dS^T / barrier numbers counted over the walk, DQ_STAGE1, warpgroup 1
        offset once at the walk's start), the item's last dQ, then kv_free (K_j, V_j no longer read) before the
        dK, dV epilogue."""
        dtype: gl.constexpr = q_smem.dtype
        HALF_D: gl.constexpr = HEAD_DIM // 2
        HALF_N: gl.constexpr = BLOCK_N // 2
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, BLOCK_M, 16])
        kv_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                            instr_shape=[16, HEAD_DIM, 16])
        dq_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                            instr_shape=[16, HALF_D, 16])
        a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=kv_layout, k_width=2)
        k_w = k_smem.slice(WG * HALF_N, HALF_N, dim=0)
        v_w = v_smem.slice(WG * HALF_N, HALF_N, dim=0)
        k_dq = k_smem.slice(WG * HALF_D, HALF_D, dim=1)
        offs_q = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, s_layout))
        s_zero = gl.zeros([HALF_N, BLOCK_M], gl.float32, layout=s_layout)
        dq_zero = gl.zeros([BLOCK_M, HALF_D], gl.float32, layout=dq_layout)
        dq_buf = dq_stage.index(WG)
        pid = gl.program_id(0)
        e0 = gl.load(WALK + pid)
        e1 = gl.load(WALK + pid + 1)
        gs = 0
        for e in range(e0, e1):
            start_n, pid_bhkv, ilo, imid, nblk = _fa3_bwd_walk_item(WALK, e, SEQ_Q, SEQ_KV, CAUSAL_OFFSET, BLOCK_M,
                                                                    BLOCK_N, CAUSAL)
            t = e - e0
            kv_idx = start_n + WG * HALF_N + gl.arange(0, HALF_N, layout=gl.SliceLayout(1, s_layout))
            dk = gl.zeros([HALF_N, HEAD_DIM], gl.float32, layout=kv_layout)
            dv = gl.zeros([HALF_N, HEAD_DIM], gl.float32, layout=kv_layout)
            dq_row_prev = 0
            if STAMPS:
                item = pid_bhkv * (SEQ_KV // BLOCK_N) + start_n // BLOCK_N
            mbarrier.wait(kv_bar, t & 1)
            if STAMPS:
                _stamp(SBUF, item, 4 + 5 * WG)
            if KV_REGS:
                sa_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2)
                k_a = k_w.load(sa_layout)
                v_a = v_w.load(sa_layout)
            else:
                k_a = k_w
                v_a = v_w
            for it in range(GROUP * nblk):
                gi = gs + it
                g = it // nblk
                i = ilo + it - g * nblk
                start_m = i * BLOCK_M
                st = gi % STAGES
                if WG == 1:  # WG_OFFSET 1, once: start when warpgroup 0 has its first S^T of the walk
                    if gi == 0:
                        mbarrier.wait(go_bar, 0)
                mbarrier.wait(ready.index(st), (gi // STAGES) & 1)
                q_t = q_smem.index(st)
                do_t = do_smem.index(st)
                s_tok = warpgroup_mma(k_a, q_t.permute((1, 0)), s_zero, use_acc=False, is_async=True)
                dp_tok = warpgroup_mma(v_a, do_t.permute((1, 0)), s_zero, use_acc=False, is_async=True)
                s = warpgroup_mma_wait(num_outstanding=1, deps=(s_tok,))
                if STAMPS:
                    if it == 0:
                        _stamp(SBUF, item, 5 + 5 * WG)
                if WG == 0:
                    if gi == 0:
                        mbarrier.arrive(go_bar, count=1)
                lse = lse_flat.index(st).load(gl.SliceLayout(0, s_layout))
                if CAUSAL:
                    lse2 = gl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)
                else:
                    lse2 = lse * 1.4426950408889634
                p = gl.exp2(s * qk_scale2 - lse2[None, :])
                if CAUSAL:
                    if i < imid:
                        p = gl.where(kv_idx[:, None] <= (start_m + offs_q)[None, :] + CAUSAL_OFFSET, p, 0.0)
                dp = warpgroup_mma_wait(num_outstanding=0, deps=(dp_tok,))
                delta = delta_flat.index(st).load(gl.SliceLayout(0, s_layout))
                ds = p * (dp - delta[None, :])
                ds_lo = ds.to(dtype)
                ds_op = gl.convert_layout(ds_lo, a_layout)
                p_op = gl.convert_layout(p.to(dtype), a_layout)
                dv_tok = warpgroup_mma(p_op, do_t, dv, is_async=True)
                dk_tok = warpgroup_mma(ds_op, q_t, dk, is_async=True)
                ds_buf = ds_smem.index(gi % 4)
                ds_buf.slice(WG * HALF_N, HALF_N, dim=0).store(ds_lo)
                fence_async_shared()
                gl.thread_barrier()
                mbarrier.arrive(ds_bar.index(gi % 4), count=1)
                if it > 0:
                    mbarrier.wait(ds_bar.index((gi - 1) % 4), ((gi - 1) // 4) & 1)
                    dq_tok = warpgroup_mma(ds_smem.index((gi - 1) % 4).permute((1, 0)), k_dq, dq_zero,
                                           use_acc=False, is_async=True)
                    dv, dk = warpgroup_mma_wait(num_outstanding=1, deps=(dv_tok, dk_tok, p_op, ds_op))[:2]
                    mbarrier.arrive(empty.index(st), count=1)
                    dq = warpgroup_mma_wait(num_outstanding=0, deps=(dq_tok,))
                    _dq_stage_add(dq_desc, dq_buf, dq, dq_row_prev, WG * HALF_D, 0)
                else:
                    dv, dk = warpgroup_mma_wait(num_outstanding=0, deps=(dv_tok, dk_tok, p_op, ds_op))[:2]
                    mbarrier.arrive(empty.index(st), count=1)
                dq_row_prev = (pid_bhkv * GROUP + g) * SEQ_Q + start_m
            if STAMPS:
                _stamp(SBUF, item, 6 + 5 * WG)
            if GROUP * nblk > 0:  # the item's last dQ
                last = gs + GROUP * nblk - 1
                mbarrier.wait(ds_bar.index(last % 4), (last // 4) & 1)
                dq_tok = warpgroup_mma(ds_smem.index(last % 4).permute((1, 0)), k_dq, dq_zero, use_acc=False,
                                       is_async=True)
                dq = warpgroup_mma_wait(num_outstanding=0, deps=(dq_tok,))
                _dq_stage_add(dq_desc, dq_buf, dq, dq_row_prev, WG * HALF_D, 0)
            mbarrier.arrive(kv_free, count=1)  # K_j, V_j read for the last time (the matmuls above waited)
            if STAMPS:
                _stamp(SBUF, item, 7 + 5 * WG)
            gs += GROUP * nblk
            if EPI_TMA:  # through my dQ staging tile (its last reduce-add read: _dq_stage_add waited; the next
                # item's first add waits for the dV store's read)
                tma.store_wait(0)
                _fa3_bwd_epilogue_tma(DK, DV, dk, dv, pid_bhkv * SEQ_KV + start_n + WG * HALF_N, sm_scale, dq_buf)
            else:
                _fa3_bwd_epilogue(DK, DV, dk, dv, start_n, pid_bhkv, SEQ_KV, sm_scale, WG, HALF_N, HEAD_DIM,
                                  kv_layout, dtype)
            if STAMPS:
                _stamp(SBUF, item, 8 + 5 * WG)
                if WG == 0:
                    _stamp(SBUF, item, 15, 1)
        tma.store_wait(0)

    @gluon.jit
    def _hopper_fa3_bwd(q_desc, do_desc, k_desc, v_desc, dq_desc, lse_desc, delta_desc, LSE, DELTA, DQACC, DK, DV,
                        CNT, DQ, WALK, SEQ_Q, SEQ_KV, qk_scale2, sm_scale, CAUSAL_OFFSET, GROUP: gl.constexpr,
                        HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
                        CAUSAL: gl.constexpr, Q_FASTEST: gl.constexpr,
                        CONSUMER_REGS: gl.constexpr, DIAG: gl.constexpr = 0, KV_REGS: gl.constexpr = False,
                        DQ_TMA: gl.constexpr = False, STAT_SMEM: gl.constexpr = False,
                        DQ_ASYNC: gl.constexpr = False, MMA_ORDER: gl.constexpr = 0,
                        DQ_DEFER: gl.constexpr = False, DQ_KSPLIT: gl.constexpr = False,
                        DQ_LAG: gl.constexpr = False, WG_OFFSET: gl.constexpr = 0,
                        DQ_STAGE1: gl.constexpr = False, PINGPONG: gl.constexpr = False,
                        DQ_FUSE: gl.constexpr = False, DQ_REZERO: gl.constexpr = False,
                        FUSE_DIAG: gl.constexpr = 0, FUSE_STEP: gl.constexpr = 0,
                        FUSE_EARLY: gl.constexpr = False, GRID_GROUP: gl.constexpr = 0,
                        PERSISTENT: gl.constexpr = False, STAMPS: gl.constexpr = False,
                        EPI_TMA: gl.constexpr = False):
        """The launch ``hopper_fa3_bwd``: grid (K/V blocks, batch*head_kv), or (batch*head_kv, K/V blocks) when
        heads vary fastest.  DIAG (timing diagnostics, wrong dQ; never the registry's): 1 -- dQ's atomic adds
        predicated off; 2 -- no dQ at all (no dS^T exchange, no dQ matmul); 3 -- the exchange without its wait
        (each warpgroup's dQ may read the other's stale dS^T rows: what the lockstep costs).  Shared memory: K_j,
        V_j; STAGES x (Q_i, dO_i); two dS^T buffers (BLOCK_N x BLOCK_M; four with DQ_LAG); with DQ_TMA the dQ staging tiles (Triton's lowering: one
        per warpgroup; DQ_ASYNC: two each); with STAT_SMEM STAGES x (lse_i, delta_i)."""
        dtype: gl.constexpr = q_desc.dtype
        gl.static_assert(BLOCK_N == 2 * 64)
        q_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, HEAD_DIM], q_desc.layout)
        do_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, HEAD_DIM], do_desc.layout)
        k_smem = gl.allocate_shared_memory(dtype, [BLOCK_N, HEAD_DIM], k_desc.layout)
        v_smem = gl.allocate_shared_memory(dtype, [BLOCK_N, HEAD_DIM], v_desc.layout)
        ds_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, BLOCK_M], dtype)
        ds_smem = gl.allocate_shared_memory(dtype, [4 if DQ_LAG else 2, BLOCK_N, BLOCK_M], ds_layout)
        if STAT_SMEM:  # lse_i, delta_i per stage: [1, BLOCK_M] TMA boxes, read back as flat BLOCK_M vectors
            lse_smem = gl.allocate_shared_memory(gl.float32, [STAGES, 1, BLOCK_M], lse_desc.layout)
            delta_smem = gl.allocate_shared_memory(gl.float32, [STAGES, 1, BLOCK_M], delta_desc.layout)
            flat: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0])
            lse_flat = lse_smem._reinterpret(gl.float32, [STAGES, BLOCK_M], flat)
            delta_flat = delta_smem._reinterpret(gl.float32, [STAGES, BLOCK_M], flat)
        else:
            lse_smem = q_smem
            delta_smem = q_smem
            lse_flat = q_smem
            delta_flat = q_smem
        if DQ_TMA and DQ_ASYNC:  # two dQ staging tiles per consumer warpgroup
            dq_stage = gl.allocate_shared_memory(gl.float32, [4, BLOCK_M, HEAD_DIM // 2], dq_desc.layout)
        elif DQ_TMA and DQ_STAGE1:  # one each (the size of Triton's own staging for the descriptor reduce)
            dq_stage = gl.allocate_shared_memory(gl.float32, [2, BLOCK_M, HEAD_DIM // 2], dq_desc.layout)
        else:
            dq_stage = q_smem
        kv_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        if DQ_LAG:  # one count-2 barrier per dS^T buffer
            ds_bar = gl.allocate_shared_memory(gl.int64, [4, 1], mbarrier.MBarrierLayout())
        else:
            ds_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        if WG_OFFSET > 0:  # warpgroup 0 -> warpgroup 1: start
            go_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        else:
            go_bar = kv_bar
        if PINGPONG:  # turn_bar[w]: warpgroup w may issue its next matmuls (the other arrives once it issued its own)
            turn_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        else:
            turn_bar = kv_bar
        ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        mbarrier.init(kv_bar, count=1)
        if PERSISTENT:  # both consumers are done with item t's K_j, V_j: the producer may load item t+1's
            kv_free = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
            mbarrier.init(kv_free, count=2)
        if DQ_LAG:
            for i in gl.static_range(4):
                mbarrier.init(ds_bar.index(i), count=2)
        else:
            mbarrier.init(ds_bar, count=2)  # both consumer warpgroups have stored their dS^T rows
        if WG_OFFSET > 0:
            mbarrier.init(go_bar, count=1)
        if PINGPONG:
            for i in gl.static_range(2):
                mbarrier.init(turn_bar.index(i), count=1)
        for i in gl.static_range(STAGES):
            mbarrier.init(ready.index(i), count=1)
            mbarrier.init(empty.index(i), count=2)  # both consumer warpgroups release a stage
        if PERSISTENT:
            gl.warp_specialize([
                (_fa3_bwd_walk_producer, (q_desc, do_desc, k_desc, v_desc, lse_desc, delta_desc, q_smem, do_smem,
                                          k_smem, v_smem, lse_smem, delta_smem, kv_bar, kv_free, ready, empty, WALK,
                                          SEQ_Q, SEQ_KV, CAUSAL_OFFSET, GROUP, BLOCK_M, BLOCK_N, STAGES, CAUSAL,
                                          CNT, STAMPS)),
                (_fa3_bwd_walk_consumer, (q_smem, do_smem, k_smem, v_smem, ds_smem, lse_flat, delta_flat, kv_bar,
                                          kv_free, ready, empty, ds_bar, go_bar, dq_stage, dq_desc, DK, DV, WALK,
                                          SEQ_Q, SEQ_KV, CAUSAL_OFFSET, qk_scale2, sm_scale, 0, GROUP, HEAD_DIM,
                                          BLOCK_M, BLOCK_N, STAGES, CAUSAL, KV_REGS, CNT, STAMPS, EPI_TMA)),
                (_fa3_bwd_walk_consumer, (q_smem, do_smem, k_smem, v_smem, ds_smem, lse_flat, delta_flat, kv_bar,
                                          kv_free, ready, empty, ds_bar, go_bar, dq_stage, dq_desc, DK, DV, WALK,
                                          SEQ_Q, SEQ_KV, CAUSAL_OFFSET, qk_scale2, sm_scale, 1, GROUP, HEAD_DIM,
                                          BLOCK_M, BLOCK_N, STAGES, CAUSAL, KV_REGS, CNT, STAMPS, EPI_TMA)),
            ], [4, 4], [CONSUMER_REGS, CONSUMER_REGS])
        else:
            gl.warp_specialize([
                (_fa3_bwd_producer, (q_desc, do_desc, k_desc, v_desc, lse_desc, delta_desc, q_smem, do_smem, k_smem,
                                     v_smem, lse_smem, delta_smem, kv_bar, ready, empty, SEQ_Q, SEQ_KV, CAUSAL_OFFSET,
                                     GROUP, BLOCK_M, BLOCK_N, STAGES, CAUSAL, Q_FASTEST, STAT_SMEM,
                                     GRID_GROUP, CNT, STAMPS)),
                (_fa3_bwd_consumer, (q_smem, do_smem, k_smem, v_smem, ds_smem, lse_flat, delta_flat, kv_bar, ready,
                                     empty, ds_bar, dq_stage, LSE, DELTA, DQACC, dq_desc, DK, DV, SEQ_Q, SEQ_KV,
                                     CAUSAL_OFFSET, qk_scale2, sm_scale, 0, GROUP, HEAD_DIM, BLOCK_M, BLOCK_N, STAGES,
                                     CAUSAL, Q_FASTEST, DIAG, KV_REGS, DQ_TMA, STAT_SMEM, DQ_ASYNC, MMA_ORDER,
                                     DQ_DEFER, DQ_KSPLIT, DQ_LAG, WG_OFFSET, go_bar, DQ_STAGE1, PINGPONG,
                                     turn_bar, CNT, DQ, DQ_FUSE, DQ_REZERO, FUSE_DIAG, FUSE_STEP,
                                     FUSE_EARLY, GRID_GROUP, STAMPS, EPI_TMA)),
                (_fa3_bwd_consumer, (q_smem, do_smem, k_smem, v_smem, ds_smem, lse_flat, delta_flat, kv_bar, ready,
                                     empty, ds_bar, dq_stage, LSE, DELTA, DQACC, dq_desc, DK, DV, SEQ_Q, SEQ_KV,
                                     CAUSAL_OFFSET, qk_scale2, sm_scale, 1, GROUP, HEAD_DIM, BLOCK_M, BLOCK_N, STAGES,
                                     CAUSAL, Q_FASTEST, DIAG, KV_REGS, DQ_TMA, STAT_SMEM, DQ_ASYNC, MMA_ORDER,
                                     DQ_DEFER, DQ_KSPLIT, DQ_LAG, WG_OFFSET, go_bar, DQ_STAGE1, PINGPONG,
                                     turn_bar, CNT, DQ, DQ_FUSE, DQ_REZERO, FUSE_DIAG, FUSE_STEP,
                                     FUSE_EARLY, GRID_GROUP, STAMPS, EPI_TMA)),
            ], [4, 4], [CONSUMER_REGS, CONSUMER_REGS])


_LAYOUTS: dict = {}


def _shared_layout(shape: tuple, gdt, swizzle: int | None = None, bits: int = 16):
    """The host descriptors' shared layouts, built once per (shape, dtype) -- `get_default_for` costs the host ~6 us
    a call (session 21's profile: 5 of them in every backward's ~113 us of `fa3_bwd_args`); swizzle given: that
    NVMMA layout of `bits`-bit elements."""
    key = (shape, str(gdt), swizzle, bits)
    lay = _LAYOUTS.get(key)
    if lay is None:
        lay = (gl.NVMMASharedLayout.get_default_for(list(shape), gdt) if swizzle is None else
               gl.NVMMASharedLayout(swizzle_byte_width=swizzle, element_bitwidth=bits, rank=len(shape)))
        _LAYOUTS[key] = lay
    return lay


def fa3_bwd_descriptors(p: AttentionProblem, s: Schedule, q, k, v, do, dqacc, lse, delta):
    """Host TMA descriptors: [B*H*N, d] row views; Q/dO boxes of block_m rows, K/V boxes of block_n rows.  K's
    swizzle spans d/2 columns at most, so each consumer's column half of K_j (its dQ matmul's B operand) is whole
    swizzle panels."""
    gdt = {torch.float16: gl.float16, torch.bfloat16: gl.bfloat16}[q.dtype]
    d = p.head_dim
    qd = _shared_layout((s.block_m, d), gdt)
    kd = _shared_layout((s.block_n, d), gdt, min(128, d))
    vd = _shared_layout((s.block_n, d), gdt)
    stat = _shared_layout((1, s.block_m), gl.float32, 0, 32)  # lse, delta: [B*Hq, Nq] rows
    rows = lambda t: t.reshape(-1, d)  # noqa: E731 -- a view (contiguous checked by the caller)
    return (TensorDescriptor.from_tensor(rows(q), [s.block_m, d], qd),
            TensorDescriptor.from_tensor(rows(do), [s.block_m, d], qd),
            TensorDescriptor.from_tensor(rows(k), [s.block_n, d], kd),
            TensorDescriptor.from_tensor(rows(v), [s.block_n, d], vd),
            TensorDescriptor.from_tensor(rows(dqacc), [s.block_m, d // 2],
                                         _shared_layout((s.block_m, d // 2), gl.float32)),
            *(TensorDescriptor.from_tensor(t.reshape(-1, p.seq_q), [1, s.block_m], stat) for t in (lse, delta)))


def fa3_bwd_args(p: AttentionProblem, s: Schedule, q, k, v, do, lse, delta, dqacc, dk, dv, kv_regs: bool | None = None,
                 diag: int = 0, dq_tma: bool | None = None, stat_smem: bool | None = None,
                 dq_async: bool | None = None, mma_order: int | None = None, dq_defer: bool | None = None,
                 dq_ksplit: bool | None = None, dq_lag: bool | None = None, wg_offset: int | None = None,
                 dq_stage1: bool | None = None, pingpong: bool | None = None, dq=None, cnt=None,
                 dq_fuse: bool | None = None, zero_ws: bool | None = None, fuse_step: int | bool | None = None,
                 walk=None):
    """(positional args, keyword args) of `_hopper_fa3_bwd` -- shared by the launcher and the CPU compile check;
    kv_regs None: `KV_REGS` (likewise the other switches); diag: the timing diagnostics (0 = the real kernel);
    dq, cnt: dQ and the int32 counters of the folded conversion (`DQ_FUSE`; unused otherwise)."""
    args = (*fa3_bwd_descriptors(p, s, q, k, v, do, dqacc, lse, delta), lse, delta, dqacc, dk, dv,
            dqacc if cnt is None else cnt, dqacc if dq is None else dq, dqacc if walk is None else walk,
            p.seq_q, p.seq_kv,
            p.scale * LOG2E,
            p.scale, p.causal_offset)
    kw = dict(GROUP=p.group_size, HEAD_DIM=p.head_dim, BLOCK_M=s.block_m, BLOCK_N=s.block_n, STAGES=s.num_stages,
              CAUSAL=p.causal, Q_FASTEST=s.grid_order == "q_fastest", CONSUMER_REGS=CONSUMER_REGS,
              KV_REGS=KV_REGS if kv_regs is None else kv_regs, DIAG=diag,
              DQ_TMA=DQ_TMA if dq_tma is None else dq_tma, STAT_SMEM=STAT_SMEM if stat_smem is None else stat_smem,
              MMA_ORDER=MMA_ORDER if mma_order is None else mma_order, num_warps=4, maxnreg=MAXNREG)
    kw["DQ_ASYNC"] = kw["DQ_TMA"] and _dq_async(p, s, dq_async)
    kw["DQ_DEFER"] = kw["DQ_ASYNC"] and kw["MMA_ORDER"] != 1 and kw["DIAG"] == 0 and (
        DQ_DEFER if dq_defer is None else dq_defer)
    kw["DQ_KSPLIT"] = kw["DQ_TMA"] and kw["MMA_ORDER"] != 1 and kw["DIAG"] == 0 and not kw["DQ_DEFER"] and (
        DQ_KSPLIT if dq_ksplit is None else dq_ksplit)
    lag = dq_lag if dq_lag is not None else (DQ_LAG if DQ_LAG is not None else (
        fa3_bwd_dq_lag(p, s) and not kw["DQ_ASYNC"]))  # (the registry never pairs them: both do not fit d=128)
    kw["DQ_LAG"] = bool(lag) and (
        kw["DQ_TMA"] and kw["MMA_ORDER"] == 0 and kw["DIAG"] == 0 and not kw["DQ_DEFER"] and not kw["DQ_KSPLIT"])
    kw["PINGPONG"] = kw["DQ_LAG"] and bool(PINGPONG if pingpong is None else pingpong)
    off = wg_offset if wg_offset is not None else WG_OFFSET
    if off is None:
        off = FA3_BWD_DQ_LAG["wg_offset"] if kw["DQ_LAG"] else 0
    kw["WG_OFFSET"] = 0 if kw["PINGPONG"] else off
    stage1 = dq_stage1 if dq_stage1 is not None else (DQ_STAGE1 if DQ_STAGE1 is not None else (
        fa3_bwd_dq_stage1(p, s) and kw["DIAG"] == 0))
    kw["DQ_STAGE1"] = (kw["DQ_TMA"] and not kw["DQ_ASYNC"] and kw["MMA_ORDER"] == 0 and kw["DIAG"] in (0, 3)
                       and not kw["DQ_KSPLIT"] and bool(stage1))
    kw["DQ_FUSE"] = kw["DQ_TMA"] and kw["DIAG"] == 0 and _dq_fuse(p, s, dq_fuse)
    kw["DQ_REZERO"] = kw["DQ_FUSE"] and _dq_zero_ws(p, s, zero_ws)
    kw["FUSE_DIAG"] = FUSE_DIAG if kw["DQ_FUSE"] else 0
    kw["FUSE_STEP"] = _fuse_step(p, kw, fuse_step)
    if kw["FUSE_DIAG"] == 3:  # timing diagnostic: the conversion writes no zeros
        kw["DQ_REZERO"] = False
    early = fa3_bwd_fuse_early(p, s) if FUSE_EARLY is None else FUSE_EARLY
    kw["FUSE_EARLY"] = bool(kw["DQ_FUSE"] and kw["FUSE_STEP"] == 0 and early)
    kw["GRID_GROUP"] = _grid_group(p, s, q.device)
    kw["PERSISTENT"] = bool(PERSISTENT and kw["DQ_LAG"] and kw["DQ_STAGE1"] and kw["STAT_SMEM"] and kw["DIAG"] == 0
                            and kw["WG_OFFSET"] == 1 and not kw["PINGPONG"] and not kw["DQ_FUSE"])
    if kw["PERSISTENT"]:
        kw["GRID_GROUP"] = 0
    epi = fa3_bwd_epi_tma(p, s) if EPI_TMA is None else EPI_TMA
    kw["EPI_TMA"] = bool(epi and kw["DQ_STAGE1"] and not kw["DQ_ASYNC"] and kw["DIAG"] == 0)
    if kw["EPI_TMA"]:  # dK, dV by TMA stores: their descriptors in the pointers' places (64 x d boxes)
        gdt = {torch.float16: gl.float16, torch.bfloat16: gl.bfloat16}[q.dtype]
        lay = _shared_layout((s.block_n // 2, p.head_dim), gdt)
        args = args[:10] + tuple(TensorDescriptor.from_tensor(t.reshape(-1, p.head_dim), [s.block_n // 2, p.head_dim],
                                                              lay) for t in (dk, dv)) + args[12:]
    kw["STAMPS"] = bool(STAMPS and not kw["DQ_FUSE"] and kw["DIAG"] == 0)
    return args, kw


def fa3_bwd_walk(p: AttentionProblem, s: Schedule, ctas: int) -> list[list[int]]:
    """PERSISTENT's walk: each CTA's items (entry = batch*head_kv * K/V blocks + K/V block, the kernel's
    `_fa3_bwd_walk_item`).  Sections of max(1, ctas // K/V blocks) heads (one wave's; the L2 keeps their Q, dO,
    dQacc: the heads-fastest order that mixed every head thrashed it, session 14), taken in order; inside a section
    the items longest first (causal: K/V block 0 sees every Q block), each to the CTA with the least work so far (LPT,
    work counted over the whole walk: steps + `WALK_ITEM_COST` for the item's fill and drain)."""
    import heapq
    n_kv, n_m, bh = p.seq_kv // s.block_n, p.seq_q // s.block_m, p.batch * p.heads_kv

    def steps(j: int) -> int:
        if not p.causal:
            return n_m
        return n_m - min(max(j * s.block_n - p.causal_offset, 0) // s.block_m, n_m)

    sec = max(1, ctas // n_kv)
    heap = [(0, c) for c in range(ctas)]
    walk: list[list[int]] = [[] for _ in range(ctas)]
    for h0 in range(0, bh, sec):
        items = [(p.group_size * steps(j), h * n_kv + j) for h in range(h0, min(h0 + sec, bh)) for j in range(n_kv)]
        for n, e in sorted(items, key=lambda x: (-x[0], x[1])):
            load, c = heapq.heappop(heap)
            walk[c].append(e)
            heapq.heappush(heap, (load + n + WALK_ITEM_COST, c))
    return walk


def fa3_bwd_walk_ctas(p: AttentionProblem, s: Schedule, device) -> int:
    """PERSISTENT's grid: min(items, SMs) CTAs (132 where the device is not a GPU)."""
    sms = (torch.cuda.get_device_properties(device).multi_processor_count
           if torch.device(device).type == "cuda" else 132)
    return min(sms if PERSISTENT_CTAS is None else PERSISTENT_CTAS, p.batch * p.heads_kv * (p.seq_kv // s.block_n))


_WALK_TABLES: dict = {}


def fa3_bwd_walk_table(p: AttentionProblem, s: Schedule, device, ctas: int) -> torch.Tensor:
    """`fa3_bwd_walk` as the kernel's int32 table: `ctas` + 1 offsets, then the entries (the grid is (ctas,)).
    Cached per (problem, schedule, device, CTAs): the host's LPT over 2048 items takes milliseconds, more than the
    kernel at N=1024."""
    key = (p, s, _device_key(torch.device(device)), ctas, WALK_ITEM_COST)
    t = _WALK_TABLES.get(key)
    if t is None:
        walk = fa3_bwd_walk(p, s, ctas)
        offs = [0]
        for w in walk:
            offs.append(offs[-1] + len(w))
        t = torch.tensor(offs + [e for w in walk for e in w], dtype=torch.int32, device=device)
        _WALK_TABLES[key] = t
    return t


def _grid_group(p: AttentionProblem, s: Schedule, device) -> int:
    """GRID_GROUP where it runs (causal, the (K/V blocks, batch*head_kv) grid, more than one head): the module's
    switch, None the registry's (`fa3_bwd_grid_group`); -1: one wave -- max(1, SMs // K/V blocks) heads a group (132
    SMs where the device is not a GPU)."""
    n = fa3_bwd_grid_group(p, s) if GRID_GROUP is None else GRID_GROUP
    if n == 0 or not p.causal or s.grid_order != "q_fastest":
        return 0
    if n < 0:
        sms = (torch.cuda.get_device_properties(device).multi_processor_count
               if torch.device(device).type == "cuda" else 132)
        n = max(1, sms // (p.seq_kv // s.block_n))
    n = min(n, p.batch * p.heads_kv)
    return n if n > 1 else 0


def _fuse_step(p: AttentionProblem, kw: dict, fuse_step: int | bool | None = None) -> int:
    """FUSE_STEP's chunk (Q blocks; 0: off) where it runs: the folded conversion (no diagnostic) on the DQ_LAG +
    DQ_STAGE1 kernel, and every Q block visited by some K/V block (not causal with seq_q > seq_kv); the argument,
    else the module's switch (True: 1)."""
    on = int(FUSE_STEP if fuse_step is None else fuse_step)
    return on if (on > 0 and kw["DQ_FUSE"] and kw["FUSE_DIAG"] == 0 and kw["DQ_LAG"] and kw["DQ_STAGE1"]
                  and not kw["DQ_ASYNC"] and not (p.causal and p.causal_offset < 0)) else 0


def fuse_counter_count(p: AttentionProblem, s: Schedule, step: int | bool) -> int:
    """How many int32 counters the folded conversion uses: two per batch*head_kv, or with FUSE_STEP (chunks of
    `step` Q blocks) two per (batch*head_q, chunk)."""
    n_m = p.seq_q // s.block_m
    return 2 * p.batch * p.heads_q * -(-n_m // int(step)) if step else 2 * p.batch * p.heads_kv


def _dq_fuse(p: AttentionProblem, s: Schedule, dq_fuse: bool | None = None) -> bool:
    """The argument, else the module's switch `DQ_FUSE`, else the registry's `fa3_bwd_dq_fuse` (with the TMA
    reduce-add only)."""
    if dq_fuse is not None:
        return bool(dq_fuse)
    return bool(fa3_bwd_dq_fuse(p, s) if DQ_FUSE is None else DQ_FUSE) and DQ_TMA


def _dq_zero_ws(p: AttentionProblem, s: Schedule, zero_ws: bool | None = None) -> bool:
    """With the folded conversion: the argument, else `DQ_ZERO_WS`, else the registry's `fa3_bwd_dq_zero_ws`."""
    if zero_ws is not None:
        return bool(zero_ws)
    return bool(fa3_bwd_dq_zero_ws(p, s) if DQ_ZERO_WS is None else DQ_ZERO_WS)


_FUSE_COUNTERS: dict = {}
_DQ_WORKSPACES: dict = {}


def _device_key(dev: torch.device):
    return (dev.type, dev.index if dev.index is not None or dev.type != "cuda" else torch.cuda.current_device())


def fuse_counters(device, n: int):
    """The folded conversion's int32 counters, two per batch*head_kv, kept per device and zero between launches (the
    last warpgroup of each resets its own).  Allocated (zeroed) outside CUDA-graph capture; launches of one device
    share them: backward passes with DQ_FUSE must not run concurrently on two streams."""
    dev = torch.device(device)
    key = _device_key(dev)
    c = _FUSE_COUNTERS.get(key)
    if c is None or c.numel() < n:
        if dev.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(f"hopper_fa3 bwd's folded dQ conversion needs {n} counters on {dev}: run one backward "
                               f"of this size outside CUDA-graph capture first (it allocates them)")
        c = torch.zeros(max(n, 1 << 12), dtype=torch.int32, device=dev)
        _FUSE_COUNTERS[key] = c
    return c


def dq_workspace(device, shape):
    """dQacc as a per-device fp32 workspace kept zero between launches (`DQ_ZERO_WS`: the folded conversion writes
    zeros back): a view of the first prod(shape) elements.  Same sharing rule as `fuse_counters`."""
    dev = torch.device(device)
    key = _device_key(dev)
    n = 1
    for x in shape:
        n *= x
    w = _DQ_WORKSPACES.get(key)
    if w is None or w.numel() < n:
        if dev.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(f"hopper_fa3 bwd's dQ workspace needs {n} floats on {dev}: run one backward of this "
                               f"size outside CUDA-graph capture first (it allocates it)")
        _DQ_WORKSPACES.pop(key, None)
        w = torch.zeros(n, dtype=torch.float32, device=dev)
        _DQ_WORKSPACES[key] = w
    return w[:n].view(shape)


def _dq_async(p: AttentionProblem, s: Schedule, dq_async: bool | None) -> bool:
    """The argument, else the module's switch, else the registry's setting (`fa3_bwd_dq_async`)."""
    if dq_async is not None:
        return dq_async
    return fa3_bwd_dq_async(p, s) if DQ_ASYNC is None else DQ_ASYNC


def check_fa3_bwd(p: AttentionProblem, s: Schedule, tensors=()) -> None:
    """What the Gluon launch runs (ScheduleError otherwise; `memsim.algorithms_hopper.fa3_bwd_applies` is the same
    rule without reasons), and contiguous tensors (ValueError)."""
    if not fa3_bwd_applies(p, s):
        raise ScheduleError(f"the hopper_fa3_bwd launch runs fp16/bf16, d 64/128, 64x128 tiles (128x128 at d=64), "
                            f"num_warps 4, num_stages 2-3, seq_q % block_m == 0 and seq_kv % 128 == 0; got {p.dtype}, "
                            f"d={p.head_dim}, "
                            f"{s.block_m}x{s.block_n} w{s.num_warps} s{s.num_stages}, lengths {p.seq_q}, {p.seq_kv}")
    for name, t in tensors:
        if not t.is_contiguous():
            raise ValueError(f"hopper_fa3 bwd reads {name} through a [B*H*N, d] TMA descriptor: it must be "
                             f"contiguous; it has strides {tuple(t.stride())} for shape {tuple(t.shape)}")


def fa3_bwd_dkdvdq(p: AttentionProblem, s: Schedule, grid, q, k, v, do, lse, delta, dqacc, dk, dv,
                   kv_regs: bool | None = None, diag: int = 0, dq_tma: bool | None = None,
                   stat_smem: bool | None = None, dq_async: bool | None = None,
                   mma_order: int | None = None, dq_defer: bool | None = None,
                   dq_ksplit: bool | None = None, dq_lag: bool | None = None, wg_offset: int | None = None,
                   dq_stage1: bool | None = None, pingpong: bool | None = None, dq=None, cnt=None,
                   dq_fuse: bool | None = None, zero_ws: bool | None = None,
                   fuse_step: int | bool | None = None) -> None:
    """Launch `_hopper_fa3_bwd` (sm_90 GPU, or "meta" tensors for the compiled-facts capture); kv_regs, diag: as
    `fa3_bwd_args` (the benchmarks' variants); dq, cnt: where the conversion is folded in (`DQ_FUSE`)."""
    if gluon is None:
        raise NotImplementedError("hopper_fa3 bwd needs triton.experimental.gluon (Triton >= 3.5)")
    check_fa3_bwd(p, s, (("q", q), ("k", k), ("v", v), ("do", do)))
    if q.device.type not in ("cuda", "meta"):
        raise NotImplementedError("Gluon kernels do not run in Triton's CPU interpreter: hopper_fa3's backward launch "
                                  "needs an sm_90 GPU; use hopper or flash2 here")
    if q.device.type == "cuda":
        from .hopper import check_capability
        check_capability(torch.cuda.get_device_capability(q.device), torch.cuda.get_device_name(q.device))
    args, kw = fa3_bwd_args(p, s, q, k, v, do, lse, delta, dqacc, dk, dv, kv_regs, diag, dq_tma, stat_smem,
                            dq_async, mma_order, dq_defer, dq_ksplit, dq_lag, wg_offset, dq_stage1, pingpong, dq,
                            cnt, dq_fuse, zero_ws, fuse_step)
    if kw["PERSISTENT"]:  # the walk table in WALK's place (args: 7 descriptors, lse .. dv, CNT, DQ, WALK, ...)
        ctas = fa3_bwd_walk_ctas(p, s, q.device)
        args = args[:14] + (fa3_bwd_walk_table(p, s, q.device, ctas),) + args[15:]
        grid = (ctas,)
    if kw["DQ_FUSE"] and (dq is None or cnt is None) and q.device.type == "cuda":
        raise ValueError("the folded dQ conversion (DQ_FUSE) needs dq and the counters (fuse_counters)")
    if kw["DQ_FUSE"] and cnt is not None and cnt.numel() < fuse_counter_count(p, s, kw["FUSE_STEP"]):
        raise ValueError(f"the folded dQ conversion needs {fuse_counter_count(p, s, kw['FUSE_STEP'])} counters, "
                         f"got {cnt.numel()}")
    _hopper_fa3_bwd[grid](*args, **kw)


@launcher("hopper_fa3", "bwd", needs={"lse": _lse_spec})
def hopper_fa3_backward(problem: AttentionProblem, schedule: Schedule, q, k, v, o, do, saved):
    """hopper bwd's preprocess, the Gluon dK/dV/dQ pass, hopper bwd's dQ conversion where
    `memsim.algorithms_hopper.fa3_bwd_applies`; otherwise hopper bwd's own launches with the same schedule.
    dO is made contiguous when it is not (the incoming gradient: a copy is harmless); q, k, v must be."""
    from .hopper_bwd import dqacc_buffers, dqacc_convert, dqacc_preprocess, hopper_backward
    p, s = problem, schedule
    if not fa3_bwd_applies(p, s):
        return hopper_backward(p, s, q, k, v, o, do, saved)
    launches = kernel_launches(p, s)
    pre, main = launches[:2]
    assert (pre.name, main.name) == ("hopper_bwd_preprocess", "hopper_fa3_bwd")
    fuse = _dq_fuse(p, s)
    zero_ws = fuse and _dq_zero_ws(p, s)
    if not fuse:  # the registry's launches, or the module's switch forced off (then the conversion's grid by hand)
        conv = launches[2] if len(launches) == 3 else _convert_launch(p, s)
    if not do.is_contiguous():
        do = do.contiguous()
    delta, dqacc, dq, dk, dv = dqacc_buffers(p, q, k, v, dqacc=not zero_ws)
    if zero_ws:
        dqacc = dq_workspace(q.device, (p.batch, p.heads_q, p.seq_q, p.head_dim))
    dqacc_preprocess(p, s, pre.grid, o, do, delta, dqacc, zero=not zero_ws)
    cnt = fuse_counters(q.device, max(fuse_counter_count(p, s, int(FUSE_STEP)),
                                      fuse_counter_count(p, s, 0))) if fuse else None
    fa3_bwd_dkdvdq(p, s, main.grid, q, k, v, do, saved["lse"], delta, dqacc, dk, dv, dq=dq if fuse else None,
                   cnt=cnt, dq_fuse=fuse, zero_ws=zero_ws)
    if not fuse:
        dqacc_convert(p, s, conv.grid, dqacc, dq)
    return dq, dk, dv


def _convert_launch(p: AttentionProblem, s: Schedule):
    """hopper bwd's conversion launch for this schedule (where the registry folds it in but a switch forces it)."""
    from memsim.algorithms_hopper import _hopper_bwd_launches
    return _hopper_bwd_launches(p, s)[2]
