"""MEMSIM_FETCH_40K (memsim.spill_fetchcurve, spills session 20): the loop curve's 40-56 KB points from
`spill_fetchrun` (H100 80GB HBM3, 2026-11-27 12:38 UTC)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "calibration" / "spill_fetchrun-2026-11-27T1238.table.json"


def test_points_are_the_run():
    from memsim import spill_fetchcurve as F
    pts = json.loads(TABLE.read_text())["points"]
    got = {p["instructions"] * 16: p["measured"] / p["instructions"] for p in pts if p["P"] == 0}
    assert len(got) == 3
    for size, cpi in F.POINTS:
        assert got[size] == pytest.approx(cpi, rel=1e-3)
        assert 2.3 < cpi < 2.5


def test_curve_and_switch(monkeypatch):
    import memsim
    from memsim import spill_fetchcurve as F
    from memsim.calibration import load_calibration
    from memsim.issue_fit import fetch_cycles
    cal = load_calibration(memsim.load_hardware("h100-sxm"))
    base = cal.icache_loop_curve or cal.icache_curve
    new = F.loop_curve(base)
    n = 3300  # a 52 KB loop: the 32 KB point's rate before, the 48 KB point's with the switch
    assert fetch_cycles(base, n) / n == pytest.approx(1.20, abs=0.01)
    assert fetch_cycles(new, n) / n == pytest.approx(2.434, abs=0.01)
    for m in (500, 1500, 5000, 20000):  # outside 40-64 KB nothing moves
        assert fetch_cycles(new, m) == pytest.approx(fetch_cycles(base, m))
    monkeypatch.delenv("MEMSIM_FETCH_40K", raising=False)
    assert F.on()  # the default since the eighteenth session
    monkeypatch.setenv("MEMSIM_FETCH_40K", "0")
    assert not F.on()
    monkeypatch.setenv("MEMSIM_FETCH_40K", "1")
    assert F.on()
