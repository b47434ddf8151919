"""The split loop's pipelining (tiles in flight from the compiled SASS, issued after the compute of an earlier
tile), occupancy by the compiled shared memory, and the model's grain -- each against the `pipeline` points of
benchmarks/decode_mechanisms_gpu.py (H100, 2026-11-26 06:08 UTC, reports/h100-sxm/decode/mechanisms-2026-11-26T0608),
the compiled table (memsim/decode_compiled_sm90.json) or the model itself; never a decode case."""
import json
import sys
from pathlib import Path

import pytest

from memsim.inference import (DecodeProblem, DecodeSchedule, DeviceFacts, decode_sram_bytes_per_cta,
                              pipeline_buffers, split_regs_per_thread, split_shared_bytes)

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "reports" / "h100-sxm" / "decode" / "mechanisms-2026-11-26T0608" / "pipeline-points.json"
H100 = "h100-sxm"


def _table():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from decode_mechanisms_gpu import pipeline_table
    import memsim
    f = DeviceFacts.from_hardware(memsim.load_hardware(H100))
    return pipeline_table(json.loads(RUN.read_text())["points"], f.latency_curve, f.stream_tile_compute_s), f


def _row(rows, ctas, dots, b):
    return next(r for r in rows if (r["ctas"], r["dots"], r["tiles_in_flight"]) == (ctas, dots, b))


SASS = """
        /*0100*/                   LDGDEPBAR ;
.L_x_2:
        /*0200*/                   DEPBAR.LE SB0, 0x{wait} ;
        /*0210*/                   HMMA.16816.F32.BF16 R48, R32, R44, RZ ;
        /*0220*/                   LDGSTS.E.BYPASS.128 [R49], desc[UR12][R44.64], P1 ;
        /*0230*/                   LDGDEPBAR ;
        /*0240*/                   LDGSTS.E.BYPASS.128 [R49+0x8000], desc[UR12][R46.64], P6 ;
        /*0250*/                   LDGDEPBAR ;
        /*0260*/              @!P0 BRA `(.L_x_2) ;
"""


@pytest.mark.parametrize("wait,want", [(0, 1), (2, 2), (4, 3), (1, 1)])
def test_tiles_in_flight_read_off_the_loop_wait(wait, want):
    from kernels.decode_compiled import tiles_in_flight
    assert tiles_in_flight(SASS.format(wait=wait)) == want
    assert tiles_in_flight(SASS.format(wait=wait).replace("HMMA", "FFMA")) is None  # no tensor-core loop


@pytest.mark.parametrize("page,pf,st,want", [(None, False, 3, 2), (16, False, 3, 1), (16, True, 3, 2), (64, False, 3, 1),
                                            (None, False, 2, 1)])
def test_compiled_table_tiles_in_flight(page, pf, st, want):
    """The H100 kernels as compiled (DEPBAR.LE SB0, 2 over K and V groups; paged loops without prefetch and
    num_stages 2 wait for everything: DEPBAR.LE SB0, 0x0)."""
    p = DecodeProblem.uniform(1, 32, 8, 128, 4096, dtype="bf16", page_size=page)
    assert pipeline_buffers(p, DecodeSchedule(num_stages=st, page_prefetch=pf)) == want


@pytest.mark.parametrize("dots", [1, 4, 8])
def test_pipeline_points_follow_the_sass_order(dots):
    """One CTA: with the compute c (most tiles in flight) and the latency L seen by the one-buffer loop (T1 - c),
    two tiles in flight run at max(c, (L + c) / 2) (within 6 %); "one tile per latency" (max(c, L)) is off by
    more than 10 % wherever the loop is latency-bound."""
    rows, _ = _table()
    one, two = _row(rows, 1, dots, 1), _row(rows, 1, dots, 2)
    c, L = one["compute_s"], one["latency_s"]
    sass = max(c, (L + c) / 2)
    assert abs(sass / two["period_s"] - 1) < 0.06, (sass, two["period_s"])
    if L > c:
        assert max(c, L) / two["period_s"] - 1 > 0.10


def test_stream_curve_latency_holds_its_own_loop_compute():
    """The loop-implied latency of every one-buffer point (1 and 132 CTAs) is 0.4-0.5 us under the dram_stream curve
    at the same rate, and within 25 % of the curve less the stream loop's compute (16 KB at 47 GB/s)."""
    rows, f = _table()
    assert f.stream_tile_compute_s == pytest.approx(16384 / f.cta_max_Bps)
    ones = [r for r in rows if r["tiles_in_flight"] == 1]
    assert len(ones) == 6
    for r in ones:
        assert r["curve_latency_s"] - r["latency_s"] > 0.3e-6, r
        assert abs(r["latency_s"] / r["curve_less_stream_compute_s"] - 1) < 0.25, r


