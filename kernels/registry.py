"""The kernels' half of the algorithm registry (`memsim.algorithms`): one launcher per (algorithm, phase).

A launcher runs every launch of its registry entry, in order, with the grids of
`memsim.schedule.kernel_launches`:

* forward: ``run(problem, schedule, q, k, v) -> ForwardResult``;
* backward: ``run(problem, schedule, q, k, v, o, do, saved) -> (dq, dk, dv)``, where ``saved`` is the
  forward's ``ForwardResult.saved``; ``needs`` names the saved tensors it reads and what each must be
  (shape and dtype for the problem; always on the inputs' device and contiguous).  `check_saved`
  refuses anything else before a launch: a wrong logsumexp is an out-of-bounds read, not an error.

Register with ``@launcher(algorithm, phase, needs=...)`` in a module listed in `LAUNCHER_MODULES`
(imported on the first lookup, so `import kernels` does not import triton).  `tests/test_registry.py`
fails when a registered algorithm-phase has no launcher, or a launcher has no registry entry.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

from memsim.algorithms import registered
from memsim.schedule import Schedule, ScheduleError

__all__ = ["ForwardResult", "Launcher", "launcher", "launcher_for", "registered_launchers", "check_saved",
           "check_same_problem", "LAUNCHER_MODULES"]

#: modules whose import registers launchers
LAUNCHER_MODULES = ("kernels.naive", "kernels.flash1", "kernels.flash2", "kernels.decode_kv", "kernels.hopper",
                    "kernels.hopper_bwd", "kernels.hopper_gluon",
                    "kernels.hopper_gluon_bwd")


@dataclass
class ForwardResult:
    """Output of one forward pass: o (B, Hq, Nq, d), lse (B, Hq, Nq) fp32 natural-log logsumexp
    (None for naive, whose softmax launch writes only P), and `saved`: what the backward needs
    ({"lse": lse} for flash, {"P": P} for naive, with P of shape (B*Hq, Nq, Nkv)).

    `problem` is the AttentionProblem it was computed for (`kernels.forward` sets it; last field, so positional
    callers ``ForwardResult(o, lse, saved, schedule)`` are unchanged).  `kernels.backward` refuses a result of
    another problem (`check_same_problem`); None (a result built by hand) is not checked."""

    o: torch.Tensor
    lse: torch.Tensor | None
    saved: dict = field(default_factory=dict)
    schedule: Schedule | None = None
    problem: object | None = None


#: what a backward reads from ForwardResult.saved: name -> (problem, schedule) -> (shape, torch dtype, what it is)
SavedSpec = Callable[..., tuple]


@dataclass(frozen=True)
class Launcher:
    algorithm: str
    phase: str
    run: Callable
    needs: Mapping[str, SavedSpec] = field(default_factory=dict)


_LAUNCHERS: dict[tuple[str, str], Launcher] = {}
_loaded = False


def launcher(algorithm: str, phase: str, *, needs: Mapping[str, SavedSpec] | None = None):
    """Register the decorated function as the launcher of (algorithm, phase)."""
    def deco(fn):
        key = (algorithm, phase)
        if key in _LAUNCHERS:
            raise ValueError(f"a launcher for {key} is already registered")
        _LAUNCHERS[key] = Launcher(algorithm, phase, fn, dict(needs or {}))
        return fn
    return deco


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in LAUNCHER_MODULES:
            importlib.import_module(mod)


def registered_launchers() -> tuple[tuple[str, str], ...]:
    _load()
    return tuple(_LAUNCHERS)


def launcher_for(algorithm: str, phase: str) -> Launcher:
    """The launcher of (algorithm, phase); a ScheduleError naming the keys that have one otherwise."""
    _load()
    got = _LAUNCHERS.get((algorithm, phase))
    if got is None:
        have = ", ".join(f"({a}, {p})" for a, p in _LAUNCHERS)
        why = "it is registered in memsim.algorithms but has no kernel" if (algorithm, phase) in registered() \
            else "no such registry entry"
        raise ScheduleError(f"no kernel launcher for ({algorithm}, {phase}) ({why}); launchers: {have}")
    return got


def check_same_problem(problem, fwd) -> None:
    """Refuse a forward result computed for another problem than `problem` (same shapes but another causal
    flag, scale or alignment would give the gradients of the wrong attention, silently).  One line naming every
    differing field, the forward's value first."""
    if not isinstance(fwd, ForwardResult):
        raise TypeError(f"fwd must be the ForwardResult of kernels.forward, got {type(fwd).__name__}")
    if fwd.problem is None or fwd.problem == problem:
        return
    names = [f.name for f in dataclasses.fields(problem)] if dataclasses.is_dataclass(problem) else []
    diff = [f"{n} {getattr(fwd.problem, n, None)!r} (fwd) vs {getattr(problem, n)!r} (here)"
            for n in names if getattr(fwd.problem, n, None) != getattr(problem, n)]
    raise ValueError(f"fwd was computed for another problem: {'; '.join(diff) or repr(fwd.problem)}; pass "
                     f"backward the problem its forward ran (or run the forward of this one)")


def check_saved(run: Launcher, problem, schedule: Schedule, fwd, device: torch.device) -> dict:
    """The saved tensors `run` needs, each checked (present, a tensor, shape, dtype, device, contiguous)."""
    if not isinstance(fwd, ForwardResult):
        raise TypeError(f"fwd must be the ForwardResult of kernels.forward, got {type(fwd).__name__}")
    saved = fwd.saved if isinstance(fwd.saved, dict) else {}
    out = {}
    for name, spec in run.needs.items():
        shape, dtype, what = spec(problem, schedule)
        t = saved.get(name)
        where = f"{run.algorithm} backward: fwd.saved[{name!r}] ({what})"
        if t is None:
            raise ValueError(f"{where} is missing; fwd.saved has {sorted(saved)} (is it the forward of another "
                             f"algorithm? a naive forward keeps P, a flash forward the logsumexp)")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where} must be a torch.Tensor, got {type(t).__name__}")
        if tuple(t.shape) != tuple(shape) or t.dtype != dtype or t.device != device:
            raise ValueError(f"{where} must have shape {tuple(shape)}, dtype {dtype}, device {device}; "
                             f"got {tuple(t.shape)}, {t.dtype}, {t.device}")
        if not t.is_contiguous():
            raise ValueError(f"{where} must be contiguous (the kernels index it flat), got strides "
                             f"{tuple(t.stride())}")
        out[name] = t
    return out
