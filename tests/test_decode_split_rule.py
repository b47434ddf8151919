"""The kernels' split rule (`memsim.inference.auto_num_splits`, ranking with `estimate_time_graph_s`) against the
committed CUDA-graph sweeps over caches NOT resident in the L2 (issue 12, session 12; notes/decode.md).

The sweeps are the session-11 card runs: benchmark run 5 (`--rotate-mb 400`, 14 shapes, every split count timed) and
`decode_cold.py` (6 shapes); both H100 80GB HBM3, do_bench_cudagraph medians.  The rule's mechanisms were read off
microbenchmarks of the same session (the per-CTA traces, the streams sweep, empty kernels in a graph), not off these
sweeps."""
import json
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

import memsim
from memsim.inference import (DecodeProblem, DecodeSchedule, DeviceFacts, auto_num_splits, candidate_splits,
                              estimate_time_graph_s, estimate_time_s)

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = {"run5": ROOT / "reports/h100-sxm/decode/bench-session11-run5/decode-bench.json",
          "cold": ROOT / "reports/h100-sxm/decode/cold-session11/cold.json",
          # measured after the rule was made (session 12): run 6 (the combine with PDL) and the cold A/B (without)
          "run6": ROOT / "reports/h100-sxm/decode/bench-session12-run6/decode-bench.json",
          "cold12": ROOT / "reports/h100-sxm/decode/cold-session12/cold.json"}
TAIL = ROOT / "reports/h100-sxm/decode/tail-session11"


@pytest.fixture(scope="module")
def facts():
    return DeviceFacts.from_hardware(memsim.load_hardware("h100-sxm"))


def _sweeps(name, with_auto=False):
    """{(B, N): {S: seconds}}: the split sweep's rows; with_auto, the auto rows too (another measurement of their
    split count in the same run: the least of the two).  The cold A/B of session 12: its rows without PDL."""
    doc = json.loads(SWEEPS[name].read_text())
    out = {}
    for r in doc.get("records") or doc.get("rows"):
        if r.get("impl") == "decode" and r.get("layout") == "contiguous" and r.get("ms") \
                and (with_auto or not r.get("auto")) and not (name == "cold12" and r.get("combine_pdl")):
            d = out.setdefault((r["batch"], r["context"]), {})
            d[r["num_splits"]] = min(d.get(r["num_splits"], 1.0), r["ms"] * 1e-3)
    return out


def _problem(b, n):
    return DecodeProblem.uniform(b, 32, 8, 128, n, dtype="bf16")


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_rule_pick_within_5pct_of_the_best_measured_split(name, facts):
    """Issue 12's goal for the chosen split count, on every shape of the four sweeps: the pick is a measured split
    count and within 5 % of the fastest one (a split count measured twice in a run -- its sweep row and the auto row
    -- at the faster: run 6's 1 x 1k S = 16 ran 7.24 and 7.58 us, S = 8 7.22).  The rule until session 12
    (`estimate_time_s`) failed it: S = 32 at 1 x 8k (+6.5 % / +5.9 %) and 1 x 32k (+5.7 %), and its batch-64 pick
    (S = 24) was never measured."""
    bad, unmeasured = [], []
    for (b, n), meas in sorted(_sweeps(name, with_auto=True).items()):
        c, why = auto_num_splits(_problem(b, n), DecodeSchedule(), facts)
        assert f"num_splits={c}" in why
        if c not in meas:
            unmeasured.append(((b, n), c))
        elif meas[c] / min(meas.values()) - 1 > 0.05:
            bad.append(((b, n), c, meas[c] / min(meas.values()) - 1))
    assert unmeasured == [] and bad == []


