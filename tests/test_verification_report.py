"""The report rebuilds from a stored data dir with no GPU (fake measurements, fake model)."""
from __future__ import annotations

import json

import pytest

from verification import records as R
from verification import suite as S
from verification.fakes import fake_predict, fake_record
from verification.report import build_report

FIG_CASES = ["gpt2m_naive_fwd", "gpt2m_naive_bwd", "gpt2m_flash2_fwd", "gpt2m_flash2_bwd",
             "sweep_flash1_fwd_bn32", "sweep_flash1_fwd_bn64", "sweep_flash1_fwd_bn128",
             "grid_q_fastest_flash2_fwd_n16384", "grid_heads_fastest_flash2_fwd_n16384", "naive_fwd_d64_n512"]


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data" / "fake-gpu"
    for name in FIG_CASES:
        R.save_record(d, fake_record(S.BY_NAME[name]))
    return d


def test_report_from_fake_data_dir(data_dir, tmp_path):
    out = tmp_path / "report"
    doc = build_report(R.load_records(data_dir), fake_predict(0.01), out)
    for f in ("report.md", "comparison.json", "fig2_left.png", "block_sweep.png", "scatter.png", "grid_order.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert doc["errors"] == {}
    s = doc["summary"]
    assert s["global"]["worst_abs_error"] == pytest.approx(0.01)
    assert s["global"]["meets_target"] is True and s["time"]["meets_target"] is True
    md = (out / "report.md").read_text()
    assert "## Summary per level" in md and "![fig2_left](fig2_left.png)" in md
    assert "gpt2m_naive_bwd" in md and "Suite cases without a measurement" in md
    cmp = json.loads((out / "comparison.json").read_text())
    assert len(cmp["rows"]) == len(FIG_CASES) * 5
    assert cmp["launches"]["gpt2m_naive_fwd"][0]["name"] == "naive_qk"
    # rebuilding replaces the report (it is derived data), the measurements stay untouched
    doc2 = build_report(R.load_records(data_dir), fake_predict(-0.3), out)
    assert doc2["summary"]["global"]["meets_target"] is False
    assert "misses target" in (out / "report.md").read_text()


def test_report_survives_model_errors_and_missing_figure_cases(tmp_path):
    d = tmp_path / "d"
    R.save_record(d, fake_record(S.BY_NAME["naive_fwd_d64_n512"]))

    def broken(case):
        raise RuntimeError("model exploded")
    doc = build_report(R.load_records(d), broken, tmp_path / "r")
    assert "model exploded" in doc["errors"]["naive_fwd_d64_n512"]
    md = (tmp_path / "r" / "report.md").read_text()
    assert "_not drawn" in md and "## Errors" in md
    assert all(r["status"] == "missing" for r in doc["rows"])
