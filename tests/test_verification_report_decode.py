"""verification.report_decode: the decode model-vs-ncu report (issue 12 item 4) and its bad-input errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from verification import report_decode as RD

DATA = (Path(__file__).resolve().parent.parent / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "decode"
        / "random-seed1-2026-11-25" / "decode_ncu.json")


@pytest.fixture(scope="module", autouse=True)
def _each_case_predicted_once():
    """The model's prediction of each committed case, computed once for this module: the report, its --force
    re-run, rows_for, --fidelity, fidelity_sets and compare each ask memsim.workloads_decode.simulate_decode for
    the same 16 cases with the same arguments (each caller imports it when called, so the memo is what they get).
    Each caller gets its own copy; what the tests check (the report around the predictions) is unchanged."""
    import copy

    from memsim import workloads_decode as WD
    real, memo = WD.simulate_decode, {}

    def once(problem, schedule, hardware="h100-sxm", **kw):
        key = (problem, schedule, hardware, tuple(sorted(kw.items())))
        try:
            hash(key)
        except TypeError:  # an unhashable argument (a Hardware object, say): not memoised
            return real(problem, schedule, hardware, **kw)
        if key not in memo:
            memo[key] = real(problem, schedule, hardware, **kw)
        return copy.deepcopy(memo[key])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(WD, "simulate_decode", once)
        yield


@pytest.mark.skipif(not DATA.exists(), reason="the random decode measurement is not committed")
def test_report_from_the_committed_random_decode_cases(tmp_path):
    out = tmp_path / "rep"
    assert RD.main([str(DATA), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert (out / "bandwidth.png").read_bytes()[:4] == b"\x89PNG"
    assert "| dram_read_bytes | 16 |" in text and "| dram_bytes | 16 |" in text and "ncu leaves dirty" in text
    rows = RD.rows_for([DATA])
    summ = RD.summary(rows)
    assert summ["dram_read_bytes"]["worst"] < 0.05, summ["dram_read_bytes"]  # the held-out decode DRAM reads
    assert RD.main([str(DATA), "--out", str(out)]) == 2, "an existing report is not replaced without --force"
    assert RD.main([str(DATA), "--out", str(out), "--force"]) == 0


@pytest.mark.parametrize("make, word", [
    (lambda t: ([str(t / "nope.json")], t / "o"), "no such file"),
    (lambda t: ([str(t / "bad.json")], t / "o"), "not a decode_ncu.json"),
    (lambda t: ([str(DATA)], t / "afile"), "is a file"),
])
def test_bad_input_is_one_line(make, word, tmp_path, capsys):
    (tmp_path / "bad.json").write_text('{"records": [{"x": 1}]}')
    (tmp_path / "afile").write_text("x")
    files, out = make(tmp_path)
    assert RD.main([*files, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert word in err and len(err.strip().splitlines()) == 1, err


def test_error_uses_the_floors():
    assert RD.error(2e-6, 1e-6, "time_s") == pytest.approx(1e-6 / 5e-6)
    assert RD.error(3 << 20, 2 << 20, "dram_read_bytes") == pytest.approx(0.5)


@pytest.mark.skipif(not DATA.exists(), reason="the random decode measurement is not committed")
def test_frozen_predictions_are_compared_not_the_model_now(tmp_path, monkeypatch):
    """predict -> compare --predictions: the predicted side comes from the frozen file, whatever the model says now."""
    import json

    from verification import suite_decode as SD
    frozen = tmp_path / "frozen.json"
    assert SD.main(["predict", "--random", "16", "--seed", "1", "--out", str(frozen)]) == 0
    data = json.loads(frozen.read_text())
    assert data["provenance"]["git_commit"] and len(data["predictions"]) == 16
    live = SD.compare(str(DATA))
    assert [r["time_s"] for r in SD.compare(str(DATA), data)] == [r["time_s"] for r in live]
    name = live[0]["case"]
    data["predictions"][name]["total"]["gpu_time_s"] *= 2  # a frozen value differs from the model now
    assert SD.compare(str(DATA), data)[0]["time_s"][0] == pytest.approx(2 * live[0]["time_s"][0])
    frozen.write_text(json.dumps(data))
    out = tmp_path / "rep"
    assert RD.main([str(DATA), "--predictions", str(frozen), "--out", str(out)]) == 0
    assert "frozen predictions" in (out / "report.md").read_text()
    del data["predictions"][name]
    frozen.write_text(json.dumps(data))
    assert RD.main([str(DATA), "--predictions", str(frozen), "--out", str(tmp_path / "r2")]) == 2
    with pytest.raises(SD.FrozenMismatch, match="has no frozen prediction"):
        SD.compare(str(DATA), data)
    assert RD.main([str(DATA), "--predictions", str(tmp_path / "none.json"), "--out", str(tmp_path / "r3")]) == 2


@pytest.mark.skipif(not DATA.exists(), reason="the random decode measurement is not committed")
def test_fidelity_tables_use_the_headline_definition(tmp_path):
    """--fidelity: the decode sets in verification.fidelity's format, levels and error definition."""
    from verification import fidelity as F
    out = tmp_path / "fid"
    assert RD.main(["--fidelity", str(DATA), "--out", str(out)]) == 0
    text = (out / "fidelity.md").read_text()
    assert "## Set decode random seed1" in text and "| time | 16 |" in text and "| dram_write | 16 |" in text
    (name, path, rows, summ, frozen), = RD.fidelity_sets([DATA])
    goals = F.load_goals()
    t = [r for r in rows if r.level == "time"]
    assert len(t) == 16 and frozen is None
    own = {r["case"]: r for r in RD.rows_for([DATA])}
    for r in t:  # the same error as the decode report's time (|pred - meas| / max(meas, 5 us))
        p, m, _ = own[r.case]["time_s"]
        assert r.error == pytest.approx(RD.error(p, m, "time_s")) and goals["time"].floor == 5e-6
    assert RD.main(["--fidelity", str(DATA), "--out", str(out)]) == 2, "not replaced without --force"
    assert RD.main(["--fidelity", f"{DATA}@{tmp_path / 'none.json'}", "--out", str(tmp_path / "f2")]) == 2


def test_headline_command_reports_decode_beside_random_sets(tmp_path, capsys):
    """`python -m verification fidelity --data <set> --decode FILE` puts the decode set in the same headline
    (same table, same goals); a missing decode file is a one-line usage error."""
    pytest.importorskip("simpy")
    from verification.__main__ import main
    random_set = Path(__file__).resolve().parents[1] / "verification/data/nvidia-h100-80gb-hbm3/random/D-seed2611"
    out = tmp_path / "fid"
    assert main(["fidelity", "--data", str(random_set), "--decode", str(DATA), "--out", str(out)]) == 0
    text = (out / "fidelity.md").read_text()
    assert "## Set D-seed2611" in text and "## Set decode random seed1" in text, text[:400]
    capsys.readouterr()
    assert main(["fidelity", "--data", str(random_set), "--decode", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.json" in err[0], err
