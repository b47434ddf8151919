"""Random validation sets: seeded draws over the whole space, every draw runnable and within budget,
records with every repeat, the per-level median and the spread, set fields, and the set's path."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from memsim.hardware import load_hardware
from memsim.schedule import KERNEL_HEAD_DIMS, check_fits
from verification import measure as M
from verification import ncu as N
from verification import randomsets as RS
from verification import sampling as S


def test_same_seed_same_cases_other_seed_other_cases():
    a, b = S.draw(24, 1), S.draw(24, 1)
    assert a.cases == b.cases and a.rejected == b.rejected
    assert S.draw(24, 2).cases != a.cases
    # the first k cases of a longer draw are the k-case draw (one stream, same order)
    assert S.draw(30, 1).cases[:24] == a.cases


def test_draw_is_the_same_in_a_fresh_process():
    code = "from verification.sampling import draw; print([c.name for c in draw(12, 7).cases])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str([c.name for c in S.draw(12, 7).cases])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_drawn_case_fits_and_is_within_budget(seed):
    hw = load_hardware("h100-sxm")
    rs = S.draw(24, seed)
    assert len(rs.cases) == 24 and len({c.name for c in rs.cases}) == 24
    total = 0.0
    for c in rs.cases:
        check_fits(c.problem, c.schedule, hw.smem_per_block_bytes)
        assert S.kernel_constraints(c.problem, c.schedule) is None
        assert c.io_bytes() <= S.MEMORY_BUDGET_BYTES
        t = S.estimate_s(c.problem, c.schedule, "h100-sxm")
        assert t <= S.TIME_BUDGET_S, (c.name, t)
        total += t
        assert 1 <= c.problem.seq_q <= S.MAX_LEN and 1 <= c.problem.seq_kv <= S.MAX_LEN
        assert 1 <= c.problem.batch * c.problem.heads_q <= S.MAX_BH
        assert c.tags == ("random",)
    assert total == pytest.approx(rs.estimate_s) and total <= S.SET_BUDGET_S


def test_the_space_is_covered_over_many_draws():
    cases = S.draw(300, 11).cases
    ps, ss = [c.problem for c in cases], [c.schedule for c in cases]
    assert {(s.algorithm, s.phase) for s in ss} == set(S.attention_keys())
    assert {p.dtype for p in ps} == {"fp16", "bf16", "fp32"}
    assert {p.head_dim for p in ps} == set(KERNEL_HEAD_DIMS)
    assert {s.grid_order for s in ss} == {"q_fastest", "heads_fastest"}
    assert {p.causal_align for p in ps if p.causal} == {"top_left", "bottom_right"}
    assert any(not p.causal for p in ps)
    assert any(p.heads_kv == 1 < p.heads_q for p in ps)                     # MQA
    assert any(1 < p.heads_kv < p.heads_q for p in ps)                      # GQA
    assert any(p.seq_q != p.seq_kv for p in ps) and any(p.seq_q == p.seq_kv for p in ps)
    assert any(p.seq_q % 2 for p in ps) and any(p.seq_q % 128 == 0 for p in ps)
    assert min(p.seq_q for p in ps) < 16 and max(max(p.seq_q, p.seq_kv) for p in ps) > 8192
    assert {s.num_warps for s in ss} >= {1, 2, 4, 8} and {s.num_stages for s in ss} >= {1, 2, 3, 4}
    assert {s.block_m for s in ss} == set(S.BLOCKS) and {s.block_n for s in ss} == set(S.BLOCKS)
    assert max(p.batch * p.heads_q for p in ps) > 256


@pytest.mark.parametrize("n, seed, msg", [(0, 1, "positive"), (3, -1, "non-negative"), (True, 1, "positive")])
def test_bad_draw_arguments(n, seed, msg):
    with pytest.raises(ValueError, match=msg):
        S.draw(n, seed)


def test_set_names():
    assert S.set_name_for("A", 1) == "A-seed1" and S.set_name_for(None, 4) == "seed4"
    with pytest.raises(ValueError, match="--set"):
        S.set_name_for("a/b", 1)


def _row(kid, name, scale):
    r = N.KernelRow(kid, name)
    r.metrics = {"gpu__time_duration.sum": 1e-5 * scale, "dram__bytes_read.sum": 1e6 * scale,
                 "dram__bytes_write.sum": 2e6, "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum": 3e6,
                 "l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum": 1e6,
                 "lts__t_sectors_srcunit_tex_op_read.sum": 1e5 * scale, "lts__t_sectors_srcunit_tex_op_write.sum": 3e4}
    return r


def test_record_of_repeats_holds_each_median_and_spread():
    spec = {"name": "c", "hardware": "h100-sxm", "problem": {}, "schedule": {}}
    reps = [([_row(0, "_flash2_fwd", s)], {"time_s": 1e-3 * s}) for s in (1.0, 1.2, 0.9)]
    comp = [{"name": "_flash2_fwd", "regs_per_thread": 168, "local_bytes_per_thread": 0, "shared_bytes": 49152}]
    rec = M.build_record(spec, None, None, {"gpu": "x"}, (), repeats=reps, compiled=comp, extra={"set": "A-seed1"})
    assert len(rec["repeats"]) == 3
    assert rec["total"]["dram_read_bytes"] == pytest.approx(1e6)           # median of 1.0, 1.2, 0.9 MB
    assert rec["total"]["time_s"] == pytest.approx(1e-3)
    assert rec["total"]["dram_write_bytes"] == 2e6 and rec["spread"]["dram_write_bytes"] == 0.0
    assert rec["spread"]["dram_read_bytes"] == pytest.approx(0.3)           # (1.2 - 0.9) / 1.0
    assert rec["spread"]["l2_read_bytes"] == pytest.approx(0.3)
    assert rec["kernels"][0]["spread"]["time_s"] == pytest.approx(0.3)
    assert rec["kernels"][0]["compiled"]["regs_per_thread"] == 168
    assert rec["set"] == "A-seed1"
    assert [r["total"]["dram_read_bytes"] for r in rec["repeats"]] == pytest.approx([1e6, 1.2e6, 0.9e6])


def test_repeats_with_different_launch_counts_are_refused():
    spec = {"name": "c", "hardware": "h100-sxm", "problem": {}, "schedule": {}}
    reps = [([_row(0, "_a", 1.0)], None), ([_row(0, "_a", 1.0), _row(1, "_b", 1.0)], None)]
    with pytest.raises(N.NcuError, match="different numbers of launches"):
        M.build_record(spec, None, None, {}, (), repeats=reps)


def test_record_extra_names_the_set_and_the_model_commit():
    rs = S.draw(3, 5, set_name="B-seed5")
    ex = RS.record_extra(rs, "abc123")
    d = ex(rs.cases[2].name)
    assert d["set"] == "B-seed5" and d["seed"] == 5 and d["random_index"] == 2 and d["model_commit"] == "abc123"
    assert "model_commit" not in RS.record_extra(rs)(rs.cases[0].name)
    assert RS.set_dir("nvidia-h100", "A-seed1").parts[-3:] == ("nvidia-h100", "random", "A-seed1")


def test_measure_set_refuses_fewer_than_three_repeats():
    with pytest.raises(ValueError, match=">= 3"):
        RS.measure_set(4, 1, label="A", repeats=2)


def test_cases_cli_lists_and_writes_json(capsys):
    assert RS.main(["cases", "--random", "5", "--seed", "3", "--set", "A"]) == 0
    out = capsys.readouterr()
    assert out.out.count("\n") == 5 and "A-seed3" in out.err
    assert RS.main(["cases", "--random", "5", "--seed", "3", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["set"] == "seed3" and len(d["cases"]) == 5 and d["cases"][0]["launches"]


def test_zero_dram_writes_are_a_measurement():
    """Outputs that stay dirty in L2 write 0 B to DRAM inside the kernel: a record, not bad data."""
    from verification import records as R
    p = S.draw(1, 1).cases[0]
    row = _row(0, "_" + p.launch_names()[0], 1.0)
    row.metrics["dram__bytes_write.sum"] = 0.0
    spec = {**p.to_spec()}
    rows = [row] + [_row(i, "_" + n, 1.0) for i, n in enumerate(p.launch_names()[1:], 1)]
    for r in rows:
        r.metrics["dram__bytes_write.sum"] = 0.0
    rec = M.build_record(spec, rows, {"time_s": 1e-3}, {"gpu": "x"}, ())
    assert rec["total"]["dram_write_bytes"] == 0.0
    R.validate_record(rec)


@pytest.mark.parametrize("seq_kv, warps, bad", [(32768, 1, True), (21381, 1, True), (21381, 2, False),
                                                (16384, 1, False), (4096, 1, False)])
def test_naive_rows_too_wide_for_the_warps_are_not_drawn(seq_kv, warps, bad):
    from memsim.schedule import AttentionProblem, Schedule
    from verification.sampling import kernel_constraints
    p = AttentionProblem(1, 1, 1, 64, seq_kv, 64, dtype="fp16")
    s = Schedule("naive", "bwd", block_m=64, block_n=64, num_warps=warps, num_stages=1)
    why = kernel_constraints(p, s)
    assert (why == "naive rows too wide for the warps") is bad, f"seq_kv {seq_kv}, {warps} warp(s): {why!r}"


@pytest.mark.parametrize("bm, bn, warps, bad", [(128, 128, 1, True), (128, 64, 1, False), (128, 128, 2, False),
                                                (64, 128, 1, False), (128, 128, 4, False)])
def test_tiles_too_large_for_the_warps_are_not_drawn(bm, bn, warps, bad):
    from memsim.schedule import AttentionProblem, Schedule
    from verification.sampling import kernel_constraints
    p = AttentionProblem(1, 1, 1, 512, 512, 64, dtype="fp32")
    s = Schedule("flash2", "fwd", block_m=bm, block_n=bn, num_warps=warps, num_stages=2)
    why = kernel_constraints(p, s)
    assert (why == "tile too large for the warps") is bad, f"{bm}x{bn}, {warps} warp(s): {why!r}"


def test_measure_set_only_refuses_a_pattern_that_matches_nothing(tmp_path):
    from verification import randomsets as RS
    with pytest.raises(ValueError, match="matches none of set"):
        RS.measure_set(4, 7, label="T", data_dir=str(tmp_path / "{set}"), only=["no_such_case*"], check_gpu=False)


def test_a_drawn_backward_can_run_its_forward():
    """Measuring a backward runs the forward with the same schedule: it must fit shared memory too (set C's
    case 014, flash2 bwd d=256 16x128 3 stages, could not be measured before this rule)."""
    import dataclasses
    from memsim.hardware import load_hardware
    from memsim.schedule import check_fits
    from verification.sampling import draw
    hw = load_hardware("h100-sxm")
    rs = draw(16, 112526, hardware="h100-sxm")
    bwd = [c for c in rs.cases if c.schedule.phase == "bwd"]
    assert bwd, "the draw has backward cases"
    for c in bwd:
        check_fits(c.problem, dataclasses.replace(c.schedule, phase="fwd"), hw.smem_per_block_bytes, hw.name)
    assert "r112526_014_flash2_bwd_fp16_d256_q384_k384_bh1" not in [c.name for c in rs.cases]