def test_the_old_form_misses_where_the_new_one_does_not(facts):
    """Why the rule changed form: on run 5 the mean-field form ranks S = 32 over S = 16 at 1 x 8k (the card: 18.78
    vs 17.63 us)."""
    meas = _sweeps("run5")[(1, 8192)]
    p, s = _problem(1, 8192), DecodeSchedule()
    old = min(candidate_splits(p, s), key=lambda c: estimate_time_s(p, replace(s, num_splits=c), facts)["time_s"])
    assert old == 32 and meas[32] / min(meas.values()) - 1 > 0.05
    assert auto_num_splits(p, s, facts)[0] == 16


@pytest.mark.parametrize("batch", [1, 8])
def test_one_cta_per_sm_at_small_batch(batch, facts):
    """At batch <= 8 the rule picks 128 split CTAs (one per SM, 8 KV heads packed): every busy SM holds the same
    count, so the launch reads at the decode loop's even-load rate; 256 CTAs leave 8 SMs with one CTA (the dram_stream
    curve's rate), 64 CTAs keep too few bytes in flight.  The card's best on every such shape of run 5."""
    for n in (8192, 16384, 32768, 131072):
        assert auto_num_splits(_problem(batch, n), DecodeSchedule(), facts)[0] * batch * 8 == 128


def test_time_model_on_the_sweeps(facts):
    """The graph form's time over all measured (shape, S) points of run 5 (92): median within 3 %, 80 of them within
    10 % (the SimPy model in the graph context: median 2.5 %; the old closed form 4.7 %, 79 within 10 %).  Its worst
    are short multi-wave launches (8 x 1k at S = 8 / 16: +29 / +35 %; memsim/MODEL.md decode: the multi-wave hand-over
    of short CTAs, an open item)."""
    errs = []
    for (b, n), meas in _sweeps("run5").items():
        for c, t in meas.items():
            errs.append(abs(estimate_time_graph_s(_problem(b, n), DecodeSchedule(num_splits=c), facts)["time_s"] / t - 1))
    assert len(errs) == 92
    assert statistics.median(errs) < 0.03 and sum(e <= 0.10 for e in errs) >= 80


def test_streams_and_tail_sweeps(facts):
    """The session-11 microbenchmarks of the real split kernel (S = 1, one query token, caches >= 100 MB): the
    streams sweep (96-392 CTAs, one wave: the even-load rate's source, so a consistency check) and the tail sweep (22
    launches of 264-792 CTAs on 396 slots: the last partial wave) within 5 % each."""
    for fname in ("streams.json", "tail.json"):
        for r in json.loads((TAIL / fname).read_text())["rows"]:
            p = _problem(r["batch"], r["context"])
            t = estimate_time_graph_s(p, DecodeSchedule(num_splits=r.get("num_splits", 1)), facts)["time_s"]
            assert abs(t / (r["ms"] * 1e-3) - 1) < 0.05, (fname, r["ctas"], t, r["ms"])


def test_even_load_rate_needs_even_loads(facts):
    """The even-load rate applies only while every SM holding CTAs holds the same number: one wave of 128 CTAs (one
    per SM) reads faster per byte than 160 (32 SMs with two); both far from the per-CTA limits."""
    t128 = estimate_time_graph_s(_problem(16, 32768), DecodeSchedule(num_splits=1), facts)
    t160 = estimate_time_graph_s(_problem(20, 32768), DecodeSchedule(num_splits=1), facts)
    assert t128["ctas"] == 128 and t160["ctas"] == 160
    r128, r160 = t128["kv_bytes"] / t128["split_s"], t160["kv_bytes"] / t160["split_s"]
    assert r128 > 1.02 * r160


