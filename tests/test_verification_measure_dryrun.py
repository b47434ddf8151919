"""Dry run of `measure` without a GPU: the real case runner (Triton interpreter on CPU, tiny
cases) under a fake `ncu` that runs the program and prints an ncu-style CSV for the launches
the runner reports, so the whole path -- command line, subprocesses, CSV parsing, mapping rows
to cases by order and kernel name, records, no-overwrite, bundle/unpack -- is exercised."""
from __future__ import annotations

import json
import os
import sys
import tarfile
import textwrap

import pytest

import fake_ncu as fake_ncu_script

from memsim.io import OutputExistsError
from memsim.schedule import AttentionProblem, Schedule
from verification import measure as M
from verification import ncu as N
from verification import records as R
from verification.suite import Case

#: the rows the fake ncu prints for every launch (tests/fake_ncu.py)
NCU_ROWS = [("gpu__time_duration.sum", "usecond", "1.5"),
            ("dram__bytes_read.sum", "Mbyte", "1,000.5"),
            ("dram__bytes_write.sum", "Kbyte", "2,048"),
            ("l1tex__t_bytes.sum", "byte", "3,000,000"),
            ("l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum", "byte", "2,000,000"),
            ("l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum", "byte", "1,000,000"),
            ("lts__t_sectors_srcunit_tex_op_read.sum", "Ksector", "50"),
            ("lts__t_sectors_srcunit_tex_op_write.sum", "sector", "1,000")]


