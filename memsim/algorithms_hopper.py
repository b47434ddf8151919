"""Hopper algorithm-phases as registry entries: ``hopper`` fwd (FlashAttention-3 ideas in plain Triton:
TMA tensor descriptors, a warp-specialised K/V loop) and ``hopper`` bwd (dQ fused into the dK/dV pass by fp32
atomic adds, as FlashAttention-2/3 do: 5 tile matmuls per (Q block, K/V block) pair instead of flash2's 7);
``hopper_ws`` fwd (a persistent grid) and bwd (a warp-specialised dK/dV pass + flash2's dQ pass) at the bottom.

The hopper forward visits exactly the tiles of flash2's forward (same grid, same loop bounds, the
same causal skipping of fully masked blocks); what differs is *how* the tiles move (the tensor-memory
accelerator, issued by a producer warpgroup) and the tile sizes Hopper likes.  So its byte closed
forms are flash2's under its own launch name: one statement of the bytes, not a second copy.
Stdlib only (the kernels import it).
"""
from __future__ import annotations

import heapq
from dataclasses import replace
from functools import lru_cache

from .algorithms import AlgorithmSpec, register
from .algorithms_builtin import (_INTERPRETER, _c, _defaults, _flash2_bwd_compulsory, _flash2_bwd_contract,
                                 _flash2_bwd_sram, _flash2_fwd_compulsory, _flash2_fwd_contract, _flash2_fwd_sram,
                                 _launch, _lse_bytes, _sizes, _sums)
from .schedule import STAT_BYTES, AttentionProblem, Launch, Schedule, ScheduleError

_TWO_BYTE = ("fp16", "bf16")
#: bytes of the TMA descriptors one hopper_fwd CTA builds in device scratch (Q, K, V, O; 128 bytes each)
HOPPER_DESCRIPTOR_BYTES_PER_CTA = 4 * 128

_MEASURED = ("benchmarks/hopper_bench.py on an H100 80GB HBM3 (bf16, B*N=16k, H*d=2048, N=4096 and 16384; "
             "run2 2026-11-25, benchmarks/results/hopper-h100-2026-11-25.md)")
_UNMEASURED = "not timed: as d=64 (exactness of the code path checked in the interpreter only)"
_D256 = ("not timed: the warp-specialised loop with the widest tile that fits 227 KB (Q + 2 x (K + V) + O staging = "
         "192 KB); exact on the H100 (tests/test_kernels_hopper.py, run2)")
_FP32 = "fp32: flash2's fp32 tiles (ieee dots; the software-pipelined variant, no warp specialisation)"


def warp_specialised(p: AttentionProblem, s: Schedule) -> bool:
    """Whether the schedule runs the warp-specialised loop (kernels.hopper.warp_specialise says the same):
    a 2-byte dtype, num_warps = 4 and num_stages = 2.  Three buffers compiled but returned NaN on the H100
    (Triton 3.6's Hopper partitioner; benchmarks/results/hopper-h100-2026-11-25.md), so other stage
    counts run the software-pipelined variant."""
    return s.num_stages == 2 and s.num_warps == 4 and p.dtype in _TWO_BYTE


def longest_first(p: AttentionProblem) -> bool:
    """Whether hopper_fwd runs its Q blocks in reverse (longest first): causal problems, where the last Q blocks see
    the most K/V blocks.  Grid position p (the q_block axis) then computes Q block Mb - 1 - p; the bytes do not
    change, the dispatch order does (the model's workload reverses the same way)."""
    return p.causal


def _hopper_fwd_sram(p: AttentionProblem, s: Schedule) -> int:
    """Q_i resident, stages x (K_j + V_j); the warp-specialised variant also keeps an O_i staging tile
    for its TMA store (the compiled kernel's shared memory, sm_90a: 197 024 B for d=128, 128x128, 2
    stages = this + 416 B of mbarriers)."""
    o_stage = s.block_m * p.head_dim * p.element_bytes if warp_specialised(p, s) else 0
    return _flash2_fwd_sram(p, s) + o_stage


def _hopper_fwd_launches(p: AttentionProblem, s: Schedule):
    mb, _, bh, _ = _sizes(p, s)
    return (_launch("hopper_fwd", "q_block", mb, "bh", bh, s, _hopper_fwd_sram(p, s)),)


def _rename(d: dict) -> dict:
    (v,) = d.values()
    return {"hopper_fwd": v}


def _hopper_fwd_extra(p: AttentionProblem, s: Schedule) -> int:
    """lse, plus the descriptor scratch Triton allocates for the launch (4 x 128 bytes per CTA)."""
    mb, _, bh, _ = _sizes(p, s)
    return _lse_bytes(p) + mb * bh * HOPPER_DESCRIPTOR_BYTES_PER_CTA


HOPPER_FWD = AlgorithmSpec(
    algorithm="hopper", phase="fwd", problem_type=AttentionProblem,
    launches=_hopper_fwd_launches, sram_bytes_per_cta=_hopper_fwd_sram,
    contract=lambda p, s: _rename(_flash2_fwd_contract(p, s)),
    compulsory_dram_bytes=lambda p, s: _rename(_flash2_fwd_compulsory(p, s)),
    extra_device_bytes=_hopper_fwd_extra,
    default_schedules=_defaults("gpu", ("fp32",), None, {
        16: (64, 32, 4, 3), 32: (64, 32, 4, 3), 64: (64, 32, 4, 3), 128: (64, 32, 8, 3), 256: (32, 16, 4, 2)},
        _FP32) + _defaults("gpu", _TWO_BYTE, None, {
        64: (128, 64, 8, 3),     # pipelined: 414 / 439 TFLOP/s (N 4k / 16k), causal 348 / 399; WS 128x128: 394 / 426
        128: (128, 128, 4, 2),   # warp-specialised: 572 / 626, causal 446 / 524; 8-warp pipelined 427 / 484
    }, _MEASURED) + _defaults("gpu", _TWO_BYTE, None, {16: (128, 64, 8, 3), 32: (128, 64, 8, 3)}, _UNMEASURED)
    + _defaults("gpu", _TWO_BYTE, None, {256: (128, 32, 4, 2)}, _D256) + _INTERPRETER,
    description="""\
hopper, fwd -- one launch ``hopper_fwd``, one CTA per (Q block, batch*head_q):
    flash2_fwd's tiles, moved by the tensor-memory accelerator (TMA).
    Q_i (rows x d x e) loaded once and kept in SRAM; for each K/V block j that
    is not fully masked: K_j, V_j (cols x d x e each) loaded by TMA (with
    num_warps 4 and num_stages 2 by a producer warpgroup, up to 2 tiles ahead
    of two consumer warpgroups); O_i (rows x d x e) stored once by TMA, the
    logsumexp (rows x 4) once.  TMA clips every tile at its head's last row,
    so ragged edges move only the rows that exist: the global bytes are
    exactly flash2_fwd's.  Not in the contract: the 4 TMA descriptors (128
    bytes each) every CTA writes to its scratch and the copy engine reads back.
    Extra memory: lse, B*Hq*Nq*4, plus that scratch, 512 B per CTA.
    SRAM: Q_i resident, stages x (K_j + V_j), plus an O_i staging tile when
    warp-specialised.""")

register(HOPPER_FWD)


# --- hopper bwd: dQ fused into the dK/dV pass (fp32 atomic adds into dQacc) ------------------------------------
_BWD_MEASURED = ("benchmarks/hopper_bench.py --bwd on an H100 80GB HBM3 (bf16, B*N=16k, H*d=2048, N 4096/16384, causal "
                 "or not; runs 1-2, 2026-11-26): the best of 64x128 w8 s2/s3 and 64x64 w4 s2 everywhere "
                 "(d=128: 317-386 TFLOP/s; 64x64 w4: 149-189, it spills)")
_BWD_GUESS = "not timed: flash2's 64x64 tiles"


def _hopper_bwd_sram(p: AttentionProblem, s: Schedule) -> int:
    """The fused pass (the largest): flash2's dK/dV pass (K_j, V_j resident, stages x (Q_i + dO_i + lse + delta)),
    one dS tile (rows x cols x e) that both dS matmuls read (dK += dS^T Q, dQ = dS K), and the fp32 dQ staging tile
    (rows x d x 4) the TMA reduce-add reads (sm_90a compile on the CPU, benchmarks/hopper_bwd_compile.py: 180 736 B
    for d=128 64x128 w8 s2 = this - 512 B).  The default per-thread atomics need no staging tile (164 352 B
    compiled): the formula is the larger of the two, so a schedule that fits runs with either."""
    return _flash2_bwd_sram(p, s) + s.block_m * s.block_n * p.element_bytes + s.block_m * p.head_dim * 4


