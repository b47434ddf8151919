"""`run_ncu(report=...)` keeps ncu's own .ncu-rep report and reads the launches back from it
(`ncu --import ... --csv`), under a fake ncu that behaves like the real one: with --export it
prints no results, it saves them to the report."""
from __future__ import annotations

import stat
import sys
import textwrap

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
