"""What an L2-hit spill reload costs a loop on the card, beside the SASS replay (notes/spills.md session 18).

Data: benchmarks/spill_l2hit_gpu.py's run (H100 80GB HBM3, 2026-11-27 08:13 UTC) and its table -- the measured cycles
per trip beside the replay of the run's own cubins (`--analyse RUN --write-table T`; no compiler needed here).
"""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "verification/data/nvidia-h100-80gb-hbm3/calibration/spill_l2hit-2026-11-27T0813.table.json"


@pytest.fixture(scope="module")
def table():
    return json.loads(TABLE.read_text())


def test_a_just_written_line_is_an_ordinary_l2_hit(table):
    # a chase of lines this SM stored just before (a spill reload's case) waits as long as lines it read before
    by = {(c["mode"], c["ctas_per_sm"]): c["cycles_per_load"] for c in table["chase"]}
    for k in (1, 4):
        assert by[("written", k)] == pytest.approx(by[("read", k)], rel=0.02)
    # ... and as the replay of the chase loop with loads released after the pointer chase's 287 cycles (309.5)
    assert 300 < by[("written", 1)] < 320


def test_l2_hit_reloads_cost_what_the_replay_charges(table):
    # every point whose replay binds (reloads at L1 or at the L2 latency; 1, 2, 4 resident CTAs; 47 / 143 KB of
    # code): the card's trip is the replay's + 4-6 %, the same offset as the L1-hit loop
    rows = [r for r in table["spill"] if r["replay"] >= r["fetch"]]
    assert len(rows) == 8
    for r in rows:
        assert 1.02 < r["meas"] / r["max"] < 1.08, r
    l1 = next(r for r in rows if r["U"] == 1 and not r["smem"])
    l2 = next(r for r in rows if r["U"] == 1 and r["smem"] and r["k"] == 1)
    assert l2["meas"] / l2["replay"] == pytest.approx(l1["meas"] / l1["replay"], abs=0.01)


def test_fetch_and_l2_waits_overlap_at_one_or_two_ctas(table):
    # a 200 KB loop (past the 128 KB instruction cache) whose fetch exceeds its replay: the trip is the fetch
    # (memsim.costs' max), with reloads at L1 or at the L2, at one or two resident CTAs; not their sum
    big = [r for r in table["spill"] if r["U"] == 4]
    for r in big:
        if r["k"] <= 2:
            assert 0.93 < r["meas"] / r["max"] < 1.03, r
            assert r["meas"] / r["sum"] < 0.66
    # four independent CTAs running it: 1.24x -- the one point the rule misses (not modelled; no L1-hit twin)
    k4 = next(r for r in big if r["k"] == 4)
    assert k4["meas"] / k4["max"] == pytest.approx(1.24, abs=0.02)