def _q_kv_q_launches(p: AttentionProblem, s: Schedule, smem: int, names: tuple) -> tuple:
    """Three launches: one CTA per (Q block, batch*head_q), per (K/V block, batch*head_kv), per (Q block, ...)."""
    mb, nb, bh, bhkv = _sizes(p, s)
    return (_launch(names[0], "q_block", mb, "bh", bh, s, smem),
            _launch(names[1], "kv_block", nb, "bh_kv", bhkv, s, smem),
            _launch(names[2], "q_block", mb, "bh", bh, s, smem))


def _hopper_bwd_launches(p: AttentionProblem, s: Schedule):
    return _q_kv_q_launches(p, s, _hopper_bwd_sram(p, s),
                            ("hopper_bwd_preprocess", "hopper_bwd_dkdvdq", "hopper_bwd_dq_convert"))


def dqacc_bytes(p: AttentionProblem) -> int:
    """The fp32 dQ accumulator, B x Hq x Nq x d x 4 bytes."""
    return p.batch * p.heads_q * p.seq_q * p.head_dim * 4


def _hopper_bwd_contract(p: AttentionProblem, s: Schedule) -> dict:
    d, e, ST, N, Nk = p.head_dim, p.element_bytes, STAT_BYTES, p.seq_q, p.seq_kv
    BH, BHkv, G, x = p.batch * p.heads_q, p.batch * p.heads_kv, p.group_size, _sums(p, s)
    pairs_rows = sum(x.qrows_for_j)  # per q head: sum over K/V blocks j of the rows of the Q blocks that see j
    return {
        "hopper_bwd_preprocess": _c(BH * 2 * N * d * e, BH * N * (ST + 4 * d)),
        # an atomic add (a reduction in L2, no value returned) counts as a write of its bytes
        "hopper_bwd_dkdvdq": _c(BHkv * (2 * Nk * d * e + G * (2 * d * e + 2 * ST) * pairs_rows),
                                BHkv * 2 * Nk * d * e + BH * 4 * d * pairs_rows, BH * 10 * d * x.sum_rc, BH * x.sum_rc),
        "hopper_bwd_dq_convert": _c(BH * N * d * 4, BH * N * d * e),
    }


def _hopper_bwd_compulsory(p: AttentionProblem, s: Schedule) -> dict:
    q, kv, o, stat, acc = p.q_bytes(), p.kv_bytes(), p.o_bytes(), _lse_bytes(p), dqacc_bytes(p)
    return {"hopper_bwd_preprocess": (2 * o, stat + acc), "hopper_bwd_dkdvdq": (kv + 2 * q + 2 * stat + acc, kv + acc),
            "hopper_bwd_dq_convert": (acc, q)}


HOPPER_BWD = AlgorithmSpec(
    algorithm="hopper", phase="bwd", problem_type=AttentionProblem,
    launches=_hopper_bwd_launches, sram_bytes_per_cta=_hopper_bwd_sram, contract=_hopper_bwd_contract,
    compulsory_dram_bytes=_hopper_bwd_compulsory,
    extra_device_bytes=lambda p, s: 2 * _lse_bytes(p) + dqacc_bytes(p),
    default_schedules=_defaults("gpu", ("fp32",), None, {
        16: (32, 32, 4, 2), 32: (32, 32, 4, 2), 64: (32, 32, 4, 2), 128: (32, 32, 8, 2), 256: (16, 16, 4, 1)},
        _FP32) + _defaults("gpu", _TWO_BYTE, None, {
        64: (64, 128, 8, 3), 128: (64, 128, 8, 3)}, _BWD_MEASURED) + _defaults("gpu", _TWO_BYTE, None, {
        16: (64, 64, 4, 2), 32: (64, 64, 4, 2), 256: (32, 32, 4, 1)}, _BWD_GUESS) + _INTERPRETER,
    description="""\
hopper, bwd -- three launches; dQ fused into the dK/dV pass by fp32 atomic adds:
    ``hopper_bwd_preprocess`` one CTA per (Q block, batch*head_q): reads O_i,
    dO_i, writes delta_i = rowsum(dO*O) (rows x 4) and zeroes dQacc_i (rows x d x 4).
    ``hopper_bwd_dkdvdq`` one CTA per (K/V block, batch*head_kv): K_j, V_j kept
    in SRAM; for every q head of the GQA group and every unmasked Q block i:
    Q_i, dO_i (rows x d x e), lse_i, delta_i (rows x 4) read, dS_ij K_j
    (rows x d x 4) added to dQacc_i atomically (counted as written bytes);
    dK_j, dV_j (cols x d x e) written once.  5 tile matmuls per pair (flash2: 4 + 3).
    ``hopper_bwd_dq_convert`` one CTA per (Q block, batch*head_q): reads dQacc_i,
    writes dQ_i (rows x d x e).
    Extra memory: lse (kept from fwd) + delta, B*Hq*Nq*4 each, dQacc B*Hq*Nq*d*4.
    SRAM: the fused pass: K_j, V_j resident, stages x (Q_i + dO_i + lse + delta), one dS tile,
    the dQ staging tile (rows x d x 4).
    Not deterministic bitwise (the order of dQ's atomic adds).""")

register(HOPPER_BWD)


# --- hopper_ws: the warp-specialised loop spans a CTA's whole work (session 5) ----------------------------------
# fwd: a persistent grid (one CTA per SM walks the (Q block, batch*head) tiles, the whole tile body in one
#      warp-specialised loop, so the producer loads tile t+1 while the consumers finish tile t); ragged lengths run
#      hopper's per-tile grid (the persistent descriptors span every head's rows and cannot clip a tile at its head).
# bwd: flash2's preprocess, the warp-specialised dK/dV pass (every tile by TMA), flash2's dQ pass (kernels.hopper_bwd;
#      "ws+f2dq" of sessions 3-4): FA2's 7 tile matmuls per pair, no atomics (deterministic).

#: CTAs of the persistent forward: the SM count of the H100 SXM and the H200 (132; DESIGN.md, "What the hardware
#: counters say").  Part of the algorithm's launch (kernel_launches has no hardware): on a GPU with another SM count
#: the grid stays min(tiles, 132) -- still exact, but not one CTA per SM (kernels.api picks it only on 132-SM cards).
PERSISTENT_CTAS = 132
_WS_FWD_MEASURED = ("benchmarks/hopper_bench.py --fwd-persistent on an H100 80GB HBM3 (runs 4-5, 2026-11-26, B*N=16k, "
                    "H*d=2048; benchmarks/results/hopper-h100-2026-11-26-run5.md): 128x128 w4 s2, bf16 d=128 "
                    "531/558/563 TFLOP/s (N 1k/4k/16k, run5) vs the per-tile grid's 410/512/567; d=64 414/446/463")
_WS_BWD_MEASURED = ("benchmarks/hopper_bench.py --bwd on an H100 80GB HBM3 (runs 4-5, 2026-11-26; run4 as the LOOP "
                    "'ws+f2dq' experiment): 64x128 w4 s2 (dQ pass 64x64 w4 s2), bf16 d=128 1.09-1.15x flash2 at "
                    "N>=4096 (run5, same process), d=64 0.99-1.15x; N=1024 0.87-1.12x")
_WS_UNMEASURED = "not timed: as d=64 (exact in the interpreter only)"


def persistent(p: AttentionProblem, s: Schedule) -> bool:
    """Whether hopper_ws fwd runs the persistent launch: the tiles divide both lengths (its 2-D descriptors span the
    rows of every head, so a ragged tile would read the next head's rows); otherwise hopper's per-tile launch."""
    return p.seq_q % s.block_m == 0 and p.seq_kv % s.block_n == 0


def persistent_ctas(p: AttentionProblem, s: Schedule) -> int:
    mb, _, bh, _ = _sizes(p, s)
    return min(mb * bh, PERSISTENT_CTAS)