@pytest.fixture
def fake_ncu(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    return fake_ncu_script.install(tmp_path, monkeypatch, M, rows=NCU_ROWS, names_from="launches", prefix="_",
                                   grid="(4, 2, 1)")


def tiny_cases():
    p = AttentionProblem(batch=1, heads_q=2, heads_kv=2, seq_q=64, seq_kv=64, head_dim=16, dtype="fp16")
    return [Case("tiny_flash2_fwd", p, Schedule("flash2", "fwd", 32, 16, 4, 1)),
            Case("tiny_naive_bwd", p, Schedule("naive", "bwd", 32, 16, 4, 1)),
            Case("tiny_flash1_fwd", p, Schedule("flash1", "fwd", 32, 16, 4, 1))]


def test_measure_dry_run_writes_records_and_bundle(fake_ncu, tmp_path):
    data = tmp_path / "data" / "fake-gpu"
    bundle = tmp_path / "out" / "measurements.tar.gz"
    cases = tiny_cases()
    summ = M.measure_cases(cases, data, command="python -m verification measure (test)", bundle_to=bundle,
                           check_gpu=False, echo=lambda m: None)
    assert summ["failed"] == {}, summ["failed"]
    assert len(summ["written"]) == 3
    rec = json.loads((data / "tiny_naive_bwd.json").read_text())
    assert [k["name"] for k in rec["kernels"]] == cases[1].launch_names()
    k0 = rec["kernels"][0]
    assert k0["time_s"] == pytest.approx(1.5e-6)
    assert k0["dram_read_bytes"] == pytest.approx(1000.5e6)
    assert k0["dram_write_bytes"] == pytest.approx(2.048e6)
    assert k0["global_read_bytes"] == 2e6 and k0["global_write_bytes"] == 1e6
    assert k0["l2_read_bytes"] == 50e3 * 32 and k0["l2_write_bytes"] == 1000 * 32
    assert rec["total"]["global_read_bytes"] == 5 * 2e6
    assert rec["total"]["ncu_time_s"] == pytest.approx(5 * 1.5e-6)
    assert rec["total"]["time_s"] > 0  # the (CPU) timing pass
    # the entry point's host floor, timed beside the case in the same timing process
    assert rec["total"]["host_pass_s"] > 0 and "host_pass_s" in rec["timing"]
    assert rec["provenance"]["ncu"] == "0.0-fake"
    assert rec["provenance"]["command"].startswith("python -m verification measure")
    assert AttentionProblem(**rec["problem"]) == cases[1].problem
    assert (data / "raw").is_dir()
    with tarfile.open(bundle) as t:
        names = t.getnames()
    assert "fake-gpu/tiny_flash2_fwd.json" in names
    # a second run refuses before measuring anything
    with pytest.raises(OutputExistsError, match="--archive-old"):
        M.measure_cases(cases, data, command="again", check_gpu=False, echo=lambda m: None)
    # unpack into a fresh root, then refuse a second unpack, then archive
    root = tmp_path / "root"
    dest, got = R.unpack(bundle, root)
    assert dest == root / "fake-gpu" and sorted(got) == sorted(c.name for c in cases)
    with pytest.raises(OutputExistsError):
        R.unpack(bundle, root)
    R.unpack(bundle, root, archive_old=True)
    assert len(list((root / "fake-gpu" / "archive").iterdir())) == 1
    assert len(R.load_records(root / "fake-gpu")) == 3


def test_measure_dry_run_per_case_and_kernel_name_mismatch(fake_ncu, tmp_path, monkeypatch):
    cases = tiny_cases()[:1]
    summ = M.measure_cases(cases, tmp_path / "d", command="x", per_case=True, skip_timing=True, check_gpu=False,
                           echo=lambda m: None)
    assert len(summ["written"]) == 1
    rec = json.loads((tmp_path / "d" / "tiny_flash2_fwd.json").read_text())
    assert rec["total"]["time_s"] == rec["total"]["ncu_time_s"]  # no timing pass: said so in "timing"
    # no --ncu-rep: no report kept, none named, no --export in the command
    assert not list((tmp_path / "d" / "raw").glob("*.ncu-rep"))
    assert "ncu_reports" not in rec and "--export" not in rec["provenance"]["ncu_command"]
    assert "NOT measured" in rec["timing"]["time_s"]
    # rows whose kernel names do not follow the schedule -> a clear mapping error
    rows = [N.KernelRow(0, "_flash2_fwd")]
    with pytest.raises(N.NcuError, match="expected kernel '_naive_qk'"):
        N.assign_rows_to_cases(rows, [("c", ["naive_qk"])])


def test_measure_without_ncu_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("NCU", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(os.path, "exists", lambda p: False)
    with pytest.raises(N.NcuError, match="not on the PATH"):
        M.measure_cases(tiny_cases(), tmp_path / "d", command="x", check_gpu=False)


def test_counters_not_permitted_is_explained_and_logs_come_back(tmp_path, monkeypatch):
    exe = tmp_path / "ncu"
    exe.write_text("#!/bin/sh\ncase \"$1\" in --version) echo 'Version 9.9'; exit 0;; --help) exit 0;; esac\n"
                   "echo '==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU "
                   "Performance Counters on the target device 0.'\nexit 1\n")
    exe.chmod(0o755)
    monkeypatch.setenv("NCU", str(exe))
    monkeypatch.setattr(M, "RUNNER_EXTRA", ["--allow-cpu"])
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    bundle = tmp_path / "b.tar.gz"
    with pytest.raises(N.NcuError, match="NVreg_RestrictProfilingToAdminUsers=0"):
        M.measure_cases(tiny_cases()[:1], tmp_path / "d" / "gpu", command="x", check_gpu=False, skip_timing=True,
                        bundle_to=bundle, echo=lambda m: None)
    with tarfile.open(bundle) as t:
        logs = [m for m in t.getnames() if "/raw/ncu_" in m]
        assert logs and b"ERR_NVGPUCTRPERM" in t.extractfile(logs[0]).read()


def test_interrupted_run_keeps_every_finished_ncu_group(fake_ncu, tmp_path, monkeypatch):
    """Cases go to ncu in groups; a run stopped in group 2 keeps group 1's records on disk."""
    cases = tiny_cases()
    real_pass, calls, said = M.ncu_pass, [], []

    def pass_then_interrupt(group, *a, **kw):
        calls.append([s["name"] for s in group])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_pass(group, *a, **kw)

    monkeypatch.setattr(M, "ncu_pass", pass_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        M.measure_cases(cases, tmp_path / "d", command="x", skip_timing=True, check_gpu=False, group_size=2,
                        echo=said.append)
    assert calls == [["tiny_flash2_fwd", "tiny_naive_bwd"], ["tiny_flash1_fwd"]]
    assert "ncu pass 1/2: 2 case(s)" in said
    kept = sorted(p.name for p in (tmp_path / "d").glob("*.json"))
    assert kept == ["tiny_flash2_fwd.json", "tiny_naive_bwd.json"], kept


def test_repeats_are_separate_ncu_passes_kept_in_the_record(fake_ncu, tmp_path, monkeypatch):
    """--repeats 3: three ncu processes per group; each record keeps the three repeats, the medians
    and the spread, and carries the set fields; the random-set wrapper writes into its set folder."""
    from verification import randomsets as RS
    from verification import sampling as S
    cases = tiny_cases()[:1]
    passes = []
    real_pass = M.ncu_pass

    def counting_pass(group, *a, **kw):
        passes.append([s["name"] for s in group])
        return real_pass(group, *a, **kw)

    monkeypatch.setattr(M, "ncu_pass", counting_pass)
    rs = S.RandomSet("A-seed9", 9, "h100-sxm", tuple(cases), {}, 0.0)
    monkeypatch.setattr(S, "draw", lambda n, seed, **kw: rs)
    monkeypatch.setattr(M, "gpu_name", lambda: "Fake GPU 80GB")
    summ = RS.measure_set(2, 9, label="A", repeats=3, data_dir=str(tmp_path / "{gpu}" / "random" / "{set}"),
                          model_commit="deadbeef", check_gpu=False, echo=lambda m: None)
    assert summ["failed"] == {} and len(summ["written"]) == 1
    assert len(passes) == 3
    d = tmp_path / "fake-gpu-80gb" / "random" / "A-seed9"
    rec = json.loads((d / "tiny_flash2_fwd.json").read_text())
    assert len(rec["repeats"]) == 3 and rec["provenance"]["repeats"] == 3
    assert rec["set"] == "A-seed9" and rec["seed"] == 9 and rec["model_commit"] == "deadbeef"
    assert rec["total"]["dram_read_bytes"] == pytest.approx(1000.5e6)
    ts = rec["timing"]["time_s_repeats"]
    assert len(ts) == 3 and rec["total"]["time_s"] == pytest.approx(sorted(ts)[1])
    hp = [r["total"]["host_pass_s"] for r in rec["repeats"]]
    assert len(hp) == 3 and rec["total"]["host_pass_s"] == pytest.approx(sorted(hp)[1])
    assert rec["spread"]["dram_read_bytes"] == 0.0
    assert rec["spread"]["time_s"] == pytest.approx((max(ts) - min(ts)) / sorted(ts)[1])
    assert all(len(r["kernels"]) == 1 for r in rec["repeats"])


# --- --ncu-rep: ncu's own report kept in raw/ and named by the records (issue 10 item 3) -------------
FAKE_REPORT_MODULE = textwrap.dedent('''\
    """A stand-in for Nsight Compute's extras/python/ncu_report.py with the API subset we use, reading
    the fake ncu's report (which holds the CSV it would have printed).  Units come back as saved."""
    import csv, io

    class Metric:
        def __init__(self, value, unit):
            self._v, self._u = value, unit
        def as_double(self):
            return float(self._v.replace(",", ""))
        def unit(self):
            return self._u

    class Action:
        def __init__(self, name, metrics):
            self._name, self._m = name, metrics
        def name(self):
            return self._name
        def metric_by_name(self, name):
            return self._m.get(name)

    def _indexed(count, at):
        """ncu_report's containers over a list: count() is its length, at(i) its item i."""
        class Indexed:
            def __init__(self, items):
                self._items = items
        setattr(Indexed, count, lambda self: len(self._items))
        setattr(Indexed, at, lambda self, i: self._items[i])
        return Indexed

    Range = _indexed("num_actions", "action_by_idx")
    Context = _indexed("num_ranges", "range_by_idx")

    def load_report(path):
        lines = [ln for ln in open(path).read().splitlines() if ln.startswith('"')]
        acts = {}
        for row in csv.DictReader(io.StringIO("\\n".join(lines))):
            a = acts.setdefault(int(row["ID"]), Action(row["Kernel Name"], {}))
            a._m[row["Metric Name"]] = Metric(row["Metric Value"], row["Metric Unit"])
        return Context([Range([acts[k] for k in sorted(acts)])])
''')


@pytest.fixture
def fake_report_module(fake_ncu, monkeypatch):
    """The fake ncu_report.py in extras/python beside the fake ncu, where Nsight Compute ships it."""
    d = fake_ncu.parent / "extras" / "python"
    d.mkdir(parents=True)
    (d / "ncu_report.py").write_text(FAKE_REPORT_MODULE)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "ncu_report", raising=False)
    yield d
    sys.modules.pop("ncu_report", None)


LEVELS = ("global_read_bytes", "global_write_bytes", "l2_read_bytes", "l2_write_bytes", "dram_read_bytes",
          "dram_write_bytes", "time_s")


def test_ncu_rep_is_kept_per_group_and_named_by_the_records(fake_report_module, tmp_path, reader="csv"):
    data = tmp_path / "data" / "fake-gpu"
    bundle = tmp_path / "b.tar.gz"
    cases = tiny_cases()  # groups of 2: (flash2 fwd, naive bwd), (flash1 fwd)
    summ = M.measure_cases(cases, data, command="x", skip_timing=True, check_gpu=False, group_size=2,
                           bundle_to=bundle, echo=lambda m: None, keep_report=True, report_reader=reader)
    assert summ["failed"] == {}, summ["failed"]
    reps = sorted(p.name for p in (data / "raw").glob("*.ncu-rep"))
    assert len(reps) == 2 and reps[0].endswith("_r0g0.ncu-rep") and reps[1].endswith("_r0g1.ncu-rep"), reps
    by_case = {c.name: json.loads((data / f"{c.name}.json").read_text()) for c in cases}
    assert by_case["tiny_flash2_fwd"]["ncu_reports"] == by_case["tiny_naive_bwd"]["ncu_reports"] == [f"raw/{reps[0]}"]
    assert by_case["tiny_flash1_fwd"]["ncu_reports"] == [f"raw/{reps[1]}"]
    assert "--export <group>.ncu-rep" in by_case["tiny_flash1_fwd"]["provenance"]["ncu_command"]
    # the report holds the group's launches: the flash2 case's one launch then the naive case's five
    rows = N.read_report(str(data / "raw" / reps[0]), reader=reader)
    assert [r.name for r in rows] == ["_" + n for c in cases[:2] for n in c.launch_names()]
    k0 = by_case["tiny_naive_bwd"]["kernels"][0]  # read back from the report: the same values as the live CSV
    assert k0["dram_read_bytes"] == pytest.approx(1000.5e6) and k0["time_s"] == pytest.approx(1.5e-6)
    assert k0["l2_read_bytes"] == 50e3 * 32 and k0["global_read_bytes"] == 2e6
    with tarfile.open(bundle) as t:
        assert {f"fake-gpu/raw/{r}" for r in reps} <= set(t.getnames())


def test_ncu_rep_read_back_with_the_ncu_report_module(fake_report_module, tmp_path):
    """The module reader (one group, the five-launch case): the record holds the same values as the live CSV."""
    data = tmp_path / "d"
    summ = M.measure_cases(tiny_cases()[1:2], data, command="x", skip_timing=True, check_gpu=False,
                           echo=lambda m: None, keep_report=True, report_reader="module")
    assert summ["failed"] == {}, summ["failed"]
    rec = json.loads((data / "tiny_naive_bwd.json").read_text())
    assert len(rec["ncu_reports"]) == 1 and (data / rec["ncu_reports"][0]).is_file()
    assert [k["name"] for k in rec["kernels"]] == tiny_cases()[1].launch_names()
    for k in rec["kernels"]:
        assert (k["dram_read_bytes"], k["time_s"], k["l2_write_bytes"], k["global_write_bytes"]) == (
            pytest.approx(1000.5e6), pytest.approx(1.5e-6), 1000 * 32, 1e6)
    assert "ncu_report.py" in N.report_module()[1]


def test_module_reader_without_the_module_says_where_it_looked(fake_ncu, tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "ncu_report", raising=False)
    monkeypatch.delenv("NCU_REPORT_PYTHON", raising=False)
    rep = tmp_path / "x.ncu-rep"
    rep.write_text("")
    with pytest.raises(N.NcuError, match=r"ncu_report module was not found \(looked in .*bin/extras/python"):
        N.read_report(str(rep), reader="module")


def test_unknown_report_reader_is_refused(tmp_path):
    with pytest.raises(ValueError, match="report_reader must be one of"):
        M.measure_cases(tiny_cases()[:1], tmp_path / "d", command="x", check_gpu=False, keep_report=True,
                        report_reader="gui")


@pytest.mark.parametrize("argv,kw", [
    (["--ncu-rep"], {"keep_report": True, "report_reader": "csv"}),
    (["--ncu-rep", "--ncu-rep-reader", "module"], {"keep_report": True, "report_reader": "module"}),
    ([], {"keep_report": False, "report_reader": "csv"}),
])
def test_cli_ncu_rep_flags_reach_measure_cases(fake_ncu, tmp_path, monkeypatch, argv, kw):
    from verification import __main__ as CLI
    seen = {}
    monkeypatch.setattr(M, "measure_cases", lambda cases, data_dir, **k: seen.update(k) or
                        {"failed": {}, "written": [], "data_dir": str(data_dir)})
    rc = CLI.main(["measure", "--cases", "flash2_fwd_d64_n512", "--data-dir", str(tmp_path), *argv])
    assert rc == 0 and {k: seen[k] for k in kw} == kw


def test_cli_ncu_rep_reader_needs_ncu_rep(capsys):
    from verification import __main__ as CLI
    rc = CLI.main(["measure", "--ncu-rep-reader", "module"])
    err = capsys.readouterr().err
    assert rc == 2 and "--ncu-rep-reader needs --ncu-rep" in err


def test_random_sets_keep_ncu_reports_too(fake_report_module, tmp_path, monkeypatch):
    """measure --random ... --ncu-rep: the random-set wrapper passes the report flags through (one report per
    repeat and group, named by the records)."""
    from verification import randomsets as RS
    from verification import sampling as S
    cases = tiny_cases()[:1]
    rs = S.RandomSet("A-seed9", 9, "h100-sxm", tuple(cases), {}, 0.0)
    monkeypatch.setattr(S, "draw", lambda n, seed, **kw: rs)
    monkeypatch.setattr(M, "gpu_name", lambda: "Fake GPU 80GB")
    summ = RS.measure_set(1, 9, label="A", repeats=3, data_dir=str(tmp_path / "{gpu}" / "random" / "{set}"),
                          check_gpu=False, echo=lambda m: None, keep_report=True)
    assert summ["failed"] == {}, summ["failed"]
    d = tmp_path / "fake-gpu-80gb" / "random" / "A-seed9"
    reps = sorted(p.name for p in (d / "raw").glob("*.ncu-rep"))
    assert len(reps) == 3, reps  # three repeats x one group
    rec = json.loads((d / "tiny_flash2_fwd.json").read_text())
    assert sorted(rec["ncu_reports"]) == [f"raw/{r}" for r in reps]