@pytest.mark.parametrize("page,sch,nominal,model", [
    (None, {}, 2, 3),                                                # 71680 B compiled, 102400 nominal
    (16, {}, 2, 3),                                                  # one buffer: 39424 B (4 CTAs); its 148
    # registers (the session-10 kernel; 120 before) admit 3
    (16, dict(block_n=128, num_stages=4, num_warps=8), 1, 3),       # seed 112602 case 001's variant (d 64, 4 KV heads):
    # 80 registers since session 10 (3 CTAs, as ncu's 14:43 occupancy run says; 2 with the earlier kernel's)
])
def test_occupancy_by_compiled_shared_memory(page, sch, nominal, model):
    """Triton allocates num_stages - 1 K/V buffers (one for a loop it does not pipeline): the SM admits CTAs by that,
    not by the schedule's nominal num_stages tiles."""
    import memsim
    d, hkv = (64, 4) if sch else (128, 8)
    p = DecodeProblem.uniform(2, 32, hkv, d, 2048, dtype="bf16", page_size=page)
    s = DecodeSchedule(**sch)
    f = DeviceFacts.from_hardware(memsim.load_hardware(H100))
    regs = split_regs_per_thread(p, s)
    assert split_shared_bytes(p, s) < decode_sram_bytes_per_cta(p, s)
    assert f.ctas_per_sm(decode_sram_bytes_per_cta(p, s), s.num_warps, regs) == nominal
    assert f.ctas_per_sm(split_shared_bytes(p, s), s.num_warps, regs) == model


def test_grain_default_agrees_with_tile_grain_on_the_ragged_suite_case():
    """A model step keeps the load it started under; the default grain (the longest split in 32 steps) agrees with
    one tile per step within 2 % on the ragged suite case (16-tile steps were 28 % slower).  Since the third decode
    session a step also keeps the CTAs per SM its compute is shared by (the running CTAs at its start): 3.1 % apart
    then, so the bound is 3.5 %."""
    from memsim.workloads_decode import simulate_decode
    p = DecodeProblem(32, 8, 128, (1,) * 4, (1000, 5000, 17, 30000))
    s = DecodeSchedule(num_splits=12)
    fine = simulate_decode(p, s, H100, run_tiles=1)["kernels"][0]["time_s"]
    dflt = simulate_decode(p, s, H100)["kernels"][0]["time_s"]
    coarse = simulate_decode(p, s, H100, run_tiles=16)["kernels"][0]["time_s"]
    assert abs(dflt / fine - 1) < 0.035, (dflt, fine)
    assert coarse / fine - 1 > 0.1


def _measured_cases():
    files = [ROOT / "benchmarks" / "results" / "decode-h100-run2-ncu.json"] + sorted(
        (ROOT / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "decode").glob("random-seed*/decode_ncu.json"))
    out = []
    for fn in files:
        for r in json.loads(fn.read_text())["records"]:
            marks = [pytest.mark.xfail(strict=True, reason=CLOSED_FORM_MISSES[r["case"]])] if r["case"] in CLOSED_FORM_MISSES else []
            out.append(pytest.param(r["problem"], r["schedule"], id=r["case"][:40], marks=marks))
    return out


#: measured cases where the closed form (the split rule's mechanisms) is off the SimPy model by more than the test's
#: tolerance -- open, each with what is known
CLOSED_FORM_MISSES = {
    # (dr11260935_002, the one-buffer paged256 d256 bn32 case listed here until session 10 -- closed form 484 us, SimPy
    # 347, card 359 -- tracks within 25 % with the session-10 kernel's table: one address base per tile)
    "dr112602_001_b6_n13604_h32x4_d64_bf16_q1_p16_bn128_st4_w8_s24":
        "one-buffer paged16 loop (no prefetch), d64 bn128 w8, 24 splits x 6 x 4 units: with the session-10 kernel's "
        "registers (80: 3 CTAs per SM, card and table agree, 14:43 occupancy run) closed form 60.3 us, SimPy 44.0 us; "
        "card 48.0 us (the earlier kernel, 2 CTAs per SM)",
    "dr11261455_015_b6_n540_h32x32_d256_fp16_q2_p0_bn64_st3_w4_s6":
        "contiguous d256 bn64 st3, 2-token queries (MQA, 32 heads per CTA), 6 splits x 6 sequences: closed form 87.8 us, "
        "SimPy 65.8 us, card 53.8 us (held-out seed 11261455, the session-10 kernel; the frozen SimPy prediction was "
        "+22.7 %); seen when that set joined the sampled cases",
}


