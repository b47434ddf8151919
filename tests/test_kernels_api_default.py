"""kernels.attention's default (issue 9 item 6): the tuning cache, else the GPU's committed tuned table where it
covers the problem, else the registry default of the fastest algorithm; the chosen schedules are visible
(`kernels.last_schedule()`, `kernels.last_choice()`) and memsim simulates them.  CPU only: a GPU is faked by
naming one (`kernels.api._gpu_of`); nothing large is launched."""
from __future__ import annotations

import importlib
import json

import pytest
import torch

import kernels
import kernels.api as api
from memsim.schedule import AttentionProblem, Schedule, schedule_from_dict
from memsim.tuning import problem_key

at = importlib.import_module("kernels.autotune")
H100 = "NVIDIA H100 80GB HBM3"
VERSIONS = (torch.__version__, __import__("triton").__version__)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "tuned.json"
    monkeypatch.setenv(at.CACHE_ENV, str(path))
    return path


@pytest.fixture
def fake_h100(monkeypatch, cache):
    """CPU tensors, but the default path believes it is on the H100 (its committed table applies)."""
    monkeypatch.setattr(api, "_gpu_of", lambda dev: H100)
    monkeypatch.setattr(api, "_hopper_capable", lambda dev: True)
    return H100


def _table():
    return json.loads(at.table_path(H100).read_text())


def _qkv(b, h, n, d, dtype=torch.bfloat16, hkv=None, device="cpu"):
    g = torch.Generator().manual_seed(1)
    return tuple(torch.randn(b, x, n, d, generator=g).to(dtype).to(device) for x in (h, hkv or h, hkv or h))


def test_cpu_default_is_flash2_interpreter_schedules(cache):
    q, k, v = _qkv(1, 2, 24, 16, torch.float32)
    p = AttentionProblem(1, 2, 2, 24, 24, 16, "fp32")  # not problem_for: it refuses CPU tensors on a GPU machine
    c = kernels.default_choice(p, q, k, v)
    assert (c.forward.algorithm, c.backward.algorithm) == ("flash2", "flash2")
    assert (c.forward_source, c.backward_source) == ("registry", "registry")
    assert c.forward == kernels.default_schedule(p, "flash2", "fwd", q.device)


def test_attention_records_the_choice_and_memsim_simulates_it(cache, device):
    pytest.importorskip("simpy")  # memsim's engine (the GPU machine has no simpy)
    import memsim
    q, k, v = _qkv(1, 2, 24, 16, torch.float32, device=device)
    q.requires_grad_(True)
    o = kernels.attention(q, k, v, is_causal=True)
    o.sum().backward()
    fwd, bwd = kernels.last_schedule()
    c = kernels.last_choice()
    assert (fwd, bwd) == c.schedules and c.forward_source == "registry"
    p = kernels.problem_for(q.detach(), k, v, causal=True)
    hw = memsim.load_hardware("h100-sxm")
    for s in (fwd, bwd):
        r = memsim.simulate(p, s, hw).to_dict()
        assert r["total"]["time_s"] > 0 and r["schedule"] == s.to_dict()


def test_given_schedule_is_reported_as_given(cache, device):
    q, k, v = _qkv(1, 2, 24, 16, torch.float32, device=device)
    s = Schedule("flash2", "fwd", 16, 16, 1 if device == "cpu" else 4, 1)
    kernels.attention(q, k, v, schedule=s)
    c = kernels.last_choice()
    assert c.forward == s and c.forward_source == "given" and c.backward_source == "registry"


@pytest.mark.parametrize("key", list(_table()["entries"]))
def test_table_class_is_used_exactly(fake_h100, key):
    """Every class of the committed table: a problem of that class gets the table's winner, source 'table'."""
    e = _table()["entries"][key]
    p = AttentionProblem(**e["problem"])
    phase = key.rsplit("|", 1)[1]
    q, k, v = _qkv(1, 1, 8, p.head_dim)  # only the device and the TMA layout are read off the tensors
    c = kernels.default_choice(p, q, k, v)
    got, src, tkey = ((c.forward, c.forward_source, c.forward_key) if phase == "fwd"
                      else (c.backward, c.backward_source, c.backward_key))
    rule = api.measured_rule(p, phase, q, k, v)
    if rule is not None:  # hopper_fa3/hopper_ws measured faster than the table's pick there (kernels.api.measured_rule)
        assert (got.algorithm, src, tkey) == (api.RULE_ALGORITHMS[rule], "rule", rule)
        return
    want = at.table_lookup(_table(), p, phase, at.DEFAULT_ALGORITHMS[phase], nearest=False)[0]
    assert (got, src, tkey) == (want, "table", key)


