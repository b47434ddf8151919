"""The SM's intake of asynchronous copies (memsim.warp_issue: `IssueLatencies.fill_bytes_per_cycle`), its fit from
the `sm_fill` microbenchmark (memsim.issue_fit.sm_fill_from, benchmarks/sm_fill_gpu.py) and the compiled table's
profile-11 migration (kernels.sass.issue_profile)."""
from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from memsim.io import read_json
from memsim.warp_issue import Instr, IssueLatencies, replay

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "verification/data/nvidia-h100-80gb-hbm3/calibration/run-2026-11-26T1635-sm_fill.json.gz"  # gzip -9 -n


def _lat(**kw) -> IssueLatencies:
    base = dict(cycles={"MUFU": 20.0, "SHFL": 25.0, "LDS": 30.0, "BAR": 0.0}, hmma_flops_per_cycle=512.0,
                hgmma_flops_per_cycle=4096.0, mufu_cycles=8.0, smem_bytes_per_cycle=1e9)
    base.update(kw)
    return IssueLatencies(**base)


def _copy_loop(copies: int, bytes_each: int, compute_cycles: int = 200) -> list:
    """Triton's two-stage cp.async loop: wait for every group (DEPBAR.LE SB0, 0), compute, issue the next tile's
    `copies` LDGSTS and commit them as one group."""
    return ([Instr("DEPBAR", 1, depbar=(0, 0))] + [Instr("FFMA", 4)] * (compute_cycles // 4)
            + [Instr("LDGSTS", 1, smem_bytes=bytes_each, global_bytes=bytes_each)] * copies
            + [Instr("LDGDEPBAR", 1, write_sb=0)])


@pytest.mark.parametrize("copies,bytes_each,rate", [(8, 512, 64.0), (32, 512, 64.0), (32, 512, 128.0), (4, 2048, 32.0)])
def test_group_lands_when_its_last_bytes_have_come_in(copies, bytes_each, rate):
    # the first copy's bytes start landing `latency` after its issue, then every byte at `rate`: the group's
    # commit releases at first issue + latency + bytes / rate, and the next trip waits for exactly that
    latency = 300.0
    body = _copy_loop(copies, bytes_each)
    without = replay(body, warps_per_cta=1, ctas=1, lat=_lat(load_cycles=latency))
    got = replay(body, warps_per_cta=1, ctas=1, lat=_lat(load_cycles=latency, fill_bytes_per_cycle=rate))
    compute = 1 + 200  # the DEPBAR and the FFMAs before the first copy
    expected = compute + latency + copies * bytes_each / rate
    assert got == pytest.approx(max(expected, without), abs=2), (
        f"{copies} x {bytes_each} B at {rate} B/cycle: replayed {got}, expected {expected} (no fill: {without})")


def test_small_group_keeps_the_commit_latency():
    # a group whose bytes land before the commit's own latency runs out changes nothing
    body = _copy_loop(1, 64)
    a = replay(body, warps_per_cta=1, ctas=1, lat=_lat(load_cycles=300.0))
    b = replay(body, warps_per_cta=1, ctas=1, lat=_lat(load_cycles=300.0, fill_bytes_per_cycle=64.0))
    assert b == pytest.approx(a, abs=1.5)


def test_ctas_on_one_sm_share_its_intake():
    # two CTAs' groups come in through the same intake: with a slow fill the second CTA's group waits behind
    # the first's, so two CTAs take longer per trip than one
    body = _copy_loop(32, 512, compute_cycles=40)
    lat = _lat(load_cycles=100.0, fill_bytes_per_cycle=32.0)
    one = replay(body, warps_per_cta=1, ctas=1, lat=lat)
    two = replay(body, warps_per_cta=1, ctas=2, lat=lat)
    assert two >= 1.8 * one - 100, f"one CTA {one}, two CTAs {two} cycles per trip"


def test_instruction_keeps_its_global_bytes_through_the_table():
    x = Instr("LDGSTS", 1, smem_bytes=1024, global_bytes=512)
    assert Instr.from_list(x.to_list()) == x
    old = Instr("FFMA", 4)
    assert len(old.to_list()) == 10 and Instr.from_list(old.to_list()) == old  # older bodies stay readable


def test_fingerprint_names_the_fill_rate():
    assert "fill=" not in _lat().fingerprint()
    assert "fill=92.6" in _lat(fill_bytes_per_cycle=92.63).fingerprint()


# --- the microbenchmark and the fit ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fact():
    from memsim.calibration import load_calibration
    import memsim
    cal = load_calibration(memsim.load_hardware("h100-sxm"))
    raw = json.load(open(ROOT / "memsim/presets/h100-sxm.calibration.json"))
    pts = raw["facts"]["sm_fill"] if "facts" in raw else raw["sm_fill"]
    return cal, pts


def _err(p, lat):
    from memsim.issue_fit import body_of
    got = replay(body_of(p), warps_per_cta=p["num_warps"], ctas=1, lat=lat.at_load_latency("l2"))
    return got / p["cycles_per_trip"] - 1


def test_the_run_is_one_card_per_sm_and_merged():
    run = read_json(RUN)
    assert run["provenance"]["gpu"] == "NVIDIA H100 80GB HBM3"
    sixteen = [p for p in run["points"] if p.get("kind") == "sm_fill" and p["ctas"] == 16]
    assert sixteen and all(p["distinct_sms"] == 16 for p in sixteen), "16-CTA points must land on 16 SMs"


def test_rate_is_the_median_of_the_fit_points(fact):
    from memsim.issue_fit import _fill_fit_point, fill_rate_of
    cal, pts = fact
    base = replace(cal.issue, fill_bytes_per_cycle=0.0)
    rates = [fill_rate_of(p, base) for p in pts if _fill_fit_point(p)]
    assert len(rates) == 7
    assert cal.issue.fill_bytes_per_cycle == pytest.approx(statistics.median(rates), rel=1e-6)


def test_points_not_fitted_are_predicted(fact):
    # three-stage loops (throughput, not the round trip), 1 and 8 warps, on 16 SMs: not used by the fit
    from memsim.issue_fit import _fill_fit_point
    cal, pts = fact
    held = [p for p in pts if p["ctas"] == p["distinct_sms"] <= 16 and not _fill_fit_point(p)]
    assert len(held) == 6
    with_fill = {p["variant"]: _err(p, cal.issue) for p in held}
    without = {p["variant"]: _err(p, replace(cal.issue, fill_bytes_per_cycle=0.0)) for p in held}
    table = "\n".join(f"  {v:16s} fill {with_fill[v]:+.3f}  none {without[v]:+.3f}" for v in with_fill)
    med = statistics.median(abs(e) for e in with_fill.values())
    assert med < statistics.median(abs(e) for e in without.values()), table
    assert med <= 0.05, f"median {med:.1%}:\n{table}"


@pytest.mark.xfail(strict=True, reason="the 32 KB three-stage loop on 16 SMs runs 18 % slower than the replay "
                   "with the fill rate: two groups in flight per SM are not one stream (not isolated)")
def test_three_stage_32k_loop_is_predicted(fact):
    cal, pts = fact
    p = next(p for p in pts if p["variant"] == "128x128_w4_s3" and p["ctas"] == 16)
    assert abs(_err(p, cal.issue)) <= 0.10


# --- the compiled table's migration ----------------------------------------------------------------------------------
def test_profile_10_entry_without_copies_keeps_its_figures():
    from kernels.sass import issue_profile
    from memsim.calibration import load_calibration
    import memsim
    cal = load_calibration(memsim.load_hardware("h100-sxm"))
    sass = _tiny_loop_sass()
    fresh = issue_profile(sass, num_warps=1, max_ctas=1, lat=cal.issue)
    old_fp = ";".join(p for p in cal.issue.fingerprint().split(";") if not p.startswith("fill="))
    known = {**fresh, "profile": 10, "latencies": old_fp, "tile_cycles": [12345.0], "straight_cycles": [678.0]}
    got = issue_profile(sass, num_warps=1, max_ctas=1, lat=cal.issue, known=known)
    assert got["tile_cycles"] == [12345.0] and got["straight_cycles"] == [678.0]
    assert got["latencies"] == cal.issue.fingerprint()


def _tiny_loop_sass() -> str:
    """The pointer chase of the load_latency fact: a loop of LDGs, no LDGSTS."""
    from kernels.sass import disassemble  # noqa: F401 -- the chase's SASS text is stored with its run
    run = json.load(open(ROOT / "verification/data/nvidia-h100-80gb-hbm3/calibration/"
                              "run-2026-11-26T0557-load_latency.json"))
    return next(p["sass"] for p in run["points"] if p.get("kind") == "load_latency_sass")
