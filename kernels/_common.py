"""Shared plumbing of the kernels: input checks, problem construction, default schedules.

Everything here runs before a kernel launches, so bad input fails with a clear
message and nothing half-written is left on the device.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace

import torch

from memsim.algorithms import spec_for
from memsim.schedule import (KERNEL_HEAD_DIMS, AttentionProblem, Schedule, ScheduleError, check_fits,
                             kernel_launches, sram_bytes_per_cta)

LOG2E = 1.4426950408889634  # log2(e); kernel bodies use kernels._tl.LOG2E (the same, as a constexpr)
LN2 = 0.6931471805599453    # ln(2)

TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
DTYPE_NAMES = {v: k for k, v in TORCH_DTYPES.items()}

#: shared memory a CTA may use in Triton's CPU interpreter (it has none; any tile set is accepted
#: up to this generous figure so the same schedules run on CPU and GPU)
INTERPRETER_SMEM_BYTES = 4 << 20
#: H100 opt-in shared memory per block, used when torch does not report the figure
H100_SMEM_PER_BLOCK = 232448


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def smem_per_block(device: torch.device) -> tuple[int, str]:
    """(shared-memory bytes a CTA may use, a name for error messages)."""
    if device.type != "cuda":
        return INTERPRETER_SMEM_BYTES, "the Triton interpreter"
    props = torch.cuda.get_device_properties(device)
    smem = getattr(props, "shared_memory_per_block_optin", None) or H100_SMEM_PER_BLOCK
    return int(smem), props.name


def _check_tensor(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 4:
        raise ValueError(f"{name} must be 4-D (batch, heads, seq, head_dim) like SDPA, got shape {tuple(t.shape)}")
    if t.dtype not in DTYPE_NAMES:
        raise TypeError(f"{name} has dtype {t.dtype}; supported: float16, bfloat16, float32")
    if t.numel() and t.stride(-1) != 1:
        raise ValueError(
            f"{name} must have a contiguous last dimension (stride 1), got strides {tuple(t.stride())}; "
            f"other strides may be arbitrary. Call .contiguous() yourself if you accept the copy")
    if t.device.type == "cuda":
        if interpreting():
            raise RuntimeError(f"{name} is on {t.device} but TRITON_INTERPRET=1 runs kernels on the CPU; "
                               f"unset TRITON_INTERPRET or pass CPU tensors")
    elif t.device.type == "cpu":
        if not interpreting():
            raise RuntimeError(
                f"{name} is a CPU tensor; the Triton kernels need a CUDA device (or set TRITON_INTERPRET=1 "
                f"before importing triton to run them, slowly, on the CPU)")
    else:
        raise RuntimeError(f"{name} is on unsupported device {t.device}")


def check_qkv(q, k, v) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_tensor(name, t)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise RuntimeError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    B, Hq, Nq, d = q.shape
    Bk, Hkv, Nkv, dk = k.shape
    if Bk != B:
        raise ValueError(f"q and k must have the same batch size, got {B} and {Bk}")
    if dk != d:
        raise ValueError(f"q and k must have the same head_dim, got {d} and {dk}")
    if Hkv == 0 or Hq % Hkv:
        raise ValueError(f"heads of q ({Hq}) must be a multiple of heads of k/v ({Hkv}) (GQA/MQA)")
    if d not in KERNEL_HEAD_DIMS:
        raise ScheduleError(f"head_dim {d} is not supported by the kernels; supported: {KERNEL_HEAD_DIMS}")
    if min(B, Hq, Nq, Nkv) == 0:
        raise ValueError(f"empty input: q {tuple(q.shape)}, k {tuple(k.shape)}")


def problem_for(q, k, v, causal: bool = False, scale: float | None = None,
                causal_align: str = "top_left") -> AttentionProblem:
    """The AttentionProblem of (B, H, N, d) tensors q, k, v (checked first)."""
    check_qkv(q, k, v)
    B, Hq, Nq, d = q.shape
    return AttentionProblem(batch=B, heads_q=Hq, heads_kv=k.shape[1], seq_q=Nq, seq_kv=k.shape[2],
                            head_dim=d, dtype=DTYPE_NAMES[q.dtype], causal=causal, scale=scale,
                            causal_align=causal_align)


def check_problem_and_schedule(problem, schedule) -> None:
    """`problem` is an AttentionProblem and `schedule` a Schedule (not their dicts or names): a TypeError saying
    what is allowed and how to rebuild one, instead of an AttributeError deep inside."""
    if not isinstance(problem, AttentionProblem):
        raise TypeError(f"problem must be a memsim.schedule.AttentionProblem, got {type(problem).__name__} (build "
                        f"one with kernels.problem_for(q, k, v, ...); a dict from to_dict() rebuilds with "
                        f"memsim.schedule.problem_from_dict)")
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a memsim.schedule.Schedule, got {type(schedule).__name__} (build one "
                        f"with kernels.default_schedule(problem, algorithm, phase); a dict from to_dict() rebuilds "
                        f"with memsim.schedule.schedule_from_dict)")


def check_matches(problem: AttentionProblem, q, k, v) -> None:
    """q, k, v are valid and are the tensors `problem` describes."""
    check_qkv(q, k, v)
    got = (q.shape[0], q.shape[1], k.shape[1], q.shape[2], k.shape[2], q.shape[3], DTYPE_NAMES[q.dtype])
    want = (problem.batch, problem.heads_q, problem.heads_kv, problem.seq_q, problem.seq_kv,
            problem.head_dim, problem.dtype)
    if got != want:
        raise ValueError(f"tensors (batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, dtype) = {got} "
                         f"do not match the problem {want}")


def check_like(name: str, t, ref) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.shape != ref.shape or t.dtype != ref.dtype or t.device != ref.device:
        raise ValueError(f"{name} must match shape {tuple(ref.shape)}, dtype {ref.dtype}, device {ref.device}; "
                         f"got {tuple(t.shape)}, {t.dtype}, {t.device}")
    if t.numel() and t.stride(-1) != 1:
        raise ValueError(f"{name} must have a contiguous last dimension, got strides {tuple(t.stride())}")


def check_schedule(problem: AttentionProblem, schedule: Schedule, device: torch.device, phase: str) -> None:
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a memsim.schedule.Schedule, got {type(schedule).__name__}")
    if schedule.phase != phase:
        raise ScheduleError(f"a {phase} pass was asked for with a {schedule.phase} schedule {schedule}")
    if problem.head_dim not in KERNEL_HEAD_DIMS:
        raise ScheduleError(f"head_dim {problem.head_dim} is not supported; supported: {KERNEL_HEAD_DIMS}")
    smem, name = smem_per_block(device)
    check_fits(problem, schedule, smem, name)


# --- default schedules -------------------------------------------------------------------------
def default_schedule(problem: AttentionProblem, algorithm: str = "flash2", phase: str = "fwd",
                     device: torch.device | str | None = None) -> Schedule:
    """A sensible schedule for `problem` on `device`: the first default row of the algorithm's registry
    entry (`memsim.algorithms`, `AlgorithmSpec.default_schedules`) for the device class ("gpu" or
    "interpreter"), with stages and then tiles reduced until it fits the device's shared memory."""
    device = torch.device(device) if device is not None else (
        torch.device("cpu") if interpreting() or not torch.cuda.is_available() else torch.device("cuda"))
    spec = spec_for(algorithm, phase)
    s = Schedule(algorithm=algorithm, phase=phase,
                 **spec.default_tiles(problem, "gpu" if device.type == "cuda" else "interpreter"))
    smem, _ = smem_per_block(device)
    while sram_bytes_per_cta(problem, s) > smem and s.num_stages > 1:
        s = replace(s, num_stages=s.num_stages - 1)
    while sram_bytes_per_cta(problem, s) > smem and max(s.block_m, s.block_n) > 16:
        s = replace(s, block_m=max(16, s.block_m // 2), block_n=max(16, s.block_n // 2))
    return s


def next_pow2(x: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, x))))


