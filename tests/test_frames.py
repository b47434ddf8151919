"""Notebook-ready results: DataFrames (pandas, the `study` extra) and figures that never touch the
matplotlib backend."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from memsim import AttentionProblem, Schedule, simulate

ROOT = Path(__file__).resolve().parents[1]
P = AttentionProblem(batch=1, heads_q=2, heads_kv=2, seq_q=256, seq_kv=256, head_dim=64)


def test_to_frame_rows_are_the_launches_and_total():
    pd = pytest.importorskip("pandas")
    r = simulate(P, Schedule("naive", phase="bwd"), "h100-sxm")
    df = r.to_frame()
    assert isinstance(df, pd.DataFrame)
    assert list(df.index) == [k["name"] for k in r.kernels] + ["total"]
    for k in r.kernels:
        for key in ("global_read_bytes", "dram_write_bytes", "time_s"):
            assert df.loc[k["name"], key] == k[key]
    assert df.loc["total", "time_s"] == r.total["time_s"]
    assert df.attrs["problem"] == P.to_dict() and df.attrs["hardware"] == r.hardware


def test_missing_pandas_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    r = simulate(P, Schedule("flash2"), "h100-sxm")
    with pytest.raises(ImportError, match=r"io-aware-attention\[study\]"):
        r.to_frame()


def test_sweep_and_compare_frames(tmp_path):
    pytest.importorskip("pandas")
    from memsim.frames import compare_frame, read_sweep
    from memsim.sweep import SweepSpec, run_sweep
    spec = SweepSpec(base={"batch": 1, "heads": 2, "head_dim": 64}, axes={"seq": [128, 256], "algorithm": ["naive", "flash2"]})
    res = run_sweep(spec, tmp_path / "s", workers=1, progress=False)
    df = res.to_frame()
    assert list(df.columns[:4]) == ["point", "seq", "algorithm", "status"] and len(df) == 4
    assert df["dram_read_bytes"].tolist() == [r["dram_read_bytes"] for r in res.rows]
    back = read_sweep(tmp_path / "s")
    assert back["time_s"].tolist() == df["time_s"].tolist()
    cf = compare_frame([simulate(P, Schedule(a), "h100-sxm") for a in ("naive", "flash2")])
    assert cf["algorithm"].tolist() == ["naive", "flash2"]
    assert cf.loc[0, "global_read_bytes"] > cf.loc[1, "global_read_bytes"]  # naive re-reads S and P


def test_figures_never_touch_the_backend():
    """Building and saving figures imports no pyplot and leaves the backend as the user set it."""
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "from memsim import AttentionProblem, Schedule, simulate\n"
        "from memsim.plots import launches_figure, png_bytes, sweep_figure\n"
        "import verification.report\n"
        "p = AttentionProblem(batch=1, heads_q=1, heads_kv=1, seq_q=128, seq_kv=128, head_dim=64)\n"
        "r = simulate(p, Schedule('naive'), 'h100-sxm')\n"
        "rows = [dict(r.total, seq=128, algorithm='naive', status='ok')]\n"
        "for fig in (launches_figure(r), sweep_figure(rows, x='seq')):\n"
        "    assert type(fig).__name__ == 'Figure' and png_bytes(fig)[:4] == b'\\x89PNG'\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_no_library_module_selects_a_backend():
    """`matplotlib.use` switches the backend of the user's whole process: library code never calls it."""
    offenders = []
    for pkg in ("memsim", "kernels", "verification", "examples"):
        for path in (ROOT / pkg).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if "matplotlib.use(" in line.split("#")[0]:
                    offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert not offenders, f"matplotlib.use in library code: {offenders}"
