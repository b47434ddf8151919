"""`python -m verification calibrate` without a GPU: the plan, the statistics, and the whole path
(runner subprocess in the Triton interpreter, a fake ncu printing CSV rows, rows mapped back to
points, repeats kept, median and spread, the file written atomically and never silently replaced)."""
from __future__ import annotations

import json

import pytest

import fake_ncu as fake_ncu_script

from memsim.io import OutputExistsError
from verification import calibrate as C

MB = 1 << 20


def test_plan_covers_the_issue_sizes():
    plan = C.build_plan()
    wb = [p["params"] for p in plan if p["fact"] == "l2_writeback"]
    assert sorted({p["write_bytes"] for p in wb}) == [int(w * MB) for w in (0.5, 1, 2, 4, 8, 16, 32, 64, 128)]
    assert sorted({p["spin_us"] for p in wb}) == [0, 10, 100, 1000]
    merge = [p["params"] for p in plan if p["fact"] == "l2_merge"]
    assert sorted({p["ctas"] for p in merge}) == [1, 2, 4, 8, 16, 32, 132]
    assert sorted({p["tile_bytes"] for p in merge}) == [8192, 16384, 32768]
    assert {p["mode"] for p in merge} == {"lockstep", "staggered", "delayed"}
    copy = [p["params"]["size_bytes"] for p in plan if p["fact"] == "copy"]
    assert min(copy) == 64 * MB and max(copy) == 2048 * MB
    mm = {(p["params"]["impl"], p["params"]["dtype"], p["params"]["prec"]) for p in plan if p["fact"] == "matmul"}
    assert {("torch", "fp16", "tensor"), ("torch", "bf16", "tensor"), ("triton", "fp32", "ieee"),
            ("triton", "fp32", "tf32")} <= mm
    assert {p["fact"] for p in plan} == set(C.FACTS)
    assert all(p["kernel"] is None or p["kernel"].startswith("_mb_") for p in plan)


def test_host_pass_covers_every_attention_entry_point():
    """The model's host floor (memsim.calibration.host_time_s) is measured for every algorithm-phase a case can
    use; the Hopper ones had none and fell back to 21.6 us per launch (set P: four host-bound hopper cases
    -38..-56 % on time)."""
    from memsim.algorithms import registered, spec_for
    from memsim.schedule import AttentionProblem
    plan = [p["params"] for p in C.build_plan(facts=["host_pass"])]
    got = {(p["algorithm"], p["phase"]) for p in plan}
    want = {k for k in registered() if spec_for(*k).problem_type is AttentionProblem}
    assert got == want, f"missing {sorted(want - got)}, extra {sorted(got - want)}"
    for p in plan:
        if (p["algorithm"], p["phase"]) not in C.HOST_PASS_TINY:
            assert p["seq"] == C.HOST_PASS_SEQ and p["num_warps"] >= 4, p
    ids = [p["id"] for p in C.build_plan(facts=["host_pass"])]
    assert len(set(ids)) == len(ids)
    # the five tiny points keep their ids (committed calibration files name them)
    assert "host_pass/algorithm=flash2,phase=bwd,seq=16,head_dim=16" in ids


def test_plan_is_deterministic_and_quick_is_smaller():
    assert C.build_plan() == C.build_plan()
    assert len(C.build_plan(quick=True)) < len(C.build_plan()) / 2


def test_plan_follows_the_hardware():
    plan = C.build_plan(facts=["l2_merge", "l2_thrash_drift"], num_sms=78, l2_bytes=40 * MB)
    assert max(p["params"]["ctas"] for p in plan if p["fact"] == "l2_merge") == 78
    groups = sorted({p["params"]["groups"] for p in plan if p["fact"] == "l2_thrash_drift"})
    assert groups == [5, 10, 20, 40, 80]  # 0.5x .. 8x of 40 MB in 4 MB working sets


def test_unknown_fact_is_a_clear_error():
    with pytest.raises(C.CalibrationError, match="unknown fact.*copy"):
        C.build_plan(facts=["copy", "nope"])


@pytest.mark.parametrize("vals, med, spread", [([1.0, 2.0, 3.0], 2.0, 1.0), ([4.0, 4.0, 4.0], 4.0, 0.0),
                                               ([None, 2.0, 4.0], 3.0, 2 / 3), ([], None, None)])
def test_summarise(vals, med, spread):
    s = C.summarise(vals)
    assert s["median"] == med
    assert s["spread"] == (pytest.approx(spread) if spread is not None else None)