def persistent_tiles(p: AttentionProblem, s: Schedule, cta: int) -> list:
    """The (q_block, bh) tiles persistent CTA `cta` computes, in its order: tile t = cta, cta + G, ... (G CTAs);
    causal: longest first over all heads (t // BH-th Q block from the end, head t % BH); otherwise the grid order's
    (q_fastest: the Q blocks of one head in a row; heads_fastest: the heads of one Q block).  The kernel
    (kernels.hopper._hopper_fwd_persistent) walks the same tiles."""
    mb, _, bh, _ = _sizes(p, s)
    g = persistent_ctas(p, s)
    out = []
    for t in range(cta, mb * bh, g):
        if p.causal:
            out.append((mb - 1 - t // bh, t % bh))
        elif s.grid_order == "q_fastest":
            out.append((t % mb, t // mb))
        else:
            out.append((t // bh, t % bh))
    return out


def _ws_fwd_sram(p: AttentionProblem, s: Schedule) -> int:
    """Persistent: stages x (Q_i + K_j + V_j) -- the producer loads the next tile's Q_i through the same ring -- plus
    the O_i staging tile of the TMA store (sm_90a compile, run4: 229 800 B at d=128 128x128 s2 = this + 424 B of
    mbarriers; 115 112 B at d=64).  Ragged lengths: hopper's per-tile kernel (its own formula)."""
    if not persistent(p, s):
        return _hopper_fwd_sram(p, s)
    d, e = p.head_dim, p.element_bytes
    return s.num_stages * (s.block_m + 2 * s.block_n) * d * e + s.block_m * d * e


def _ws_fwd_launches(p: AttentionProblem, s: Schedule):
    if not persistent(p, s):
        return _hopper_fwd_launches(p, s)
    return (Launch("hopper_fwd_persistent", (persistent_ctas(p, s), 1, 1), ("cta", "one", "one"), _ws_fwd_sram(p, s)),)


def _ws_fwd_name(p: AttentionProblem, s: Schedule) -> str:
    return "hopper_fwd_persistent" if persistent(p, s) else "hopper_fwd"


def _ws_fwd_extra(p: AttentionProblem, s: Schedule) -> int:
    """lse, plus the descriptor scratch: 4 x 128 bytes per CTA (persistent: per CTA of the grid, built once)."""
    if not persistent(p, s):
        return _hopper_fwd_extra(p, s)
    return _lse_bytes(p) + persistent_ctas(p, s) * HOPPER_DESCRIPTOR_BYTES_PER_CTA


def _flash2_fwd_as(name, closed_form):
    """flash2_fwd's one-launch closed form (contract or compulsory bytes) under the launch name name(p, s)."""
    return lambda p, s: {name(p, s): next(iter(closed_form(p, s).values()))}


HOPPER_WS_FWD = AlgorithmSpec(
    algorithm="hopper_ws", phase="fwd", problem_type=AttentionProblem,
    launches=_ws_fwd_launches, sram_bytes_per_cta=_ws_fwd_sram,
    contract=_flash2_fwd_as(_ws_fwd_name, _flash2_fwd_contract),
    compulsory_dram_bytes=_flash2_fwd_as(_ws_fwd_name, _flash2_fwd_compulsory),
    extra_device_bytes=_ws_fwd_extra,
    default_schedules=_defaults("gpu", _TWO_BYTE, None, {64: (128, 128, 4, 2), 128: (128, 128, 4, 2)},
                                _WS_FWD_MEASURED) + _defaults("gpu", _TWO_BYTE, None, {
        16: (128, 128, 4, 2), 32: (128, 128, 4, 2)}, _WS_UNMEASURED) + _INTERPRETER,
    description="""\
hopper_ws, fwd -- one launch.  Lengths that the tiles divide: ``hopper_fwd_persistent``,
    grid (min(Mb * B*Hq, 132), 1, 1): CTA c computes tiles c, c + G, ... (G CTAs;
    Q blocks of one head in a row -- heads_fastest: heads of one Q block --,
    causal: longest first over every head), each tile exactly flash2_fwd's CTA:
    Q_i (rows x d x e) once, K_j, V_j (cols x d x e each) per visible block,
    O_i (rows x d x e) and lse_i (rows x 4) written once.  One warp-specialised
    loop over the CTA's tiles and their K/V blocks: a producer warpgroup loads
    Q_i, K_j, V_j by TMA (the next tile's while the consumers finish this one),
    two consumer warpgroups.  The 4 descriptors are built once per CTA.
    Ragged lengths: hopper's ``hopper_fwd`` (one CTA per tile).
    Extra memory: lse, B*Hq*Nq*4, plus 512 B of descriptor scratch per CTA.
    SRAM: stages x (Q_i + K_j + V_j) + an O_i staging tile.""")

register(HOPPER_WS_FWD)


def ws_dq_schedule(s: Schedule) -> Schedule:
    """The tiles of hopper_ws bwd's dQ pass (flash2's kernel): the schedule's Q rows per step, half its K/V rows
    (the K/V rows of one consumer warpgroup of the dK/dV pass; at least 16), same warps and stages -- 64x64 w4 s2 for
    the measured 64x128 w4 s2, flash2's d=128 winner."""
    return replace(s, block_n=max(16, s.block_n // 2))


def ws_stat_pad(p: AttentionProblem) -> int:
    """Columns the dK/dV pass's lse/delta copies get so that their row stride is a multiple of 16 bytes (TMA)."""
    return -p.seq_q % 4


#: TMA (cp.async.bulk.tensor) writes only to 128-byte aligned shared memory (PTX ISA; a violation is the sticky CUDA
#: error "misaligned address", which ends the process's CUDA context)
TMA_SMEM_ALIGN_BYTES = 128


def ws_stats_multibuffered(p: AttentionProblem, s: Schedule) -> bool:
    """Whether Triton 3.6 may give the dK/dV pass's lse and delta tiles (block_m x 4 bytes each, loaded by TMA every
    step) two or more shared buffers back to back: with num_stages >= 3 (software pipelining: num_stages - 1
    buffers) or in the warp-specialised loop (2 buffers at block_n 64 and 128; one at block_n 32, which the rule
    still counts, to keep it one line).  One buffer (num_stages 1, or 2 without warp specialisation) is placed
    128-byte aligned.  Seen in sm_90a compiles on the CPU and on the H100 (notes/hopper.md "Session 7";
    benchmarks/results/hopper-sm90a-2026-11-26-ws-bwd-stat-buffers.json)."""
    return s.num_stages >= 3 or warp_specialised(p, s)


def check_ws_bwd(p: AttentionProblem, s: Schedule) -> None:
    """hopper_ws bwd's schedule rule (the registry's one home of it; its launches and SRAM formula call it, so
    kernel_launches, check_fits, memsim.simulate and the launcher all refuse first): buffer i of a multi-buffered
    lse / delta tile starts i x block_m x 4 bytes in, so each must be a multiple of TMA's 128-byte alignment --
    block_m >= 32.  16-row tiles faulted with "misaligned address" on the H100 (random set N, case
    r26112612_002, 16x64 w4 s3; benchmarks/results/hopper-h100-2026-11-26-ws-bwd-misaligned.json)."""
    tile = s.block_m * STAT_BYTES
    if tile % TMA_SMEM_ALIGN_BYTES and ws_stats_multibuffered(p, s):
        why = (f"num_stages={s.num_stages} gives them {s.num_stages - 1} buffers" if s.num_stages >= 3 else
               "the warp-specialised loop (num_warps=4, num_stages=2, fp16/bf16) may give them 2 buffers")
        raise ScheduleError(
            f"hopper_ws bwd with block_m={s.block_m}, num_warps={s.num_warps}, num_stages={s.num_stages}, "
            f"{p.dtype}: its dK/dV pass loads lse and delta rows by TMA into shared tiles of block_m x 4 = {tile} "
            f"bytes, and {why} back to back, but TMA writes only to {TMA_SMEM_ALIGN_BYTES}-byte aligned shared "
            f"memory (the GPU faults: 'misaligned address'). Allowed: block_m >= "
            f"{TMA_SMEM_ALIGN_BYTES // STAT_BYTES}; or block_m={s.block_m} with num_stages=1, or with num_stages=2 "
            f"and no warp specialisation (num_warps != 4, or fp32): one buffer each")


def _ws_bwd_sram(p: AttentionProblem, s: Schedule) -> int:
    """The dK/dV pass: flash2's (K_j, V_j resident, stages x (Q_i + dO_i + lse + delta)) plus one cols x rows tile
    (P^T / dS^T on its way to the tensor cores as a shared-memory operand): the sm_90a compile of d=128 64x128 w4 s2
    (run5 compiled facts, benchmarks/results/hopper-h100-2026-11-26-run5.compiled_facts.json): 148 928 B = this +
    448 B of mbarriers.  The dQ pass (half the K/V rows) needs less.  Refuses what `check_ws_bwd` refuses."""
    check_ws_bwd(p, s)
    return _flash2_bwd_sram(p, s) + s.block_m * s.block_n * p.element_bytes


def _ws_bwd_launches(p: AttentionProblem, s: Schedule):
    check_ws_bwd(p, s)
    return _q_kv_q_launches(p, s, _ws_bwd_sram(p, s), ("flash2_bwd_preprocess", "hopper_bwd_dkdv_ws", "flash2_bwd_dq"))


def _ws_bwd_contract(p: AttentionProblem, s: Schedule) -> dict:
    main, dq = _flash2_bwd_contract(p, s), _flash2_bwd_contract(p, ws_dq_schedule(s))
    return {"flash2_bwd_preprocess": main["flash2_bwd_preprocess"], "hopper_bwd_dkdv_ws": main["flash2_bwd_dkdv"],
            "flash2_bwd_dq": dq["flash2_bwd_dq"]}


def _ws_bwd_compulsory(p: AttentionProblem, s: Schedule) -> dict:
    c = _flash2_bwd_compulsory(p, s)
    return {"flash2_bwd_preprocess": c["flash2_bwd_preprocess"], "hopper_bwd_dkdv_ws": c["flash2_bwd_dkdv"],
            "flash2_bwd_dq": c["flash2_bwd_dq"]}


def _ws_bwd_extra(p: AttentionProblem, s: Schedule) -> int:
    """lse (kept from fwd) + delta; when seq_q % 4 != 0 also their padded copies for the TMA descriptors."""
    pad = ws_stat_pad(p)
    return 2 * _lse_bytes(p) + (2 * p.batch * p.heads_q * (p.seq_q + pad) * STAT_BYTES if pad else 0)


HOPPER_WS_BWD = AlgorithmSpec(
    algorithm="hopper_ws", phase="bwd", problem_type=AttentionProblem,
    launches=_ws_bwd_launches, sram_bytes_per_cta=_ws_bwd_sram, contract=_ws_bwd_contract,
    compulsory_dram_bytes=_ws_bwd_compulsory, extra_device_bytes=_ws_bwd_extra,
    default_schedules=_defaults("gpu", _TWO_BYTE, None, {64: (64, 128, 4, 2), 128: (64, 128, 4, 2)},
                                _WS_BWD_MEASURED) + _defaults("gpu", _TWO_BYTE, None, {
        16: (64, 128, 4, 2), 32: (64, 128, 4, 2)}, _WS_UNMEASURED) + _INTERPRETER,
    description="""\
hopper_ws, bwd -- three launches (deterministic, no atomics):
    ``flash2_bwd_preprocess`` as flash2's: reads O_i, dO_i, writes delta_i (rows x 4).
    ``hopper_bwd_dkdv_ws`` one CTA per (K/V block, batch*head_kv): flash2_bwd_dkdv's
    bytes -- K_j, V_j once; for every q head of the GQA group and every unmasked
    Q block i: Q_i, dO_i (rows x d x e), lse_i, delta_i (rows x 4); dK_j, dV_j
    written once -- every tile by TMA, in ONE warp-specialised loop over the
    (q head, Q block) pairs (a producer warpgroup, two consumer warpgroups of
    block_n / 2 K/V rows).
    ``flash2_bwd_dq`` flash2's dQ pass with Q blocks of block_m rows and K/V
    blocks of block_n / 2 rows (at least 16): flash2_bwd_dq's bytes at those tiles.
    Extra memory: lse (kept from fwd) + delta, B*Hq*Nq*4 each; when seq_q % 4 != 0
    padded copies of both (row stride a multiple of 16 bytes for TMA).
    Refused: block_m * 4 bytes not a multiple of 128 (block_m=16) when lse/delta
    are multi-buffered (num_stages >= 3, or warp-specialised): TMA's shared
    destinations must be 128-byte aligned (`check_ws_bwd`).
    SRAM: the dK/dV pass: K_j, V_j resident, stages x (Q_i + dO_i + lse + delta),
    one cols x rows P^T / dS^T tile.""")

register(HOPPER_WS_BWD)


# --- hopper_fa3 fwd: FlashAttention-3's structure in Gluon (kernels/hopper_gluon.py) ----------------------------
_FA3_MEASURED = ("benchmarks/hopper_bench.py --fa3 on an H100 80GB HBM3 (bf16 and fp16, d 64/128, B*N=16k, H*d=2048, N "
                 "1024-16384, causal or not; runs 9a-9b and 10a-10b 2026-11-26, "
                 "benchmarks/results/hopper-h100-2026-11-26-run10b.json):"
                 " 128x128 s2, the persistent walk: d=128 566-650 TFLOP/s non-causal, 416-635 causal; d=64 413-463 / "
                 "287-458; s3 (per tile at d=128, the walk at d=64) within the spreads of s2")
#: what the Gluon launch runs (kernels.hopper_gluon.check_fa3 says the same with reasons)
FA3_HEAD_DIMS = (64, 128)
FA3_BLOCK_M = 128


def fa3_applies(p: AttentionProblem, s: Schedule) -> bool:
    """Whether hopper_fa3 fwd runs its own launch ``hopper_fa3_fwd``: fp16/bf16, d 64/128, block_m 128 (two consumer
    warpgroups of 64 rows), block_n 64/128, num_warps 4 (one warpgroup: the producer's; 12 warps launched),
    num_stages 2-3, and lengths the tiles divide (its TMA descriptors span all rows [B*H*N, d]: a ragged tile would
    read the next head's rows).  Otherwise the entry runs hopper's per-tile ``hopper_fwd`` with the same schedule
    (a registry rule: the launches are a function of the problem and schedule)."""
    return (p.dtype in _TWO_BYTE and p.head_dim in FA3_HEAD_DIMS and s.block_m == FA3_BLOCK_M
            and s.block_n in (64, 128) and s.num_warps == 4 and s.num_stages in (2, 3)
            and p.seq_q % s.block_m == 0 and p.seq_kv % s.block_n == 0)


#: shared memory per CTA of the cards the walk is written for (the H100's and H200's opt-in limit, 227 KB): a walk
#: whose tiles and O staging tile need more runs one CTA per tile (part of the algorithm, as PERSISTENT_CTAS)
FA3_WALK_SMEM_BYTES = 232448
#: shared memory the compiled walk needs beyond `_fa3_sram`'s formula (mbarriers, alignment: 320-352 B measured; the
#: wait-fence variant's scratch adds 304 B)
FA3_SMEM_SLACK_BYTES = 1024


def fa3_persistent(p: AttentionProblem, s: Schedule) -> bool:
    """Whether hopper_fa3's own launch walks the tiles persistently (min(tiles, 132) CTAs, `fa3_tiles`' order) or
    runs one CTA per tile: the walk wherever its tiles fit `FA3_WALK_SMEM_BYTES` with the O staging tile (d=128
    128x128 with 3 stages does not: 262 KB; it runs one CTA per tile, 229 KB, as before session 10); the per-tile
    grid is also the kernel's fallback (`kernels.hopper_gluon.fa3_forward(persistent=False)`).  Measured (H100, B*N = 16k, H*d = 2048, walk vs one CTA per
    tile, TFLOP/s): non-causal, run9b: d=128 N=1024 592 vs 534, d=64 418 vs 375, N=16384 ties; causal, the balanced
    table `fa3_walk` (run10b, medians of 4, benchmarks/results/hopper-h100-2026-11-26-run10b.md): bf16 d=128 N 2048 /
    4096 / 8192 / 16384 526 / 588 / 616 / 635 vs 466 / 534 / 584 / 632, d=64 380 / 420 / 445 / 458 vs 328 / 383 /
    418 / 462; fp16 N=1024 d=128 416 vs 355, d=64 287 vs 241; N=16384 ties (run10a: the walk 2-4 % slower there,
    inside the spreads).  run9b's static walk for causal problems (tile t = cta + 132 k over all heads, heads
    fastest) had measured 260 vs 360 at d=128 N=1024: not the balance (the round-robin CTAs differ by <= 12 % of
    work) but the order -- run10a's same table with one section over all heads gave 266 vs the 16 MiB sections' 406:
    132 concurrent tiles of 132 different heads stream 66 MB of K/V through the 50 MB L2."""
    if not fa3_applies(p, s):
        return False
    o_stage = s.block_m * p.head_dim * p.element_bytes
    return _flash2_fwd_sram(p, s) + o_stage + FA3_SMEM_SLACK_BYTES <= FA3_WALK_SMEM_BYTES


#: K + V bytes of the kv heads one section of the causal walk spans: the walk finishes a section's tiles before it
#: starts the next section's, so the K/V that concurrent tiles stream stay a few heads (the H100's L2 is 50 MB)
FA3_WALK_SECTION_BYTES = 16 << 20
#: a tile's fixed cost, in K/V blocks, in the walk's list scheduling (the fill and drain a CTA's ping-pong does not
#: hide: Q_i's load, S_0 alone, the last P V, the O store)
FA3_TILE_FIXED_BLOCKS = 1


def fa3_section_heads(p: AttentionProblem, s: Schedule) -> int:
    """batch*head_q indices per section of the causal walk: whole kv heads (their GQA groups of q heads) whose K + V
    fit `FA3_WALK_SECTION_BYTES`, at least one kv head."""
    kv = 2 * p.seq_kv * p.head_dim * p.element_bytes
    return max(1, FA3_WALK_SECTION_BYTES // kv) * p.group_size


def _fa3_blocks(p: AttentionProblem, s: Schedule, m: int) -> int:
    """K/V blocks Q block m visits (the kernel's `_fa3_tile`: every block any of its rows sees)."""
    if not p.causal:
        return p.seq_kv // s.block_n
    last = min(max((m + 1) * s.block_m + p.causal_offset, 0), p.seq_kv)
    return -(-last // s.block_n)


@lru_cache(maxsize=64)
def _list_schedule(bh: int, blocks: tuple, ctas: int, section: int) -> tuple:
    """The walk's table: tiles in section order (sections of `section` batch*heads; inside one, Q blocks longest
    first, the section's heads fastest), each given to the CTA with the least work booked so far (list scheduling;
    ties to the lowest CTA), cost = its blocks + FA3_TILE_FIXED_BLOCKS.  Per CTA its tiles (q_block, bh) in order."""
    order = [(m, h) for h0 in range(0, bh, section) for m in sorted(range(len(blocks)), key=lambda m: -blocks[m])
             for h in range(h0, min(bh, h0 + section))]
    heap = [(0, c) for c in range(ctas)]
    out = [[] for _ in range(ctas)]
    for m, h in order:
        load, c = heapq.heappop(heap)
        out[c].append((m, h))
        heapq.heappush(heap, (load + blocks[m] + FA3_TILE_FIXED_BLOCKS, c))
    return tuple(tuple(x) for x in out)


def fa3_walk(p: AttentionProblem, s: Schedule, section_heads: int | None = None) -> tuple:
    """hopper_fa3's persistent causal walk: per CTA (min(tiles, 132) of them) its (q_block, bh) tiles in order --
    sections of `fa3_section_heads` batch*heads (section_heads: another size, for the benchmarks), Q blocks longest
    first inside a section, each tile to the least-loaded CTA by its K/V blocks (static list scheduling: the work of
    a dynamic tile counter, fixed on the host, so the model walks what runs).  The launcher passes it to the kernel
    as an int32 table (kernels.hopper_gluon.fa3_walk_table)."""
    mb, _, bh, _ = _sizes(p, s)
    sec = fa3_section_heads(p, s) if section_heads is None else section_heads
    if sec < 1:
        raise ScheduleError(f"hopper_fa3's causal walk: section_heads must be >= 1, got {sec}")
    return _list_schedule(bh, tuple(_fa3_blocks(p, s, m) for m in range(mb)), persistent_ctas(p, s), sec)


def fa3_tiles(p: AttentionProblem, s: Schedule, cta: int) -> list:
    """The tiles persistent CTA `cta` of hopper_fa3 computes, in order: causal -- `fa3_walk`; otherwise
    `persistent_tiles` (the grid order's walk, tile t = cta, cta + G, ...)."""
    return list(fa3_walk(p, s)[cta]) if p.causal else persistent_tiles(p, s, cta)


def _fa3_sram(p: AttentionProblem, s: Schedule) -> int:
    """Q_i (two 64-row halves), stages x (K_j + V_j): flash2's formula; the per-tile launch stages O_i in Q_i's
    halves, the persistent one in its own tile (block_m x d), so the producer can load the next tile's Q_i while the
    consumers store O_i.  The sm_90a compile on the CPU (benchmarks/hopper_gluon_compile.py --kernel fa3 [--persistent],
    bf16): per tile, d=128 128x128 s2 164 160 B, s3 229 760 B, 128x64 s2 98 624 B, d=64 128x128 s2 82 240 B;
    persistent d=128 128x128 s2 196 960 B -- this + 320-352 B of mbarriers and alignment."""
    if not fa3_applies(p, s):
        return _hopper_fwd_sram(p, s)
    o_stage = s.block_m * p.head_dim * p.element_bytes if fa3_persistent(p, s) else 0
    return _flash2_fwd_sram(p, s) + o_stage


def _fa3_launches(p: AttentionProblem, s: Schedule):
    if not fa3_applies(p, s):
        return _hopper_fwd_launches(p, s)
    if fa3_persistent(p, s):
        return (Launch("hopper_fa3_fwd", (persistent_ctas(p, s), 1, 1), ("cta", "one", "one"), _fa3_sram(p, s)),)
    mb, _, bh, _ = _sizes(p, s)
    return (_launch("hopper_fa3_fwd", "q_block", mb, "bh", bh, s, _fa3_sram(p, s)),)


def _fa3_name(p: AttentionProblem, s: Schedule) -> str:
    return "hopper_fa3_fwd" if fa3_applies(p, s) else "hopper_fwd"


def _fa3_extra(p: AttentionProblem, s: Schedule) -> int:
    """lse, and for the causal walk its int32 table (G + 1 offsets + one entry per tile; kernels.hopper_gluon.
    fa3_walk_table); the descriptors are built on the host and passed as kernel parameters (no device scratch)."""
    if not fa3_applies(p, s):
        return _hopper_fwd_extra(p, s)
    mb, _, bh, _ = _sizes(p, s)
    table = 4 * (persistent_ctas(p, s) + 1 + mb * bh) if p.causal and fa3_persistent(p, s) else 0
    return _lse_bytes(p) + table


HOPPER_FA3_FWD = AlgorithmSpec(
    algorithm="hopper_fa3", phase="fwd", problem_type=AttentionProblem,
    launches=_fa3_launches, sram_bytes_per_cta=_fa3_sram,
    contract=_flash2_fwd_as(_fa3_name, _flash2_fwd_contract),
    compulsory_dram_bytes=_flash2_fwd_as(_fa3_name, _flash2_fwd_compulsory),
    extra_device_bytes=_fa3_extra,
    default_schedules=_defaults("gpu", _TWO_BYTE, None, {64: (128, 128, 4, 2), 128: (128, 128, 4, 2)}, _FA3_MEASURED)
    + _defaults("gpu", _TWO_BYTE, None, {16: (128, 128, 4, 2), 32: (128, 128, 4, 2)},
                "hopper's per-tile launch (hopper_fa3 runs d 64/128 only)") + _INTERPRETER,
    description="""\
hopper_fa3, fwd -- one launch.  fp16/bf16, d 64/128, 128 x (64|128) tiles, num_warps 4,
    2-3 stages, lengths the tiles divide: ``hopper_fa3_fwd`` (Gluon), persistent:
    grid (min(Mb * B*Hq, 132), 1, 1), the producer loading tile t+1 while the
    consumers finish tile t.  Non-causal: CTA c computes tiles c, c + G, ... (Q
    blocks of one head in a row; heads_fastest: heads of one Q block).  Causal: the
    host's table `fa3_walk` -- sections of kv heads whose K+V fit 16 MiB, inside a
    section Q blocks longest first, each tile to the least-loaded CTA (list
    scheduling by K/V blocks); the kernel reads it (int32, (G+1 + tiles) x 4 bytes,
    not in the byte contract).  Each tile flash2_fwd's bytes:
    Q_i (rows x d x e) once, K_j, V_j (cols x d x e each) per visible block,
    O_i (rows x d x e) and lse_i (rows x 4) written once, every tile by TMA
    through host-built descriptors.  FlashAttention-3's structure: a producer
    warp issues the loads into a ring of stages (mbarriers); two consumer
    warpgroups (64 Q rows each, 240 registers; producer 24) share the ring and
    take turns issuing their matmuls (ping-pong: one group's softmax runs
    while the other's wgmma do); inside a group S_j = Q K_j^T and
    O += P_(j-1) V_(j-1) are issued together and the softmax of S_j overlaps
    the second.  Causal: blocks every row of a consumer sees run without a mask.
    Otherwise: hopper's ``hopper_fwd`` (one CTA per tile) with the same schedule.
    Extra memory: lse, B*Hq*Nq*4 (+ the causal walk's table).
    SRAM: Q_i + stages x (K_j + V_j), + an O_i staging tile when persistent (per
    tile O_i is staged in Q_i's place).""")

register(HOPPER_FA3_FWD)


# --- hopper_fa3 bwd: FlashAttention-3's backward structure in Gluon (kernels/hopper_gluon_bwd.py) -----------------
#: the Gluon backward's tiles: 64 Q rows (the dQ matmul's M), 128 K/V rows (two consumer warpgroups of 64)
FA3_BWD_BLOCK_M, FA3_BWD_BLOCK_N = 64, 128
#: the Q block heights the launch runs per head dim: 64, and 128 at d=64 (session 13: half the steps, dS^T exchanges
#: and dQ reduce-adds per FLOP; sm_90a: no spills non-causal, 56 B causal, 231 744 B of shared memory with the
#: double-buffered dQ staging).  Exact on the H100 (run13b: the d=64 cases, bf16 and fp16, with and without DQ_ASYNC)
#: and faster there: the whole backward bf16 d=64 N 1024 / 4096 / 16384 355/348 / 460/424 / 434/488 vs 64-row blocks
#: 325/327 / 418/408 / 446/428, causal 231/231 / 371/334 / 453/438 vs 229/227 / 360/363 / 428/398 TFLOP/s
#: (benchmarks/results/hopper-h100-2026-11-26-run13.md): the default tiles at d=64 (128 x 128), 64 x 128 at d=128
FA3_BWD_BLOCK_MS = {64: (64, 128), 128: (64,)}
#: dQ's partial tiles (block_m x d/2 fp32 per consumer warpgroup) reach dQacc by one TMA bulk reduce-add each, staged
#: in shared memory (FlashAttention-3's way), not by per-thread fp32 atomics: exact on the H100 (run11c, 22 cases bf16
#: and fp16) and faster there -- the dK/dV/dQ pass at bf16 d=128 N=16384 12.29 vs 13.39 ms, d=64 14.92 vs 15.84,
#: d=128 causal N=4096 1.87 vs 1.91, N=1024 0.623 vs 0.626 (benchmarks/results/hopper-h100-2026-11-26-run11.md).
#: kernels.hopper_gluon_bwd.DQ_TMA follows this (a module switch the benchmarks can flip; SRAM then differs)
FA3_BWD_DQ_BY_TMA = True
#: lse_i and delta_i reach the consumers through the stages (the producer's TMA: [1, block_m] fp32 boxes per stage) and
#: are read from shared memory when needed, instead of plain loads whose 32 values a thread keeps live across the
#: matmuls (at d=128 ptxas spilled them: 152-168 B a thread of local memory, 6.4 M spill requests at N=16k, run11b).
#: Exact on the H100 (run11d: 22 cases x bf16/fp16) and faster there: the whole backward bf16 1.06-1.21x the plain
#: loads on all 12 cells of the grid (d=128 N=16384 524/493 vs 437/431 TFLOP/s, d=64 N=16384 396 vs 365; fp16 the
#: same: benchmarks/results/hopper-h100-2026-11-26-run11d.md).  kernels.hopper_gluon_bwd.STAT_SMEM follows this.
FA3_BWD_STAT_SMEM = True
#: with the TMA reduce-add: two dQ staging tiles per consumer warpgroup, handed to the copy engine by hand, so a
#: warpgroup waits only for the reduce of two iterations ago (Triton's descriptor reduce waits for its staging read
#: right after issuing it) -- where: head dims and stages.  Exact on the H100 (run11d: every case it fits, bf16 and
#: fp16; d=128 with 3 stages does not fit: 262 KB of shared memory) and at d=64 faster there: the whole backward bf16
#: N=16384 445/442 vs 396/396 TFLOP/s (1.12x; cuDNN 432/428) -- at d=128 a tie (N=16384 517/498 vs 520/502, causal
#: N=4096 410/408 vs 412/396, N=1024 264/262 vs 259/255; run11e), so off there (it also costs d x 256 B of shared
#: memory).  Timed at d=64 only on that one cell, 2 stages (the default) only: 3 stages were never run with it.
FA3_BWD_DQ_ASYNC = {"head_dims": (64,), "num_stages": (2,)}
#: step t's dQ matmul (and its reduce-add) in step t+1, after that step's dV, dK are issued and its dS^T stored: the
#: wait for the other consumer warpgroup's dS^T rows is then for rows it stored a step earlier, so the two warpgroups
#: no longer leave a barrier together every step (four dS^T buffers, four count-2 mbarriers: + 2 x block_n x block_m
#: x element bytes of shared memory; d=128 64 x 128: 230 480 B compiled), and warpgroup 1 starts once warpgroup 0 has
#: its first S^T ("wg_offset" 1) -- where: head dims and stages (d=128 with 3 stages does not fit: 263 760 B).  Exact
#: on the H100 (run15: 76 GPU tests, d=128 bf16 + fp16, d=64 bf16) and faster there, the whole backward bf16 d=128
#: medians of 3 rounds, registered (lockstep) -> DQ_LAG + WG_OFFSET 1: N 1024 / 4096 / 16384 359 / 469 / 507 -> 371 /
#: 487 / 529, causal 257 / 393 / 496 -> 264 / 410 / 525 TFLOP/s; the pass alone N=16384 518 -> 551 (the exchange
#: without its wait, a timing diagnostic: 553), causal N=4096 446 -> 461 (484)
#: (benchmarks/results/hopper-h100-2026-11-27-run15.md).  kernels.hopper_gluon_bwd.DQ_LAG / WG_OFFSET follow this
FA3_BWD_DQ_LAG = {"head_dims": (128,), "num_stages": (2,), "wg_offset": 1}
#: with the TMA reduce-add and one staging tile per consumer warpgroup (where not `fa3_bwd_dq_async`): the tile stored
#: and handed to the copy engine by hand, and the wait for the engine to have read it moved from right after the issue
#: (Triton's descriptor-reduce lowering: DEPBAR.LE SB0, 0x0 + a barrier in every step's tail) to before the next
#: step's store into it -- the same shared memory -- where: head dims and stages.  Exact on the H100 (run16: 88 GPU
#: tests of session 14's switch sets) and, with DQ_LAG + WG_OFFSET 1, faster there: the whole backward bf16 d=128
#: medians of 3 rounds N 1024 / 4096 / 16384 373 / 496 / 522 -> 382 / 491 / 546, causal 265 / 428 / 503 -> 273 / 434 /
#: 534 TFLOP/s (a tie at N=4096: 475-512 vs 495-499; the pass alone, one figure each, 549 -> 525 at N=16384, 478 ->
#: 475 causal N=4096, 353 -> 363 causal N=1024: within run16's single-figure spread, the lockstep kernel's 537 vs
#: run15's 518) (benchmarks/results/hopper-h100-2026-11-27-run16.md).  kernels.hopper_gluon_bwd.DQ_STAGE1 follows this
FA3_BWD_DQ_STAGE1 = {"head_dims": (128,), "num_stages": (2,)}
#: the dQ conversion folded into the pass (session 15; kernels.hopper_gluon_bwd.DQ_FUSE): each consumer warpgroup,
#: once its reduce-adds have completed, counts itself in on a per-(batch*head_kv, column half) counter; the last of
#: the seq_kv / 128 warpgroups of a half reads that half of dQacc for every q head of the group (from the L2) and
#: writes dQ -- two launches instead of three, the conversion's bytes moved into the pass's tail CTAs.  With
#: "zero_ws" dQacc is a per-device workspace the converting warpgroup leaves zero (it writes zeros back), so the
#: preprocess reads O, dO and writes delta only (launches of one device share the workspace and the counters: two
#: backward passes must not run concurrently on two streams -- decode's fused combine has the same rule).  Where:
#: head dims, dtypes, causal, seq_q up to "max_seq_q" (one warpgroup converts a whole column half of a head: seq_q x
#: d/2 x 4 bytes, so at N=16384 the pass's tail grows).  Exact on the H100 (run17: 15 GPU tests of the two switch
#: sets on 4 of the 8 d=128 cases, bf16 + fp16, before the call's test budget ran out; the workspace reused across
#: them) and, timed in the same run (fp16 only: the bf16 and causal timings were cut by the call's limit), faster
#: there with the workspace -- the whole backward d=128 non-causal medians of 3 rounds, registered (6 rounds with the
#: default path, the same kernel) -> fuse -> fuse_ws: N=1024 369 -> 379 -> 384 TFLOP/s (every fuse_ws round above
#: every registered one), N=4096 474 -> 488 -> 491 (rounds 480-492 vs 457-494), N=16384 534 -> 507 -> 477 (slower:
#: the tail); SDPA cuDNN 388 / 491 / 500 (benchmarks/results/hopper-h100-2026-11-27-run17.md).  Adopted where
#: measured: d=128, fp16, non-causal, N <= 4096.  Session 16 (run19, H100, 5 rounds; run18 3 rounds): bf16
#: non-causal fuse_ws / three launches N=1024 393 / 372 (1.056x; run18 1.069x), N=4096 492 / 486 (1.014x; run18
#: 0.987x) -- widened to bf16; causal 0.99 / 0.99 (run18 0.99 / 0.99) and N=16384 0.91-0.98: not folded
#: (benchmarks/results/hopper-h100-2026-11-27-run19.md)
FA3_BWD_DQ_FUSE = {"head_dims": (128,), "dtypes": ("fp16", "bf16"), "causal": (False,), "max_seq_q": 4096,
                   "zero_ws": True}
#: with the folded conversion (`fa3_bwd_dq_fuse`, the end-of-CTA form): each consumer warpgroup counts itself in
#: before its dK/dV epilogue stores instead of after them (the acq_rel atomic's MEMBAR.ALL.GPU then has no plain
#: stores to wait for; kernels.hopper_gluon_bwd.FUSE_EARLY follows this) -- where: seq_q up to "max_seq_q".  Exact
#: on the H100 (run21: s16_fuse_ws_early on the 8 d=128 cases x bf16/fp16) and faster there at N=1024, the whole
#: backward d=128 non-causal medians of 5 rounds, registered fold -> early: bf16 395 -> 402 TFLOP/s (every paired
#: round faster, median 1.023x), fp16 380 -> 388 (4 of 5, 1.020x); N=4096 a tie (bf16 500 -> 496, fp16 488 -> 486:
#: 2 of 5 and 1 of 5), so not there (benchmarks/results/hopper-h100-2026-11-27-run21.md).  The bytes are the fold's
FA3_BWD_FUSE_EARLY = {"max_seq_q": 1024}
#: causal, the (K/V blocks, batch*head_kv) grid: the launch order in groups of "group" heads, every head's K/V block
#: 0 (the longest) first, then block 1, ... (-1: one wave's heads, SMs // K/V blocks: 4 at N=4096 on an H100;
#: kernels.hopper_gluon_bwd.GRID_GROUP follows this) -- where: head dims, stages, seq_kv in ["min_seq_kv",
#: "max_seq_kv"].  Exact on the H100 (run21: 3 heads a group on the 7 causal d=128 cases and -1 on one, bf16) and
#: faster there at causal N=4096, the whole backward d=128 medians of 5 rounds, three launches -> grouped: bf16 427 ->
#: 439 TFLOP/s (4 of 5 paired rounds faster, median 1.026x), fp16 418 -> 422 (4 of 5, 1.020x; vs the default path
#: 5 of 5); causal N=1024 (16 heads a group) a tie (bf16 1.002x, fp16 0.998x vs the default path): not there; 2048
#: and 8192 not timed (benchmarks/results/hopper-h100-2026-11-27-run21.md).  The model does not see the order (the
#: workload walks the plain q_fastest grid): the L2's reuse across the group's heads is not booked
FA3_BWD_GRID_GROUP = {"head_dims": (128,), "num_stages": (2,), "group": -1, "min_seq_kv": 4096, "max_seq_kv": 4096}
#: the dK/dV epilogue by TMA stores through each consumer warpgroup's dQ staging tile (16 KB: one 64 x d tile at
#: d=128), dK then dV, instead of plain stores from the MMA layout (kernels.hopper_gluon_bwd.EPI_TMA follows this) --
#: where: the DQ_STAGE1 kernel (head dims, stages), seq_kv up to "max_seq_kv", not with the folded conversion counting
#: in after the stores (its completion wait then waits for the bulk stores too).  Session 22 (H100): the stamps
#: (benchmarks/hopper_fa3_bwd_stamps.py, causal N=1024 bf16) put the plain epilogue at 2.48 us of a CTA's 8.97 us fixed
#: cost (each warp's 4-byte stores touch 8 rows x 16 B: ~2048 L1 wavefronts a warpgroup), EPI_TMA 0.85 (fixed 5.38);
#: run33 (whole backward, 3 paired rounds): causal N=1024 1.081x the default (bf16 and fp16, 3 of 3; vs SDPA cuDNN
#: 1.044 / 1.040), causal N=4096 1.055 / 1.048x (2 of 3), non-causal N=1024 (the early fold) 1.051 / 1.043x (3 of 3);
#: non-causal N=4096 (the late fold) 0.966 / 0.946x and N=16384 0.96-1.04 (noise): not there
#: (benchmarks/results/hopper-h100-2026-11-27-run33.md).  Bytes unchanged (dK, dV written once; TMA stores clip)
FA3_BWD_EPI_TMA = {"head_dims": (128,), "num_stages": (2,), "max_seq_kv": 4096}
#: the model (memsim.workloads_hopper._fa3_bwd_lockstep): the per-step dS^T exchange keeps the two consumer warpgroups
#: in lockstep, so the pass's exponentials are not hidden under the other warpgroup's matmuls -- each step's dot and
#: exp times add (the engine's two-group overlap takes their max).  Measured (run13a, H100, bf16, the pass alone,
#: benchmarks/hopper_fa3_bwd_diag.py): d=128 N=16384 10.58 ms, without dQ's reduce-adds 9.37, without dQ at all (no
#: exchange) 6.69 -- the exchange + dQ matmul cost 2.67 ms where the dQ matmul's FLOPs at the pass's own dK/dV rate
#: are 1.67.  A switch for the model's tests (False: hopper bwd's steps, the overlap as for hopper_ws).
#: Session 14: the registry's d=128 kernel no longer waits for this step's rows (`FA3_BWD_DQ_LAG`), yet the split
#: still fits it best -- memsim (this split) / measured whole backward (run16, H100, bf16, d=128, the DQ_LAG + DQ_STAGE1
#: kernel) N 1024 / 4096 / 16384 0.88 / 0.94 / 1.01, causal 0.85 / 0.92 / 1.04 (the lockstep kernel: 0.84 / 0.90 /
#: 0.94, causal 0.80 / 0.86 / 0.99); without the split 0.80 / 0.84 / 0.91, causal 0.78 / 0.84 / 0.93.  The kernel
#: still runs each warpgroup's exponentials between its own matmuls; what DQ_LAG removed is the wait (diag 3), which
#: the engine never booked.  DQ_LAG is a registry rule (head dim, stages), not a Schedule field: the model sees it only
#: through the SRAM formula
FA3_BWD_LOCKSTEP = True
_FA3_BWD_MEASURED = ("benchmarks/hopper_fa3_bwd_diag.py on an H100 80GB HBM3 (bf16, B*N=16k, H*d=2048; run11d "
                     "2026-11-26, benchmarks/results/hopper-h100-2026-11-26-run11d.md): 64x128 w4 s2, dQ by TMA "
                     "reduce-add, lse/delta through the stages -- the whole backward d=128 N=16384 509 TFLOP/s "
                     "(hopper_ws 421, cuDNN 542), causal N=4096 402 (350 / 437); d=64 N=16384 396 (357 / 447), "
                     "with the double-buffered dQ staging 444 (run11e: hopper_ws 355, cuDNN 430); s3 no faster "
                     "(run11c, run13b); d=64 with 128-row Q blocks: run13b N=1024 355/348 vs 64-row 325/327 (cuDNN "
                     "350/342), N=4096 460/424 vs 418/408 (427/432)")


def fa3_bwd_applies(p: AttentionProblem, s: Schedule) -> bool:
    """Whether hopper_fa3 bwd runs its own launch ``hopper_fa3_bwd``: fp16/bf16, d 64/128, 64 x 128 tiles (or 128 x
    128 at d=64: `FA3_BWD_BLOCK_MS`), num_warps 4 (the producer's warpgroup; 12 warps launched), num_stages 2-3,
    seq_q % block_m == 0 and seq_kv % 128 == 0 (its TMA descriptors span all rows [B*H*N, d]).  Otherwise hopper
    bwd's launches with the same schedule."""
    return (p.dtype in _TWO_BYTE and p.head_dim in FA3_HEAD_DIMS and s.block_m in FA3_BWD_BLOCK_MS[p.head_dim]
            and s.block_n == FA3_BWD_BLOCK_N and s.num_warps == 4 and s.num_stages in (2, 3)
            and p.seq_q % s.block_m == 0 and p.seq_kv % s.block_n == 0)


def fa3_bwd_dq_async(p: AttentionProblem, s: Schedule) -> bool:
    """Whether the registry's hopper_fa3 bwd double-buffers dQ's staging tiles (`FA3_BWD_DQ_ASYNC`; with the TMA
    reduce-add only)."""
    r = FA3_BWD_DQ_ASYNC
    return FA3_BWD_DQ_BY_TMA and p.head_dim in r["head_dims"] and s.num_stages in r["num_stages"]


def fa3_bwd_dq_lag(p: AttentionProblem, s: Schedule) -> bool:
    """Whether the registry's hopper_fa3 bwd computes step t's dQ in step t+1 (`FA3_BWD_DQ_LAG`; with the TMA
    reduce-add only): four dS^T buffers instead of two."""
    r = FA3_BWD_DQ_LAG
    return FA3_BWD_DQ_BY_TMA and p.head_dim in r["head_dims"] and s.num_stages in r["num_stages"]


def fa3_bwd_dq_stage1(p: AttentionProblem, s: Schedule) -> bool:
    """Whether the registry's hopper_fa3 bwd stages each dQ tile by hand in its one staging tile per warpgroup and
    waits for the copy engine's read at the next store (`FA3_BWD_DQ_STAGE1`; the same shared memory as Triton's own
    staging)."""
    r = FA3_BWD_DQ_STAGE1
    return (FA3_BWD_DQ_BY_TMA and not fa3_bwd_dq_async(p, s) and p.head_dim in r["head_dims"]
            and s.num_stages in r["num_stages"])


def fa3_bwd_dq_fuse(p: AttentionProblem, s: Schedule) -> bool:
    """Whether the registry's hopper_fa3 bwd folds the dQ conversion into its pass (`FA3_BWD_DQ_FUSE`; with the TMA
    reduce-add only): two launches, no ``hopper_bwd_dq_convert``."""
    r = FA3_BWD_DQ_FUSE
    return (FA3_BWD_DQ_BY_TMA and fa3_bwd_applies(p, s) and p.head_dim in r["head_dims"]
            and p.dtype in r["dtypes"] and p.causal in r["causal"] and p.seq_q <= r["max_seq_q"])


def fa3_bwd_dq_zero_ws(p: AttentionProblem, s: Schedule) -> bool:
    """Whether, with the folded conversion, dQacc is the per-device workspace the pass leaves zero (the preprocess
    then does not zero it)."""
    return fa3_bwd_dq_fuse(p, s) and bool(FA3_BWD_DQ_FUSE["zero_ws"])


def fa3_bwd_fuse_early(p: AttentionProblem, s: Schedule) -> bool:
    """Whether the registry's folded conversion counts in before the dK/dV stores (`FA3_BWD_FUSE_EARLY`)."""
    return fa3_bwd_dq_fuse(p, s) and p.seq_q <= FA3_BWD_FUSE_EARLY["max_seq_q"]


def fa3_bwd_grid_group(p: AttentionProblem, s: Schedule) -> int:
    """The registry's causal launch-order groups for hopper_fa3 bwd (`FA3_BWD_GRID_GROUP`): heads a group, -1 one
    wave's (the launcher turns it into SMs // K/V blocks), 0 the plain order."""
    r = FA3_BWD_GRID_GROUP
    on = (fa3_bwd_applies(p, s) and p.causal and s.grid_order == "q_fastest" and p.head_dim in r["head_dims"]
          and s.num_stages in r["num_stages"] and r["min_seq_kv"] <= p.seq_kv <= r["max_seq_kv"])
    return int(r["group"]) if on else 0


def fa3_bwd_epi_tma(p: AttentionProblem, s: Schedule) -> bool:
    """Whether the registry's hopper_fa3 bwd stores dK, dV by TMA through the dQ staging tiles (`FA3_BWD_EPI_TMA`)."""
    r = FA3_BWD_EPI_TMA
    return (fa3_bwd_applies(p, s) and fa3_bwd_dq_stage1(p, s) and p.head_dim in r["head_dims"]
            and s.num_stages in r["num_stages"] and p.seq_kv <= r["max_seq_kv"]
            and not (fa3_bwd_dq_fuse(p, s) and not fa3_bwd_fuse_early(p, s)))


def _fa3_bwd_sram(p: AttentionProblem, s: Schedule) -> int:
    """K_j, V_j resident; stages x (Q_i + dO_i); two dS^T buffers (block_n x block_m; four where `fa3_bwd_dq_lag`);
    with `FA3_BWD_DQ_BY_TMA` the
    two consumers' dQ staging tiles for the bulk reduce-add (block_m x d/2 fp32 each; twice that where
    `fa3_bwd_dq_async`); with `FA3_BWD_STAT_SMEM` stages x (lse_i + delta_i) (block_m x 4 each).  The sm_90a compile (benchmarks/hopper_gluon_compile.py --kernel
    fa3bwd [--dq-tma], bf16, s2): d=128 164 112 B (atomics) / 196 672 B (TMA), d=64 98 576 / 114 752 B = this + 16-64
    B of mbarriers (before STAT_SMEM; it adds 1 KB at s2).  Other schedules: hopper bwd's formula."""
    if not fa3_bwd_applies(p, s):
        return _hopper_bwd_sram(p, s)
    d, e = p.head_dim, p.element_bytes
    dq_stage = s.block_m * d * 4 * (2 if fa3_bwd_dq_async(p, s) else 1) if FA3_BWD_DQ_BY_TMA else 0
    stats = s.num_stages * 2 * s.block_m * 4 if FA3_BWD_STAT_SMEM else 0
    ds = (4 if fa3_bwd_dq_lag(p, s) else 2) * s.block_n * s.block_m * e
    return 2 * s.block_n * d * e + s.num_stages * 2 * s.block_m * d * e + ds + dq_stage + stats


def _fa3_bwd_launches(p: AttentionProblem, s: Schedule):
    if not fa3_bwd_applies(p, s):
        return _hopper_bwd_launches(p, s)
    launches = _q_kv_q_launches(p, s, _fa3_bwd_sram(p, s),
                                ("hopper_bwd_preprocess", "hopper_fa3_bwd", "hopper_bwd_dq_convert"))
    return launches[:2] if fa3_bwd_dq_fuse(p, s) else launches


def _fa3_bwd_renamed(closed_form, compulsory: bool = False):
    """hopper bwd's closed form with its fused pass named ``hopper_fa3_bwd`` where the Gluon launch runs: the same
    bytes per pair (Q_i, dO_i, lse_i, delta_i per visible pair, K_j, V_j once, rows x d x 4 added to dQacc_i).
    Where the conversion is folded in (`fa3_bwd_dq_fuse`): its reads (dQacc) and writes (dQ) are the pass's, and with
    the zeroed workspace (`fa3_bwd_dq_zero_ws`) the zeroing's writes move from the preprocess to the pass."""
    def f(p: AttentionProblem, s: Schedule) -> dict:
        d = closed_form(p, s)
        if fa3_bwd_applies(p, s):
            d = {("hopper_fa3_bwd" if k == "hopper_bwd_dkdvdq" else k): v for k, v in d.items()}
        if fa3_bwd_dq_fuse(p, s):
            conv = d.pop("hopper_bwd_dq_convert")
            acc = dqacc_bytes(p)
            if compulsory:
                main = d["hopper_fa3_bwd"]
                d["hopper_fa3_bwd"] = (main[0] + conv[0], main[1] + conv[1])
            else:
                d["hopper_fa3_bwd"] = {k: v + conv.get(k, 0) for k, v in d["hopper_fa3_bwd"].items()}
            if fa3_bwd_dq_zero_ws(p, s):  # the zeros: written by the pass's converting warpgroups, not the preprocess
                if compulsory:
                    pre, main = d["hopper_bwd_preprocess"], d["hopper_fa3_bwd"]
                    d["hopper_bwd_preprocess"] = (pre[0], pre[1] - acc)
                    d["hopper_fa3_bwd"] = (main[0], main[1] + acc)
                else:
                    key = "global_write_bytes"
                    d["hopper_bwd_preprocess"] = dict(d["hopper_bwd_preprocess"])
                    d["hopper_bwd_preprocess"][key] -= acc
                    d["hopper_fa3_bwd"][key] += acc
        return d
    return f


HOPPER_FA3_BWD = AlgorithmSpec(
    algorithm="hopper_fa3", phase="bwd", problem_type=AttentionProblem,
    launches=_fa3_bwd_launches, sram_bytes_per_cta=_fa3_bwd_sram,
    contract=_fa3_bwd_renamed(_hopper_bwd_contract),
    compulsory_dram_bytes=_fa3_bwd_renamed(_hopper_bwd_compulsory, compulsory=True),
    extra_device_bytes=lambda p, s: 2 * _lse_bytes(p) + dqacc_bytes(p),
    default_schedules=_defaults("gpu", _TWO_BYTE, None, {64: (128, 128, 4, 2), 128: (64, 128, 4, 2)},
                                _FA3_BWD_MEASURED)
    + _defaults("gpu", _TWO_BYTE, None, {16: (64, 64, 4, 2), 32: (64, 64, 4, 2)},
                "hopper bwd's launches (hopper_fa3 runs d 64/128 only)")
    + _defaults("gpu", ("fp32",), None, {16: (32, 32, 4, 2), 32: (32, 32, 4, 2), 64: (32, 32, 4, 2),
                                         128: (32, 32, 8, 2)}, _FP32) + _INTERPRETER,
    description="""\
hopper_fa3, bwd -- three launches.  fp16/bf16, d 64/128, 64 x 128 tiles (128 x 128 at d=64, the
    default there), num_warps 4, 2-3 stages, seq_q % block_m == 0, seq_kv % 128 == 0:
    ``hopper_bwd_preprocess`` (hopper bwd's): reads O_i, dO_i, writes delta_i (rows x 4),
    zeroes dQacc_i (rows x d x 4).
    ``hopper_fa3_bwd`` (Gluon) one CTA per (K/V block, batch*head_kv): K_j, V_j by TMA
    once, kept in SRAM; for every q head of the GQA group and every Q block i with a
    row that sees block j: Q_i, dO_i (rows x d x e, TMA), lse_i, delta_i (rows x 4, TMA) read,
    dS_ij K_j (rows x d x 4) added to dQacc_i (TMA bulk reduce-adds of each consumer's
    rows x d/2 fp32 tile; counted as written bytes); dK_j, dV_j (cols x d x e) written
    once.  FlashAttention-3's structure: a producer warp issues the loads into a ring
    of stages (mbarriers); two consumer warpgroups of 64 K/V rows (240 registers; producer 24) keep dK, dV in registers
    and compute S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q from registers;
    dS^T goes through a double-buffered shared tile so each warpgroup computes half
    of dQ's columns (dS K_j[:, half]); at d=128 with 2 stages step t's dQ runs in step t+1
    (four dS^T tiles: the warpgroups are not in lockstep; `FA3_BWD_DQ_LAG`).  5 tile matmuls per pair.
    ``hopper_bwd_dq_convert`` (hopper bwd's): reads dQacc_i, writes dQ_i.
    Otherwise hopper bwd's three launches with the same schedule.
    Extra memory: lse (kept from fwd) + delta, B*Hq*Nq*4 each, dQacc B*Hq*Nq*d*4.
    SRAM: K_j + V_j + stages x (Q_i + dO_i + lse_i + delta_i) + 2 x (cols x rows) dS^T (4 x at d=128 s2) +
    the dQ staging tiles (rows x d x 4; twice that at d=64: double-buffered).
    Not deterministic bitwise (the order of dQ's reduce-adds).""")

register(HOPPER_FA3_BWD)
