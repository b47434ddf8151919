"""The combine launch's model against the session-9 probes (benchmarks/decode_probes.py; H100 80GB HBM3, ncu,
2026-11-26 11:16 and 11:42 UTC): its figures are the committed raw run's, its launches within 10 % where the
mechanisms hold, and the multi-wave split launches' known gap (strict xfail).  No GPU."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import decode_probes as DP  # noqa: E402
from memsim import inference as I  # noqa: E402

H100 = "h100-sxm"
DATA = ROOT / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "decode"
PROBES = DATA / "probes-session9-2026-11-26" / "probes" / "decode_ncu.json"
PROBES_W8 = DATA / "probes-session9-w8-2026-11-26" / "decode_ncu.json"
HELDOUT = DATA / "random-seed11261138-2026-11-26" / "decode_ncu.json"


def _facts():
    import memsim
    return I.DeviceFacts.from_hardware(memsim.load_hardware(H100))


def test_combine_figures_are_what_the_probes_say():
    """The table's "combine" (measured_loop, h100-sxm) is `combine_facts_of` the committed probe run: merged with
    `python benchmarks/decode_probes.py --merge-combine RUN`, nothing edited by hand."""
    table = json.loads(I.COMPILED_FILE.read_text())["measured_loop"][H100]["combine"]
    again = DP.combine_facts_of(str(PROBES))
    assert table["interval_s"] == pytest.approx(again["interval_s"], rel=1e-12)
    assert [b for b, _ in table["first_round"]] == [b for b, _ in again["first_round"]]
    assert [t for _, t in table["first_round"]] == pytest.approx([t for _, t in again["first_round"]], rel=1e-12)
    # 4 partials per CTA at d = 64 / 128 / 256: 0.2-0.4 us per further CTA on an SM
    assert set(again["interval_s"]) == {"64", "128", "256"}
    assert all(0.2e-6 < v < 0.4e-6 for v in again["interval_s"].values())
    f = _facts()
    p = I.DecodeProblem.uniform(8, 32, 8, 128, 4096)
    assert I.combine_interval_s(p, f) == pytest.approx(again["interval_s"]["128"])
    # the first round grows with the bytes a CTA reads: about one latency at 2-4 KB, 3-4 us at 16-33 KB
    assert I.combine_first_round_s(f, 2064) < 1.5 * f.mem_latency_s < 3e-6 < I.combine_first_round_s(f, 16512)


def test_four_partial_combines_of_the_probes_within_10_percent():
    """Every 4-partial combine of the `pc` probes (32 .. 8448 CTAs, d 64 / 128 / 256) and the `pw` / `pw8` probes'
    combines (5280 CTAs of 3 partials) within 10 %: the per-SM interval carries 1 -> 64 CTAs per SM (the model was
    -18 .. -39 % at 512 .. 8448 CTAs before it)."""
    def wanted(name):
        return name.startswith(("pc_", "pw_d128_s3", "pw_d256_s3", "pw_d128_s4", "pw8_d128_s3")) and "_s32_" not in name
    rows = [r for path in (PROBES, PROBES_W8) for r in DP.compare(str(path), "combine", wanted)]
    assert len(rows) >= 17
    bad = [(r[0], round(r[4] * 100, 1)) for r in rows if abs(r[4]) > 0.10]
    assert not bad, bad


def test_heldout_11261138_combines_within_10_percent():
    """The held-out set measured after the combine model was frozen (seed 11261138, frozen at c79ddb4): its 10
    combine launches within 10 % with the live model (the frozen predictions were -8 .. +9 %; the session-start
    model -26 .. -1 %)."""
    from memsim.workloads_decode import simulate_decode
    from verification.suite_decode import case_from_record
    recs = json.loads(HELDOUT.read_text())["records"]
    errs = {}
    for rec in recs:
        meas = {k["name"]: k["time_s"] for k in rec["kernels"]}
        if "decode_combine" not in meas:
            continue
        c = case_from_record(rec)
        pred = {k["name"]: k["time_s"] for k in simulate_decode(c.problem, c.schedule, H100)["kernels"]}
        errs[c.name] = pred["decode_combine"] / meas["decode_combine"] - 1
    assert len(errs) == 10
    assert max(abs(e) for e in errs.values()) <= 0.10, errs


@pytest.mark.xfail(strict=True, reason="open (notes/decode.md, session 9): multi-wave DRAM-bound split launches of 3 "
                   "tiles per CTA (3960 CTAs) run 14-35 % faster than the model's wave hand-over; the first step's "
                   "queue cap (QUEUE_CAP_FIRST_STEP) brings them to -6..+12 % but makes the measured decode cases worse")
def test_multi_wave_split_probes_within_10_percent():
    rows = [r for path in (PROBES, PROBES_W8)
            for r in DP.compare(str(path), "split", lambda n: n.startswith(("pw_", "pw8_")) and not n.endswith("_b1"))]
    assert len(rows) == 15
    bad = [(r[0], round(r[4] * 100, 1)) for r in rows if abs(r[4]) > 0.10]
    assert not bad, bad
