"""The model is held to the hardware: the committed H100 measurements (verification/data/
<gpu with h100 in its name>/) against today's memsim predictions, per level, within the
ceilings of verification/tolerances.toml.  A model change that makes any case worse than
its level's ceiling fails here.

Skips ONLY when no H100 measurement directory is committed (then there is nothing to hold
the model to).  With data present, an unset ceiling fails (run `python -m verification
ceilings --data <dir> --write` and commit tolerances.toml)."""
from __future__ import annotations

import pytest

from verification import compare as C
from verification import records as R
from verification.suite import SUITE, case_from_record

H100_DIRS = R.gpu_dirs(R.DATA_ROOT, contains="h100")


def _skip_if_no_data():
    if not H100_DIRS:
        pytest.skip(f"no H100 measurements committed: {R.DATA_ROOT} has no directory with 'h100' in its name and "
                    f"<case>.json files (measure them: verification/DEVICE.md)")


@pytest.fixture(scope="module")
def compared():
    _skip_if_no_data()
    import memsim
    levels = C.load_tolerances()
    out = {}
    for d in H100_DIRS:
        recs = R.load_records(d)
        hws = {}
        pairs = []
        for rec in recs:
            case = case_from_record(rec)
            if case.hardware not in hws:
                hws[case.hardware] = memsim.load_hardware(case.hardware)
            pred = memsim.simulate(case.problem, case.schedule, hws[case.hardware]).to_dict()
            pairs.append((case.name, rec, pred))
        out[d.name] = (recs, C.compare_records(pairs, levels))
    return levels, out


@pytest.mark.parametrize("level", list(C.load_tolerances()))
def test_model_within_ceiling(compared, level):
    levels, by_dir = compared
    lv = levels[level]
    if lv.ceiling is None:
        pytest.fail(f"tolerances.toml has no ceiling for level {level!r} although H100 measurements exist: run "
                    f"`python -m verification ceilings --data {H100_DIRS[0]} --write` and commit tolerances.toml")
    bad = []
    n = 0
    for dname, (_, rows) in by_dir.items():
        for r in rows:
            if r.level != level or r.status in ("below floor",):
                continue
            if r.status == "missing":
                bad.append(f"{dname}/{r.case}: measured {r.measured} predicted {r.predicted} (missing)")
                continue
            n += 1
            if abs(r.error) > lv.ceiling + 1e-12:
                bad.append(f"{dname}/{r.case}: predicted/measured - 1 = {r.error:+.2%} (ceiling {lv.ceiling:.2%})")
    assert not bad, f"level {level}: {len(bad)} case(s) over the ceiling:\n" + "\n".join(bad)
    assert n > 0, f"level {level}: no comparable case in {list(by_dir)}"


def test_every_suite_case_is_measured():
    _skip_if_no_data()
    for d in H100_DIRS:
        have = {r["case"] for r in R.load_records(d)}
        missing = [c.name for c in SUITE if c.name not in have]
        assert not missing, f"{d}: suite cases without a measurement: {missing}"


def test_measurements_carry_provenance():
    _skip_if_no_data()
    for d in H100_DIRS:
        for rec in R.load_records(d):
            p = rec["provenance"]
            for k in ("gpu", "driver", "cuda", "torch", "triton", "ncu", "date", "command"):
                assert p.get(k), f"{d}/{rec['case']}.json: provenance.{k} is empty"
            assert "H100" in p["gpu"], f"{d}/{rec['case']}.json was measured on {p['gpu']}"
            assert p["gpu"] != "FAKE"


def test_rehost_replaces_the_host_floor_by_the_models_rule(tmp_path):
    import json
    from verification.cli.fidelity import rehost
    from verification.cli.common import UsageError
    preds = {"c1": {"schedule": {"algorithm": "flash2", "phase": "fwd"},
                    "kernels": [{"time_s": 2e-5, "binding_limit": "dram"}],
                    "total": {"gpu_time_s": 2e-5, "host_time_s": 1e-4, "time_s": 1e-4, "binding_limit": "host"}},
             "c2": {"schedule": {"algorithm": "hopper", "phase": "fwd"}, "kernels": [],
                    "total": {"gpu_time_s": 1e-5, "host_time_s": 5e-5, "time_s": 5e-5}}}
    cal = tmp_path / "hp.json"
    cal.write_text(json.dumps({"facts": {"host_pass": [
        {"algorithm": "flash2", "phase": "fwd", "time_s_median": 1e-5}]}}))
    out = rehost(preds, cal)
    assert out["c1"]["total"]["time_s"] == 2e-5 and out["c1"]["total"]["binding_limit"] == "dram"
    assert out["c2"] == preds["c2"], "an algorithm the file did not measure keeps the model's own floor"
    assert preds["c1"]["total"]["time_s"] == 1e-4, "the stored predictions are not modified"
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(UsageError, match="host_pass"):
        rehost(preds, bad)


