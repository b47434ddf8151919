"""The grain: cost estimate before simulating, the auto choice, CTA batches and folded heads (memsim.grain).

Grains agree where they overlap: global bytes, FLOPs, exps and L2 writes exactly at every grain; where the
L2 holds the working set (no thrashing) DRAM reads exactly and DRAM writes, L2 reads and time within
AGREE_REL (memsim/MODEL.md "Grain" gives the measured agreement).  The agreement tests run the model with
the preset's datasheet figures (a preset name with no calibration file): they test the grain machinery;
how the calibrated mechanisms (L2 request merging in a time window, the write-back curve) depend on the
grain is measured by benchmarks/sim_speed.py and reported in MODEL.md."""
import functools
import glob
import json
from pathlib import Path

import pytest

from memsim import grain as G
from memsim.engine import CtaBatches
from memsim.hardware import load_hardware
from memsim.schedule import AttentionProblem, Schedule, kernel_launches
from memsim.sim import simulate
from memsim.workloads import build_launches

ROOT = Path(__file__).resolve().parents[1]

HW = load_hardware("h100-sxm")
#: the H100 preset without its calibration file (memsim.calibration falls back to the datasheet figures)
DATASHEET = HW.with_overrides(name="h100-sxm-datasheet")
#: a small GPU with the H100's L2: CTA batches and folds keep >= 8 events per slot on test-sized problems
SMALL = DATASHEET.with_overrides(num_sms=8)
#: agreement asked of the grains where the L2 does not thrash: the model's own goal on time (issue 8: 5 %
#: median), below the card's run-to-run spread of L2 reads (11 %)
AGREE_REL = 0.05
#: floors of the relative difference, as issue 8's error metric: |a - b| / max(b, 1 MB or 5 us); DRAM writes
#: are compared as the fraction of the written bytes that reach DRAM (what the L2 write-back decides)
FLOOR = {"dram_read_bytes": 1 << 20, "l2_read_bytes": 1 << 20, "gpu_time_s": 5e-6}


def _close(r, ref, key):
    a, b = r.total[key], ref.total[key]
    if key == "dram_write_bytes":
        w = ref.total["l2_write_bytes"]
        return abs(a - b) <= AGREE_REL * w, f"{key}: {a} vs {b} (tile grain) of {w} written"
    return abs(a - b) <= AGREE_REL * max(b, FLOOR[key]), f"{key}: {a} vs {b} (tile grain)"

ALG_PHASES = [("naive", "fwd"), ("naive", "bwd"), ("flash1", "fwd"), ("flash2", "fwd"), ("flash2", "bwd")]
PROBLEMS = {
    "mha": AttentionProblem(2, 8, 8, 2048, 2048, 64),
    "gqa-causal-odd": AttentionProblem(4, 8, 4, 1000, 1100, 64, causal=True, causal_align="bottom_right"),
}


