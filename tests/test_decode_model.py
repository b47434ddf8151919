"""The decode vocabulary and model: the simulated bytes equal the closed-form contract, the mechanisms move
time the way they claim, the split rule and the SimPy ranking agree, and bad problems get clear errors."""
from dataclasses import replace
from pathlib import Path

import pytest

from memsim.analytic_decode import decode_compulsory_dram_bytes, decode_launch_counts, table_entries
from memsim.hardware import load_hardware
from memsim.inference import (DecodeProblem, DecodeSchedule, DeviceFacts, ScheduleError, auto_num_splits,
                              candidate_splits,
                              decode_launches, decode_problem_from_dict, decode_schedule_from_dict,
                              estimate_time_s, split_ranges)
from memsim.workloads_decode import choose_num_splits, rank_num_splits, simulate_decode

H100 = load_hardware("h100-sxm")

PROBLEMS = {
    "uniform_8k": DecodeProblem.uniform(2, 32, 8, 128, 8192),
    "ragged_empty": DecodeProblem(8, 2, 64, (1, 1, 1, 1), (0, 1, 203, 4096)),
    "spec_q3": DecodeProblem(4, 4, 32, (3, 3), (2, 500)),
    "paged16": DecodeProblem(32, 8, 128, (1, 1, 1), (1000, 17, 64), page_size=16),
    "paged64": DecodeProblem(32, 8, 128, (1, 1), (4000, 63), page_size=64),
    "paged7": DecodeProblem(8, 8, 64, (1, 1), (100, 13), page_size=7),
}
SCHEDULES = [DecodeSchedule(num_splits=1), DecodeSchedule(num_splits=5, block_n=32),
             DecodeSchedule(num_splits=16, pack_gqa=False), DecodeSchedule(num_splits=3, block_n=16, page_prefetch=True)]


@pytest.mark.parametrize("si", range(len(SCHEDULES)))
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_simulated_global_bytes_equal_the_closed_form(name, si):
    p, s = PROBLEMS[name], SCHEDULES[si]
    r = simulate_decode(p, s, H100)
    cf = decode_launch_counts(p, s)
    assert [k["name"] for k in r["kernels"]] == [L.name for L in decode_launches(p, s)] == list(cf)
    for k in r["kernels"]:
        for key in ("global_read_bytes", "global_write_bytes"):
            assert k[key] == cf[k["name"]][key], (k["name"], key, k[key], cf[k["name"]][key])
    # every cached key is read once per unit (KV head packed, query head not): never less than compulsory
    comp = sum(v[0] for v in decode_compulsory_dram_bytes(p, s).values())
    assert r["total"]["dram_read_bytes"] >= comp * 0.999


