"""Hopper algorithm-phases as registry entries: ``hopper`` fwd (FlashAttention-3 ideas in plain Triton:
TMA tensor descriptors, a warp-specialised K/V loop) and ``hopper`` bwd (dQ fused into the dK/dV pass by fp32
atomic adds, as FlashAttention-2/3 do: 5 tile matmuls per (Q block, K/V block) pair instead of flash2's 7).

The hopper forward visits exactly the tiles of flash2's forward (same grid, same loop bounds, the
same causal skipping of fully masked blocks); what differs is *how* the tiles move (the tensor-memory
accelerator, issued by a producer warpgroup) and the tile sizes Hopper likes.  So its byte closed
forms are flash2's under its own launch name: one statement of the bytes, not a second copy.
Stdlib only (the kernels import it).
"""
from __future__ import annotations

from .algorithms import AlgorithmSpec, register
from .algorithms_builtin import (_INTERPRETER, _c, _defaults, _flash2_bwd_sram, _flash2_fwd_compulsory,
                                 _flash2_fwd_contract, _flash2_fwd_sram, _launch, _lse_bytes, _sizes, _sums)
from .schedule import STAT_BYTES, AttentionProblem, Schedule

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


def _hopper_bwd_launches(p: AttentionProblem, s: Schedule):
    mb, nb, bh, bhkv = _sizes(p, s)
    smem = _hopper_bwd_sram(p, s)
    return (_launch("hopper_bwd_preprocess", "q_block", mb, "bh", bh, s, smem),
            _launch("hopper_bwd_dkdvdq", "kv_block", nb, "bh_kv", bhkv, s, smem),
            _launch("hopper_bwd_dq_convert", "q_block", mb, "bh", bh, s, smem))


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
