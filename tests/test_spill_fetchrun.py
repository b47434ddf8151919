"""The instruction fetch hides under a loop's waits only a few lines ahead (spills session 19; switch MEMSIM_FETCH_RUN).

The run's table (benchmarks/spill_fetchrun_gpu.py --analyse ... --write-table; H100 80GB HBM3, 09:49 UTC) needs
no compiler; the replay checks use synthetic bodies."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from memsim.warp_issue import Instr, IssueLatencies, replay

TABLE = (Path(__file__).resolve().parents[1] / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "calibration"
         / "spill_fetchrun-2026-11-27T0949.table.json")


def _points():
    return {(p["K"], p["P"], p["cluster"], p["warps"]): p for p in json.loads(TABLE.read_text())["points"]}


@pytest.mark.parametrize("p,w", [(4, 1), (4, 4), (16, 1)])
def test_clustered_waits_cost_more_than_max_says(p, w):
    """The same waits clustered at the start of a 79-99 KB loop run 1.12-1.25x the spread ones; max(replay, fetch)
    says at most 1.07x, the fetch-window replay (at the run's own wait-free rate) within 3 % of the card."""
    pts = _points()
    c, s = pts[(4608, p, 1, w)], pts[(4608, p, 0, w)]
    meas = c["measured"] / s["measured"]
    assert meas >= 1.12
    assert c["max"] / s["max"] <= 1.075
    assert abs((c["window_run_rate"] / s["window_run_rate"]) / meas - 1) < 0.03


def test_window_replay_within_the_controls_offset():
    """Every waiting point of the 64-128 KB band within 0.93-0.99 of the fetch-window replay (the in-cache control
    points' own replay offset is 0.94: the MUFU chain), where MAX ranges 0.95-1.14."""
    pts = _points()
    band = [v for k, v in pts.items() if k[0] == 4608 and k[1]]
    assert len(band) == 7
    r = [v["measured"] / v["window_run_rate"] for v in band]
    assert 0.92 <= min(r) and max(r) <= 1.0
    m = [v["measured"] / v["max"] for v in band]
    assert max(m) - min(m) > 0.15 > max(r) - min(r)
    ctl = [v["measured"] / v["max"] for k, v in pts.items() if k[0] == 512 and k[1]]
    assert all(0.93 <= x <= 0.95 for x in ctl)


def test_a_loop_past_128_kb_fetches_at_the_slow_rate():
    """144 KB of loop code: 5.87 cycles an instruction (the curve's step reading charges the 128 KB rate, 2.85)."""
    v = _points()[(9216, 0, 0, 1)]
    assert 5.7 < v["measured"] / v["instructions"] < 6.0
    assert v["fetch"] / v["instructions"] < 3.0


LAT = IssueLatencies(cycles={"MUFU": 19.0, "LDS": 36.9, "SHFL": 24.6}, hmma_flops_per_cycle=452.0,
                     hgmma_flops_per_cycle=3201.0)


def _ffma(n):
    return [Instr("FFMA", 1) for _ in range(n)]


def _wait(cycles_sb=0):
    # a MUFU whose result the next instruction waits on (scoreboard 0)
    return [Instr("MUFU", 1, write_sb=0), Instr("FFMA", 1, wait_mask=1)]


def test_no_window_is_the_old_replay():
    body = (_wait() + _ffma(30)) * 20
    assert replay(body, warps_per_cta=1, ctas=1, lat=LAT) == replay(body, warps_per_cta=1, ctas=1, lat=LAT,
                                                                     fetch=None)


def test_a_wait_free_loop_runs_at_the_line_rate():
    body = _ffma(800)
    t = replay(body, warps_per_cta=1, ctas=1, lat=LAT, fetch=(24.0, 4))
    assert t == pytest.approx(800 / 8 * 24.0, rel=0.01)
    # lockstep warps of one CTA: each its own window, the same rate (the icache points: 4 warps at the 1-warp rate)
    assert replay(body, warps_per_cta=4, ctas=1, lat=LAT, fetch=(24.0, 4)) == pytest.approx(t, rel=0.01)


def test_the_window_fills_during_a_wait_and_runs_dry_in_a_long_run():
    """Spread, each block of four waits (~140 cycles) lets the fetch fill its 4 lines and the 40 FFMAs after it
    mostly run from them; clustered, the 320 FFMAs after the waits run at the line rate: clustered > spread, where
    max(replay, fetch) is the same for both."""
    wait = [Instr("MUFU", 1, write_sb=0), Instr("FFMA", 15, wait_mask=1)]  # ~19 + 15 cycles
    spread = []
    for _ in range(8):
        spread += wait * 4 + _ffma(40)
    clustered = wait * 32 + _ffma(320)
    assert len(spread) == len(clustered)
    s = replay(spread, warps_per_cta=1, ctas=1, lat=LAT, fetch=(24.0, 4))
    c = replay(clustered, warps_per_cta=1, ctas=1, lat=LAT, fetch=(24.0, 4))
    s0 = replay(spread, warps_per_cta=1, ctas=1, lat=LAT)
    c0 = replay(clustered, warps_per_cta=1, ctas=1, lat=LAT)
    fetch = len(spread) / 8 * 24.0
    assert max(s0, fetch) == pytest.approx(max(c0, fetch), rel=0.02)
    assert c > 1.25 * s


def test_the_curve_switch_adds_the_144_kb_point():
    """MEMSIM_FETCH_RUN=curve / all: a 9220-instruction loop (144 KB) fetches at the measured 5.87 cycles an
    instruction; 128 KB and 192 KB loops keep the calibration's rates."""
    import memsim
    from memsim import fetch_run
    from memsim.calibration import load_calibration
    from memsim.issue_fit import fetch_cycles
    cal = load_calibration(memsim.load_hardware("h100-sxm"))
    base, ext = cal.icache_loop_curve or cal.icache_curve, fetch_run.loop_curve(cal)
    assert fetch_cycles(ext, 9220) / 9220 == pytest.approx(5.866, rel=1e-3)
    assert fetch_cycles(base, 9220) / 9220 < 3.0
    for n in (8000, 12300, 20000):
        assert fetch_cycles(ext, n) == fetch_cycles(base, n)


@pytest.mark.parametrize("env, curve, window", [(None, True, False), ("0", False, False), ("curve", True, False),
                                                ("1", False, True), ("all", True, True)])
def test_the_curve_point_is_the_default_and_the_window_is_not(monkeypatch, env, curve, window):
    from memsim import fetch_run
    if env is None:
        monkeypatch.delenv("MEMSIM_FETCH_RUN", raising=False)
    else:
        monkeypatch.setenv("MEMSIM_FETCH_RUN", env)
    assert (fetch_run.curve_on(), fetch_run.window_on()) == (curve, window)
