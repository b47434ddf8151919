"""memsim.tuning: candidate generation, the model's ranking, Spearman and regret."""
from __future__ import annotations

import math

import pytest

from memsim.schedule import AttentionProblem, Schedule, ScheduleError, check_fits
from memsim.tuning import (MAX_ACC_REGS_PER_THREAD, SPACES, SearchSpace, acc_regs_per_thread, candidates,
                           problem_key, rank, regret, spearman)

H100 = "h100-sxm"


@pytest.mark.parametrize("alg,phase", sorted(SPACES))
@pytest.mark.parametrize("d", [64, 128, 256])
def test_candidates_fit_sram_and_registers(alg, phase, d):
    import memsim
    hw = memsim.load_hardware(H100)
    p = AttentionProblem(2, 4, 4, 1024, 1024, d, "bf16")
    try:
        cands = candidates(p, alg, phase, hw)
    except ScheduleError as e:  # d=256 backward: nothing of the space fits; the message says why
        assert "fits" in str(e)
        return
    assert cands and len(set(cands)) == len(cands)
    for s in cands:
        assert (s.algorithm, s.phase) == (alg, phase)
        assert check_fits(p, s, hw.smem_per_block_bytes) <= hw.smem_per_block_bytes
        assert acc_regs_per_thread(p, s) <= MAX_ACC_REGS_PER_THREAD
    # what was left out was left out for a reason
    space = SPACES[(alg, phase)]
    assert len(cands) <= len(space)


def test_candidates_leave_out_what_does_not_fit():
    p = AttentionProblem(1, 2, 2, 512, 512, 128, "fp16")
    cands = candidates(p, "flash2", "bwd", H100)
    tiles = {(s.block_m, s.block_n, s.num_warps) for s in cands}
    # dK + dV of a 128-row K/V block at d=128 over 4 warps: 256 fp32 registers per thread -> left out
    assert (32, 128, 4) not in tiles and (32, 128, 8) in tiles
    assert acc_regs_per_thread(p, Schedule("flash2", "bwd", 32, 128, 4, 2)) == 256


def test_hopper_warp_specialised_accumulators_spread_over_two_consumer_groups():
    p = AttentionProblem(1, 2, 2, 512, 512, 128, "bf16")
    ws = Schedule("hopper", "fwd", 128, 128, 4, 2)      # warp-specialised: 2 consumer warpgroups
    piped = Schedule("hopper", "fwd", 128, 128, 4, 3)   # software-pipelined: the 4 warps hold O
    assert acc_regs_per_thread(p, ws) == 64 and acc_regs_per_thread(p, piped) == 128
    assert ws in candidates(p, "hopper", "fwd", H100)


def test_candidates_errors_are_one_line_and_say_what_is_allowed():
    p = AttentionProblem(1, 2, 2, 512, 512, 64, "fp16")
    with pytest.raises(ScheduleError, match=r"no search space for \(naive, fwd\); tunable: \(flash2, fwd\)"):
        candidates(p, "naive", "fwd", H100)
    tiny = SearchSpace((256,), (256,), (4,), (4,))
    with pytest.raises(ScheduleError, match="no \\(flash2, fwd\\) candidate of 1 fits"):
        candidates(p, "flash2", "fwd", H100, space=tiny)


def test_rank_orders_by_predicted_time_and_names_the_bound():
    p = AttentionProblem(1, 4, 4, 512, 512, 64, "fp16")
    cands = [Schedule("flash2", "fwd", 64, 64, 4, 2), Schedule("flash2", "fwd", 128, 64, 8, 2),
             Schedule("flash2", "fwd", 16, 16, 1, 1)]
    ranked = rank(p, cands, H100)
    assert [r.rank for r in ranked] == [1, 2, 3]
    assert {r.schedule for r in ranked} == set(cands)
    times = [r.predicted_s for r in ranked]
    assert times == sorted(times) and all(t > 0 and math.isfinite(t) for t in times)
    for r in ranked:
        assert r.bound and r.bound_launch == "flash2_fwd" and r.facts_source
        d = r.to_dict()
        assert d["schedule"] == r.schedule.to_dict() and d["predicted_s"] == r.predicted_s
    # 16x16 tiles with one warp re-read K/V 8x more: never the model's first choice
    assert ranked[0].schedule != cands[2]


def test_rank_puts_a_candidate_that_cannot_run_last_with_its_error():
    p = AttentionProblem(1, 4, 4, 512, 512, 128, "fp16")
    too_big = Schedule("flash2", "fwd", 256, 256, 8, 4)   # does not fit 227 KB
    ok = Schedule("flash2", "fwd", 64, 64, 4, 2)
    ranked = rank(p, [too_big, ok], H100)
    assert ranked[0].schedule == ok
    assert math.isinf(ranked[1].predicted_s) and "shared memory" in ranked[1].error
    assert ranked[1].to_dict()["predicted_s"] is None


