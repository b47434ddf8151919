"""The headline fidelity numbers (verification/fidelity.py) and the CI guard on committed random sets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from verification import fidelity as F

GOALS = F.load_goals()
MB = 1 << 20


def _rec(name, totals, times=None):
    """A record with repeats whose totals are the given per-repeat dicts (the median is computed here)."""
    keys = totals[0].keys()
    med = {k: sorted(t[k] for t in totals)[len(totals) // 2] for k in keys}
    rec = {"case": name, "total": med, "repeats": [{"total": t} for t in totals]}
    if times:
        rec["timing"] = {"time_s_repeats": times}
    return rec


def _full(v, t=1e-3):
    return {"global_read_bytes": v, "global_write_bytes": 0, "l2_read_bytes": v, "l2_write_bytes": 0,
            "dram_read_bytes": v, "dram_write_bytes": v, "time_s": t}


def _row(rows, level):
    (r,) = [r for r in rows if r.level == level]
    return r


def test_error_uses_floor_not_ratio():
    # one long head: 3.3 KB measured, 1.5 MB predicted -> about +143 % of the 1 MB floor, not x450
    rec = _rec("one_head", [dict(_full(100 * MB), dram_write_bytes=3300)] * 3)
    pred = {"total": dict(_full(100 * MB), dram_write_bytes=1_500_000)}
    r = _row(F.case_levels("one_head", rec, pred, GOALS), "dram_write")
    assert r.error == pytest.approx((1_500_000 - 3300) / MB), r
    assert r.signed > 0


@pytest.mark.parametrize("pred_mb, inside", [(100, True), (103, True), (106, False), (95, False)])
def test_inside_spread(pred_mb, inside):
    rec = _rec("c", [_full(98 * MB), _full(100 * MB), _full(104 * MB)])
    r = _row(F.case_levels("c", rec, {"total": _full(pred_mb * MB)}, GOALS), "dram_read")
    assert r.inside_spread is inside, r
    assert r.spread == pytest.approx(6 / 100)
    assert r.measured == 100 * MB


def test_time_uses_timing_repeats_and_5us_floor():
    rec = _rec("tiny", [_full(10 * MB, t=2e-6)] * 3, times=[2e-6, 2.2e-6, 1.9e-6])
    r = _row(F.case_levels("tiny", rec, {"total": _full(10 * MB, t=4e-6)}, GOALS), "time")
    assert r.error == pytest.approx((4e-6 - 2e-6) / 5e-6)
    assert (r.lo, r.hi, r.n_repeats) == (1.9e-6, 2.2e-6, 3)


@pytest.mark.parametrize("gpu_pred_us, host_pred_us", [(40, 90), (60, 60)])
def test_gpu_time_compares_kernel_times_without_the_host_floor(gpu_pred_us, host_pred_us):
    # a host-bound case: the timing processes saw 50-150 us, ncu's kernels 40-44 us; gpu_time judges the
    # model's kernel time (gpu_time_s) against ncu's (ncu_time_s) and its spread is the ncu repeats'
    totals = [dict(_full(10 * MB, t=1e-4), ncu_time_s=t) for t in (40e-6, 42e-6, 44e-6)]
    rec = _rec("host_bound", totals, times=[50e-6, 100e-6, 150e-6])
    pred = {"total": dict(_full(10 * MB, t=max(gpu_pred_us, host_pred_us) * 1e-6), gpu_time_s=gpu_pred_us * 1e-6)}
    rows = F.case_levels("host_bound", rec, pred, GOALS)
    g, t = _row(rows, "gpu_time"), _row(rows, "time")
    assert g.measured == pytest.approx(42e-6) and (g.lo, g.hi) == (40e-6, 44e-6), g
    assert g.error == pytest.approx(abs(gpu_pred_us - 42) / 42, rel=1e-6), g
    assert t.measured == pytest.approx(1e-4) and t.spread == pytest.approx(1.0), t


def test_a_record_without_kernel_times_has_no_gpu_time_row():
    rec = _rec("old", [_full(10 * MB)] * 3)
    rows = F.case_levels("old", rec, {"total": dict(_full(10 * MB), gpu_time_s=1e-3)}, GOALS)
    assert "gpu_time" not in {r.level for r in rows} and "time" in {r.level for r in rows}


def test_summary_and_ceiling_sit_outside_the_noise():
    rows = []
    for i, p in enumerate((100, 101, 130)):
        rec = _rec(f"c{i}", [_full(95 * MB), _full(100 * MB), _full(105 * MB)])
        rows += F.case_levels(f"c{i}", rec, {"total": _full(p * MB)}, GOALS)
    s = F.summarise(rows, GOALS)["dram_read"]
    assert s.worst_case == "c2" and s.worst_error == pytest.approx(0.30)
    assert s.median_error == pytest.approx(0.01)
    assert s.inside_spread == 2 and s.max_spread == pytest.approx(0.10)
    assert not s.meets_goal
    assert s.proposed_ceiling == pytest.approx(0.40, abs=1e-3)  # max(goal 10 %, worst 30 % + its spread 10 %)
    md = F.markdown("Set T", {"dram_read": s}, rows)
    assert "c2 +30.0 %" in md and "| dram_read | 3 |" in md


def test_check_ceilings_flags_a_worse_model():
    lv = dict(GOALS["l2"].__dict__)
    lv["ceiling_worst"] = 0.2
    goals = {"l2": F.LevelGoal(**lv)}
    rec = _rec("c", [_full(100 * MB)] * 3)
    rows = F.case_levels("c", rec, {"total": _full(130 * MB)}, goals)
    bad = F.check_ceilings(F.summarise(rows, goals))
    assert bad and "exceeds the CI ceiling" in bad[0]


# --- the guard on committed random sets --------------------------------------------------------------
DATA = Path(__file__).resolve().parent.parent / "verification" / "data"
SETS = sorted(p for p in DATA.glob("*/random/*") if p.is_dir() and any(p.glob("*.json")))


@pytest.mark.parametrize("folder", SETS, ids=[f"{p.parent.parent.name}/{p.name}" for p in SETS])
def test_committed_random_sets_within_ceilings(folder):
    """Every committed random set, predicted by today's model, stays within the CI ceilings."""
    if not any(g.ceiling_worst is not None for g in GOALS.values()):
        pytest.fail("random sets are committed but verification/fidelity.toml has no ceiling_worst: run "
                    "`python -m verification fidelity --data <sets> --write-ceilings`")
    pytest.importorskip("simpy")
    from verification.cli.fidelity import evaluate
    hw = "h100-sxm" if "h100" in folder.parent.parent.name else json.loads(next(folder.glob("*.json")).read_text())["hardware"]
    ((name, _, rows, summ, _, _),) = evaluate([folder], hw, GOALS)
    bad = F.check_ceilings(summ)
    assert not bad, f"set {name}: " + "; ".join(bad)