def dot_precision(problem: AttentionProblem) -> str:
    """The PREC constexpr of kernels._tl.mma for this problem (see there)."""
    if problem.dtype == "fp32":
        return "ieee"  # Triton's default for fp32 dots is tf32 (10-bit mantissa): too coarse here
    if problem.dtype == "bf16" and interpreting():
        return "bf16emu"
    return "tf32"


def strides3(t) -> tuple[int, int, int]:
    """Batch, head and sequence strides of a (B, H, N, d) tensor (the last dim is contiguous)."""
    return t.stride(0), t.stride(1), t.stride(2)


def lse_forward(kernel, problem: AttentionProblem, schedule: Schedule, q, k, v, *, workspace=(), **constexprs):
    """The one-launch forwards that return O and the fp32 logsumexp (flash1, flash2, hopper) share their launch:
    o and lse (B, Hq, Nq) allocated, `kernel` launched once on `kernel_launches`' grid as
    kernel(q, k, v, o, lse, *workspace, the strides of q, k, v, o (one tuple (batch, head, row) each: the kernels'
    stride_q, stride_k, stride_v, stride_o), heads_q, seq_q, seq_kv, scale * log2(e), causal_offset, GROUP,
    HEAD_DIM, BLOCK_M, BLOCK_N, CAUSAL, **constexprs, num_warps, num_stages); a ForwardResult with lse saved
    (flash2's backward reads it).  That the kernel is the one named by the launch ("_" + launch name) is
    tests/test_kernels_contract.py's check."""
    from .registry import ForwardResult
    (launch,) = kernel_launches(problem, schedule)
    p, s = problem, schedule
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    kernel[launch.grid](
        q, k, v, o, lse, *workspace, strides3(q), strides3(k), strides3(v), strides3(o),
        p.heads_q, p.seq_q, p.seq_kv, p.scale * LOG2E, p.causal_offset,
        GROUP=p.group_size, HEAD_DIM=p.head_dim, BLOCK_M=s.block_m, BLOCK_N=s.block_n, CAUSAL=p.causal,
        **constexprs, num_warps=s.num_warps, num_stages=s.num_stages)
    return ForwardResult(o, lse, {"lse": lse}, schedule)