def test_rank_uses_given_compiled_facts():
    from memsim.compiled import key
    p = AttentionProblem(1, 4, 4, 512, 512, 64, "fp16")
    s = Schedule("flash2", "fwd", 64, 64, 4, 2)
    entry = {"launch": "flash2_fwd", "regs_per_thread": 255, "spill_store_bytes": 0, "spill_load_bytes": 0,
             "local_bytes_per_thread": 0, "shared_bytes": 24576, "num_warps": 4, "num_stages": 2,
             "source": "test facts"}
    (r,) = rank(p, [s], H100, facts={key("flash2_fwd", p, s): entry})
    assert "test facts" in r.facts_source[0]
    assert r.launches[0]["regs_per_thread"] == 255


@pytest.mark.parametrize("xs,ys,want", [
    ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),
    ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
    ([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], 0.8),
    ([1, 1, 2, 3], [1, 2, 3, 4], 0.9486832980505138),   # ties share their mean rank
])
def test_spearman(xs, ys, want):
    assert spearman(xs, ys) == pytest.approx(want)


def test_spearman_degenerate():
    assert math.isnan(spearman([1], [2]))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="3 values against 2"):
        spearman([1, 2, 3], [1, 2])


def test_regret():
    pred = [1.0, 2.0, 3.0, 4.0, 5.0]
    meas = [1.10, 1.05, 1.20, 1.00, 2.0]
    assert regret(pred, meas, top=3) == pytest.approx(0.05)
    assert regret(pred, meas, top=1) == pytest.approx(0.10)
    assert regret(pred, meas, top=4) == 0.0
    # a candidate the device could not run is skipped: the tuner measures the next one
    assert regret(pred, [None, 1.05, math.inf, 1.0, 2.0], top=2) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no candidate has a measured time"):
        regret([1.0], [None])
    with pytest.raises(ValueError, match="top must be >= 1"):
        regret(pred, meas, top=0)


def test_problem_key_rounds_lengths_and_batch_heads():
    a = AttentionProblem(4, 32, 32, 4000, 4000, 64, "bf16", causal=True)
    b = AttentionProblem(2, 64, 64, 4096, 4096, 64, "bf16", causal=True)
    assert problem_key(a) == problem_key(b) == "bf16|d64|causal-top_left|g1|sq4096|skv4096|bh128"
    c = AttentionProblem(4, 32, 8, 4096, 4096, 64, "bf16")
    assert problem_key(c) == "bf16|d64|full|g4|sq4096|skv4096|bh128"


def test_issue_bound_is_named_where_the_sass_issue_time_dominates():
    from memsim.compiled import key
    p = AttentionProblem(1, 16, 16, 2048, 2048, 64, "fp16")
    s = Schedule("flash2", "fwd", 64, 64, 4, 2)
    entry = {"launch": "flash2_fwd", "regs_per_thread": 128, "spill_store_bytes": 0, "spill_load_bytes": 0,
             "local_bytes_per_thread": 0, "shared_bytes": 24576, "num_warps": 4, "num_stages": 2,
             "source": "test facts", "loop": {"instructions": 20000}}
    (r,) = rank(p, [s], H100, facts={key("flash2_fwd", p, s): entry})
    assert r.bound == "issue" and r.launches[0]["issue_s"] > 0


def test_cli_tune_table_and_json(capsys):
    import json

    from memsim.cli import main
    assert main(["tune", "--seq", "512", "--batch", "1", "--heads", "4", "-d", "64", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "candidates of flash2, hopper" in out and "bound (launch)" in out and out.count("flash2_fwd") + out.count(
        "hopper_fwd") >= 3
    assert main(["tune", "--seq", "512", "--batch", "1", "--heads", "4", "--phase", "bwd", "--top", "2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["algorithms"] == ["flash2"] and len(d["ranking"]) == 2 and d["candidates"] > 2
    assert d["ranking"][0]["predicted_s"] <= d["ranking"][1]["predicted_s"]


def test_cli_tune_bad_input_is_one_line(capsys):
    from memsim.cli import main
    assert main(["tune", "--algorithms", "naive"]) != 0
    err = capsys.readouterr().err
    assert "no search space for (naive, fwd)" in err and len(err.strip().splitlines()) == 1
    assert main(["tune", "--top", "0"]) != 0
    assert "--top must be a positive count" in capsys.readouterr().err