def test_table_entries_count_tiles_and_pages():
    # 100 keys, tiles of 16, pages of 7: per tile the distinct pages it touches
    manual = sum((min(t + 16, 100) - 1) // 7 - t // 7 + 1 for t in range(0, 100, 16))
    assert table_entries(100, 3, 16, 7) == manual
    assert table_entries(1000, 4, 64, 16) == 63  # whole pages: every page once (ceil(1000 / 16))
    assert table_entries(1000, 4, 64, 128) == 16  # a page holds two tiles: one entry per tile
    assert table_entries(0, 4, 64, 16) == 0


def test_gqa_packing_reads_kv_once_per_kv_head():
    p = DecodeProblem.uniform(2, 32, 8, 128, 4096)
    packed = simulate_decode(p, DecodeSchedule(num_splits=2), H100)["total"]["global_read_bytes"]
    unpacked = simulate_decode(p, DecodeSchedule(num_splits=2, pack_gqa=False), H100)["total"]["global_read_bytes"]
    assert unpacked > 3.9 * p.kv_bytes() and packed < 1.01 * p.kv_bytes()


def test_splits_fill_the_gpu_at_batch_one_and_cost_at_large_batch():
    """Occupancy against combine traffic: one sequence needs splits, 64 sequences do not."""
    small = DecodeProblem.uniform(1, 32, 8, 128, 32768)
    t = {S: simulate_decode(small, DecodeSchedule(num_splits=S), H100, flush_l2=False)["total"]["gpu_time_s"]
         for S in (1, 16)}
    assert t[16] < 0.3 * t[1]
    big = DecodeProblem.uniform(64, 32, 8, 128, 2048)
    t = {S: simulate_decode(big, DecodeSchedule(num_splits=S), H100, flush_l2=False)["total"]["gpu_time_s"]
         for S in (1, 64)}
    assert t[64] > t[1]


def test_one_buffer_loop_waits_then_computes_each_tile():
    """Paged without prefetch compiles to ONE K/V buffer: each tile's latency, then its copy + compute, serially
    (the H100 suite: 1.70 / 1.95 us per 32 KB tile at page 64 / 16, vs 0.94 us pipelined)."""
    from memsim.inference import cta_limit_Bps, pipeline_buffers
    f = _h100_facts()
    p = DecodeProblem.uniform(1, 32, 8, 128, 32768, page_size=16)
    s1, pf = DecodeSchedule(num_splits=1), DecodeSchedule(num_splits=1, page_prefetch=True)
    assert pipeline_buffers(p, s1) == 1 and pipeline_buffers(p, pf) >= 2
    one = simulate_decode(p, s1, H100)["kernels"][0]["time_s"]
    pre = simulate_decode(p, pf, H100)["kernels"][0]["time_s"]
    tiles, tile = 32768 // 64, 2 * 64 * 128 * 2
    per_tile = (one - f.launch_overhead_s) / tiles
    assert per_tile == pytest.approx(f.mem_latency_s + tile / cta_limit_Bps(p, s1, f), rel=0.05)
    assert one > pre


@pytest.mark.parametrize("page", [16, 64])
def test_prefetch_gain_matches_the_measured_suite(page):
    """Paged S=1 at 8 x 32k without / with page_prefetch, as the H100 suite measured them (run 2, ncu): the model's
    ratio within what the issue's 10 % per-case goal allows a ratio of two cases (1.1 / 0.9 - 1 = 22 %).  The
    measured ratios are 1.35 (16-token pages) and 1.53 (64); the model before the gather microbenchmark's latency
    (memsim/MODEL.md decode) said 2.1 for 16-token pages, the SASS-order loop of the second decode session 1.71
    (16: a strict xfail then).  Since the `loop` microbenchmark's measured compute per tile (the 16-row prefetching
    loop walks its table entries in the iteration that issues the tile's copies: 1.43 us per tile with the K/V
    latency hidden, vs 0.92 contiguous) the model is within the bound."""
    import json
    from pathlib import Path
    recs = {r["case"]: r for r in json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / "results" /
                                              "decode-h100-run2-ncu.json").read_text())["records"]}
    meas = (recs[f"decode_b8_n32768_paged{page}_s1"]["total"]["time_s"] /
            recs[f"decode_b8_n32768_paged{page}_prefetch_s1"]["total"]["time_s"])
    p = DecodeProblem.uniform(8, 32, 8, 128, 32768, page_size=page)
    one = simulate_decode(p, DecodeSchedule(num_splits=1), H100)["kernels"][0]["time_s"]
    pre = simulate_decode(p, DecodeSchedule(num_splits=1, page_prefetch=True), H100)["kernels"][0]["time_s"]
    assert abs((one / pre) / meas - 1) < 1.1 / 0.9 - 1


