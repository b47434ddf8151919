"""memsim: a SimPy discrete-event model of GPU memory traffic for attention schedules.

Importing `memsim` (or `memsim.schedule`) pulls in neither simpy nor numpy: the
heavy entry points are loaded on first use, so `kernels/` can import the shared
vocabulary wherever only torch and triton are installed.
"""
from .schedule import AttentionProblem, Schedule, ScheduleError, kernel_launches  # noqa: F401

__all__ = ["AttentionProblem", "Schedule", "ScheduleError", "kernel_launches",
           "load_hardware", "simulate", "Hardware", "SimResult"]


def __getattr__(name):  # lazy: simpy/numpy only when the model is used
    if name in ("load_hardware", "Hardware"):
        from . import hardware
        return getattr(hardware, name)
    if name in ("simulate", "SimResult"):
        from . import sim
        return getattr(sim, name)
    raise AttributeError(f"module 'memsim' has no attribute {name!r}")
