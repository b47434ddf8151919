"""Triton attention kernels that run memsim's schedules (naive, flash1, flash2) on a GPU.

Public API (stable; see notes/TEAM.md):
    attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False,
              *, schedule=None) -> o   (autograd; torch SDPA's call, kernels/api.py)
    flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False) -> o   ((B, N, H, d))
    forward(problem, schedule, q, k, v) -> ForwardResult(o, lse, saved)
    backward(problem, schedule, q, k, v, o, do, fwd) -> (dq, dk, dv)
    reference(q, k, v, *, causal=False, scale=None, causal_align="top_left", do=None)  (float64)
    problem_for(q, k, v, causal=False, scale=None, causal_align="top_left") -> AttentionProblem
    default_schedule(problem, algorithm="flash2", phase="fwd", device=None) -> Schedule

Tensors are (batch, heads, seq, head_dim) like torch SDPA; k and v may have fewer heads (GQA/MQA);
any strides with a contiguous last dim.  Under TRITON_INTERPRET=1 the kernels run on CPU tensors.
Kernel names in profilers: "_" + the launch name of memsim.schedule.kernel_launches (e.g. _flash2_fwd).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace

import torch

from memsim.schedule import AttentionProblem, Schedule, ScheduleError

from ._common import (check_like, check_matches, check_schedule, default_schedule, interpreting,
                      problem_for)
from .reference import naive_same_dtype, reference

__all__ = ["attention", "flash_attn_func", "forward", "backward", "reference", "naive_same_dtype", "problem_for",
           "default_schedule", "ForwardResult", "AttentionProblem", "Schedule", "ScheduleError"]


@dataclass
class ForwardResult:
    """Output of one forward pass: o (B, Hq, Nq, d), lse (B, Hq, Nq) fp32 natural-log logsumexp
    (None for naive, whose softmax launch writes only P), and `saved`: what the backward needs
    ({"lse": lse} for flash, {"P": P} for naive, with P of shape (B*Hq, Nq, Nkv))."""

    o: torch.Tensor
    lse: torch.Tensor | None
    saved: dict = field(default_factory=dict)
    schedule: Schedule | None = None


@contextlib.contextmanager
def _launch_guard(schedule: Schedule):
    """Turn Triton's compile-time resource errors into a ScheduleError that names the schedule."""
    try:
        yield
    except Exception as exc:  # triton.runtime.errors.OutOfResources and friends
        name = type(exc).__name__
        if "OutOfResources" in name or "out of resource" in str(exc).lower():
            raise ScheduleError(f"schedule {schedule} does not fit this GPU once compiled ({exc}); "
                                f"use smaller blocks, fewer stages or fewer warps") from exc
        raise


def forward(problem: AttentionProblem, schedule: Schedule, q, k, v) -> ForwardResult:
    """Run the forward launches of `schedule` on `problem`'s tensors (checked before any launch)."""
    check_matches(problem, q, k, v)
    check_schedule(problem, schedule, q.device, "fwd")
    with _launch_guard(schedule):
        if schedule.algorithm == "flash2":
            from .flash2 import flash2_forward
            o, lse = flash2_forward(problem, schedule, q, k, v)
            return ForwardResult(o, lse, {"lse": lse}, schedule)
        if schedule.algorithm == "flash1":
            from .flash1 import flash1_forward
            o, lse = flash1_forward(problem, schedule, q, k, v)
            return ForwardResult(o, lse, {"lse": lse}, schedule)
        from .naive import naive_forward
        o, P = naive_forward(problem, schedule, q, k, v)
        return ForwardResult(o, None, {"P": P}, schedule)


def backward(problem: AttentionProblem, schedule: Schedule, q, k, v, o, do, fwd: ForwardResult):
    """Run the backward launches of `schedule`; returns (dq, dk, dv) in the inputs' dtype."""
    check_matches(problem, q, k, v)
    check_like("o", o, q)
    check_like("do", do, q)
    check_schedule(problem, schedule, q.device, "bwd")
    with _launch_guard(schedule):
        if schedule.algorithm == "flash2":
            lse = fwd.saved.get("lse") if fwd.saved else None
            if lse is None:
                raise ValueError("flash2 backward needs the logsumexp of a flash forward (fwd.saved['lse']); "
                                 "a naive forward keeps P instead")
            from .flash2 import flash2_backward
            dq, dk, dv, _ = flash2_backward(problem, schedule, q, k, v, o, do, lse)
            return dq, dk, dv
        P = fwd.saved.get("P") if fwd.saved else None
        if P is None:
            raise ValueError("naive backward needs P from a naive forward (fwd.saved['P'])")
        from .naive import naive_backward
        return naive_backward(problem, schedule, q, k, v, do, P)


# attention() and flash_attn_func() (SDPA's and flash-attn's calls) live in api.py
from .api import attention, flash_attn_func  # noqa: E402