def test_stored_predictions_are_used_and_missing_ones_refused(tmp_path):
    """fidelity --predictions: the report compares with predictions frozen before measuring, never re-predicts."""
    from verification.cli.fidelity import evaluate
    from verification.cli.common import UsageError
    rec = {"format": "verification.measurement/1", "case": "c0", "hardware": "h100-sxm",
           "problem": {"batch": 1, "heads_q": 1, "heads_kv": 1, "seq_q": 64, "seq_kv": 64, "head_dim": 16},
           "schedule": {"algorithm": "flash2", "phase": "fwd", "block_m": 16, "block_n": 16, "num_warps": 1,
                        "num_stages": 1},
           "kernels": [{"name": "flash2_fwd", **_full(10 * MB)}], "total": _full(10 * MB),
           "repeats": [{"total": _full(10 * MB)}] * 3, "provenance": {"gpu": "test"}}
    d = tmp_path / "B-seed9"
    d.mkdir()
    (d / "c0.json").write_text(json.dumps(rec))
    ((_, _, rows, summ, _, binds),) = evaluate([d], "h100-sxm", GOALS,
                                               {"c0": {"total": dict(_full(11 * MB), binding_limit="dram")}})
    assert binds == {"c0": "dram"}
    assert summ["dram_read"].worst_error == pytest.approx(0.1)
    with pytest.raises(UsageError, match="no case c0"):
        evaluate([d], "h100-sxm", GOALS, {"other": {"total": _full(MB)}})


def test_write_ceilings_keeps_the_file_valid_and_other_levels(tmp_path):
    import shutil
    import tomllib
    from verification.cli.fidelity import _write_ceilings
    f = tmp_path / "fidelity.toml"
    shutil.copy(F.GOALS_FILE, f)
    f.write_text("".join(ln for ln in f.read_text().splitlines(keepends=True) if not ln.startswith("ceiling_worst")))
    _write_ceilings(f, {"l2": 1.5, "time": 2.0})
    _write_ceilings(f, {"l2": 1.2})
    d = tomllib.loads(f.read_text())["levels"]
    assert (d["l2"]["ceiling_worst"], d["time"]["ceiling_worst"]) == (1.2, 2.0)
    assert d["l2"]["keys"] == ["l2_read_bytes", "l2_write_bytes"] and "ceiling_worst" not in d["global"]


@pytest.mark.parametrize("pred_us, want_signed", [(30.0, 0.5), (10.0, -0.5), (20.0, 0.0)])
def test_launch_rows_compare_each_kernel_with_ncu(pred_us, want_signed):
    rec = {"kernels": [{"name": "a", "time_s": 20e-6}, {"name": "b", "time_s": 1e-6}, {"name": "c", "time_s": 4e-6}]}
    pred = {"kernels": [{"name": "a", "time_s": pred_us * 1e-6, "binding_limit": "dram",
                         "compiled_facts": "compiled: ptxas; SASS replay (memsim.warp_issue)"},
                        {"name": "b", "time_s": 3e-6, "compiled_facts": ""},
                        {"name": "x", "time_s": 1.0}]}  # another launch list from here on: skipped
    rows = F.launch_rows("case", rec, pred)
    assert [r.launch for r in rows] == ["a", "b"], rows
    a, b = rows
    assert a.signed == pytest.approx(want_signed) and a.binding == "dram" and a.source == "SASS replay"
    assert b.signed == pytest.approx((3e-6 - 1e-6) / 5e-6)  # the time level's 5 us floor
    md = F.launches_markdown("Set X", rows)
    first = "a" if abs(want_signed) > abs(b.signed) else "b"  # worst first
    assert md.index(f"| case | {first} |") == min(md.index("| case | a |"), md.index("| case | b |")), md
