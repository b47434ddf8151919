"""Measurement records: atomic, never overwritten, archived not deleted, bundles; the suite."""
from __future__ import annotations

import json
import tarfile

import pytest

from memsim.io import OutputExistsError
from memsim.schedule import AttentionProblem, Schedule, check_fits
from verification import records as R
from verification import suite as S
from verification.fakes import fake_record


def test_gpu_slug():
    assert R.gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    with pytest.raises(ValueError):
        R.gpu_slug("  ")


def test_save_never_overwrites_and_check_free(tmp_path):
    c = S.BY_NAME["gpt2m_flash2_fwd"]
    rec = fake_record(c)
    p = R.save_record(tmp_path, rec)
    assert json.loads(p.read_text())["case"] == c.name
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temp file left
    with pytest.raises(OutputExistsError):
        R.save_record(tmp_path, rec)
    with pytest.raises(OutputExistsError, match="--archive-old"):
        R.check_free(tmp_path, [c.name])
    assert R.check_free(tmp_path, ["other"]) is None
    moved = R.check_free(tmp_path, [c.name], archive_old=True)
    assert (moved / f"{c.name}.json").exists() and not (tmp_path / f"{c.name}.json").exists()
    R.save_record(tmp_path, rec)  # free again
    assert [r["case"] for r in R.load_records(tmp_path)] == [c.name]  # archive/ is not loaded


def test_record_rebuilds_problem_and_schedule(tmp_path):
    c = S.BY_NAME["flash2_fwd_gqa4_d128_n4096"]
    rec = json.loads(R.save_record(tmp_path, fake_record(c)).read_text())
    assert AttentionProblem(**rec["problem"]) == c.problem
    assert Schedule(**rec["schedule"]) == c.schedule
    assert S.case_from_record(rec).tags == c.tags


def test_load_errors(tmp_path):
    with pytest.raises(R.DataError, match="does not exist"):
        R.load_records(tmp_path / "nope")
    with pytest.raises(R.DataError, match="no <case>.json"):
        R.load_records(tmp_path)
    (tmp_path / "a.json").write_text("{")
    with pytest.raises(R.DataError, match="not valid JSON"):
        R.load_records(tmp_path)
    (tmp_path / "a.json").write_text('{"case": "a"}')
    with pytest.raises(R.DataError, match="missing key"):
        R.load_records(tmp_path)
    with pytest.raises(R.DataError, match="missing key"):
        R.save_record(tmp_path, {"case": "b"})


def test_bundle_unpack_roundtrip_and_refusals(tmp_path):
    d = tmp_path / "src" / "nvidia-test"
    for name in ("gpt2m_flash2_fwd", "gpt2m_naive_fwd"):
        R.save_record(d, fake_record(S.BY_NAME[name]))
    (d / "raw").mkdir()
    (d / "raw" / "ncu_x.log").write_text("log")
    b = R.bundle(d, tmp_path / "b.tar.gz")
    root = tmp_path / "root"
    dest, cases = R.unpack(b, root)
    assert cases == ["gpt2m_flash2_fwd", "gpt2m_naive_fwd"] and (dest / "raw" / "ncu_x.log").exists()
    with pytest.raises(OutputExistsError):
        R.unpack(b, root)
    R.unpack(b, root, archive_old=True)
    assert len(R.load_records(dest)) == 2 and len(list((dest / "raw").iterdir())) == 2
    with pytest.raises(R.DataError, match="does not exist"):
        R.unpack(tmp_path / "missing.tar.gz", root)
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as t:
        t.add(d / "gpt2m_flash2_fwd.json", arcname="x/../../etc.json")
    with pytest.raises(R.DataError, match="odd member"):
        R.unpack(evil, root)


# --- the suite -------------------------------------------------------------------------------------
def test_suite_covers_the_issue():
    cs = S.SUITE
    have = {(c.schedule.algorithm, c.schedule.phase) for c in cs}
    assert have == {("naive", "fwd"), ("naive", "bwd"), ("flash1", "fwd"), ("flash2", "fwd"), ("flash2", "bwd")}
    assert {c.problem.causal for c in cs if c.schedule.algorithm == "flash2"} == {True, False}
    assert {c.problem.head_dim for c in cs} >= {64, 128}
    ns = {c.problem.seq_q for c in cs}
    assert min(ns) == 512 and max(ns) == 16384
    sweep = [c for c in cs if "block_sweep" in c.tags]
    assert len({c.schedule.block_n for c in sweep}) >= 3 and all(c.schedule.algorithm == "flash1" for c in sweep)
    grid = [c for c in cs if "grid_order" in c.tags]
    assert {c.schedule.grid_order for c in grid} == {"q_fastest", "heads_fastest"}
    for c in grid:
        assert (c.problem.batch * c.problem.heads_q, c.problem.seq_q, c.problem.head_dim) == (32, 16384, 64)
    g = [c for c in cs if "fig2_left" in c.tags]
    assert {(c.problem.batch, c.problem.heads_q, c.problem.seq_q, c.problem.head_dim) for c in g} == {(64, 16, 1024, 64)}
    assert {c.schedule.algorithm for c in g} >= {"naive", "flash2"}


def test_suite_cases_fit_an_h100_and_memory_is_sane():
    for c in S.SUITE:
        check_fits(c.problem, c.schedule, 232448, "H100")
        assert c.io_bytes() < 8 * 2 ** 30, c.name  # no case needs more than 8 GiB
    assert sum(c.io_bytes() for c in S.SUITE) < 80 * 2 ** 30


def test_select():
    assert [c.name for c in S.select("grid_*")] == ["grid_q_fastest_flash2_fwd_n16384",
                                                      "grid_heads_fastest_flash2_fwd_n16384"]
    assert len(S.select(["tag:block_sweep"])) == 4
    assert len(S.select(None)) == len(S.SUITE)
    with pytest.raises(S.UnknownCaseError, match="did you mean"):
        S.select(["gpt2m_flash2_fw"])
    spec = S.BY_NAME["gpt2m_naive_bwd"].to_spec()
    assert spec["launches"][0] == "naive_bwd_dv" and spec["hardware"] == "h100-sxm"
