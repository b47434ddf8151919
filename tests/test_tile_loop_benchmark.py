"""benchmarks/tile_loop_gpu.py without a GPU: the problems it builds run exactly one wave of the launch of interest
with the asked trips, the line through (trips, time) gives period and fixed cost, and --merge keeps what memsim reads
(the tensor clock)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import tile_loop_gpu as tl  # noqa: E402

from memsim.schedule import kernel_launches  # noqa: E402

RUN = ROOT / "verification/data/nvidia-h100-80gb-hbm3/calibration/run-2026-11-26T0835-tile_loop.json"


@pytest.mark.parametrize("name", [v[0] for v in tl.VARIANTS])
@pytest.mark.parametrize("c,trips", [(1, 2), (2, 24)])
def test_one_wave_of_the_launch_with_the_asked_trips(name, c, trips):
    v = tl.variant(name)
    p, s, names = tl.problem_and_schedule(v, c, trips)
    L = next(x for x in kernel_launches(p, s) if x.name == v["launch"])
    assert L.grid[0] * L.grid[1] * L.grid[2] == 132 * c, (name, L.grid)
    # the loop runs over the other sequence: trips x its block
    loop_len, block = (p.seq_q, v["block_m"]) if v["launch"] == "flash2_bwd_dkdv" else (p.seq_kv, v["block_n"])
    assert loop_len == trips * block, (name, loop_len, trips, block)
    assert p.batch * p.heads_q == 1 and v["launch"] in names


def test_unknown_variant_names_the_known_ones():
    with pytest.raises(KeyError, match="f2fwd_bf16_d128_128x64_w4"):
        tl.variant("no_such_variant")


@pytest.mark.parametrize("slope,icpt", [(1e-6, 5e-6), (2.5e-6, 0.0), (0.0, 3e-6)])
def test_fit_line_recovers_period_and_fixed_cost(slope, icpt):
    got = tl.fit_line({T: icpt + slope * T for T in tl.TRIPS})
    assert got == pytest.approx((slope, icpt), abs=1e-15)


def test_the_committed_run_gives_a_line_per_variant_and_residency():
    doc = json.loads(RUN.read_text())
    lines = tl.lines(doc["points"])
    assert len(lines) == len(tl.VARIANTS) * len(tl.CTAS_PER_SM)
    for (name, c), e in lines.items():
        assert e["period_s"] > 0 and set(e["times"]) == set(tl.TRIPS), (name, c, e)


def test_merge_keeps_each_launch_with_its_clock_and_refuses_to_overwrite(tmp_path):
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"facts": {}}))
    assert tl.merge(str(RUN), str(cal)) == 0
    pts = json.loads(cal.read_text())["facts"]["tile_loop"]
    assert len(pts) == len(tl.VARIANTS) * len(tl.CTAS_PER_SM) * len(tl.TRIPS) * 3
    assert {p["mma"] for p in pts if "fp32" in p["variant"]} == {False}
    assert {p["mma"] for p in pts if "fp32" not in p["variant"]} == {True}
    with pytest.raises(SystemExit, match="already has a tile_loop fact"):
        tl.merge(str(RUN), str(cal))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "load_latency/1", "points": []}))
    with pytest.raises(SystemExit, match="not a tile_loop run"):
        tl.merge(str(bad), str(cal), replace=True)
