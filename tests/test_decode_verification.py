"""Decode cases in `python -m verification` (issue 12 item 4): the committed decode sets, the `decode` subcommand's
report and figure data, `fidelity --decode committed`.  CPU only (the model predicts; the data is committed)."""
import json

import pytest

from verification import fidelity_decode as FD
from verification import report_decode as RD
from verification.cli import main


def test_committed_sets_exist_and_frozen_predictions_cover_their_cases():
    assert len({s.name for s in FD.COMMITTED}) == len(FD.COMMITTED)
    for s in FD.COMMITTED:
        assert s.path().is_file(), s.data
        cases = {r["case"] for r in json.loads(s.path().read_text())["records"]}
        assert cases, s.name
        if s.role == "held-out":
            preds = RD.load_predictions(s.frozen_path())["predictions"]
            assert cases <= set(preds), f"{s.name}: measured cases without a frozen prediction"
        else:
            assert s.frozen is None


def test_committed_specs_name_every_set_once_and_the_held_out_ones_frozen():
    specs = FD.committed_specs()
    plain = [x for x in specs if "@" not in x]
    frozen = [x for x in specs if "@" in x]
    assert sorted(plain) == sorted(str(s.path()) for s in FD.COMMITTED)
    assert sorted(frozen) == sorted(f"{s.path()}@{s.frozen_path()}" for s in FD.COMMITTED if s.frozen)


def test_fidelity_sets_expand_committed(monkeypatch):
    s = FD.select(["seed11260807"])[0]
    monkeypatch.setattr(FD, "committed_specs", lambda frozen=True: [f"{s.path()}@{s.frozen_path()}"])
    sets = RD.fidelity_sets(["committed"])
    assert len(sets) == 1 and sets[0][4] == str(s.frozen_path())
    assert "frozen" in sets[0][0]


def test_unknown_set_is_refused(capsys):
    assert main(["decode", "--sets", "seed0"]) == 2
    assert "unknown decode set" in capsys.readouterr().err


def test_help_lists_decode(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "decode" in capsys.readouterr().out


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("decode_report")
    assert main(["decode", "--sets", "seed11260807", "--out", str(out)]) == 0
    return out


def test_report_files_and_no_silent_overwrite(report_dir, capsys):
    for n in FD.OUT_FILES:
        assert (report_dir / n).is_file() and (report_dir / n).stat().st_size > 0, n
    md = (report_dir / "report.md").read_text()
    assert "seed11260807" in md and "bandwidth_context.png" in md
    assert main(["decode", "--sets", "seed11260807", "--out", str(report_dir)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_figure_data_is_the_records_and_the_model(report_dir):
    """Measured bandwidth = the record's DRAM read + write over its kernel time; context = mean cached tokens; the
    frozen rows carry the frozen file's time, the live rows the model's (recomputed here)."""
    from memsim.workloads_decode import simulate_decode
    from verification.suite_decode import case_from_record
    s = FD.select(["seed11260807"])[0]
    recs = {r["case"]: r for r in json.loads(s.path().read_text())["records"]}
    preds = RD.load_predictions(s.frozen_path())["predictions"]
    js = json.loads((report_dir / "rows.json").read_text())
    now, frozen = js["rows"]["now"], js["rows"]["frozen"]
    assert {r["case"] for r in now} == set(recs) == {r["case"] for r in frozen}
    for r in now:
        t = recs[r["case"]]["total"]
        assert r["dram_Bps_measured"] == pytest.approx((t["dram_read_bytes"] + t["dram_write_bytes"]) / t["time_s"])
        p = case_from_record(recs[r["case"]]).problem
        assert r["context_tokens"] == pytest.approx(sum(p.seqlens_kv) / p.batch)
    r = now[0]
    c = case_from_record(recs[r["case"]])
    model = simulate_decode(c.problem, c.schedule, c.hardware, flush_l2=True)["total"]
    assert r["time_s"][0] == pytest.approx(model["gpu_time_s"])
    for r in frozen:
        assert r["time_s"][0] == pytest.approx(preds[r["case"]]["total"]["gpu_time_s"])


def test_summary_counts_follow_the_error_definition(report_dir):
    js = json.loads((report_dir / "rows.json").read_text())
    line = js["sets"][0]
    errs = [RD.error(r["time_s"][0], r["time_s"][1], "time_s") for r in js["rows"]["frozen"]]
    assert line["frozen_time_s"]["within"] == sum(e <= 0.10 for e in errs)
    assert line["frozen_time_s"]["worst"] == pytest.approx(max(errs))


def test_decode_cases_lists_the_suite_and_draws(tmp_path, capsys):
    from verification.suite_decode import DECODE_SUITE, draw_random, load_specs
    assert main(["decode", "cases"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in out] == [c.name for c in DECODE_SUITE]
    f = tmp_path / "specs.json"
    assert main(["decode", "cases", "--random", "3", "--seed", "7", "--specs", str(f)]) == 0
    names = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()]
    drawn = draw_random(3, 7)
    assert names == [c.name for c in drawn]
    assert [(c.problem, c.schedule) for c in load_specs(str(f))] == [(c.problem, c.schedule) for c in drawn]
    assert main(["decode", "cases", "--random", "3", "--seed", "7", "--specs", str(f)]) == 2  # never overwritten


BAD_ARGS = {
    "seed_without_random": (["decode", "cases", "--seed", "3"], "--seed goes with --random"),
    "random_without_seed": (["decode", "cases", "--random", "3"], "needs --seed"),
    "random_zero": (["decode", "cases", "--random", "0", "--seed", "1"], "positive"),
    "list_with_out": (["decode", "list", "--out", "x"], "does not take --out"),
    "report_with_random": (["decode", "--random", "2", "--seed", "1"], "does not take --random"),
    "measure_without_out": (["decode", "measure"], "needs --out"),
    "measure_both": (["decode", "measure", "--out", "o", "--random", "2", "--seed", "1", "--cases-json", "f"],
                     "not both"),
    "measure_timeout": (["decode", "measure", "--out", "o", "--timeout", "0"], "--timeout must be positive"),
    "measure_bad_specs": (["decode", "measure", "--out", "o", "--cases-json", "no-such-file.json"],
                          "not a decode case-specs file"),
}


@pytest.mark.parametrize("name", list(BAD_ARGS))
def test_decode_bad_arguments_are_refused_before_any_work(name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, msg = BAD_ARGS[name]
    assert main(argv) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
