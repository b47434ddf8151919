"""kernels.autotune on the CPU: keys, the disk cache, the default table, errors; fake timings and gates."""
from __future__ import annotations

import json

import pytest
import torch

import importlib

import kernels
from memsim.schedule import AttentionProblem, Schedule
from memsim.tuning import problem_key

at = importlib.import_module("kernels.autotune")  # the module (kernels.autotune is the function)

P = AttentionProblem(1, 2, 2, 64, 64, 16, "fp32")
S1 = Schedule("flash2", "fwd", 16, 16, 1, 1)
S2 = Schedule("flash2", "fwd", 32, 16, 1, 1)
S3 = Schedule("flash2", "fwd", 16, 32, 2, 1)
S4 = Schedule("flash2", "fwd", 32, 32, 2, 1)


def _qkv(p=P):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(p.batch, h, p.seq_q, p.head_dim, generator=g) for h in (p.heads_q, p.heads_kv, p.heads_kv))


def fake_timer(times):
    """A timer that reads each candidate's 'time' from `times` (never runs the kernel)."""
    calls = []

    def timer(fn):
        s = fn.__defaults__[0]
        calls.append(s)
        return times[s]
    timer.calls = calls
    return timer


def ok_gate(*a):
    return True, "ok"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "tuned.json"
    monkeypatch.setenv(at.CACHE_ENV, str(path))
    return path


def test_cache_path_env_override(cache):
    assert at.cache_path() == cache


def test_cache_key_names_gpu_versions_class_algorithms_phase():
    k = at.cache_key(P, ("flash2", "hopper"), "fwd", gpu="NVIDIA H100 80GB HBM3", torch_version="2.11.0",
                     triton_version="3.6.0")
    assert k == f"NVIDIA H100 80GB HBM3|torch 2.11.0|triton 3.6.0|{problem_key(P)}|flash2+hopper|fwd"


def test_measures_only_the_top_k_and_caches_the_winner(cache):
    times = {S1: 3.0, S2: 1.0, S3: 2.0, S4: 0.5}
    t = fake_timer(times)
    q, k, v = _qkv()
    r = kernels.autotune(P, q, k, v, ranking=[S1, S2, S3, S4], top=3, timer=t, gate=ok_gate, algorithms=("flash2",))
    assert r.source == "measured" and r.schedule == S2 and r.ms == 1.0
    assert t.calls == [S1, S2, S3]             # S4 (the true best) is not measured: the model ranked it 4th
    d = json.loads(cache.read_text())
    assert d["format"] == at.CACHE_FORMAT
    (key, e), = d["entries"].items()
    assert key == r.key and e["schedule"] == S2.to_dict() and e["ms"] == 1.0 and len(e["tried"]) == 3
    # second call: from the cache, nothing measured
    t2 = fake_timer(times)
    r2 = kernels.autotune(P, q, k, v, ranking=[S4], timer=t2, gate=ok_gate, algorithms=("flash2",))
    assert (r2.source, r2.schedule, t2.calls) == ("cache", S2, [])


def test_q_k_v_call_builds_the_problem(cache):
    q, k, v = _qkv()
    r = kernels.autotune(q, k, v, causal=True, ranking=[S1], timer=fake_timer({S1: 1.0}), gate=ok_gate,
                         algorithms=("flash2",))
    assert "causal-top_left" in r.key and r.schedule == S1


def test_inexact_or_failing_candidates_are_skipped_and_the_next_measured(cache):
    bad = Schedule("flash2", "fwd", 16, 16, 2, 1)

    def gate(p, s, *a):
        return (s != S1), "o: max err 1.0 > tol"

    def timer(fn):
        s = fn.__defaults__[0]
        if s == bad:
            raise RuntimeError("PTXAS error: too many resources")
        return {S2: 2.0, S3: 1.5, S4: 0.1}[s]
    q, k, v = _qkv()
    r = kernels.autotune(P, q, k, v, ranking=[S1, bad, S2, S3, S4], top=2, timer=timer, gate=gate,
                         algorithms=("flash2",))
    assert r.schedule == S3
    assert [("gate" in x, "error" in x, "ms" in x) for x in r.tried] == [
        (True, False, False), (False, True, False), (False, False, True), (False, False, True)]