@pytest.mark.parametrize("shape", [(1, 1024), (1, 32768), (8, 8192), (64, 4096)])
def test_split_rule_close_to_the_simulated_ranking(shape):
    """The kernels' stdlib rule and memsim's SimPy ranking pick split counts within 10 % of each other's time."""
    B, N = shape
    p = DecodeProblem.uniform(B, 32, 8, 128, N)
    s = DecodeSchedule()
    c_rule, why = auto_num_splits(p, s, DeviceFacts.from_hardware(H100))
    cands = sorted({1, 2, 4, 8, 16, 32, c_rule})
    ranked = rank_num_splits(p, s, H100, candidates=cands)
    times = {c: t for c, t, _ in ranked}
    assert f"num_splits={c_rule}" in why
    assert times[c_rule] <= 1.10 * ranked[0][1], (c_rule, ranked[0][:2], times)
    if B * N <= 32768:
        # the chooser ranks candidate_splits (no more splits than tiles); compare it with the same candidates
        # (32 splits of a 16-tile cache have the same 16 non-empty CTAs as 16 splits: a near tie, 0.1 %)
        c_sim, why_sim = choose_num_splits(p, s, H100)
        own = [x for x in ranked if x[0] in set(candidate_splits(p, s))]
        assert times.get(c_sim, own[0][1]) == own[0][1] and "split CTAs" in why_sim


def test_estimate_time_has_its_terms():
    est = estimate_time_s(DecodeProblem.uniform(1, 32, 8, 128, 8192), DecodeSchedule(num_splits=4),
                          DeviceFacts.from_hardware(H100))
    assert est["ctas"] == 32 and est["combine_s"] > 0 and est["time_s"] == pytest.approx(est["split_s"] + est["combine_s"])


def test_split_ranges_cover_every_key_once():
    for L in (0, 1, 63, 64, 65, 1000, 4097):
        for S in (1, 2, 3, 7, 64):
            r = split_ranges(L, S, 64)
            assert sum(k1 - k0 for k0, k1 in r) == L and len(r) <= S
            assert all(k0 % 64 == 0 for k0, _ in r)


