"""Every example under examples/ runs end to end (as a script; they are notebooks in `# %%` cell
format) and writes what it says it writes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_are_examples():
    assert EXAMPLES, "examples/ has no notebook-format .py file"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, tmp_path):
    pytest.importorskip("pandas", reason="the examples need the study extra (pandas)")
    text = path.read_text()
    assert text.lstrip().startswith("# %%"), f"{path.name} is not in notebook cell format (# %%)"
    env = {"PYTHONPATH": str(ROOT), "STUDY_OUT": str(tmp_path / "out"), "MPLBACKEND": "", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert any(n.endswith(".png") for n in written), (written, r.stdout)
    png = next((tmp_path / "out").glob("*.png")).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
