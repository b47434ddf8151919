"""Hopper algorithm-phases as registry entries: ``hopper`` fwd (FlashAttention-3 ideas in plain Triton:
TMA tensor descriptors, a warp-specialised K/V loop).

The hopper forward visits exactly the tiles of flash2's forward (same grid, same loop bounds, the
same causal skipping of fully masked blocks); what differs is *how* the tiles move (the tensor-memory
accelerator, issued by a producer warpgroup) and the tile sizes Hopper likes.  So its byte closed
forms are flash2's under its own launch name: one statement of the bytes, not a second copy.
Stdlib only (the kernels import it).
"""
from __future__ import annotations

from .algorithms import AlgorithmSpec, register
from .algorithms_builtin import (_INTERPRETER, _defaults, _flash2_fwd_compulsory, _flash2_fwd_contract,
                                 _flash2_fwd_sram, _launch, _lse_bytes, _sizes)
from .schedule import AttentionProblem, Schedule

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