BAD = {
    "heads": (dict(heads_q=6, heads_kv=4, head_dim=64, seqlens_q=(1,), seqlens_kv=(3,)), "multiple of heads_kv"),
    "lengths": (dict(heads_q=4, heads_kv=4, head_dim=64, seqlens_q=(1, 1), seqlens_kv=(3,)), "one length of each"),
    "zero_q": (dict(heads_q=4, heads_kv=4, head_dim=64, seqlens_q=(0,), seqlens_kv=(3,)), "no query token"),
    "neg_kv": (dict(heads_q=4, heads_kv=4, head_dim=64, seqlens_q=(1,), seqlens_kv=(-1,)), ">= 0"),
    "capacity": (dict(heads_q=4, heads_kv=4, head_dim=64, seqlens_q=(1,), seqlens_kv=(30,), capacity_kv=16),
                 "exceeds capacity_kv"),
    "dtype": (dict(heads_q=4, heads_kv=4, head_dim=64, seqlens_q=(1,), seqlens_kv=(3,), dtype="fp8"), "not one of"),
    "page": (dict(heads_q=4, heads_kv=4, head_dim=64, seqlens_q=(1,), seqlens_kv=(3,), page_size=0), "positive"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_problems_say_what_is_wrong(name):
    kw, msg = BAD[name]
    with pytest.raises(ScheduleError, match=msg):
        DecodeProblem(**kw)


@pytest.mark.parametrize("kw,msg", [(dict(block_n=48), "power of two"), (dict(num_splits=0), "positive"),
                                    (dict(phase="bwd"), "no backward"), (dict(pack_gqa=1), "bool")])
def test_bad_schedules_say_what_is_wrong(kw, msg):
    with pytest.raises(ScheduleError, match=msg):
        DecodeSchedule(**kw)


def test_round_trip_through_dicts():
    p, s = PROBLEMS["paged16"], SCHEDULES[1]
    assert decode_problem_from_dict(p.to_dict()) == p and decode_schedule_from_dict(s.to_dict()) == s
    with pytest.raises(ScheduleError, match="unknown DecodeSchedule field"):
        decode_schedule_from_dict({"splits": 2})


def test_shared_memory_limit_is_checked():
    with pytest.raises(ScheduleError, match="shared memory"):
        simulate_decode(PROBLEMS["uniform_8k"], DecodeSchedule(block_n=512, num_stages=8), H100)


def test_auto_split_rule_is_fast_enough_for_every_call():
    import time
    p = DecodeProblem.uniform(64, 32, 8, 128, 131072)
    facts = DeviceFacts.from_hardware(H100)
    auto_num_splits(DecodeProblem.uniform(1, 32, 8, 128, 1024), DecodeSchedule(), facts)  # loads the tables once
    t = time.perf_counter()
    auto_num_splits(p, DecodeSchedule(), facts)
    # per call, once the process has loaded its tables (the first call, 2-4 s on a loaded 2-core machine, is that);
    # the bound is issue 8's "under 1 s per case on a 2-core machine" (0.25-0.33 s idle here, 0.6 s with the two
    # cores shared by four processes)
    assert time.perf_counter() - t < 1.0
    assert replace(DecodeSchedule(), num_splits=3).num_splits == 3


def test_memsim_decode_study_cli(capsys):
    from memsim.cli import main
    assert main(["decode", "--batches", "1", "--contexts", "1024", "--pages", "16"]) == 0
    out = capsys.readouterr().out
    assert "auto TB/s" in out and "paged16" in out
    assert main(["decode", "--explain", "1x1024"]) == 0
    assert "num_splits=" in capsys.readouterr().out


# --- the memory system from the dram_stream microbenchmark (no decode-run constant) ---------------------------
def _h100_facts():
    from memsim.hardware import load_hardware
    from memsim.inference import DeviceFacts
    return DeviceFacts.from_hardware(load_hardware("h100-sxm"))


def test_decode_memory_comes_from_the_microbenchmark_curve():
    f = _h100_facts()
    assert f.latency_curve and "dram_stream" in f.source
    assert not (Path(__file__).resolve().parent.parent / "memsim" / "decode_calibration.toml").exists()
    lats = [f.stream(n, 32768)[2] for n in (1, 33, 132, 264, 528)]
    bws = [f.stream(n, 32768)[0] for n in (1, 33, 132, 264, 528)]
    assert lats == sorted(lats) and lats[-1] > 2 * lats[0]  # loaded latency grows with load
    assert bws == sorted(bws) and bws[-1] <= f.dram_Bps * (1 + 1e-9)


def test_cta_limit_follows_the_compiled_loop():
    from dataclasses import replace as _r

    from memsim.inference import DecodeProblem, DecodeSchedule, cta_limit_Bps, loop_instructions
    f = _h100_facts()
    p = DecodeProblem.uniform(1, 32, 8, 128, 8192, dtype="bf16")
    s = DecodeSchedule(block_n=64, num_stages=3)
    pg = _r(p, page_size=16)
    assert loop_instructions(p, s) and loop_instructions(pg, s) > loop_instructions(p, s)
    assert cta_limit_Bps(pg, s, f) < cta_limit_Bps(p, s, f) < f.cta_max_Bps
    odd = _r(s, num_warps=2)  # not in the compiled table: the copy rate alone
    assert loop_instructions(p, odd) is None and cta_limit_Bps(p, odd, f) > cta_limit_Bps(p, s, f)


def test_split_rule_against_the_committed_h100_sweeps():
    """Issue 12's goal, on the committed run-2 sweeps (CUDA-graph times): the closed-form rule's pick is within
    5 % of the best measured split count on every shape where the pick was measured -- of the shapes whose cache does
    not fit the 50 MB L2: run 2 replayed one cache per graph, so its <= 34 MB shapes measured the L2 (session 11,
    notes/decode.md; 1 x 8k S = 32 at 4.0 TB/s).  Those shapes over DRAM: tests/test_decode_split_rule.py."""
    import json

    from memsim.inference import DecodeProblem, DecodeSchedule, auto_num_splits
    bench = json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / "results" /
                        "decode-h100-run2.json").read_text())
    shapes = {}
    for r in bench["records"]:
        if r["impl"] == "decode" and r["layout"] == "contiguous" and not r.get("auto") and r.get("ms") \
                and 2 * r["batch"] * r["context"] * 8 * 128 * 2 > 50e6:
            shapes.setdefault((r["batch"], r["context"]), {})[r["num_splits"]] = r["ms"]
    f = _h100_facts()
    checked = []
    for (b, n), meas in sorted(shapes.items()):
        c, _ = auto_num_splits(DecodeProblem.uniform(b, 32, 8, 128, n, dtype="bf16"), DecodeSchedule(), f)
        if c in meas:
            checked.append(((b, n), c, meas[c] / min(meas.values()) - 1))
    assert len(checked) >= 8
    assert [x for x in checked if x[2] > 0.05] == []


