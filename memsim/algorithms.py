"""The algorithm registry: one entry per (algorithm, phase), the stdlib half of every algorithm.

An `AlgorithmSpec` holds everything the simulator and the kernels must agree on for one
algorithm-phase: its launches (names, grids, axes), the shared memory one CTA keeps resident, the
byte contract of every launch in closed form (global bytes read/written, FLOPs, exps), the
compulsory DRAM bytes, the device memory it allocates beyond inputs and outputs, its default
schedules (data), the problem type it accepts and the contract text.  `memsim.schedule`
(`kernel_launches`, `sram_bytes_per_cta`, `check_fits`, `ALGORITHMS`, `PHASES`) and
`memsim.analytic` (`launch_counts`, `compulsory_dram_bytes`) read it from here.

Two more halves are registered under the same key elsewhere, and `tests/test_registry.py` fails
when one is missing or registered for a key that is not here:

* memsim: the model's workload builder, ``@memsim.workloads.workload(algorithm, phase)``;
* kernels: the launcher, ``@kernels.registry.launcher(algorithm, phase)``.

This module is stdlib only (no numpy, simpy, torch): the kernels import it.

How to add an algorithm (say ``flash3``, phase ``fwd``):

1. Stdlib side: write its `AlgorithmSpec` (launches, sram_bytes_per_cta, contract,
   compulsory_dram_bytes, extra_device_bytes, default_schedules, description) in a module of its own
   and call `register(spec)` at its bottom; add the module's name to `BUILTIN_MODULES` (loaded on the
   first registry lookup, so there is no import cycle with `memsim.schedule`).
2. memsim side: a builder decorated ``@workload("flash3", "fwd")`` in `memsim/workloads.py` that
   returns, per launch name, the function giving one CTA's tile steps.
3. kernels side: the Triton kernels and a launcher decorated ``@launcher("flash3", "fwd")`` in a
   `kernels/` module listed in `kernels.registry.LAUNCHER_MODULES`.
4. Run ``pytest tests/test_registry.py tests/test_memsim_closed_form.py tests/test_kernels_contract.py``:
   the registry test checks that all three halves exist, the closed-form test that the model moves
   exactly the contract's bytes, the kernel contract test that the kernel does (add the key to their
   parameter lists).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

__all__ = ["AlgorithmSpec", "DefaultSchedule", "register", "spec_for", "registered", "algorithms", "phases",
           "BUILTIN_MODULES", "DEVICE_CLASSES"]

#: modules whose import registers specs; loaded on the first lookup (the decode module adds itself here)
BUILTIN_MODULES = ("memsim.algorithms_builtin", "memsim.algorithms_decode", "memsim.algorithms_hopper")
#: where a default schedule applies: "gpu" (tuned on a Hopper-class card), "interpreter" (Triton on the CPU)
DEVICE_CLASSES = ("gpu", "interpreter")


@dataclass(frozen=True)
class DefaultSchedule:
    """One row of an algorithm-phase's default-schedule table: where it applies and the tiles it picks.

    A row applies to a problem on `device` when the problem's dtype is in `dtypes`, its head dim in
    `head_dims` (None: any) and its causal flag equals `causal` (None: either).  The first row that
    applies wins, so specific rows (causal, fp32) come before general ones."""

    device: str
    dtypes: tuple[str, ...]
    head_dims: tuple[int, ...] | None
    causal: bool | None
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int
    #: where the figure comes from (a tuning run, "halved for fp32", ...)
    source: str = ""

    def __post_init__(self):
        if self.device not in DEVICE_CLASSES:
            raise ValueError(f"DefaultSchedule.device = {self.device!r} is not one of {DEVICE_CLASSES}")

    def applies(self, problem, device: str) -> bool:
        return (device == self.device and problem.dtype in self.dtypes
                and (self.head_dims is None or problem.head_dim in self.head_dims)
                and (self.causal is None or problem.causal == self.causal))

    @property
    def tiles(self) -> dict:
        return dict(block_m=self.block_m, block_n=self.block_n, num_warps=self.num_warps,
                    num_stages=self.num_stages)


@dataclass(frozen=True)
class AlgorithmSpec:
    """Everything about one algorithm-phase that both the model and the kernels need (stdlib only).

    Every callable takes ``(problem, schedule)``; per-launch results are dicts keyed by launch name in
    execution order, the names of ``launches``."""

    algorithm: str
    phase: str
    #: the launches in execution order: `memsim.schedule.Launch` (name, grid, axes, smem_bytes)
    launches: Callable[..., tuple]
    #: shared memory the largest CTA keeps resident, bytes
    sram_bytes_per_cta: Callable[..., int]
    #: {launch name: {"global_read_bytes", "global_write_bytes", "flops", "exp_count"}} in closed form
    #: (sums over block indices, never over tiles): the byte contract the model and kernels must meet
    contract: Callable[..., dict]
    #: {launch name: (read bytes, write bytes)}: every distinct tensor once, the DRAM lower bound
    compulsory_dram_bytes: Callable[..., dict]
    #: device memory allocated beyond inputs and outputs, bytes
    extra_device_bytes: Callable[..., int]
    #: default-schedule rows, first match wins (see `DefaultSchedule`)
    default_schedules: tuple[DefaultSchedule, ...]
    #: the problem dataclass it accepts (`memsim.schedule.AttentionProblem` for the attention algorithms)
    problem_type: type
    #: the byte contract in words (what each launch reads, writes, keeps in SRAM; extra memory)
    description: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.algorithm, self.phase)

    def launch_names(self, problem, schedule) -> tuple[str, ...]:
        return tuple(L.name for L in self.launches(problem, schedule))

    def default_tiles(self, problem, device: str) -> dict:
        """block_m, block_n, num_warps, num_stages of the first default row that applies."""
        for row in self.default_schedules:
            if row.applies(problem, device):
                return row.tiles
        raise LookupError(f"no default schedule for {self.algorithm} {self.phase} on {device} with "
                          f"dtype {problem.dtype}, head_dim {problem.head_dim}, causal {problem.causal}")


_REGISTRY: dict[tuple[str, str], AlgorithmSpec] = {}
_loaded = False


def register(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add `spec` under (spec.algorithm, spec.phase); a key registered twice is an error."""
    if not isinstance(spec, AlgorithmSpec):
        raise TypeError(f"register() takes an AlgorithmSpec, got {type(spec).__name__}")
    for name in ("algorithm", "phase"):
        v = getattr(spec, name)
        if not (isinstance(v, str) and v.isidentifier()):
            raise ValueError(f"AlgorithmSpec.{name} must be an identifier string, got {v!r}")
    if spec.key in _REGISTRY:
        raise ValueError(f"({spec.algorithm}, {spec.phase}) is already registered")
    _REGISTRY[spec.key] = spec
    return spec


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True  # set first: the modules call register(), which must not recurse here
        for mod in BUILTIN_MODULES:
            importlib.import_module(mod)


def _keys_text() -> str:
    return ", ".join(f"({a}, {p})" for a, p in _REGISTRY)


def registered() -> tuple[tuple[str, str], ...]:
    """Every registered (algorithm, phase), in registration order."""
    _load()
    return tuple(_REGISTRY)


def algorithms() -> tuple[str, ...]:
    """Registered algorithm names, first-registered first."""
    return tuple(dict.fromkeys(a for a, _ in registered()))


def phases() -> tuple[str, ...]:
    """Registered phase names, first-registered first."""
    return tuple(dict.fromkeys(p for _, p in registered()))


def spec_for(algorithm: str, phase: str) -> AlgorithmSpec:
    """The spec of (algorithm, phase); a ScheduleError listing the registered keys if there is none."""
    _load()
    spec = _REGISTRY.get((algorithm, phase))
    if spec is None:
        from .schedule import ScheduleError
        raise ScheduleError(f"no registered ({algorithm}, {phase}); registered: {_keys_text()}")
    return spec

