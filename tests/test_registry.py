"""The algorithm registry: every (algorithm, phase) has its three halves (spec, memsim workload, kernel
launcher) and they agree on the launches; lookups fail with the registered keys named."""
import itertools

import pytest

from memsim import algorithms, workloads
from memsim.schedule import (KERNEL_HEAD_DIMS, AttentionProblem, Schedule, ScheduleError, kernel_launches)
from memsim import analytic

BUILTIN = [("naive", "fwd"), ("naive", "bwd"), ("flash1", "fwd"), ("flash2", "fwd"), ("flash2", "bwd")]


def _kernel_launchers():
    from kernels import registry
    return set(registry.registered_launchers())


def _halves() -> dict:
    """{side: set of (algorithm, phase) it has}; every side must equal the registry's."""
    return {"memsim workload": set(workloads.registered_workloads()), "kernel launcher": _kernel_launchers()}


def _mismatch() -> list[str]:
    keys = set(algorithms.registered())
    out = []
    for side, have in _halves().items():
        out += [f"{k} is registered but has no {side}" for k in sorted(keys - have)]
        out += [f"{k} has a {side} but no registry entry" for k in sorted(have - keys)]
    return out


def test_the_five_builtin_algorithm_phases_are_registered():
    assert set(BUILTIN) <= set(algorithms.registered())
    # registration order gives the (unchanged) order of the CLI choices
    from memsim import schedule
    assert schedule.ALGORITHMS[:3] == ("naive", "flash1", "flash2") and schedule.PHASES[:2] == ("fwd", "bwd")


def test_every_registered_key_has_every_half():
    assert _mismatch() == []


def test_a_missing_half_is_caught(monkeypatch):
    """The check above can fail: a spec with no workload and no launcher, and halves with no spec."""
    fake = algorithms.spec_for("flash2", "fwd")
    # a copy: editing the real registry in place would leave its keys in another order afterwards (the order
    # random case draws follow)
    monkeypatch.setattr(algorithms, "_REGISTRY", dict(algorithms._REGISTRY))
    monkeypatch.setitem(algorithms._REGISTRY, ("flash9", "fwd"), fake)
    monkeypatch.delitem(algorithms._REGISTRY, ("naive", "bwd"))
    assert _mismatch() == [
        "('flash9', 'fwd') is registered but has no memsim workload",
        "('naive', 'bwd') has a memsim workload but no registry entry",
        "('flash9', 'fwd') is registered but has no kernel launcher",
        "('naive', 'bwd') has a kernel launcher but no registry entry",
    ]


PROBLEMS = [AttentionProblem(2, 4, 2, 203, 113, 64, "bf16", True),
            AttentionProblem(1, 2, 1, 113, 203, 16, "fp32", True, causal_align="bottom_right"),
            AttentionProblem(1, 3, 3, 64, 64, 32)]


@pytest.mark.parametrize("key", BUILTIN, ids="-".join)
@pytest.mark.parametrize("prob", range(len(PROBLEMS)))
def test_halves_agree_on_launch_names(key, prob):
    p, s = PROBLEMS[prob], Schedule(*key, block_m=32, block_n=16)
    spec = algorithms.spec_for(*key)
    names = [L.name for L in spec.launches(p, s)]
    assert names == [L.name for L in kernel_launches(p, s)]
    assert list(spec.contract(p, s)) == names
    assert list(spec.compulsory_dram_bytes(p, s)) == names
    assert [w.name for w in workloads.build_launches(p, s)] == names
    assert all(L.smem_bytes == spec.sram_bytes_per_cta(p, s) > 0 for L in spec.launches(p, s))
    assert spec.extra_device_bytes(p, s) > 0 and spec.description.startswith(f"{key[0]}, {key[1]} --")


@pytest.mark.parametrize("key", BUILTIN, ids="-".join)
def test_default_schedules_cover_every_supported_problem(key):
    spec = algorithms.spec_for(*key)
    for device, d, dtype, causal in itertools.product(algorithms.DEVICE_CLASSES, KERNEL_HEAD_DIMS,
                                                      ("fp16", "bf16", "fp32"), (False, True)):
        p = AttentionProblem(1, 2, 2, 256, 256, d, dtype, causal)
        Schedule(*key, **spec.default_tiles(p, device))  # valid tiles (Schedule validates them)


def test_default_rows_first_match_wins():
    spec = algorithms.spec_for("flash2", "fwd")
    causal, plain = (AttentionProblem(1, 1, 1, 64, 64, 64, "bf16", c) for c in (True, False))
    rows = [r for r in spec.default_schedules if r.applies(causal, "gpu")]
    assert len(rows) == 2 and rows[0].causal is True and rows[1].causal is None
    assert spec.default_tiles(causal, "gpu") == rows[0].tiles
    assert spec.default_tiles(plain, "gpu") == rows[1].tiles


def test_unknown_key_names_the_registered_ones():
    with pytest.raises(ScheduleError, match=r"no registered \(flash3, fwd\); registered: \(naive, fwd\), "):
        algorithms.spec_for("flash3", "fwd")
    with pytest.raises(ScheduleError, match=r"no registered \(flash1, bwd\)"):
        Schedule("flash1", "bwd")


def test_register_refuses_duplicates_and_non_specs():
    with pytest.raises(ValueError, match=r"\(flash2, fwd\) is already registered"):
        algorithms.register(algorithms.spec_for("flash2", "fwd"))
    with pytest.raises(TypeError, match="takes an AlgorithmSpec"):
        algorithms.register(("flash2", "fwd"))
    with pytest.raises(ValueError, match="already registered"):
        workloads.workload("flash2", "fwd")(lambda c: {})


def test_kernel_launcher_lookup_errors():
    from kernels import registry
    with pytest.raises(ScheduleError, match=r"no kernel launcher for \(flash3, fwd\) \(no such registry entry\)"):
        registry.launcher_for("flash3", "fwd")
    with pytest.raises(ValueError, match="already registered"):
        registry.launcher("flash2", "bwd")(lambda *a: None)


def test_problem_type_is_checked():
    with pytest.raises(ScheduleError, match="takes a AttentionProblem, got dict"):
        kernel_launches({"seq_q": 1}, Schedule())


def test_analytic_reads_the_registry():
    p, s = PROBLEMS[0], Schedule("naive", "bwd", 32, 16)
    spec = algorithms.spec_for("naive", "bwd")
    assert analytic.launch_counts(p, s) == spec.contract(p, s)
    assert analytic.compulsory_dram_bytes(p, s) == spec.compulsory_dram_bytes(p, s)
    assert workloads.extra_device_bytes(p, s) == spec.extra_device_bytes(p, s)


def test_registry_module_is_stdlib_only():
    import subprocess
    import sys
    code = ("import sys, memsim.algorithms as a; a.registered(); "
            "assert not {'simpy', 'numpy', 'torch', 'triton'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
