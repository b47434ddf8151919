"""`run_ncu(report=...)` keeps ncu's own .ncu-rep report and reads the launches back from it
(`ncu --import ... --csv`), under a fake ncu that behaves like the real one: with --export it
prints no results, it saves them to the report."""
from __future__ import annotations

import json
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from verification import ncu as N

FAKE = textwrap.dedent('''\
    #!{python}
    import sys
    args = sys.argv[1:]
    csv = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size",'
           '"Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"\\n'
           '"0","1","python","h","_flash2_fwd","1","7","(128, 1, 1)","(4, 2, 1)","0","9.0",'
           '"Command line profiler metrics","dram__bytes_read.sum","byte","4,096"\\n')
    if "--import" in args:
        assert "--csv" in args and args[args.index("--page") + 1] == "details", args
        sys.stdout.write(open(args[args.index("--import") + 1]).read()); sys.exit(0)
    if "--export" in args:
        open(args[args.index("--export") + 1], "w").write(csv)
        print("==PROF== Report: " + args[args.index("--export") + 1]); sys.exit(0)
    sys.stdout.write(csv)
''')

OPTIONS = {"--profile-from-start", "--log-file", "--print-units"}


@pytest.fixture
def fake_ncu(tmp_path, monkeypatch):
    exe = tmp_path / "ncu"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("NCU", str(exe))
    return exe


def test_report_is_kept_and_rows_come_from_it(fake_ncu, tmp_path):
    rep = tmp_path / "group0.ncu-rep"
    rows, _ = N.run_ncu([sys.executable, "-c", "pass"], log_file=str(tmp_path / "ncu.log"), options=OPTIONS,
                        report=str(rep))
    assert rep.exists() and [r.name for r in rows] == ["_flash2_fwd"]
    assert N.launch_record(rows[0])["dram_read_bytes"] == 4096
    assert [r.name for r in N.rows_from_report(str(rep), options=OPTIONS)] == ["_flash2_fwd"]


def test_without_report_nothing_is_exported(fake_ncu, tmp_path):
    rows, _ = N.run_ncu([sys.executable, "-c", "pass"], log_file=str(tmp_path / "ncu.log"), options=OPTIONS)
    assert len(rows) == 1 and not list(tmp_path.glob("*.ncu-rep"))
    cmd = N.build_command(["prog"], exe="ncu", options=OPTIONS)
    assert "--export" not in cmd


def test_report_path_must_be_ncu_rep():
    with pytest.raises(ValueError, match=".ncu-rep"):
        N.export_options("report.csv")


# --- where ncu_report.py is looked for ------------------------------------------------------------
def test_report_module_dirs_follow_ncu_links_and_cuda_layout(tmp_path, monkeypatch):
    """CUDA's bin/ncu is a link (or wrapper) into nsight-compute-<version>/, which holds extras/python."""
    monkeypatch.delenv(N.REPORT_MODULE_ENV, raising=False)
    real = tmp_path / "cuda" / "nsight-compute-2025.3.1"
    (real / "extras" / "python").mkdir(parents=True)
    (real / "ncu").write_text("#!/bin/sh\n")
    (tmp_path / "cuda" / "bin").mkdir()
    link = tmp_path / "cuda" / "bin" / "ncu"
    link.symlink_to(real / "ncu")
    dirs = N.report_module_dirs(str(link))
    assert str(real / "extras" / "python") in dirs
    wrapper = tmp_path / "cuda" / "bin" / "ncu-wrapper"  # not a link: found through the nsight-compute* sibling
    wrapper.write_text("#!/bin/sh\nexec ../nsight-compute-2025.3.1/ncu \"$@\"\n")
    assert str(real / "extras" / "python") in N.report_module_dirs(str(wrapper))
    monkeypatch.setenv(N.REPORT_MODULE_ENV, "/somewhere/extras/python")
    assert N.report_module_dirs(str(link))[0] == "/somewhere/extras/python"


def test_report_module_that_fails_to_import_is_named_not_raised(tmp_path, monkeypatch):
    d = tmp_path / "extras" / "python"
    d.mkdir(parents=True)
    (d / "ncu_report.py").write_text("raise ImportError('libgcc_s.so.1: cannot open shared object file')\n")
    monkeypatch.setenv(N.REPORT_MODULE_ENV, str(d))
    monkeypatch.delitem(sys.modules, "ncu_report", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    mod, why = N.report_module(str(tmp_path / "nowhere" / "ncu"))
    assert mod is None and "did not import" in why and "libgcc_s" in why and str(d) not in sys.path


def test_unknown_reader_is_refused(tmp_path):
    with pytest.raises(ValueError, match="allowed: csv, module"):
        N.read_report(str(tmp_path / "r.ncu-rep"), reader="gui")


# --- a real report from the H100 (verification/ncu_rep_check.sh; skipped until it is committed) -----
REAL = Path(__file__).resolve().parent / "fixtures" / "ncu" / "report"
REAL_REP = REAL / "ncu_rep_check.ncu-rep"
LEVELS = N.LEVEL_KEYS


def _levels(rows):
    return [(r.name, {k: N.launch_record(r)[k] for k in LEVELS}) for r in rows]


@pytest.mark.skipif(not (REAL / "ncu_rep_check.json").exists(), reason="no real report committed yet")
def test_real_import_csv_has_the_live_runs_launches_and_bytes():
    """The report's CSV (`ncu --import`) parses like a live run's.  When the live CSV is the same ncu run's
    (ncu printed it while exporting) every level is equal; when it is a separate run, the global bytes (LSU
    instruction bytes of a deterministic kernel) are; L2, DRAM and time vary from run to run and are not compared."""
    same_run = "run B" in json.loads((REAL / "ncu_rep_check.json").read_text())["live_from"]
    imp = _levels(N.parse_csv((REAL / "ncu_rep_check.import.csv").read_text()))
    live = _levels(N.parse_csv((REAL / "ncu_rep_check.live.csv").read_text()))
    assert [n for n, _ in imp] == [n for n, _ in live] and imp
    for (_, a), (_, b) in zip(imp, live):
        for k in (LEVELS if same_run else ("global_read_bytes", "global_write_bytes")):
            assert a[k] == b[k], k
        assert a["time_s"] > 0 and a["dram_read_bytes"] > 0


@pytest.mark.skipif(not REAL_REP.exists(), reason="no real report committed yet")
@pytest.mark.parametrize("reader", ["csv", "module"])
def test_real_report_read_by_ncu_or_its_module_equals_its_csv(reader):
    """Needs Nsight Compute here (ncu for "csv", its ncu_report module for "module"): skipped without."""
    if reader == "csv":
        try:
            N.ncu_path()
        except N.NcuError:
            pytest.skip("ncu is not installed here")
    elif N.report_module()[0] is None:
        pytest.skip("Nsight Compute's ncu_report module is not installed here")
    got = _levels(N.read_report(str(REAL_REP), reader=reader))
    want = _levels(N.parse_csv((REAL / "ncu_rep_check.import.csv").read_text()))
    assert got == want