def test_rehost_takes_the_floor_of_the_launch_path(tmp_path):
    """A hopper_fa3 forward whose tiles FA3's kernel does not take runs hopper's launch: the floor is hopper's point
    (set T's r26112701_002: its own point's 124 us against 49 us measured), not hopper_fa3's."""
    import json
    from verification.calibrate import host_pass_point
    from verification.cli.fidelity import rehost
    rows = []
    for alg, t in (("hopper", 3.9e-5), ("hopper_fa3", 3.0e-4)):
        pt = host_pass_point(alg, "fwd")
        rows.append(dict(pt["params"], id=pt["id"], time_s_median=t))
    cal = tmp_path / "hp.json"
    cal.write_text(json.dumps({"facts": {"host_pass": rows}}))
    pred = lambda names: {"schedule": {"algorithm": "hopper_fa3", "phase": "fwd"},  # noqa: E731
                          "kernels": [{"name": n, "time_s": 1e-5} for n in names],
                          "total": {"gpu_time_s": 1e-5, "host_time_s": 1e-4, "time_s": 1e-4}}
    out = rehost({"fallback": pred(["hopper_fwd"]), "own": pred(["hopper_fa3_fwd"])}, cal)
    assert out["fallback"]["total"]["time_s"] == pytest.approx(3.9e-5), out["fallback"]["total"]
    assert out["own"]["total"]["time_s"] == pytest.approx(3.0e-4), out["own"]["total"]


def test_host_pass_point_of_a_launch_path():
    from verification.calibrate import host_pass_point
    assert host_pass_point("hopper_fa3", "fwd", ["hopper_fwd"])["params"]["algorithm"] == "hopper"
    assert host_pass_point("hopper_fa3", "bwd", ["hopper_bwd_preprocess", "hopper_bwd_dkdvdq",
                                                 "hopper_bwd_dq_convert"])["params"]["algorithm"] == "hopper"
    assert host_pass_point("hopper_fa3", "fwd", ["hopper_fa3_fwd"])["params"]["algorithm"] == "hopper_fa3"
    assert host_pass_point("hopper_fa3", "fwd")["params"]["algorithm"] == "hopper_fa3"
    assert host_pass_point("flash2", "fwd", ["no_such_launch"])["params"]["algorithm"] == "flash2"


def test_a_set_keeps_its_machines_host_floor(tmp_path):
    """raw/host_pass.calibration.json in a random-set folder: live predictions use that machine's host floor."""
    import json
    import shutil
    from pathlib import Path
    from verification.cli.fidelity import HOST_PASS_FILE, evaluate
    src = Path(__file__).resolve().parent.parent / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "random"
    rec = sorted((src / "C-seed112526").glob("*flash2_fwd*.json"))[0]
    d = tmp_path / "X-seed1"
    (d / "raw").mkdir(parents=True)
    shutil.copy(rec, d / rec.name)
    r = json.loads(rec.read_text())
    alg, phase = r["schedule"]["algorithm"], r["schedule"]["phase"]
    (d / HOST_PASS_FILE).write_text(json.dumps({"facts": {"host_pass": [
        {"algorithm": alg, "phase": phase, "time_s_median": 1.0}]}}))
    ((_, _, rows, _, _, _),) = evaluate([d], "h100-sxm")
    t = [x for x in rows if x.level == "time"][0]
    assert t.predicted == 1.0, t


def test_the_floor_timed_beside_a_case_wins(tmp_path):
    """A record whose timing pass also timed its entry point's host_pass problem (total.host_pass_s) is predicted
    with that floor, not the set's calibrate file's (set Q: that file's floors were 2-3x the cases' own)."""
    import json
    import shutil
    from pathlib import Path
    from verification.cli.fidelity import HOST_PASS_FILE, evaluate
    src = Path(__file__).resolve().parent.parent / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "random"
    rec = sorted((src / "C-seed112526").glob("*flash2_fwd*.json"))[0]
    d = tmp_path / "X-seed1"
    (d / "raw").mkdir(parents=True)
    r = json.loads(rec.read_text())
    r["total"]["host_pass_s"] = 0.5
    (d / rec.name).write_text(json.dumps(r))
    (d / HOST_PASS_FILE).write_text(json.dumps({"facts": {"host_pass": [
        {"algorithm": r["schedule"]["algorithm"], "phase": r["schedule"]["phase"], "time_s_median": 1.0}]}}))
    ((_, _, rows, _, _, _),) = evaluate([d], "h100-sxm")
    t = [x for x in rows if x.level == "time"][0]
    assert t.predicted == 0.5, f"the floor beside the case (0.5 s) should win over the set file's (1.0 s): {t}"
    g = [x for x in rows if x.level == "gpu_time"][0]
    assert g.predicted < 0.5, "gpu_time never takes a host floor"