@pytest.mark.parametrize("shape", [(1, 8192), (8, 32768), (64, 1024), (64, 8192), (64, 32768)])
def test_grain(shape, facts):
    """The grain (CTAs merged into chains beyond 8 waves; events within 0.2 % of the launch's time taken together):
    one-wave launches are unchanged by it; on multi-wave ones every split count's time moves by less than 4 % from the
    finest grain (every CTA, no coalescing) -- but for one-tile CTAs over 100 waves (64 x 8k at S = 128: +11 %), where
    the finest grain keeps each GPC's cohort of CTAs in step wave after wave (at 64 x 1k S = 16, 20 waves of one-tile
    CTAs, the finest grain was 12.7 % over the card, the merged one 0.7 %); and the two picks are within 2 % of each
    other by either's times."""
    # the rule's form (session 17: `CTA_RATE_SPREAD`'s speed classes are not grain-independent beyond 8 waves -- the
    # merged chains of CTAs keep one class for the chain; the rule does not rank with them, `RULE_RATE_SPREAD`)
    p, s = _problem(*shape), DecodeSchedule()
    fine, coarse, far = {}, {}, []
    for c in candidate_splits(p, s):
        fine[c] = estimate_time_graph_s(p, replace(s, num_splits=c), facts, max_waves=None, coalesce=0.0,
                                        rate_spread=False)["time_s"]
        est = estimate_time_graph_s(p, replace(s, num_splits=c), facts, rate_spread=False)
        coarse[c] = est["time_s"]
        if abs(coarse[c] / fine[c] - 1) >= 0.04:
            far.append((c, est["ctas"] // est["slots"], shape[1] // c <= 64))
    assert all(waves > 100 and one_tile for _, waves, one_tile in far), far
    assert len(far) <= 1
    a, b = min(fine, key=fine.get), min(coarse, key=coarse.get)
    assert fine[b] / fine[a] - 1 < 0.02 and coarse[a] / coarse[b] - 1 < 0.02
    if shape[0] * 8 <= 396:  # one wave at S = 1
        assert coarse[1] == fine[1]


def test_schedules_without_a_compiled_entry(facts):
    """Session 12, call 3 (`reports/h100-sxm/decode/stages-session12/`, num_stages 3 / 4 / 5, contiguous and paged
    16 / 64, measured at the rule's split per depth and at the depth-3 split): variants with no compiled-table entry
    take the loop compute of the same loop at num_stages 3.  With copy + issue alone the rule picked S = 8 / 1 at
    num_stages 5, 13-45 % slower than S = 16 / 2 (8 x 32k S = 1 predicted 348 us, ran 452).  Now every pick that was
    measured is within 5 % of the best measured, and the deep S = 1 / S = 8 points are predicted within 10 %."""
    doc = json.loads((ROOT / "reports/h100-sxm/decode/stages-session12/stages.json").read_text())
    meas = {}
    for r in doc["rows"]:
        if "num_stages" in r:
            meas.setdefault((r["batch"], r["context"], r["page_size"], r["num_stages"]), {})[r["num_splits"]] = r["ms"]
    checked = []
    for (b, n, ps, st), m in sorted(meas.items()):
        p = DecodeProblem.uniform(b, 32, 8, 128, n, dtype="bf16", page_size=ps or None)
        s = DecodeSchedule(num_stages=st, page_prefetch=bool(ps), combine_pdl=True)
        c = auto_num_splits(p, s, facts)[0]
        if c in m:
            checked.append(((b, n, ps, st), c, m[c] / min(m.values()) - 1))
        for S in (1, 8):
            if st == 5 and S in m and S != 2 and S != 16:
                # the rule's form (`RULE_RATE_SPREAD`); the session-17 spread, measured on launches of <= 180 us, puts
                # the one-wave 8 x 32k paged64 S = 1 launch (64 CTAs of ~420 us) at +10.5 % (named miss, below)
                t = estimate_time_graph_s(p, replace(s, num_splits=S), facts, rate_spread=False)["time_s"]
                assert abs(t / (m[S] * 1e-3) - 1) < 0.10, ((b, n, ps, st, S), t, m[S])
                t2 = estimate_time_graph_s(p, replace(s, num_splits=S), facts)["time_s"]
                assert abs(t2 / (m[S] * 1e-3) - 1) < (0.11 if (b, n, ps, S) == (8, 32768, 64, 1) else 0.10), \
                    ((b, n, ps, st, S), t2, m[S])
    assert len(checked) >= 20 and [x for x in checked if x[2] > 0.05] == []
