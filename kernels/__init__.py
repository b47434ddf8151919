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
import dataclasses

from memsim.schedule import AttentionProblem, Schedule, ScheduleError

from ._common import (check_like, check_matches, check_problem_and_schedule, check_schedule, default_schedule,
                      interpreting, problem_for)
from .reference import naive_same_dtype, reference
from .registry import ForwardResult, check_same_problem, check_saved, launcher_for

__all__ = ["attention", "flash_attn_func", "last_schedule", "last_choice", "default_choice", "DefaultChoice",
           "fastest_forward_algorithm", "fastest_backward_algorithm", "forward", "backward", "reference", "naive_same_dtype", "problem_for",
           "default_schedule", "ForwardResult", "AttentionProblem", "Schedule", "ScheduleError", "decode", "decode_plan"]


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
    """Run the forward launches of `schedule` on `problem`'s tensors (checked before any launch).
    The result records `problem` (ForwardResult.problem), which `backward` checks."""
    check_problem_and_schedule(problem, schedule)
    check_matches(problem, q, k, v)
    check_schedule(problem, schedule, q.device, "fwd")
    run = launcher_for(schedule.algorithm, "fwd")
    with _launch_guard(schedule):
        res = run.run(problem, schedule, q, k, v)
    return dataclasses.replace(res, problem=problem) if isinstance(res, ForwardResult) else res


def backward(problem: AttentionProblem, schedule: Schedule, q, k, v, o, do, fwd: ForwardResult):
    """Run the backward launches of `schedule`; returns (dq, dk, dv) in the inputs' dtype.

    Every tensor of `fwd.saved` the backward reads is checked first (shape, dtype, device, contiguity), and
    `fwd` must be the forward of this same problem (ForwardResult.problem)."""
    check_problem_and_schedule(problem, schedule)
    check_same_problem(problem, fwd)
    check_matches(problem, q, k, v)
    check_like("o", o, q)
    check_like("do", do, q)
    check_schedule(problem, schedule, q.device, "bwd")
    run = launcher_for(schedule.algorithm, "bwd")
    saved = check_saved(run, problem, schedule, fwd, q.device)
    with _launch_guard(schedule):
        return run.run(problem, schedule, q, k, v, o, do, saved)


# attention() and flash_attn_func() (SDPA's and flash-attn's calls) live in api.py
from .api import (DefaultChoice, attention, default_choice, fastest_backward_algorithm,  # noqa: E402
                  fastest_forward_algorithm, flash_attn_func, last_choice, last_schedule)
from .autotune import autotune, tuned_schedule  # noqa: E402  (model-steered tuning, kernels/autotune.py)


def decode(q, k_cache, v_cache, cache_seqlens, *, block_table=None, scale=None, num_splits=None, schedule=None,
           check_values=True, cu_seqlens_q=None, max_seqlen_q=None):
    """Decode attention over a (paged) KV cache, flash_attn_with_kvcache's layout: see kernels.decode_kv.decode."""
    from .decode_kv import decode as _decode
    return _decode(q, k_cache, v_cache, cache_seqlens, block_table=block_table, scale=scale, num_splits=num_splits,
                   schedule=schedule, check_values=check_values, cu_seqlens_q=cu_seqlens_q, max_seqlen_q=max_seqlen_q)


def decode_plan(q, k_cache, v_cache, cache_seqlens, **kw):
    """(DecodeProblem, DecodeSchedule, why) that kernels.decode would run: see kernels.decode_kv.decode_plan."""
    from .decode_kv import decode_plan as _plan
    return _plan(q, k_cache, v_cache, cache_seqlens, **kw)