def test_nearest_class_inside_the_span_only(fake_h100):
    # bf16 d=128 causal fwd: the table measured N 4096 (bh 64) and 16384 (bh 16)
    inside = AttentionProblem(2, 16, 16, 8192, 8192, 128, "bf16", True)
    q, k, v = _qkv(1, 1, 8, 128)
    c = kernels.default_choice(inside, q, k, v)
    assert c.forward_source == "table-nearest" and c.forward_key.startswith("bf16|d128|causal-top_left")
    # N = 512 is shorter than anything the table measured for the family: the registry's default instead
    outside = AttentionProblem(8, 16, 16, 512, 512, 128, "bf16", True)
    c = kernels.default_choice(outside, q, k, v)
    assert c.forward_source == "registry" and c.forward == kernels.default_schedule(outside, "flash2", "fwd", q.device)


def test_lookup_inside_is_stricter_than_nearest():
    t = _table()
    p = AttentionProblem(8, 16, 16, 512, 512, 128, "bf16", True)
    assert at.table_lookup(t, p, "fwd", ("flash2", "hopper")) is not None
    assert at.table_lookup(t, p, "fwd", ("flash2", "hopper"), inside=True) is None
    with pytest.raises(TypeError):
        at.table_lookup(t, p, "fwd", ("flash2",), inside=1)


