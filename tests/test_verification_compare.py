"""Comparison math, summaries, the tolerances file and the only-down ceilings."""
from __future__ import annotations

import math
import re

import pytest

from verification import compare as C


@pytest.fixture
def levels():
    return C.load_tolerances()


def test_repo_tolerances_have_the_issue_targets(levels):
    assert {k: v.target for k, v in levels.items()} == {
        "global": 0.02, "l2": 0.10, "dram_read": 0.05, "dram_write": 0.10, "time": 0.25}
    assert levels["global"].keys == ("global_read_bytes", "global_write_bytes")
    assert levels["l2"].keys == ("l2_read_bytes", "l2_write_bytes")
    assert levels["time"].keys == ("time_s",)
    for lv in levels.values():
        assert lv.ceiling is None or lv.ceiling >= lv.target


def test_compare_one_ratio_error_status(levels):
    g = levels["global"]
    r = C.compare_one("c", 100e6, 101e6, g)
    assert r.ratio == pytest.approx(1.01) and r.error == pytest.approx(0.01) and r.status == "ok"
    r = C.compare_one("c", 100e6, 90e6, g)
    assert r.error == pytest.approx(-0.10) and r.status in ("over target", "over ceiling")
    lv = C.Level("x", ("a",), 0.05, 0.2, 0.0)
    assert C.compare_one("c", 1.0, 1.1, lv).status == "over target"
    assert C.compare_one("c", 1.0, 1.3, lv).status == "over ceiling"
    assert C.compare_one("c", 1.0, 0.7, lv).status == "over ceiling"
    assert C.compare_one("c", None, 1.0, lv).status == "missing"
    assert C.compare_one("c", 0.0, 1.0, lv).error == math.inf


def test_floor_excludes_tiny_values(levels):
    r = C.compare_one("c", 1000.0, 3000.0, levels["dram_write"])  # both under 1 MB
    assert r.status == "below floor" and r.error == pytest.approx(2.0)


def test_level_value_sums_keys_and_propagates_missing(levels):
    rec = {"total": {"global_read_bytes": 3.0, "global_write_bytes": 4.0, "l2_read_bytes": None}}
    assert C.level_value(rec, levels["global"]) == 7.0
    assert C.level_value(rec, levels["l2"]) is None


def test_summary_median_and_worst(levels):
    lv = {"global": levels["global"]}
    pairs = [(f"c{i}", {"total": {"global_read_bytes": 100e6, "global_write_bytes": 0.0}},
              {"total": {"global_read_bytes": 100e6 * (1 + e), "global_write_bytes": 0.0}})
             for i, e in enumerate((0.01, -0.03, 0.002))]
    rows = C.compare_records(pairs, lv)
    s = C.summarise(rows, lv)["global"]
    assert s.n_compared == 3
    assert s.median_abs_error == pytest.approx(0.01)
    assert s.worst_abs_error == pytest.approx(0.03) and s.worst_case == "c1"
    assert s.meets_target is False
    assert "worst |err|" in s.line() and "c1" in s.line()


def test_compare_launches_by_name(levels):
    meas = {"kernels": [{"name": "a", "time_s": 2.0}, {"name": "b", "time_s": 1.0}]}
    pred = {"kernels": [{"name": "b", "time_s": 1.5}, {"name": "a", "time_s": 2.0}]}
    out = C.compare_launches(meas, pred, {"time": levels["time"]})
    assert out[0]["time"]["error"] == 0.0 and out[1]["time"]["error"] == pytest.approx(0.5)


def test_proposed_ceiling_rounds_up_and_respects_target():
    assert C.proposed_ceiling(0.01, 0.02) == 0.02
    assert C.proposed_ceiling(0.1234, 0.05) == pytest.approx(0.124)
    assert C.proposed_ceiling(1.5, 0.1) == pytest.approx(1.5)
    assert C.proposed_ceiling(0.12345, 0.05) >= 0.12345


def _summ(name, worst, target=0.05, ceiling=None):
    return {name: C.Summary(name, 1, 1, worst, worst, "c", target, ceiling, worst <= target,
                            None if ceiling is None else worst <= ceiling)}


def test_update_ceilings_sets_then_only_lowers(tmp_path):
    # start from the shipped file with every ceiling unset, whatever today's ceilings are
    p = tmp_path / "tol.toml"
    text = re.sub(r"(?m)^ceiling = .*$", "# ceiling = (unset)", C.TOLERANCES.read_text())
    p.write_text(text)
    assert all(level.ceiling is None for level in C.load_tolerances(p).values())
    ch = C.update_ceilings(p, _summ("dram_read", 0.31))
    assert ch == {"dram_read": (None, pytest.approx(0.31))}
    assert C.load_tolerances(p)["dram_read"].ceiling == pytest.approx(0.31)
    ch = C.update_ceilings(p, _summ("dram_read", 0.2, ceiling=0.31))
    assert C.load_tolerances(p)["dram_read"].ceiling == pytest.approx(0.2)
    with pytest.raises(C.ToleranceError, match="got worse"):
        C.update_ceilings(p, _summ("dram_read", 0.5, ceiling=0.2))
    assert C.load_tolerances(p)["dram_read"].ceiling == pytest.approx(0.2)
    C.update_ceilings(p, _summ("dram_read", 0.5, ceiling=0.2), allow_raise=True)
    assert C.load_tolerances(p)["dram_read"].ceiling == pytest.approx(0.5)
    # a level meeting its target gets the target as ceiling, other levels untouched
    C.update_ceilings(p, _summ("global", 0.001, target=0.02))
    t = C.load_tolerances(p)
    assert t["global"].ceiling == 0.02 and t["l2"].ceiling is None


@pytest.mark.parametrize("text,msg", [
    ("not toml [", "not valid TOML"),
    ("[levels.x]\nkeys=['a']\n", "target"),
    ("[levels.x]\nkeys=['a']\ntarget=0.1\nceiling=0.05\n", "below its target"),
    ("", "no \\[levels"),
])
def test_bad_tolerance_files(tmp_path, text, msg):
    p = tmp_path / "t.toml"
    p.write_text(text)
    with pytest.raises(C.ToleranceError, match=msg):
        C.load_tolerances(p)


def test_missing_tolerance_file(tmp_path):
    with pytest.raises(C.ToleranceError, match="does not exist"):
        C.load_tolerances(tmp_path / "nope.toml")


def test_global_falls_back_to_the_t_stage_total_on_the_measured_side(levels):
    meas = {"total": {"global_read_bytes": None, "global_write_bytes": None, "global_bytes_l1tex_t": 2.2e9}}
    pred = {"total": {"global_read_bytes": 2.0e9, "global_write_bytes": 0.2e9}}
    (row,) = C.compare_records([("c", meas, pred)], {"global": levels["global"]})
    assert row.measured == 2.2e9 and row.error == pytest.approx(0.0)
    assert C.level_value(pred, levels["global"]) == pytest.approx(2.2e9)
    assert C.level_value(meas, levels["global"]) is None  # predictions never use the fallback