# --- random decode cases (verification.suite_decode.draw_random) ------------------------------------------
def test_random_decode_draw_is_deterministic_and_within_budgets():
    from memsim.inference import decode_sram_bytes_per_cta
    from verification import suite_decode as SD
    a, b = SD.draw_random(40, 7), SD.draw_random(40, 7)
    assert [c.name for c in a] == [c.name for c in b] and [c.problem for c in a] == [c.problem for c in b]
    assert [c.name for c in SD.draw_random(40, 8)] != [c.name for c in a]
    hw = load_hardware("h100-sxm")
    kv = [2 * c.problem.batch * c.problem.capacity_kv * c.problem.heads_kv * c.problem.head_dim
          * c.problem.element_bytes for c in a]
    assert max(kv) <= SD.RANDOM_CASE_KV_BYTES and sum(kv) <= SD.RANDOM_SET_KV_BYTES
    assert all(decode_sram_bytes_per_cta(c.problem, c.schedule) <= hw.smem_per_block_bytes for c in a)
    # the space is covered: paged and contiguous, ragged batches, unpacked GQA, several splits, head dims
    assert {c.problem.page_size for c in a} >= {None, 16, 64}
    assert any(len(set(c.problem.seqlens_kv)) > 1 for c in a) and any(not c.schedule.pack_gqa for c in a)
    assert len({c.schedule.num_splits for c in a}) >= 4 and len({c.problem.head_dim for c in a}) == 3
    assert len({c.name for c in a}) == len(a)


def test_random_decode_cases_round_trip_through_specs_and_predict():
    from verification import suite_decode as SD
    cases = SD.draw_random(4, 3)
    back = [SD.case_from_record({"case": x["name"], **x}) for x in (c.to_spec() for c in cases)]
    assert [(c.name, c.problem, c.schedule) for c in back] == [(c.name, c.problem, c.schedule) for c in cases]
    for c in cases:
        r = simulate_decode(c.problem, c.schedule, c.hardware, flush_l2=True)
        assert r["total"]["gpu_time_s"] > 0 and r["total"]["global_read_bytes"] >= c.problem.kv_bytes()


def test_random_decode_bad_count_is_refused():
    from verification import suite_decode as SD
    with pytest.raises(ValueError, match="--random must be >= 0"):
        SD.draw_random(-1, 1)


# --- fixed costs of small launches (memsim/MODEL.md, decode section) --------------------------------------------
def test_cta_dispatch_comes_from_the_launch_gpu_microbenchmark():
    from memsim.calibration import calibration_for
    f = _h100_facts()
    assert f.cta_dispatch_s == calibration_for(H100).cta_dispatch_s
    assert 0.3e-9 < f.cta_dispatch_s < 1.0e-9  # H100: 0.6 ns per CTA (empty kernels of 1k-68k CTAs)
    # a what-if preset without a calibration file starts every CTA at once
    assert DeviceFacts.from_hardware(load_hardware("a100-80gb")).cta_dispatch_s == 0.0


@pytest.mark.parametrize("page, prefetch, launch, want", [
    (None, False, "decode_split", 1), (16, False, "decode_split", 2), (16, True, "decode_split", 2),
    (64, True, "decode_combine", 1), (None, False, "decode_combine", 1)])
def test_dependent_loads_before_stream_follow_the_kernel_code(page, prefetch, launch, want):
    from memsim.inference import dependent_loads_before_stream
    p = DecodeProblem.uniform(2, 32, 8, 128, 1000, page_size=page)
    assert dependent_loads_before_stream(p, DecodeSchedule(page_prefetch=prefetch), launch) == want