def test_no_candidate_passes(cache):
    q, k, v = _qkv()
    with pytest.raises(at.AutotuneError, match="no candidate of .* passed the exactness gate \\(2 tried"):
        kernels.autotune(P, q, k, v, ranking=[S1, S2], gate=lambda *a: (False, "o wrong"), timer=fake_timer({}),
                         algorithms=("flash2",))
    assert not cache.exists()


def test_never_silently_overwrites_a_different_entry(cache):
    q, k, v = _qkv()
    kernels.autotune(P, q, k, v, ranking=[S1, S2], timer=fake_timer({S1: 1.0, S2: 2.0}), gate=ok_gate,
                     algorithms=("flash2",))
    with pytest.raises(at.AutotuneError, match="already holds a different winner .* pass overwrite=True"):
        kernels.autotune(P, q, k, v, ranking=[S1, S2], timer=fake_timer({S1: 2.0, S2: 1.0}), gate=ok_gate,
                         algorithms=("flash2",), retune=True)
    assert json.loads(cache.read_text())["entries"].popitem()[1]["schedule"] == S1.to_dict()
    r = kernels.autotune(P, q, k, v, ranking=[S1, S2], timer=fake_timer({S1: 2.0, S2: 1.0}), gate=ok_gate,
                         algorithms=("flash2",), retune=True, overwrite=True)
    e = json.loads(cache.read_text())["entries"][r.key]
    assert e["schedule"] == S2.to_dict() and e["replaced"]["schedule"] == S1.to_dict()
    # the same winner again is no conflict
    kernels.autotune(P, q, k, v, ranking=[S1, S2], timer=fake_timer({S1: 2.0, S2: 1.0}), gate=ok_gate,
                     algorithms=("flash2",), retune=True)


def test_corrupt_cache_is_an_error_not_a_silent_reset(cache):
    cache.write_text("{not json")
    q, k, v = _qkv()
    with pytest.raises(at.AutotuneError, match="not valid JSON"):
        kernels.autotune(P, q, k, v, ranking=[S1], timer=fake_timer({S1: 1.0}), gate=ok_gate)
    cache.write_text(json.dumps({"format": "something else", "entries": {}}))
    with pytest.raises(at.AutotuneError, match="not a kernels.autotune_cache/1 file"):
        kernels.autotune(P, q, k, v, ranking=[S1], timer=fake_timer({S1: 1.0}), gate=ok_gate)


@pytest.mark.parametrize("kw,msg", [
    (dict(phase="sideways"), "phase must be 'fwd' or 'bwd'"),
    (dict(top=0), "top must be a positive int"),
    (dict(ranking=[Schedule("flash2", "bwd", 16, 16, 1, 1)]), "ranking must hold fwd Schedules"),
])
def test_bad_arguments(cache, kw, msg):
    q, k, v = _qkv()
    with pytest.raises(at.AutotuneError, match=msg):
        kernels.autotune(P, q, k, v, timer=fake_timer({}), gate=ok_gate, **kw)


def test_missing_tensors():
    with pytest.raises(at.AutotuneError, match="needs its q, k and v"):
        kernels.autotune(P)
    with pytest.raises(at.AutotuneError, match="give q, k and v"):
        kernels.autotune(torch.zeros(1, 1, 16, 16))


def _table(tmp_path, entries, gpu="cpu"):
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"format": at.TABLE_FORMAT, "gpu": gpu, "entries": entries}))
    return path


def _entry(s, ms=1.0, by=None, ranking=None):
    e = {"schedule": s.to_dict(), "ms": ms}
    if by:
        e["by_algorithm"] = {a: {"schedule": x.to_dict(), "ms": m} for a, (x, m) in by.items()}
    if ranking:
        e["model_ranking"] = [x.to_dict() for x in ranking]
    return e