def test_cache_entry_wins_and_runs(fake_h100, cache, device):
    """A schedule this machine's tuning cache holds for the class is what attention runs (and reports)."""
    q, k, v = _qkv(1, 2, 40, 16, torch.float32, device=device)
    p = kernels.problem_for(q, k, v)
    s = Schedule("flash2", "fwd", 32, 16, 1, 1)
    key = at.cache_key(p, at.DEFAULT_ALGORITHMS["fwd"], "fwd", gpu=H100, torch_version=VERSIONS[0],
                       triton_version=VERSIONS[1])
    cache.write_text(json.dumps({"format": at.CACHE_FORMAT, "entries": {key: {"schedule": s.to_dict(), "ms": 1.0}}}))
    o = kernels.attention(q, k, v)
    c = kernels.last_choice()
    assert (c.forward, c.forward_source, c.forward_key) == (s, "cache", key)
    ref, _ = kernels.reference(q, k, v)
    assert (o.double() - ref).abs().max().item() < 1e-5
    # the memo sees a changed cache file (a different winner)
    s2 = Schedule("flash2", "fwd", 16, 32, 1, 1)
    cache.write_text(json.dumps({"format": at.CACHE_FORMAT, "entries": {key: {"schedule": s2.to_dict(), "ms": 0.5}}}))
    import os
    st = cache.stat()
    os.utime(cache, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert kernels.default_choice(p, q, k, v).forward == s2


def test_corrupt_cache_does_not_break_the_default(fake_h100, cache, device):
    cache.write_text("{not json")
    q, k, v = _qkv(1, 2, 24, 16, torch.float32, device=device)
    c = kernels.default_choice(kernels.problem_for(q, k, v), q, k, v)
    assert c.forward_source == "registry"


def test_long_causal_d128_backward_defaults_to_hopper(fake_h100, cache, monkeypatch):
    """Outside the table's span (N=16384 > the measured 2048-8192 of the d=128 causal backward family) the registry
    rule picks the fused backward, with its registry tiles; the forward comes from the table."""
    from memsim.algorithms import spec_for
    monkeypatch.setattr(api, "_registry_device", lambda dev: torch.device("cuda"))  # the GPU rows, nothing launched
    monkeypatch.setattr(api, "default_schedule", lambda p, alg, phase, dev: Schedule(
        alg, phase, **spec_for(alg, phase).default_tiles(p, "gpu")))
    monkeypatch.setattr(api, "measured_rule", lambda *a: None)  # the registry rule alone (hopper_ws's: test_kernels_hopper)
    p = AttentionProblem(1, 16, 16, 16384, 16384, 128, "bf16", True)
    q, k, v = _qkv(1, 1, 8, 128)
    c = kernels.default_choice(p, q, k, v)
    assert (c.backward.algorithm, c.backward_source) == ("hopper", "registry")
    assert (c.backward.block_m, c.backward.block_n, c.backward.num_warps, c.backward.num_stages) == (64, 128, 8, 3)
    assert (c.forward.algorithm, c.forward_source) == ("hopper", "table")
    torch.use_deterministic_algorithms(True)
    try:
        assert kernels.default_choice(p, q, k, v).backward.algorithm == "flash2"
    finally:
        torch.use_deterministic_algorithms(False)


def test_tuned_schedule_that_does_not_fit_falls_back(fake_h100, cache, monkeypatch, device):
    q, k, v = _qkv(1, 2, 40, 256, torch.float32, device=device)
    p = kernels.problem_for(q, k, v)
    from kernels._common import smem_per_block
    from memsim.schedule import sram_bytes_per_cta
    huge = Schedule("flash2", "fwd", 256, 256, 8, 8)
    assert sram_bytes_per_cta(p, huge) > smem_per_block(q.device)[0]  # the premise: it does not fit
    key = at.cache_key(p, at.DEFAULT_ALGORITHMS["fwd"], "fwd", gpu=H100, torch_version=VERSIONS[0],
                       triton_version=VERSIONS[1])
    cache.write_text(json.dumps({"format": at.CACHE_FORMAT, "entries": {key: {"schedule": huge.to_dict()}}}))
    c = kernels.default_choice(p, q, k, v)
    assert c.forward_source == "registry" and c.forward != huge


def test_hopper_forward_needs_tma_layout(fake_h100):
    p = AttentionProblem(4, 16, 16, 4096, 4096, 128, "bf16", True)  # a class of the table: hopper won it
    q, k, v = _qkv(1, 1, 8, 128)
    c = kernels.default_choice(p, q, k, v)
    assert (c.forward.algorithm, c.forward_source) == ("hopper", "table")
    odd = torch.randn(1, 1, 8, 129, dtype=torch.bfloat16)[..., :128]  # 258-byte rows: no TMA descriptor
    c = kernels.default_choice(p, odd, k, v)
    assert c.forward.algorithm == "flash2" and c.forward_source == "registry"


def test_deterministic_keeps_flash2_backward(fake_h100, cache, monkeypatch, device):
    """An atomics backward (hopper) is never the default when determinism is asked for."""
    q, k, v = _qkv(1, 2, 40, 16, torch.float32, device=device)
    p = kernels.problem_for(q, k, v)
    monkeypatch.setattr(at, "DEFAULT_ALGORITHMS", {**at.DEFAULT_ALGORITHMS, "bwd": ("flash2", "hopper")})
    hb = Schedule("hopper", "bwd", 16, 16, 1 if device == "cpu" else 4, 1)
    for algs in (("flash2", "hopper"),):
        key = at.cache_key(p, algs, "bwd", gpu=H100, torch_version=VERSIONS[0], triton_version=VERSIONS[1])
        cache.write_text(json.dumps({"format": at.CACHE_FORMAT, "entries": {key: {"schedule": hb.to_dict()}}}))
    assert kernels.default_choice(p, q, k, v).backward == hb
    assert kernels.default_choice(p, q, k, v, deterministic=True).backward.algorithm == "flash2"
    torch.use_deterministic_algorithms(True)
    try:
        assert kernels.default_choice(p, q, k, v).backward.algorithm == "flash2"
    finally:
        torch.use_deterministic_algorithms(False)
    # flash_attn_func passes its flag through
    t = [x.transpose(1, 2) for x in (q, k, v)]
    kernels.flash_attn_func(*t, deterministic=True)
    assert kernels.last_choice().backward.algorithm == "flash2"


def test_registry_fallback_backward_rule():
    """hopper bwd only where it was measured faster (d=128 causal N >= 16k), never deterministic, never on the CPU."""
    cuda = torch.device("cuda")  # the rule reads only device.type; nothing runs
    win = AttentionProblem(1, 16, 16, 16384, 16384, 128, "bf16", True)
    assert api.fastest_backward_algorithm(win, cuda) == "hopper"
    assert api.fastest_backward_algorithm(win, torch.device("cpu")) == "flash2"
    assert api.fastest_backward_algorithm(win, cuda, deterministic=True) == "flash2"
    for other in (AttentionProblem(1, 16, 16, 16384, 16384, 128, "bf16", False),   # a tie: flash2 stays
                  AttentionProblem(4, 16, 16, 4096, 4096, 128, "bf16", True),       # shorter: flash2 as fast
                  AttentionProblem(1, 32, 32, 16384, 16384, 64, "bf16", True),      # d=64: flash2 as fast
                  AttentionProblem(1, 16, 16, 16384, 16384, 128, "fp32", True)):
        assert api.fastest_backward_algorithm(other, cuda) == "flash2", other


def test_committed_table_schedules_simulate():
    """memsim simulates every schedule the default can take from the committed table."""
    pytest.importorskip("simpy")
    import memsim
    hw = memsim.load_hardware("h100-sxm")
    for key, e in _table()["entries"].items():
        p = AttentionProblem(**e["problem"])
        s = schedule_from_dict(e["schedule"])
        small = AttentionProblem(1, 2, 2, 2 * s.block_m, 2 * s.block_n, p.head_dim, p.dtype, p.causal)
        assert memsim.simulate(small, s, hw).to_dict()["total"]["time_s"] > 0, key
        assert problem_key(p) in key