def test_timed_result_derives_rates_from_every_repeat():
    pt = C.build_plan(facts=["copy"])[0]
    r = C.timed_result(pt, {"ok": True, "times_s": [1e-3, 2e-3, 4e-3], "work": {"bytes": 8e9}})
    assert r["time_s_median"] == 2e-3 and r["time_s_spread"] == pytest.approx(1.5)
    assert r["bytes_per_s_median"] == pytest.approx(4e12)
    assert r["time_s_repeats"] == [1e-3, 2e-3, 4e-3] and r["size_bytes"] == 64 * MB
    assert "error" in C.timed_result(pt, {"ok": False, "error": "boom"})


def test_ncu_result_keeps_repeats_and_marks_missing_passes():
    pt = C.build_plan(facts=["launch_gpu"])[0]
    reps = [{"metrics": {"gpu__time_duration.sum": v}} for v in (2e-6, 3e-6)] + [None]
    r = C.ncu_result(pt, reps, {"gpu__time_duration.sum": "second"})
    assert r["repeats"][2] is None and len(r["repeats"]) == 3
    assert r["median"]["gpu__time_duration.sum"] == pytest.approx(2.5e-6)
    assert r["spread"]["gpu__time_duration.sum"] == pytest.approx(0.4)
    assert r["units"]["gpu__time_duration.sum"] == "second"


def test_repeats_below_the_protocol_are_refused(tmp_path):
    with pytest.raises(C.CalibrationError, match=">= 5"):
        C.calibrate("h100-sxm", out_path=tmp_path / "c.json", command="x", repeats=3)
    with pytest.raises(C.CalibrationError, match=">= 3"):
        C.calibrate("h100-sxm", out_path=tmp_path / "c.json", command="x", ncu_repeats=2)


def test_dry_run_lists_points_commands_and_estimate():
    text = C.dry_run("h100-sxm", quick=True)
    assert "l2_writeback/write_bytes=1048576,spin_us=100" in text
    assert "--clock-control none" in text and "regex:^_mb_" in text and "--profile-from-start off" in text
    assert "estimated device time" in text


@pytest.fixture
def fake_ncu(tmp_path, monkeypatch):  # tests/fake_ncu.py; the time of a launch is 1000 ns x (ncu pass + 1)
    return fake_ncu_script.install(tmp_path, monkeypatch, C, rows=[("gpu__time_duration.sum", "nsecond", "{pass_ns}"),
                                                                  ("dram__bytes_write.sum", "byte", "4,096"),
                                                                  ("lts__t_sectors_op_write.sum", "sector", "1,000")],
                                   names_from="launched", kernel_filter="regex:^_mb_")


def test_calibrate_end_to_end_without_gpu(tmp_path, fake_ncu):
    out = tmp_path / "h100-sxm.calibration.json"
    res = C.calibrate("h100-sxm", out_path=out, command="python -m verification calibrate --hw h100-sxm",
                      quick=True, facts=["launch", "launch_gpu"], check_gpu=False, log_dir=tmp_path)
    assert res["complete"], res["missing"]
    d = json.loads(out.read_text())
    assert d["format"] == C.FORMAT and d["hardware"] == "h100-sxm"
    assert d["provenance"]["ncu"] == "0.0-fake" and "--clock-control none" in d["provenance"]["ncu_command"]
    gpu = d["facts"]["launch_gpu"][0]
    # three separate passes (the fake reports 1, 2, 3 us), median 2 us, spread (3-1)/2
    assert [r["gpu__time_duration.sum"] for r in gpu["repeats"]] == pytest.approx([1e-6, 2e-6, 3e-6])
    assert gpu["median"]["gpu__time_duration.sum"] == pytest.approx(2e-6)
    assert gpu["spread"]["gpu__time_duration.sum"] == pytest.approx(1.0)
    gpus = d["facts"]["launch_gpu"]
    assert len(gpus) == len([p for p in C.build_plan(quick=True) if p["fact"] == "launch_gpu"]) > 1
    assert all(len(p["repeats"]) == 3 for p in gpus)
    assert gpu["empty_kernel_s"] == pytest.approx(2e-6)
    assert all(p["dram_write_bytes"] == 4096 and p["l2_all_write_bytes"] == 32000 for p in gpus)
    assert d["methods"]["launch_gpu"]["kind"] == "ncu" and d["methods"]["launch"]["kind"] == "timed"
    launch = d["facts"]["launch"]
    assert all(len(p["time_s_repeats"]) == 5 and p["launches_per_s_median"] > 0 for p in launch)
    assert all(p["host_launch_s"] == p["time_s_median"] for p in launch)
    assert (tmp_path / "calibrate_ncu.log").exists()
    with pytest.raises(OutputExistsError):
        C.calibrate("h100-sxm", out_path=out, command="x", facts=["launch"], check_gpu=False)