def test_table_first_exact_then_nearest(cache, tmp_path):
    big = AttentionProblem(1, 2, 2, 4096, 4096, 16, "fp32")
    tab = _table(tmp_path, {f"{problem_key(P)}|fwd": _entry(S3, 0.7),
                            f"{problem_key(big)}|fwd": _entry(S4, 9.0)})
    q, k, v = _qkv()
    t = fake_timer({})
    r = kernels.autotune(P, q, k, v, table=tab, timer=t, gate=ok_gate, algorithms=("flash2",))
    assert (r.source, r.schedule, r.ms, t.calls) == ("table", S3, 0.7, [])
    mid = AttentionProblem(1, 2, 2, 2048, 2048, 16, "fp32")   # 2048 is nearer 4096 than 64
    q2, k2, v2 = _qkv(mid)
    r = kernels.autotune(mid, q2, k2, v2, table=tab, timer=t, gate=ok_gate, algorithms=("flash2",))
    assert (r.source, r.schedule, r.ms) == ("table-nearest", S4, None)
    # another mask or head dim is never "near"
    other = AttentionProblem(1, 2, 2, 64, 64, 16, "fp32", causal=True)
    assert at.table_lookup(json.loads(tab.read_text()), other, "fwd", ("flash2",)) is None
    assert at.table_lookup(json.loads(tab.read_text()), mid, "fwd", ("flash2",), nearest=False) is None


def test_table_respects_the_algorithms_asked_for(tmp_path):
    H = Schedule("hopper", "fwd", 128, 128, 4, 2)
    table = json.loads(_table(tmp_path, {f"{problem_key(P)}|fwd": _entry(
        H, 1.0, by={"hopper": (H, 1.0), "flash2": (S2, 1.3)})}).read_text())
    assert at.table_lookup(table, P, "fwd", ("flash2", "hopper"))[0] == H
    assert at.table_lookup(table, P, "fwd", ("flash2",))[0] == S2
    assert at.table_lookup(table, P, "bwd", ("flash2",)) is None


def test_without_simpy_the_tables_model_ranking_steers(cache, tmp_path, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "simpy" else real(name, *a))
    other = AttentionProblem(1, 2, 2, 64, 64, 16, "fp32")
    tab = _table(tmp_path, {f"{problem_key(AttentionProblem(1, 2, 2, 1024, 1024, 16, 'fp32'))}|fwd":
                            _entry(S1, ranking=[S4, S3, S2, S1])})
    q, k, v = _qkv(other)
    t = fake_timer({S4: 1.0, S3: 2.0, S2: 0.5, S1: 3.0})
    r = kernels.autotune(other, q, k, v, table=tab, retune=True, top=2, timer=t, gate=ok_gate, algorithms=("flash2",))
    assert t.calls == [S4, S3] and r.schedule == S4
    assert "model ranking" in json.loads(cache.read_text())["entries"][r.key]["ranking_from"]
    empty = _table(tmp_path, {})
    with pytest.raises(at.AutotuneError, match="needs simpy .* pass ranking="):
        kernels.autotune(other, q, k, v, table=empty, retune=True, timer=t, gate=ok_gate, algorithms=("flash2",))


def test_with_simpy_the_model_ranks(cache, tmp_path):
    pytest.importorskip("simpy")
    p = AttentionProblem(1, 2, 2, 256, 256, 64, "fp16")
    q, k, v = (x.half() for x in _qkv(p))
    seen = []

    def timer(fn):
        seen.append(fn.__defaults__[0])
        return float(len(seen))
    r = kernels.autotune(p, q, k, v, table=_table(tmp_path, {}), top=3, timer=timer, gate=ok_gate,
                         algorithms=("flash2",))
    from memsim.tuning import candidates, rank
    want = [x.schedule for x in rank(p, candidates(p, "flash2", "fwd", "h100-sxm"), "h100-sxm")[:3]]
    assert seen == want and r.schedule == want[0]