def test_dependent_loads_bad_launch_name_is_refused():
    from memsim.inference import dependent_loads_before_stream
    with pytest.raises(ScheduleError, match="unknown decode launch 'decode_x'; known: decode_split, decode_combine"):
        dependent_loads_before_stream(PROBLEMS["uniform_8k"], DecodeSchedule(), "decode_x")


def test_small_launch_pays_its_head_round_trips_and_dispatch():
    """A one-tile CTA: the launch's overhead + the sequence-length load + the tile's round trip, at least; a
    launch of many CTAs is at least as long as the block scheduler needs to start them all."""
    f = _h100_facts()
    tiny = DecodeProblem.uniform(1, 8, 8, 64, 16)
    r = simulate_decode(tiny, DecodeSchedule(), "h100-sxm")
    k = r["kernels"][0]
    assert k["head_s"] == pytest.approx(f.mem_latency_s)
    assert k["time_s"] >= f.launch_overhead_s + 2 * f.mem_latency_s
    many = DecodeProblem.uniform(64, 32, 32, 64, 64)  # 64 x 32 x 8 = 16384 one-tile CTAs
    r = simulate_decode(many, DecodeSchedule(num_splits=8, block_n=16), "h100-sxm")
    assert r["kernels"][0]["num_ctas"] == 16384
    assert r["kernels"][0]["time_s"] >= f.launch_overhead_s + 16384 * f.cta_dispatch_s


def test_ncu_dirty_residue_comes_from_the_thrash_microbenchmark():
    """ncu leaves ~2.4 MB dirty in the L2 at a kernel's start (l2_thrash_drift: reads >= 2 x L2, own stores far
    below the dirty capacity, still 2.38-2.48 MB written); a decode kernel writes it back once its reads push it out."""
    from memsim.calibration import calibration_for, ncu_dirty_residue_bytes
    from memsim.workloads_decode import ncu_residue_write_bytes
    res = ncu_dirty_residue_bytes(calibration_for(H100), H100.l2_bytes)
    assert 2.3e6 < res < 2.5e6
    assert ncu_residue_write_bytes(1e6, res, H100.l2_bytes) == 0.0
    assert ncu_residue_write_bytes(H100.l2_bytes, res, H100.l2_bytes) == pytest.approx(res)
    assert ncu_residue_write_bytes(H100.l2_bytes - res / 2, res, H100.l2_bytes) == pytest.approx(res / 2)
    big = DecodeProblem.uniform(8, 32, 8, 128, 32768)  # 1 GB of K/V
    with_ncu = simulate_decode(big, DecodeSchedule(), "h100-sxm", flush_l2=True)["total"]
    plain = simulate_decode(big, DecodeSchedule(), "h100-sxm", flush_l2=False)["total"]
    assert with_ncu["dram_write_bytes"] - plain["dram_write_bytes"] == pytest.approx(res)


def test_issue_limit_is_shared_by_the_ctas_of_an_sm():
    from memsim.inference import cta_limit_Bps
    f = _h100_facts()
    p = DecodeProblem.uniform(8, 8, 8, 64, 577, page_size=256)
    s = DecodeSchedule(block_n=32, num_stages=4, num_warps=8)  # 6 CTAs of 8 warps per SM in the random set
    one, six = cta_limit_Bps(p, s, f), cta_limit_Bps(p, s, f, ctas_on_sm=6)
    assert six < one / 2
    assert cta_limit_Bps(p, s, f, ctas_on_sm=0) == one  # never fewer than the CTA itself


@pytest.mark.parametrize("buffers", [1, 2, 3])
def test_buffered_stream_latency_rises_with_the_ctas(buffers):
    from memsim.workloads_decode import buffered_stream_latency_s
    f = _h100_facts()
    lats = [buffered_stream_latency_s(f, n, 32768, buffers, 35e9) for n in (1, 64, 256, 1024)]
    assert lats == sorted(lats) and lats[0] == pytest.approx(f.mem_latency_s, rel=0.05) and lats[-1] > 2 * lats[0]