def test_cli_dry_run(capsys):
    assert C.main(["--hw", "h100-sxm", "--dry-run", "--quick", "--facts", "exp,spills"]) == 0
    text = capsys.readouterr().out
    assert "exp (timed, 5 timed repeats)" in text and "spills (ncu, 3 ncu passes)" in text


def test_cli_bad_preset_is_one_line(capsys):
    assert C.main(["--hw", "no-such-card", "--dry-run"]) == 2
    assert "unknown hardware preset 'no-such-card'" in capsys.readouterr().err


def test_sm_group_sets_pair_sm0_with_every_distance_and_cover_larger_sets():
    sets = C.sm_group_sets(132)
    assert sets[:2] == ["0", "131"]
    pairs = [s for s in sets if s.startswith("0+") and s.count("+") == 1]
    assert {int(s.split("+")[1]) for s in pairs} >= {1, 2, 3, 4, 8, 16, 66, 131}
    assert {"0-3", "0-7", "0+2+4+6", "all"} <= set(sets) and len(sets) == len(set(sets))
    assert all(int(x) < 78 for s in C.sm_group_sets(78) if s != "all" for part in s.split("+")
               for x in part.split("-"))


@pytest.mark.parametrize("text, ids", [("0", [0]), ("0+66", [0, 66]), ("0-3+8", [0, 1, 2, 3, 8]), ("all", [0, 1, 2])])
def test_parse_sms(text, ids):
    from verification.microbench.programs import parse_sms  # torch (CPU) is in the test venv
    assert parse_sms(text, 3) == ids


def test_dram_stream_plan_spans_load_and_bytes_in_flight():
    pts = [p["params"] for p in C.build_plan(facts=["dram_stream"], num_sms=132)]
    assert sorted({p["inflight_bytes"] for p in pts}) == [16384, 32768, 65536, 131072]
    kv = [p for p in pts if p.get("layout", "own") != "own"]
    assert {(p["page_rows"], p["scatter"]) for p in kv} == {(0, False), (16, False), (16, True), (64, True)}
    assert min(p["ctas"] for p in pts) == 1 and max(p["ctas"] for p in pts) == 4 * 132


def test_stream_plan_rotates_over_more_than_the_l2():
    from verification.microbench.programs import stream_plan
    p = C.build_plan(facts=["dram_stream"], num_sms=132)[0]["params"]  # one CTA
    sp = stream_plan(p, cpu=False)
    per_call = sp["ctas"] * sp["n_tiles"] * sp["tile_bytes"]
    assert per_call <= p["cta_bytes_max"] and sp["slices"] * per_call >= 256 * MB and sp["slices"] >= 4


def test_stream_concurrency_counts_overlap():
    from verification.microbench.programs import stream_concurrency
    rows = [[0, 100, 0], [0, 100, 1], [100, 200, 0], [50, 150, 2]]  # ns, ns, smid
    c = stream_concurrency(rows)
    assert c["ctas_resident_max"] == 3 and c["ctas_resident_mean"] == pytest.approx(2.0)
    assert c["sms_used"] == 3 and c["ctas_per_sm_max"] == 2 and c["span_s"] == pytest.approx(200e-9)


def test_new_facts_end_to_end_without_gpu(tmp_path, fake_ncu, monkeypatch):
    """sm_groups (ncu, interpreter: program id stands in for %smid) and dram_stream (timed) run through the
    whole path; every sm_groups pass records which SMs read."""
    monkeypatch.setattr(C, "sm_group_sets", lambda num_sms, quick=False: ["0+1", "0-3"])
    out = tmp_path / "cal.json"
    res = C.calibrate("h100-sxm", out_path=out, command="x", quick=True, facts=["sm_groups", "dram_stream"],
                      check_gpu=False)
    assert res["complete"], res["missing"]
    d = json.loads(out.read_text())
    sg = {p["sms"]: p for p in d["facts"]["sm_groups"]}
    assert sg["0+1"]["sms_read"] == [0, 1] and sg["0-3"]["sms_read"] == [0, 1, 2, 3]
    assert all(len(p["observed"]) == 3 and p["readers"] == len(p["sms_read"]) for p in sg.values())
    assert d["ncu_passes_done"] == 3  # saved after every pass
    ds = d["facts"]["dram_stream"]
    assert len(ds) == len(C.build_plan(quick=True, facts=["dram_stream"]))
    assert all(p["bytes_per_s_median"] > 0 and len(p["time_s_repeats"]) == 5 for p in ds)