def test_default_gate_runs_the_rule_in_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if not kernels._common.interpreting():
        pytest.skip("the kernels run through TRITON_INTERPRET=1 only when it is set before triton is imported")
    p = AttentionProblem(1, 2, 2, 32, 32, 16, "fp32", causal=True)
    q, k, v = _qkv(p)
    assert at.default_gate(p, S1, q, k, v) == (True, "ok")
    do = torch.randn_like(q)
    assert at.default_gate(p, Schedule("flash2", "bwd", 16, 16, 1, 1), q, k, v, do) == (True, "ok")


def test_tuned_schedule_is_lookup_only(cache):
    assert kernels.tuned_schedule(P, "fwd", ("flash2",)) is None


def test_nearest_takes_the_other_two_byte_dtype_last(tmp_path):
    bf = AttentionProblem(1, 2, 2, 4096, 4096, 64, "bf16")
    fp = AttentionProblem(1, 2, 2, 64, 64, 64, "fp16")
    table = json.loads(_table(tmp_path, {f"{problem_key(bf)}|fwd": _entry(S4), f"{problem_key(fp)}|fwd": _entry(S1)}
                              ).read_text())
    want = AttentionProblem(1, 2, 2, 64, 64, 64, "bf16")
    assert at.table_lookup(table, want, "fwd", ("flash2",))[0] == S4        # same dtype, though farther in N
    del table["entries"][f"{problem_key(bf)}|fwd"]
    s, _, k, exact = at.table_lookup(table, want, "fwd", ("flash2",))
    assert (s, exact) == (S1, False) and k.startswith("fp16")
    f32 = AttentionProblem(1, 2, 2, 64, 64, 64, "fp32")                      # fp32 compiles other code: never near
    assert at.table_lookup(table, f32, "fwd", ("flash2",)) is None


def test_committed_h100_table():
    """kernels/tuned/nvidia-h100-80gb-hbm3.json: every entry is found again for its own problem, exactly, and every
    2-byte d=64/128 MHA class of both phases gets an answer without measuring (nearest)."""
    table = at.load_table("NVIDIA H100 80GB HBM3")
    assert table["format"] == at.TABLE_FORMAT and table["gpu"] == "NVIDIA H100 80GB HBM3"
    assert table["torch"] and table["triton"] and table["date"] and table["command"]
    assert len(table["entries"]) >= 12
    for k, e in table["entries"].items():
        p = AttentionProblem(**e["problem"])
        phase = k.rsplit("|", 1)[1]
        s, got, key, exact = at.table_lookup(table, p, phase, at.DEFAULT_ALGORITHMS[phase])
        assert exact and key == k and s == Schedule(**e["schedule"]) and e["ms"] > 0
        assert "exhaustive" in e["source"] and e["model_ranking"]
    for phase in ("fwd", "bwd"):
        for dt in ("fp16", "bf16"):
            for d in (64, 128):
                for causal in (False, True):
                    for n in (512, 4096, 32768):
                        p = AttentionProblem(2, 8, 8, n, n, d, dt, causal=causal)
                        hit = at.table_lookup(table, p, phase, at.DEFAULT_ALGORITHMS[phase])
                        assert hit is not None, (phase, dt, d, causal, n)
                        assert hit[0].phase == phase


def test_end_to_end_in_the_interpreter(cache, tmp_path):
    """The real gate and timer (CPU interpreter): a tiny fp32 problem, the caller's ranking, the winner cached."""
    if not kernels._common.interpreting():
        pytest.skip("needs TRITON_INTERPRET=1 (CPU)")
    p = AttentionProblem(1, 2, 2, 32, 32, 16, "fp32")
    q, k, v = _qkv(p)
    r = kernels.autotune(p, q, k, v, ranking=[S1, S3], top=2, table=_table(tmp_path, {}), algorithms=("flash2",))
    assert r.source == "measured" and r.schedule in (S1, S3) and all("ms" in x for x in r.tried)
    again = kernels.autotune(p, q, k, v, ranking=[S1, S3], table=_table(tmp_path, {}), algorithms=("flash2",))
    assert (again.source, again.schedule) == ("cache", r.schedule)