@pytest.mark.parametrize("buffers,compute,expect", [
    (1, 0.8, [1.7, 3.4, 6.8]),        # serial: m x (latency + compute)
    (2, 0.8, [1.7, 2.5, 4.2]),        # first group of 2 at latency + 2 compute, then (latency + compute) / 2 per tile
    (2, 1.2, [2.1, 3.3, 5.7]),        # compute-bound (latency + compute <= 2 compute): latency + m x compute
    (3, 0.2, [1.1, 1.3, 2.2]),        # three in flight: groups of 3 every latency + compute
])
def test_loop_step_follows_the_sass_order(buffers, compute, expect):
    """Tile k is issued once tile k - B is computed (DEPBAR.LE at the top, loads after the dots): the first step of
    m = 1, 2, 4 tiles at latency 0.9 takes e(m - 1) of that recurrence, later steps m x max(c, (lat + c) / B)."""
    from memsim.workloads_decode import loop_step_s
    tile = 32768
    got = [loop_step_s(m * tile, tile, buffers, 0.9, compute, True) for m in (1, 2, 4)]
    assert got == pytest.approx(expect, abs=1e-9), got
    # brute-force recurrence
    for m, g in zip((1, 2, 4), got):
        e = []
        for k in range(m):
            issue = e[k - buffers] if k >= buffers else 0.0
            e.append(max(issue + 0.9, e[-1] if e else 0.0) + compute)
        assert g == pytest.approx(e[-1])
    assert loop_step_s(4 * tile, tile, buffers, 0.9, compute, False) == pytest.approx(
        4 * max(compute, (0.9 + compute) / buffers))


def test_combine_entries_are_compiled_at_the_gpus_warps():
    """Every combine entry of the compiled table is the kernel the card runs: COMBINE_NUM_WARPS warps (the meta
    tensors of kernels.decode_compiled.capture are not "cpu", so the launcher picks the GPU's warps)."""
    import json

    from memsim.inference import COMBINE_NUM_WARPS, COMPILED_FILE
    entries = json.loads(COMPILED_FILE.read_text())["entries"]
    comb = {k: v for k, v in entries.items() if k.startswith("combine")}
    assert comb and {v["num_warps"] for v in comb.values()} == {COMBINE_NUM_WARPS}


def test_registers_limit_residency_of_split_and_combine():
    """The compiled kernels' registers (memsim/decode_compiled_sm90.json) cap the CTAs per SM, as for attention."""
    from memsim.inference import (combine_regs_per_thread, decode_sram_bytes_per_cta, split_regs_per_thread)
    f = _h100_facts()
    assert f.regs_per_sm == 65536
    assert f.ctas_per_sm(0, 4, 162) == 3 and f.ctas_per_sm(0, 4, 64) == 8 and f.ctas_per_sm(0, 4) == 16
    p = DecodeProblem.uniform(32, 64, 8, 128, 86, seq_q=4, page_size=16)
    s = DecodeSchedule(block_n=16, num_stages=3, num_warps=8, page_prefetch=True)  # random seed 1, case 008
    regs = split_regs_per_thread(p, s)
    assert regs == 95 and f.ctas_per_sm(decode_sram_bytes_per_cta(p, s), 8, regs) == 2  # 97 before session 10
    assert f.ctas_per_sm(decode_sram_bytes_per_cta(p, s), 8) == 6  # shared memory alone
    # BLOCK_S 32, d 128, compiled at the 4 warps the GPU launches (a 1-warp compile, the table until session 9, held
    # 162 registers -> 3 CTAs/SM where the card fits 12)
    assert combine_regs_per_thread(p, DecodeSchedule(num_splits=64)) == 40
    s4 = replace(s, num_splits=4)
    r = simulate_decode(p, s4, "h100-sxm")
    # the S = 4 combine has no entry of its own: its registers come from the nearest specialisation in the table
    # (which one depends on what else is tabled); whatever they are, they cap the residency
    creg = combine_regs_per_thread(p, s4)
    assert creg is not None and f.ctas_per_sm(0, 4, creg) < f.ctas_per_sm(0, 4)
    assert [k["ctas_per_sm"] for k in r["kernels"]] == [2, f.ctas_per_sm(0, 4, creg)]
