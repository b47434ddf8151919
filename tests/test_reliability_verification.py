"""Issue 11 items 3 and 6 (report part): `python -m verification` on bad data names the file and
refuses, in one line with exit status 2; `unpack` checks everything before writing anything; the
report is never replaced without --force, its plots are written atomically and stale ones removed."""
from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest

from verification import __main__ as CLI
from verification import fakes, report
from verification import records as R
from verification import suite as S
from verification.fakes import fake_record

CASE = "gpt2m_flash2_fwd"


def run(args, capsys):
    rc = CLI.main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line(err):
    assert err.startswith("verification: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def fake_model(monkeypatch):
    monkeypatch.setattr(report, "memsim_predictor", lambda hw=None, **kw: fakes.fake_predict(0.1))


def _good():
    return fake_record(S.BY_NAME[CASE])


def _bad_records():
    def with_(path, value):
        rec = _good()
        d = rec
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
        return rec
    return {
        "number": 5,
        "list": [1, 2],
        "problem_string": with_(("problem",), "B=4"),
        "problem_value": with_(("problem", "head_dim"), -64),
        "problem_field": with_(("problem", "heads"), 4),
        "schedule_value": with_(("schedule", "block_m"), 48),
        "schedule_alg": with_(("schedule", "algorithm"), "flash9"),
        "total_string": with_(("total", "dram_read_bytes"), "12"),
        "total_nan": with_(("total", "global_read_bytes"), float("nan")),
        "total_zero": with_(("total", "time_s"), 0.0),
        "total_negative": with_(("total", "l2_read_bytes"), -5.0),
        "total_bool": with_(("total", "l2_write_bytes"), True),
        "kernels_numbers": with_(("kernels",), [1, 2]),
        "case_empty": with_(("case",), ""),
    }


@pytest.mark.parametrize("kind", list(_bad_records()))
@pytest.mark.parametrize("command", ["report", "ceilings"])
def test_bad_record_is_refused_naming_the_file(kind, command, tmp_path, capsys, fake_model):
    d = tmp_path / "data" / "gpu"
    d.mkdir(parents=True)
    f = d / f"{CASE}.json"
    f.write_text(json.dumps(_bad_records()[kind]))  # NaN is written as the JSON extension NaN, as json does
    args = (["report", "--data", str(d), "--out", str(tmp_path / "r")] if command == "report"
            else ["ceilings", "--data", str(d)])
    rc, _, err = run(args, capsys)
    assert rc == 2 and str(f) in one_line(err)
    assert not (tmp_path / "r" / "report.md").exists()


def test_non_utf8_record_is_named(tmp_path, capsys, fake_model):
    d = tmp_path / "gpu"
    d.mkdir()
    (d / f"{CASE}.json").write_bytes(b'{"case": "caf\xe9"}')
    rc, _, err = run(["report", "--data", str(d), "--out", str(tmp_path / "r")], capsys)
    assert rc == 2 and f"{CASE}.json" in one_line(err) and "UTF-8" in err


# --- unpack ------------------------------------------------------------------------------------
def _bundle(path, members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path


GOOD = json.dumps(_good()).encode()


@pytest.mark.parametrize("members, word", [
    ([("gpu/a.json", b"{not json")], "not valid JSON"),
    ([("gpu/" + CASE + ".json", GOOD), ("loose.json", GOOD)], "not inside a <gpu>/ folder"),
    ([("gpu/.json", GOOD)], "empty case name"),
    ([("gpu/" + CASE + ".json", GOOD), ("gpu/raw/log.txt", b"x"), ("gpu/" + CASE + ".json", GOOD)], "twice"),
    ([("gpu/x.json", json.dumps(dict(_good(), total={"time_s": float("nan")})).encode())], "time_s"),
    ([("gpu/other.json", GOOD)], "file name"),
    ([], "no files"),
])
def test_unpack_checks_everything_before_writing(members, word, tmp_path, capsys):
    b = _bundle(tmp_path / "m.tar.gz", members)
    root = tmp_path / "root"
    rc, _, err = run(["unpack", str(b), "--root", str(root)], capsys)
    assert rc == 2 and word in one_line(err) and str(b) in err and "--force" not in err
    assert not root.exists() or not any(root.rglob("*"))  # nothing written


@pytest.mark.parametrize("content", [b"not a tar at all", "truncated"])
def test_unpack_unreadable_bundle(content, tmp_path, capsys):
    good = _bundle(tmp_path / "g.tar.gz", [("gpu/" + CASE + ".json", GOOD)]).read_bytes()
    b = tmp_path / "m.tar.gz"
    b.write_bytes(good[: len(good) // 2] if content == "truncated" else gzip.compress(content))
    rc, _, err = run(["unpack", str(b), "--root", str(tmp_path / "root")], capsys)
    assert rc == 2 and str(b) in one_line(err) and "bundle" in err
    assert not (tmp_path / "root").exists()


def test_unpack_good_bundle_still_works(tmp_path, capsys):
    b = _bundle(tmp_path / "m.tar.gz", [("gpu/" + CASE + ".json", GOOD), ("gpu/raw/log.txt", b"x")])
    rc, out, _ = run(["unpack", str(b), "--root", str(tmp_path / "root")], capsys)
    assert rc == 0 and (tmp_path / "root" / "gpu" / f"{CASE}.json").is_file()


# --- outputs ------------------------------------------------------------------------------------
@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data" / "gpu"
    for n in ("gpt2m_naive_fwd", "gpt2m_naive_bwd", "gpt2m_flash2_fwd", "gpt2m_flash2_bwd"):
        R.save_record(d, fake_record(S.BY_NAME[n]))
    return d


def test_report_out_is_a_file(data_dir, tmp_path, capsys, fake_model):
    f = tmp_path / "file"
    f.write_text("x")
    rc, _, err = run(["report", "--data", str(data_dir), "--out", str(f)], capsys)
    assert rc == 2 and "is a file" in one_line(err)


def test_report_needs_force_and_removes_stale_plots(data_dir, tmp_path, capsys, fake_model):
    out = tmp_path / "r"
    assert run(["report", "--data", str(data_dir), "--out", str(out)], capsys)[0] in (0, 1)
    assert (out / "fig2_left.png").is_file()
    (out / "grid_order.png").write_bytes(b"stale")  # a plot from an older report with more cases
    before = (out / "report.md").read_text()
    rc, _, err = run(["report", "--data", str(data_dir), "--out", str(out)], capsys)
    assert rc == 2 and "--force" in one_line(err) and (out / "report.md").read_text() == before
    (data_dir / "gpt2m_naive_bwd.json").unlink()  # fig2_left can no longer be drawn
    assert run(["report", "--data", str(data_dir), "--out", str(out), "--force"], capsys)[0] in (0, 1)
    assert not (out / "fig2_left.png").exists() and not (out / "grid_order.png").exists()
    assert "![fig2_left]" not in (out / "report.md").read_text()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_plots_are_written_atomically(tmp_path, monkeypatch, data_dir):
    written = []
    real = report.write_atomic
    monkeypatch.setattr(report, "write_atomic", lambda p, data, **kw: written.append(str(p)) or real(p, data, **kw))
    report.build_report(R.load_records(data_dir), fakes.fake_predict(0.0), tmp_path / "r")
    assert any(p.endswith("fig2_left.png") for p in written) and any(p.endswith("scatter.png") for p in written)


def test_anchors_out_is_a_folder(tmp_path, capsys):
    rc, _, err = run(["anchors", "--out", str(tmp_path)], capsys)
    assert rc == 2 and "folder" in one_line(err)


def test_ceilings_unknown_preset(tmp_path, capsys, data_dir):
    rc, _, err = run(["ceilings", "--data", str(data_dir), "--hw", "h999"], capsys)
    assert rc == 2 and "h999" in one_line(err)


@pytest.mark.parametrize("limit", ["0", "-200"])
def test_numerics_limit_must_be_positive(limit, capsys):
    rc, out, err = run(["numerics", "--limit", limit], capsys)
    assert rc == 2 and "--limit" in one_line(err) and "pass" not in out


def test_numerics_out_file_fails_before_any_case(tmp_path, capsys, monkeypatch):
    from verification import numerics as NU
    monkeypatch.setattr(NU, "run_suite", lambda *a, **k: pytest.fail("cases ran before --out was checked"))
    f = tmp_path / "file"
    f.write_text("x")
    rc, _, err = run(["numerics", "--filter", "flash2-fwd-fp16", "--out", str(f)], capsys)
    assert rc == 2 and "is a file" in one_line(err)


# --- audit 2026-11-26: output paths, numbers and random sets --------------------------------------------
def _out_argvs(bad):
    """Every verification option that names an output, given the value `bad`."""
    return {
        "report --out": ["report", "--data", "DATA", "--out", bad],
        "validate --out": ["validate", "--out", bad],
        "fidelity --out": ["fidelity", "--data", "DATA", "--out", bad],
        "fidelity --freeze": ["fidelity", "--freeze", bad, "--random", "1", "--seed", "1"],
        "anchors --out": ["anchors", "--out", bad],
        "numerics --out": ["numerics", "--filter", "flash2-fwd-fp16", "--out", bad],
        "unpack --root": ["unpack", "BUNDLE", "--root", bad],
        "calibrate --out": ["calibrate", "--hw", "h100-sxm", "--dry-run", "--out", bad],
        "calibrate --log-dir": ["calibrate", "--hw", "h100-sxm", "--log-dir", bad],
        "measure --bundle": ["measure", "--bundle", bad],
        "measure --data-dir": ["measure", "--data-dir", bad],
    }


FOLDER_OPTIONS = {"report --out", "validate --out", "fidelity --out", "numerics --out", "unpack --root",
                  "calibrate --log-dir", "measure --data-dir"}


@pytest.mark.parametrize("how", ["empty", "under_a_file", "other_kind"])
@pytest.mark.parametrize("which", list(_out_argvs("x")))
def test_bad_output_paths_are_refused_before_any_work(which, how, tmp_path, capsys, monkeypatch, data_dir):
    """An empty value used to write into the current folder (report, unpack) or silently mean the default
    (fidelity, calibrate); a path under a file was a NotADirectoryError/FileExistsError traceback."""
    from verification import numerics as NU
    monkeypatch.setattr(NU, "run_suite", lambda *a, **k: pytest.fail("cases ran before --out was checked"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    folder = which in FOLDER_OPTIONS
    bad = {"empty": "", "under_a_file": str(a_file / "sub"), "other_kind": str(a_file if folder else tmp_path)}[how]
    bundle = _bundle(tmp_path / "m.tar.gz", [("gpu/" + CASE + ".json", GOOD)])
    argv = [{"DATA": str(data_dir), "BUNDLE": str(bundle)}.get(x, x) for x in _out_argvs(bad)[which]]
    rc, _, err = run(argv, capsys)
    option = which.split()[1]
    assert rc == 2 and option in one_line(err)
    assert {"empty": "is empty", "under_a_file": "is a file, not a folder",
            "other_kind": "is a file" if folder else "is a folder"}[how] in err
    assert list(cwd.iterdir()) == []


def test_unpack_a_folder_and_twice(tmp_path, capsys):
    rc, _, err = run(["unpack", str(tmp_path), "--root", str(tmp_path / "root")], capsys)
    assert rc == 2 and "is a folder" in one_line(err)  # was "bundle ... does not exist"
    b = _bundle(tmp_path / "m.tar.gz", [("gpu/" + CASE + ".json", GOOD)])
    assert run(["unpack", str(b), "--root", str(tmp_path / "root")], capsys)[0] == 0
    rc, _, err = run(["unpack", str(b), "--root", str(tmp_path / "root")], capsys)
    # was "nothing was measured ... or --data-dir to write elsewhere": unpack measures nothing, has no --data-dir
    assert rc == 2 and "--root" in one_line(err) and "--archive-old" in err
    assert "--data-dir" not in err and "measured" not in err


@pytest.mark.parametrize("argv, word", [
    (["measure", "--repeats", "0"], "--repeats must be a positive"),
    (["measure", "--ncu-timeout", "-1"], "--ncu-timeout must be a positive"),
    (["measure", "--time-timeout", "nan"], "--time-timeout must be a positive"),
    (["cases", "--random", "2", "--seed", "1", "--set", ""], "--set is empty"),  # was: silently no label
    (["cases", "--random", "100000000", "--seed", "1"], "more than 5000"),  # was: minutes of silent drawing
    (["cases", "--random", "0", "--seed", "1"], "positive number of cases"),  # was "error: ..." without the prog
    (["fidelity", "--freeze", "x.json", "--random", "0", "--seed", "1"], "positive number of cases"),  # traceback
])
def test_numbers_are_checked_first(argv, word, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(argv, capsys)
    assert rc == 2 and word in one_line(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"not a tar at all", "truncated"])
def test_randomsets_unpack_unreadable_bundle(content, tmp_path, capsys):
    """`python -m verification.randomsets unpack` read the tar for the GPU name before checking it: traceback."""
    from verification import randomsets as RS
    good = _bundle(tmp_path / "g.tar.gz", [("A-seed1/" + CASE + ".json", GOOD)]).read_bytes()
    b = tmp_path / "m.tar.gz"
    b.write_bytes(good[: len(good) // 2] if content == "truncated" else gzip.compress(content))
    assert RS.main(["unpack", str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("verification.randomsets: error: ") and err.count("\n") == 1 and str(b) in err


@pytest.mark.parametrize("random", [False, True])
def test_measure_resume_measures_only_what_is_missing(random, tmp_path, monkeypatch, capsys):
    """Issue 11 goal "interrupted measurements resume": --resume skips the cases that already have a record
    (an interrupted run keeps what it wrote; before, re-running refused because of those records)."""
    from verification import measure as M
    from verification import ncu as N
    from verification import randomsets as RS
    monkeypatch.setattr(N, "ncu_path", lambda: "/fake/ncu")
    monkeypatch.setattr(M, "gpu_name", lambda: "FAKE")
    seen = []
    monkeypatch.setattr(M, "measure_cases", lambda cases, data_dir, **k: seen.append([c.name for c in cases]) or
                        {"failed": {}, "written": [c.name for c in cases], "data_dir": str(data_dir)})
    d = tmp_path / "d"
    if random:
        argv = ["measure", "--random", "3", "--seed", "1", "--data-dir", str(d)]
        names = [c.name for c in RS.draw_set(3, 1, None)[1].cases]
    else:
        names = ["gpt2m_naive_fwd", "gpt2m_flash2_fwd"]
        argv = ["measure", "--cases", *names, "--data-dir", str(d)]
    d.mkdir()
    (d / f"{names[0]}.json").write_text("{}")  # measured before the interruption
    rc, _, err = run(argv + ["--resume"], capsys)
    assert rc == 0 and seen == [names[1:]] and "already" in err
    (d / f"{names[1]}.json").write_text("{}")
    if random:
        (d / f"{names[2]}.json").write_text("{}")
    assert run(argv + ["--resume"], capsys)[0] == 0 and len(seen) == 1  # nothing left: nothing measured
    rc, _, err = run(argv + ["--resume", "--archive-old"], capsys)
    assert rc == 2 and "pass one" in one_line(err)


@pytest.mark.parametrize("content, word", [
    ('{"records": [5]}', "'records' must be a list of objects"),  # was TypeError traceback
    ('{"records": 5}', "'records' must be a list of objects"),
    ('{"records": [{"case": "x"}]}', "record 0 ('x') is not a measured decode case"),  # was KeyError traceback
    ("", "--decode has an empty file name"),
])
def test_fidelity_decode_files_are_checked_before_the_random_sets(content, word, tmp_path, capsys, monkeypatch):
    from verification.cli import fidelity as FCLI
    monkeypatch.setattr(FCLI, "evaluate", lambda *a, **k: pytest.fail("random sets predicted before --decode was read"))
    f = tmp_path / "decode_ncu.json"
    f.write_text(content)
    rc, _, err = run(["fidelity", "--data", str(tmp_path), "--decode", str(f) if content else ""], capsys)
    assert rc == 2 and word in one_line(err)


@pytest.mark.parametrize("argv, word", [
    (["F", "--out", ""], "--out is empty"),  # wrote report.md, bandwidth.png, rows.json into the current folder
    (["--fidelity", "F", "--out", ""], "--out is empty"),  # wrote fidelity.md/.json into the current folder
    (["F", "--out", "A_FILE/x"], "is a file, not a folder"),  # NotADirectoryError traceback
    (["F"], "required: --out"),  # argparse's usage block before
])
def test_report_decode_outputs_and_usage(argv, word, tmp_path, capsys, monkeypatch):
    from verification import report_decode as RD
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (tmp_path / "a_file").write_text("x")
    f = tmp_path / "decode_ncu.json"
    f.write_text('{"records": []}')
    argv = [{"F": str(f), "A_FILE/x": str(tmp_path / "a_file" / "x")}.get(x, x) for x in argv]
    try:
        rc = RD.main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("verification.report_decode: error: ") and err.count("\n") == 1 and word in err
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("command", ["report", "ceilings", "fidelity"])
@pytest.mark.parametrize("how", ["empty", "a_file"])
def test_data_folder_empty_or_a_file(command, how, tmp_path, capsys, fake_model):
    """`report --data ''` silently used the default data folder (the only measured GPU); `--data <file>` said
    "does not exist"."""
    f = tmp_path / "a_file"
    f.write_text("x")
    data = "" if how == "empty" else str(f)
    argv = [command, "--data", data] + (["--out", str(tmp_path / "r")] if command == "report" else [])
    rc, _, err = run(argv, capsys)
    assert rc == 2 and ("--data is empty" if how == "empty" else "is a file") in one_line(err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, word", [
    (["calibrate", "--hw", "h100-sxm", "--dry-run", "--facts", "bogus"], "unknown fact(s)"),
    (["calibrate", "--hw", "h100-sxm", "--repeats", "1"], "--repeats must be >= 5"),
])
def test_calibrate_errors_have_the_prefix(argv, word, capsys):
    """Audit 2026-11-26: `verification calibrate` printed its own errors as "error: ..." without the prog."""
    rc, _, err = run(argv, capsys)
    assert rc == 2 and word in one_line(err)