@pytest.mark.parametrize("alg, phase", ALG_PHASES, ids=[f"{a}-{p}" for a, p in ALG_PHASES])
@pytest.mark.parametrize("pname", list(PROBLEMS))
@pytest.mark.parametrize("R", [1, 3, 16, 10 ** 6])
def test_estimate_counts_what_is_built(alg, phase, pname, R):
    """launch_loops (closed form, nothing built) gives each launch's CTAs, tiles and steps exactly."""
    p, s = PROBLEMS[pname], Schedule(alg, phase, block_m=64, block_n=64)
    R = min(R, max(p.seq_q, p.seq_kv) // 64 + 1)
    loops = {L.name: L for L in G.launch_loops(p, s, R)}
    for w in build_launches(p, s, R):
        L = loops[w.name]
        steps = [w.cta_steps(i) for i in range(w.num_ctas)]
        n_steps = sum(len(x) for x in steps)
        n_tiles = sum(st[4] for x in steps for st in x)
        assert (L.num_ctas, L.steps * L.num_ctas, L.tiles * L.num_ctas) == pytest.approx(
            (w.num_ctas, n_steps, n_tiles)), w.name


def _levels(r):
    return {k: r.total[k] for k in ("global_read_bytes", "global_write_bytes", "l2_write_bytes", "flops",
                                    "exp_count", "dram_read_bytes")}


KNOBS = [dict(grain="run"), dict(grain="cta"), dict(grain="tile", ctas_per_event=2),
         dict(grain="cta", ctas_per_event=4), dict(grain="tile", heads_per_event=2),
         dict(grain="cta", heads_per_event=2, ctas_per_event=2)]


#: measured misses of the agreement (model of commit 9b2994c, 2026-11-25), kept visible rather than hidden by a
#: looser tolerance: unequal causal CTAs dispatched two at a time, and a 0.66 MB write-back the coarse grain
#: does not trigger (5.2 % of the 12.7 MB written)
KNOWN_MISSES = {
    "gtile-c2-gqa-causal-odd-flash2-fwd": "time +6.8 %: causal CTAs of unequal length batched in pairs",
    "gcta-h2-c2-mha-flash2-bwd": "DRAM writes 0 vs 0.66 MB of 12.7 MB written (the 22.3 MB dirty cap is "
                                 "reached at tile grain only)",
}


@functools.lru_cache(maxsize=None)
def _reference(pname, alg, phase, grain):
    """The unbatched, unfolded run on SMALL that every knob (every fold) of one problem and schedule is compared
    with: simulated once per module run, not once per knob (the same call with the same arguments each time)."""
    return simulate(PROBLEMS[pname], Schedule(alg, phase), SMALL, grain=grain, ctas_per_event=1, heads_per_event=1)


def _allowed(p, s, kw):
    """Only what auto could choose: >= MIN_EVENTS_PER_SLOT events per slot (flash1 has one CTA per head)."""
    f, k = kw.get("heads_per_event", 1), kw.get("ctas_per_event", 1)
    slots = max(1, round(SMALL.num_sms / f)) * 2
    return all(L.num_ctas // f // k >= G.MIN_EVENTS_PER_SLOT * slots or k == 1
               for L in kernel_launches(p, s))


@pytest.mark.parametrize("alg, phase", ALG_PHASES, ids=[f"{a}-{p}" for a, p in ALG_PHASES])
@pytest.mark.parametrize("pname", list(PROBLEMS))
@pytest.mark.parametrize("kw", KNOBS, ids=lambda kw: "-".join(f"{k[0]}{v}" for k, v in kw.items()))
def test_grains_agree_without_thrashing(alg, phase, pname, kw, request):
    p, s = PROBLEMS[pname], Schedule(alg, phase)
    if not _allowed(p, s, kw):
        pytest.skip("auto never batches below MIN_EVENTS_PER_SLOT events per slot")
    known = KNOWN_MISSES.get(request.node.callspec.id)
    if known:
        request.applymarker(pytest.mark.xfail(reason=known, strict=False))
    ref = _reference(pname, alg, phase, "tile")
    r = simulate(p, s, SMALL, **kw)
    # exact: global bytes, FLOPs, exps, L2 writes, compulsory DRAM reads -- up to 10 ppm, the rounding of
    # sector traffic per access (memsim.sectors: misaligned S/P rows of odd seq_kv), which runs round apart
    assert _levels(r) == pytest.approx(_levels(ref), rel=1e-5, abs=0)
    for key in ("dram_write_bytes", "l2_read_bytes", "gpu_time_s"):
        ok, why = _close(r, ref, key)
        assert ok, why
    assert [k["num_ctas"] for k in r.kernels] == [k["num_ctas"] for k in ref.kernels]
    assert r.sim_steps < ref.sim_steps


@pytest.mark.parametrize("alg, phase", ALG_PHASES, ids=[f"{a}-{p}" for a, p in ALG_PHASES])
@pytest.mark.parametrize("causal", [False, True])
def test_folded_heads_agree_on_h100(alg, phase, causal, request):
    """Four heads per event on the H100 (a folded GPU of 33 SMs, each four wide): the agreement holds.
    (Larger folds cost time agreement as the folded GPU shrinks: MODEL.md "Grain" has the figures.)"""
    if causal and (alg, phase) == ("flash2", "fwd"):
        request.applymarker(pytest.mark.xfail(reason="time -5.9 % (measured): causal CTAs of 4 heads move as "
                                                     "one", strict=False))
    p, s = AttentionProblem(1, 64, 64, 2048, 2048, 64, causal=causal), Schedule(alg, phase)
    ref = simulate(p, s, DATASHEET, grain="tile", ctas_per_event=1, heads_per_event=1)
    r = simulate(p, s, DATASHEET, grain="tile", ctas_per_event=1, heads_per_event=4)
    exact = ("global_read_bytes", "global_write_bytes", "l2_write_bytes", "flops", "exp_count")
    assert {k: r.total[k] for k in exact} == {k: ref.total[k] for k in exact}
    # 64 heads of S/P (naive) or K/V re-reads across 16 heads in flight: the L2 is not quite idle here
    for key in ("dram_read_bytes", "dram_write_bytes", "l2_read_bytes", "gpu_time_s"):
        ok, why = _close(r, ref, key)
        assert ok, why


@pytest.mark.parametrize("f", [3, 5, 7])
@pytest.mark.parametrize("alg, phase", ALG_PHASES, ids=[f"{a}-{p}" for a, p in ALG_PHASES])
def test_fold_that_does_not_divide_the_heads(alg, phase, f):
    """B*Hkv = 16 kv heads folded by 3, 5, 7: the last folded head stands for the rest, bytes stay exact."""
    p, s = PROBLEMS["gqa-causal-odd"], Schedule(alg, phase)
    ref = _reference("gqa-causal-odd", alg, phase, "cta")
    r = simulate(p, s, SMALL, grain="cta", ctas_per_event=1, heads_per_event=f)
    assert _levels(r) == _levels(ref)
    assert [k["num_ctas"] for k in r.kernels] == [k["num_ctas"] for k in ref.kernels]


@functools.lru_cache(maxsize=None)
def _thrashing_tile_run(p, s, l2_bytes):
    """The tile-grain run both coarse knobs below are compared with (once per L2 size and schedule)."""
    return simulate(p, s, SMALL.with_overrides(l2_bytes=l2_bytes), grain="tile")


@pytest.mark.parametrize("l2_bytes", [1 << 20, 4 << 20])
@pytest.mark.parametrize("kw", [dict(grain="cta", ctas_per_event=4), dict(grain="tile", heads_per_event=8)],
                         ids=["batch4", "fold8"])
def test_global_bytes_exact_when_l2_thrashes(l2_bytes, kw):
    """Under thrashing DRAM bytes depend on the grain (MODEL.md says how much); global bytes never do."""
    p = AttentionProblem(1, 16, 16, 2048, 2048, 64)
    for s in (Schedule("flash2", grid_order="heads_fastest"), Schedule("naive")):
        hw = SMALL.with_overrides(l2_bytes=l2_bytes)
        a, b = _thrashing_tile_run(p, s, l2_bytes), simulate(p, s, hw, **kw)
        for key in ("global_read_bytes", "global_write_bytes", "flops", "exp_count"):
            assert a.total[key] == b.total[key], key


def test_cta_batches_merge_keys_and_multiplicity():
    """Two CTAs reading the same block: one access with the block's bytes (the DRAM miss) and one with the
    second CTA's bytes (an L2 hit); distinct keys stay distinct; FLOPs and tiles add."""
    class Work:
        name, num_warps, dependent_loop, cta_l1_bytes, num_ctas, launch = "w", 4, False, None, 3, None

        @staticmethod
        def cta_steps(i):
            return [[[(("K", 0, 0), 0b1, 100, 100, -1, 100), (("Q", 0, 0), 1 << i, 50, 50, -1, 50)],
                     [], 10, 1, 1]]
    b = CtaBatches(Work, ctas_per_event=2, heads_per_event=3, head_scale=lambda i: 3)
    assert b.num_ctas == 2 and b.true_num_ctas == 9 and b.ctas_in(0) == 6 and b.ctas_in(1) == 3
    (reads, writes, flops, exps, tiles), = b.cta_steps(0)
    assert reads == [(("K", 0, 0), 1, 300, 300, -1, 300), (("K", 0, 0), 1, 300, 300, -1, 300),
                     (("Q", 0, 0), 0b11, 300, 150, -1, 150)]
    assert (writes, flops, exps, tiles) == ([], 60, 6, 6)


def test_auto_keeps_todays_rule_when_cheap():
    p = AttentionProblem(1, 4, 4, 1024, 1024, 64)
    for s in (Schedule("flash2"), Schedule("naive", "bwd")):
        r = simulate(p, s, HW)
        assert (r.grain, r.run_blocks, r.heads_per_event) == ("tile", 1, 1)
        assert set(r.ctas_per_event.values()) == {1} and r.grain_plan["reason"] == "today's rule"


ISSUE_CASES = {
    "flash2-N1M-H1024": (AttentionProblem(1, 1024, 1024, 1 << 20, 1 << 20, 64), Schedule("flash2")),
    "naive-N32768-B4H16": (AttentionProblem(4, 16, 16, 32768, 32768, 64), Schedule("naive")),
    "naive-N8192-B4H16": (AttentionProblem(4, 16, 16, 8192, 8192, 64), Schedule("naive")),
    "flash2-bwd-N32768-BH1024-d128": (AttentionProblem(1, 1024, 1024, 32768, 32768, 128), Schedule("flash2", "bwd")),
    "flash1-N32768-BH1024": (AttentionProblem(1, 1024, 1024, 32768, 32768, 64), Schedule("flash1")),
}


@pytest.mark.parametrize("name", list(ISSUE_CASES))
def test_auto_plans_big_problems_within_budget(name):
    """The estimate of auto's plan for the issue's big problems (today's rule: minutes to a day) stays under the
    limit issue 11 sets (benchmarks/sim_speed.py measures the real seconds).  Runs no longer than a quarter of the
    L2 (MAX_STEP_L2_SHARE) cost flash2 N=1M H=1024 7.2 s of estimate where whole walks a step took under 4."""
    p, s = ISSUE_CASES[name]
    g = "auto" if s.algorithm == "flash1" else "run"  # today's rule: runs of 16 (flash1: a quarter loop)
    today = G.plan_grain(p, s, HW, g, None, 1, 1, ctas_per_sm=2, refuse=False)
    plan = G.estimate(p, s, HW)
    assert today.estimated_s > 10 * G.AUTO_BUDGET_S
    assert plan.estimated_s <= G.SLOW_LIMIT_S, plan.describe()
    assert plan.reason.startswith("coarsened")


def test_absurd_is_refused_with_the_estimate():
    p = AttentionProblem(1, 1, 1, 1 << 20, 1 << 20, 64)
    with pytest.raises(G.SimulationTooLarge) as e:
        simulate(p, Schedule("naive", block_m=16, block_n=16), HW)
    msg = str(e.value)
    assert "\n" not in msg and "events" in msg and "refusing" in msg
    assert isinstance(e.value, ValueError)
    with pytest.raises(G.SimulationTooLarge) as e:  # asked for a grain that fine: says what auto would do
        G.estimate(AttentionProblem(1, 1024, 1024, 1 << 20, 1 << 20, 64), Schedule("flash2"), HW, grain="tile")
    assert "grain='auto'" in str(e.value) and "\n" not in str(e.value)


def test_more_sms_than_ctas_is_quick_and_changes_nothing():
    p = AttentionProblem(1, 4, 4, 1024, 1024, 64)
    s = Schedule("flash2")
    n = kernel_launches(p, s)[0].num_ctas
    # (datasheet figures: a calibration file's per-SM rates are the card's rates over its own SM count)
    a = simulate(p, s, DATASHEET.with_overrides(num_sms=10 ** 8))
    b = simulate(p, s, DATASHEET.with_overrides(num_sms=n))
    assert a.total == b.total


def test_progress_callback():
    calls = []
    p = AttentionProblem(1, 4, 4, 1024, 1024, 64)
    simulate(p, Schedule("flash2", "bwd"), HW, progress=lambda d, t: calls.append((d, t)), progress_after_s=0)
    total = sum(L.num_ctas for L in kernel_launches(p, Schedule("flash2", "bwd")))
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    calls.clear()
    simulate(p, Schedule("flash2"), HW, progress=lambda d, t: calls.append((d, t)))  # estimated < 2 s: quiet
    assert calls == []


@pytest.mark.parametrize("kw, word", [(dict(ctas_per_event=0), "ctas_per_event"),
                                      (dict(heads_per_event=5), "heads_per_event"),
                                      (dict(heads_per_event=True), "heads_per_event"),
                                      (dict(ctas_per_event=1.5), "ctas_per_event")])
def test_bad_knobs_are_one_line_errors(kw, word):
    with pytest.raises(ValueError) as e:
        simulate(AttentionProblem(1, 4, 4, 256, 256, 64), Schedule(), HW, **kw)
    assert word in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("order, expect", [("q_fastest", 1), ("heads_fastest", 16)])
def test_heads_in_flight(order, expect):
    p = AttentionProblem(1, 16, 16, 8192, 8192, 64)  # 64 Q blocks per head, 16 slots
    L = kernel_launches(p, Schedule("flash2", grid_order=order))[0]
    assert G.heads_in_flight(L, 16) == expect
    assert G.fold_l2_scale(L, 16, 8) == max(1.0, 8 / expect)


@pytest.mark.parametrize("use_tqdm", [False, None])
def test_stderr_progress_draws_a_bar_or_a_line(use_tqdm, capsys):
    from memsim.grain import stderr_progress
    if use_tqdm is None:
        pytest.importorskip("tqdm")
    cb = stderr_progress("t", use_tqdm=use_tqdm)
    for d in (0, 50, 100):
        cb(d, 100)
    err = capsys.readouterr().err
    assert "100/100" in err and "t: simulated" in err, err


#: LaunchCost fields that are SM time (shared by the f heads an event stands for) and those that are latency
_SM_TIME = ("sec_per_flop", "sec_per_exp", "issue_s_per_tile", "issue_s_per_tile_dram", "local_s_per_tile",
            "cta_fixed_s", "tile_fixed_s", "issue_s_per_tile_noload")
_LATENCY = ("cta_start_s",)


@pytest.mark.parametrize("f", [2, 4, 7])
def test_fold_scales_every_sm_time_field(f):
    """A folded event stands for f CTAs side by side on f SMs: every per-SM time of its launch cost is scaled
    by c / f (set A's 1-warp naive softmax was 4.9x too slow when the DRAM-latency issue time was not)."""
    from dataclasses import fields

    from memsim.costs import LaunchCost
    from memsim.grain import fold_model
    from memsim.hardware import load_hardware
    hw = load_hardware("h100-sxm")
    names = {x.name for x in fields(LaunchCost)}
    missing = [n for n in _SM_TIME + _LATENCY if n not in names]
    assert not missing, f"LaunchCost lost {missing}: update this test's field lists"
    unclassified = sorted(n for n in names if (n.endswith("_s") or "_s_per" in n or n.startswith("sec_per"))
                          and n not in _SM_TIME + _LATENCY)
    assert not unclassified, f"new time fields {unclassified}: say whether a fold scales them (grain.fold_model)"
    cost = LaunchCost(name="x", num_warps=4, regs_per_thread=64, ctas_per_sm=2, occupancy_limit="warps",
                      sec_per_flop=1.0, sec_per_exp=2.0, issue_s_per_tile=3.0, spill_l2_write_bytes_per_tile=0,
                      spill_l2_read_bytes_per_tile=0, spill_dram_write_fraction=0.0, spill_dram_read_fraction=0.0,
                      facts_source="test", local_s_per_tile=4.0, cta_fixed_s=5.0, cta_start_s=6.0,
                      issue_s_per_tile_dram=7.0, tile_fixed_s=8.0, issue_s_per_tile_noload=9.0)
    hw2, folded, _ = fold_model(hw, cost, f)
    c = hw2.num_sms * f / hw.num_sms
    bad = [(n, getattr(cost, n), getattr(folded, n)) for n in _SM_TIME
           if getattr(folded, n) != pytest.approx(getattr(cost, n) * c / f)]
    bad += [(n, getattr(cost, n), getattr(folded, n)) for n in _LATENCY if getattr(folded, n) != getattr(cost, n)]
    assert not bad, f"fold by {f} (c={c:.3f}): (field, before, after) {bad}"


# --- batching a head-fastest grid (memsim.grain.batch_keeps_reuse) ---------------------------------------------
def _launch(axes, grid):
    from memsim.schedule import Launch
    pad = 3 - len(grid)
    return Launch("x", tuple(grid) + (1,) * pad, tuple(axes) + ("one",) * pad)


@pytest.mark.parametrize("axes, grid, k, f, slots, keeps", [
    (("q_block", "bh"), (1008, 661), 64, 1, 1716, True),   # a head's CTAs adjacent: batching keeps them so
    (("bh", "q_block"), (661, 1008), 64, 20, 91, False),   # X 000: a head's CTAs 0.36-0.39 of a slot round apart
    (("bh", "q_block"), (661, 1008), 1, 20, 91, True),
    (("bh", "q_block"), (40, 1008), 8, 1, 1716, True),     # 40 heads of 1716 slots: side by side (0.023)
    (("bh", "q_block"), (8000, 64), 4, 1, 1716, True),     # 4.7 slot rounds apart even batched by 4
    (("bh", "q_block"), (8000, 64), 8, 1, 1716, False),
    (("bh",), (661,), 64, 1, 1716, True),                  # one CTA per head
])
def test_a_batch_keeps_when_a_heads_ctas_reread_its_lines(axes, grid, k, f, slots, keeps):
    from memsim.grain import batch_keeps_reuse
    L = _launch(axes, grid)
    assert batch_keeps_reuse(L, k, f, slots) is keeps


def test_auto_grain_keeps_a_thrashing_head_fastest_launch_at_its_dram_reads():
    """Held-out X 000 (hopper fwd, 661 heads fastest x 1008 Q blocks of 16 rows, K/V 81 MB in flight): the card read
    75.4 GB from DRAM (ncu, H100 80GB HBM3, 2026-11-27); auto batched 64 CTAs (20 heads folded) and predicted 14.7 GB
    -- now it does not batch there and the model's DRAM reads are those of unbatched CTAs."""
    import memsim
    from memsim.schedule import problem_from_dict, schedule_from_dict
    (f,) = glob.glob(str(ROOT / "verification/data/nvidia-h100-80gb-hbm3/random/X-*/r26112705_000_*.json"))
    r = json.loads(Path(f).read_text())
    p, s = problem_from_dict(r["problem"]), schedule_from_dict(r["schedule"])
    hw = memsim.load_hardware("h100-sxm")
    res = memsim.simulate(p, s, hw)
    assert res.to_dict()["ctas_per_event"]["hopper_fwd"] == 1, res.to_dict()["ctas_per_event"]
    got = res.kernels[0]["dram_read_bytes"]
    want = next(k["dram_read_bytes"] for k in r["kernels"] if k["name"] == "hopper_fwd")
    assert got > 0.5 * want, (got, want)  # the batched plan: 0.19 x the card's
    # the same launch four heads to an event, unbatched (33 SMs: the accurate fold; 19 s): within the grain's 5 %
    fine = simulate(p, s, hw, grain="cta", ctas_per_event=1, heads_per_event=4, max_seconds=None).kernels[0]
    assert abs(got / fine["dram_read_bytes"] - 1) < 0.05, (got, fine["dram_read_bytes"])


@pytest.mark.parametrize("algorithm", ["hopper_ws", "hopper", "flash2"])
def test_a_one_stage_loop_waits_each_tiles_round_trip_at_run_grain(algorithm):
    """A one-stage loop loads tile j+1 only after tile j's compute: at tile grain each step waits a round trip; a
    run of 16 tiles waited one for all 16 and ran 2-3x faster than the tile grain (110 / 77 / 70 us against 317 /
    155 / 149 before 2026-11-27; held-out X 005, a one-stage hopper_ws forward at run grain, -34 %)."""
    p = AttentionProblem(batch=1, heads_q=8, heads_kv=8, seq_q=2048, seq_kv=2048, head_dim=128, dtype="bf16",
                         causal=False)
    s = Schedule(algorithm=algorithm, phase="fwd", block_m=64, block_n=16, num_warps=4, num_stages=1,
                 grid_order="heads_fastest")
    hw = load_hardware("h100-sxm")
    run = simulate(p, s, hw, grain="run", run_blocks=16).kernels[0]["time_s"]
    tile = simulate(p, s, hw, grain="tile").kernels[0]["time_s"]
    assert 0.9 < run / tile < 1.1, (run, tile)


# --- the hopper launches' loops, the run-length cap, folds of a head-fastest grid (seventeenth-session item 1) ----
HOPPER_PHASES = [("hopper", "bwd"), ("hopper_ws", "bwd"), ("hopper_fa3", "bwd")]


@pytest.mark.parametrize("alg, phase", HOPPER_PHASES, ids=[f"{a}-{p}" for a, p in HOPPER_PHASES])
@pytest.mark.parametrize("pname", list(PROBLEMS))
@pytest.mark.parametrize("R", [1, 16])
def test_estimate_counts_what_hopper_backwards_build(alg, phase, pname, R):
    """The hopper backward launches (dK/dV walks, loopless preprocess and conversion) are counted as built, not
    as the longest loop (that bound over-estimated Z 011's cost 6x and coarsened it to one step a CTA)."""
    p, s = PROBLEMS[pname], Schedule(alg, phase, block_m=64, block_n=64, num_warps=4)
    loops = {L.name: L for L in G.launch_loops(p, s, R)}
    for w in build_launches(p, s, R):
        L = loops[w.name]
        if not w.name.startswith("hopper_") or (w.name == "hopper_bwd_dkdvdq" and alg == "hopper_fa3"):
            continue  # flash2's launches: above; hopper_fa3's pass: the longest-loop bound (split steps, persistent)
        steps = [w.cta_steps(i) for i in range(w.num_ctas)]
        n_steps = sum(len(x) for x in steps)
        n_tiles = sum(st[4] for x in steps for st in x)
        assert (L.num_ctas, L.steps * L.num_ctas, max(1, L.tiles) * L.num_ctas) == pytest.approx(
            (w.num_ctas, n_steps, max(n_tiles, w.num_ctas))), w.name


def _record(glob_part):
    from memsim.schedule import problem_from_dict, schedule_from_dict
    (f,) = glob.glob(str(ROOT / f"verification/data/nvidia-h100-80gb-hbm3/random/*/{glob_part}_*.json"))
    r = json.loads(Path(f).read_text())
    return r, problem_from_dict(r["problem"]), schedule_from_dict(r["schedule"])


def test_step_l2_share_counts_one_step_per_head_in_flight():
    """Z 011's dK/dV/dQ pass: 45 heads in flight, ~8.5 KB of Q, dO, lse, delta and dQacc adds a trip: a step of 32
    tiles brings in ~0.24 of the 50 MB L2, 64 tiles ~0.49 (where the step plan's DRAM reads double)."""
    r, p, s = _record("r26112707_011")
    from memsim.analytic import launch_counts
    kl = {L.name: L for L in kernel_launches(p, s)}
    (L,) = [x for x in G.launch_loops(p, s, 1) if x.name == "hopper_bwd_dkdvdq"]
    share = lambda R: G.step_l2_share(L, kl[L.name], launch_counts(p, s)[L.name], R, 1320, HW.l2_bytes)  # noqa: E731
    assert 0.2 < share(32) <= G.MAX_STEP_L2_SHARE < share(64) < 0.55, (share(32), share(64))
    assert share(10 ** 6) == pytest.approx(share(L.tiles))  # no step longer than the walk


def test_auto_grain_does_not_lengthen_runs_past_the_l2_share():
    """Held-out Z 011 (hopper bwd, 45 heads fastest, causal 7189 x 7189, 32 x 16 tiles): auto took one step a CTA
    walk with all 45 heads folded and predicted 4042 MB of DRAM reads / 7780 MB of writes for its dK/dV/dQ pass
    against ncu's 788 / 396 (H100 80GB HBM3, 2026-11-27); tile grain gives 321 / 306.  Now: runs of at most 32
    tiles, a fold that keeps the head's CTAs on the SMs the card gives them, within 5 % of the tile grain's DRAM."""
    r, p, s = _record("r26112707_011")
    plan = G.estimate(p, s, HW)
    assert plan.run_blocks <= 32 and 132 % plan.heads_per_event == 0, plan.describe()
    assert all(k == 1 for k in plan.ctas_per_event.values()), plan.describe()
    got = {k["name"]: k for k in simulate(p, s, HW).kernels}["hopper_bwd_dkdvdq"]
    assert abs(got["dram_read_bytes"] / 321e6 - 1) < 0.05, got["dram_read_bytes"]
    assert got["dram_write_bytes"] < 2 * 396e6, got["dram_write_bytes"]


@pytest.mark.parametrize("axes, grid, f, keeps", [
    (("bh_kv", "kv_block"), (45, 450), 3, True),     # 3 divides 132 and 45: co-resident CTAs as on the card
    (("bh_kv", "kv_block"), (45, 450), 45, False),   # 3 model SMs for 135 real: a head's CTAs share one SM
    (("bh_kv", "kv_block"), (45, 450), 9, False),    # 15 x 9 = 135
    (("bh_kv", "kv_block"), (44, 450), 4, True),
    (("bh_kv", "kv_block"), (45, 450), 2, False),    # 2 does not divide the 45 heads: a short last head
    (("bh_kv", "kv_block"), (44, 450), 11, True),    # 12 x 11 = 132, 11 divides 44
    (("bh_kv", "kv_block"), (41, 72), 2, False),     # AA 000: 41 heads, no fold keeps its waves
    (("bh_kv", "kv_block"), (169, 450), 5, False),   # 26 x 5 = 130
    (("kv_block", "bh_kv"), (450, 45), 45, True),    # a head's CTAs adjacent: any fold
    (("bh",), (661,), 7, True),                      # one CTA per head
])
def test_a_fold_keeps_a_heads_ctas_on_their_sms(axes, grid, f, keeps):
    assert G.fold_keeps_reuse(_launch(axes, grid), f, 132) is keeps


@pytest.mark.parametrize("f", [3, 9, 45])
def test_a_head_fastest_fold_merges_l2_requests_as_its_real_sms_do(f):
    """The L2 request merge groups of a folded head-fastest launch count real SMs (a model SM stands for f of them):
    Z 011's pass at runs of 32 and f = 3 (44 x 3 = 132) reads the L2 within 3 % of unfolded (7924 MB; at runs of 16
    before the change 5289 against 7483), and a fold the planner refuses (9, 45) still reads 22-75 % less -- their
    co-resident events are the same head."""
    r, p, s = _record("r26112707_011")
    ref = 7924e6  # run 32, f 1 (8 s of CPU: not rerun here)
    got = {k["name"]: k for k in simulate(p, s, HW, grain="run", run_blocks=32, heads_per_event=f,
                                          ctas_per_event=1, max_seconds=None).kernels}["hopper_bwd_dkdvdq"]
    if f == 3:
        assert abs(got["l2_read_bytes"] / ref - 1) < 0.03, got["l2_read_bytes"]
    else:
        assert got["l2_read_bytes"] < 0.85 * ref, got["l2_read_bytes"]



def test_a_fold_that_leaves_a_short_head_breaks_a_thrashing_walks_waves():
    """Held-out AA 000's shape with one q head (41 heads fastest, a 15117-row dK/dV walk that outgrows the L2): the
    last folded head of a fold that does not divide the heads stands for fewer, its events end early and shift every
    later CTA of their slots, and the waves in which a head's CTAs share its lines break -- DRAM reads 1988 MB
    unfolded, 3189 at f 2; with 40 heads every fold agrees.  auto does not fold such a launch (`fold_keeps_reuse`)."""
    s = Schedule("flash2", "bwd", block_m=64, block_n=32, num_warps=8, num_stages=4, grid_order="heads_fastest")

    def dram(p, f):
        r = simulate(p, s, HW, grain="run", run_blocks=16, heads_per_event=f, ctas_per_event=1, max_seconds=None)
        return {k["name"]: k for k in r.kernels}["flash2_bwd_dkdv"]["dram_read_bytes"]

    odd, even = (AttentionProblem(b, 1, 1, 15117, 2304, 64, dtype="bf16") for b in (41, 40))
    assert dram(odd, 2) > 1.3 * dram(odd, 1)
    assert abs(dram(even, 2) / dram(even, 1) - 1) < 0.01 and abs(dram(even, 4) / dram(even, 1) - 1) < 0.01
    assert G.estimate(odd, s, HW).heads_per_event == 1
