"""A CUDA fault in one case (set N's hopper_ws backward: a misaligned address) ends the case runner at the next
synchronize, outside its per-case `try`: `measure` marks that case failed and runs the later cases of the pass in a
new process, in the timing pass and in every ncu group (before, every later case of the pass was lost)."""
from __future__ import annotations

import pytest

import fake_ncu as fake_ncu_script

from verification import measure as M

from test_verification_measure_dryrun import NCU_ROWS, tiny_cases


@pytest.fixture
def fake_ncu(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    return fake_ncu_script.install(tmp_path, monkeypatch, M, rows=NCU_ROWS, names_from="launches", prefix="_",
                                   grid="(4, 2, 1)")


@pytest.mark.parametrize("bad", ["tiny_flash2_fwd", "tiny_naive_bwd", "tiny_flash1_fwd"])
def test_ncu_group_resumes_after_the_case_the_runner_stopped_in(fake_ncu, tmp_path, monkeypatch, bad):
    cases = tiny_cases()
    real_pass, calls, said = M.ncu_pass, [], []

    def pass_that_dies_in_bad(group, *a, **kw):
        names = [s["name"] for s in group]
        calls.append(names)
        if bad in names:  # the runner measures the cases before `bad`, then the process ends
            before = group[:names.index(bad)]
            return real_pass(before, *a, **kw) if before else ({}, {}, "")
        return real_pass(group, *a, **kw)

    monkeypatch.setattr(M, "ncu_pass", pass_that_dies_in_bad)
    summ = M.measure_cases(cases, tmp_path / "d", command="x", skip_timing=True, check_gpu=False, group_size=3,
                           echo=said.append)
    names = [c.name for c in cases]
    after = names[names.index(bad) + 1:]
    assert calls == [names] + ([after] if after else []), calls
    assert set(summ["failed"]) == {bad}, summ["failed"]
    assert M.STOPPED_IN in summ["failed"][bad], summ["failed"][bad]
    written = sorted(w.rsplit("/", 1)[-1] for w in summ["written"])
    assert written == sorted(f"{n}.json" for n in names if n != bad), written


def test_timing_pass_resumes_after_the_case_the_runner_stopped_in(tmp_path, monkeypatch):
    import json
    specs = [{"name": n} for n in ("a", "b", "c", "d")]
    runs = []

    def runner(cmd, out, **kw):  # stops in "b" the first time; runs what it is given otherwise
        todo = json.loads(open(cmd[cmd.index("--spec") + 1]).read())
        runs.append([s["name"] for s in todo])
        lines = []
        for s in todo:
            if s["name"] == "b":
                break
            lines.append({"case": s["name"], "ok": True, "time_s": 1e-3})
        return lines

    monkeypatch.setattr(M, "run_runner", runner)
    got = M.timing_pass(specs, tmp_path, echo=lambda m: None)
    assert runs == [["a", "b", "c", "d"], ["c", "d"]], runs
    assert got["b"] == {"case": "b", "ok": False, "error": M.STOPPED_IN}
    assert all(got[n]["ok"] for n in "acd"), got
