"""verification.recover: records from the work folder of a measure the device call stopped (held-out set AA, whose
call ended in ncu pass 2/3 at the session's device budget; its work folder is committed beside the records)."""
import json
import tarfile
from pathlib import Path

import pytest

from verification import recover as RC
from verification.randomsets import draw_set, record_extra

ROOT = Path(__file__).resolve().parents[1]
AA = ROOT / "verification/data/nvidia-h100-80gb-hbm3/random/AA-seed26112708"
MODEL = "a2331a0b72f524c30b5b7665c2b7e72ed3255b22"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("aa")
    with tarfile.open(AA / "raw" / "vmeasure-workdir.tar.gz") as t:
        t.extractall(d, filter="data")
    (wd,) = list(d.iterdir())
    return wd


@pytest.fixture(scope="module")
def aa_set():
    return draw_set(16, 26112708, "AA")[1]


def _prov():
    src = json.loads((AA / "raw" / "host_pass.calibration.json").read_text())
    return {**src["provenance"], "ncu": "2025.3.1.0", "repeats": 3}


def test_the_committed_records_are_what_the_folder_gives(workdir, aa_set, tmp_path):
    """Every committed AA record comes back from the work folder: same levels, same repeats (2 for the first ncu
    group, whose second pass finished; 1 for the second, cut in its second pass), and the cases short of repeats
    say so."""
    out = RC.recover(workdir, aa_set.cases, tmp_path, prov=_prov(), extra=record_extra(aa_set, MODEL), echo=lambda m: None)
    assert not out["failed"], out["failed"]
    assert out["timing_passes"] == 3
    got = {Path(p).stem: json.loads(Path(p).read_text()) for p in out["written"]}
    committed = {p.stem: json.loads(p.read_text()) for p in AA.glob("r*.json")}
    assert sorted(got) == sorted(committed) and len(got) == 14
    for name, rec in got.items():
        ref = committed[name]
        assert rec["total"] == ref["total"], name
        assert [k["dram_read_bytes"] for k in rec["kernels"]] == [k["dram_read_bytes"] for k in ref["kernels"]], name
        n = len(rec.get("repeats", [None]))
        assert n == out["repeats"][name] and n in (1, 2), (name, n)
        assert "ncu repeat 2" in rec.get("missing_repeats", "") or n == 2, name
        assert rec["model_commit"] == MODEL and rec["set"] == "AA-seed26112708"
    # the 3 timing passes' median is the record's time, and their spread is kept even beside one ncu repeat
    one = next(r for r in got.values() if "repeats" not in r)
    assert len(one["timing"]["time_s_repeats"]) == 3 and "time_s" in one["spread"]


def test_nothing_is_overwritten(workdir, aa_set, tmp_path):
    RC.recover(workdir, aa_set.cases, tmp_path, prov=_prov(), extra=record_extra(aa_set, MODEL), echo=lambda m: None)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    with pytest.raises(Exception, match="already holds measurements of 14 of these cases"):
        RC.recover(workdir, aa_set.cases, tmp_path, prov=_prov(), extra=record_extra(aa_set, MODEL),
                   echo=lambda m: None)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.json")} == before


@pytest.mark.parametrize("what, word", [("missing", "not a folder"), ("empty", "t0/ and r0g0/"),
                                        ("other_set", "not in the set")])
def test_bad_folders_are_one_line_errors(workdir, tmp_path, what, word):
    cases = draw_set(16, 26112708, "AA")[1].cases
    if what == "missing":
        wd = tmp_path / "nope"
    elif what == "empty":
        wd = tmp_path / "empty"
        wd.mkdir()
    else:
        wd, cases = workdir, draw_set(16, 1, "A")[1].cases
    with pytest.raises(ValueError, match=word):
        RC.recover(wd, cases, tmp_path / "out", prov=_prov(), echo=lambda m: None)


def test_the_command_line(workdir, tmp_path, capsys):
    rc = RC.main(["--workdir", str(workdir), "--random", "16", "--seed", "26112708", "--set", "AA",
                  "--model-commit", MODEL, "--provenance-from", str(AA / "raw" / "host_pass.calibration.json"),
                  "--ncu-version", "2025.3.1.0", "--data-dir", str(tmp_path / "d")])
    assert rc == 0 and "recovered 14 record(s) from 3 timing pass(es)" in capsys.readouterr().out
    rc = RC.main(["--workdir", str(tmp_path / "nope"), "--random", "16", "--seed", "26112708", "--set", "AA",
                  "--model-commit", MODEL, "--provenance-from", str(AA / "raw" / "host_pass.calibration.json"),
                  "--ncu-version", "x", "--data-dir", str(tmp_path / "e")])
    assert rc == 2 and "not a folder" in capsys.readouterr().err