@pytest.mark.parametrize("prob,sch", _measured_cases()[::3])
def test_mechanisms_closed_form_tracks_the_simpy_model(prob, sch):
    """`estimate_time_mechanisms_s` is the SimPy model's mechanisms without events (first-wave load, duty-weighted):
    within 25 % of `simulate_decode` (no L2 flush), 40 % for unpacked GQA (whose L2 hits the closed form takes as a
    flat 1/G miss share)."""
    import memsim
    from memsim.inference import decode_problem_from_dict, decode_schedule_from_dict, estimate_time_mechanisms_s
    from memsim.workloads_decode import simulate_decode
    p, s = decode_problem_from_dict(prob), decode_schedule_from_dict(sch)
    f = DeviceFacts.from_hardware(memsim.load_hardware(H100))
    cf = estimate_time_mechanisms_s(p, s, f)["time_s"]
    sim = simulate_decode(p, s, H100, flush_l2=False)["total"]["time_s"]
    tol = 0.25 if (s.pack_gqa or p.group_size == 1) else 0.40
    assert abs(cf / sim - 1) < tol, (cf, sim)


def test_split_rule_keeps_its_own_form_on_the_cuda_graph_sweeps():
    """Why `auto_num_splits` ranks with `estimate_time_graph_s` and not the mechanisms' form: on the run-5 sweeps
    (CUDA graphs over rotated caches, 14 shapes) the graph form's pick is within 5 % of the best measured split on
    every shape; the mechanisms' form -- even at the graph's 0.97 us per kernel -- picks S = 6 / 8 at batch 8
    (multi-wave launches whose last partial wave it does not follow: +6..+13 %) and S = 1 at batch 64 (+5..+10 %).
    (Until session 12 the run-2 8 x 1k sweep stood here; its cache stayed in the L2, notes/decode.md.)  If this fails
    because the mechanisms' form now picks well, compare the two again."""
    import memsim
    from dataclasses import replace
    from memsim.inference import auto_num_splits, candidate_splits, estimate_time_mechanisms_s
    bench = json.loads((ROOT / "reports" / "h100-sxm" / "decode" / "bench-session11-run5" /
                        "decode-bench.json").read_text())
    sweeps = {}
    for r in bench["records"]:
        if r["impl"] == "decode" and r["layout"] == "contiguous" and not r.get("auto") and r.get("ms"):
            sweeps.setdefault((r["batch"], r["context"]), {})[r["num_splits"]] = r["ms"]
    f = DeviceFacts.from_hardware(memsim.load_hardware(H100))
    g = replace(f, launch_overhead_s=0.97e-6)
    rule_loss, mech_loss = [], []
    for (b, n), meas in sorted(sweeps.items()):
        p, s = DecodeProblem.uniform(b, 32, 8, 128, n, dtype="bf16"), DecodeSchedule()
        rule, _ = auto_num_splits(p, s, f)
        mech = min((estimate_time_mechanisms_s(p, replace(s, num_splits=c), g)["time_s"], c)
                   for c in candidate_splits(p, s) if c in meas)[1]
        best = min(meas.values())
        rule_loss.append(meas[rule] / best - 1)
        mech_loss.append(meas[mech] / best - 1)
    assert len(rule_loss) == 14 and max(rule_loss) <= 0.05
    assert sum(x > 0.05 for x in mech_loss) >= 5


#: the kernel of session 10 (one address base per tile; H100 2026-11-26 14:43 UTC, benchmarks/decode_session10b_gpu.sh);
#: the earlier kernel's run: reports/h100-sxm/decode/mechanisms-2026-11-26T0625/mech-occupancy.json
OCC = ROOT / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "decode" / "mechanisms" / "run-2026-11-26T1443-loop.json"


@pytest.mark.parametrize("variant", range(6))
def test_occupancy_run_matches_the_compiled_shared_memory(variant):
    """ncu's launch statistics of real `_decode_split` launches (H100, 2026-11-26 14:43 UTC, the session-10 kernel):
    the dynamic shared memory is the compiled table's, and the CTAs per SM (the least of ncu's limits) are the model's
    by that figure with the card's registers; by the nominal num_stages tiles they would be fewer on 5 of 6.  (ncu's
    shared-memory limit alone follows the carveout the driver picks -- no larger than the registers allow --, so only
    the least limit is compared.)  The card's registers are the table's on all 6 (the earlier kernel's 06:25 run had
    one key, variant 3, at another specialisation's registers: 78 on the card, 92 in the table then)."""
    import memsim
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from decode_mechanisms_gpu import _occupancy_case
    q = next(x for x in json.loads(OCC.read_text())["points"] if x["variant"] == variant)
    p, s = _occupancy_case(q["problem"], q["schedule"])
    f = DeviceFacts.from_hardware(memsim.load_hardware(H100))
    ncu = q["ncu"]
    card = min(v for k, v in ncu.items() if k.startswith("launch__occupancy_limit_"))
    regs = int(ncu["launch__registers_per_thread"])
    assert ncu["launch__shared_mem_per_block_dynamic"] == split_shared_bytes(p, s)
    assert f.ctas_per_sm(split_shared_bytes(p, s), s.num_warps, regs) == card
    if variant < 5:
        assert f.ctas_per_sm(decode_sram_bytes_per_cta(p, s), s.num_warps, regs) < card
    assert regs == split_regs_per_thread(p, s)
