"""The model against the H100 SXM measurements in tests/fixtures/ncu (DESIGN.md, 2026-11-25).

Tolerances are today's model errors rounded up (see the report in memsim's final notes); the targets of
verification (issue 4) are global +-2 %, L2 +-10 %, DRAM read +-5 %, DRAM write +-10 %, time +-25 %."""
import csv
from pathlib import Path

import pytest

from memsim import analytic
from memsim.hardware import load_hardware
from memsim.schedule import AttentionProblem, Schedule
from memsim.sim import simulate

NCU = Path(__file__).parent / "fixtures" / "ncu"
HW = load_hardware("h100-sxm")


def ncu_metrics(name: str) -> dict:
    """{metric: value} of the one kernel in an ncu --csv file (the lines before the header are log)."""
    lines = (NCU / name).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('"ID"'))
    out = {}
    for row in csv.DictReader(lines[start:]):
        out[row["Metric Name"]] = float(row["Metric Value"].replace(",", ""))
    return out


# the Triton probe: flash2 forward, fp16, d=64, 8 warps, one CTA per (Q block, head)
CASES = {
    "n_rowfast_4096.csv": (64, 4096, 128, 64, "q_fastest"),
    "n_rowfast_16384.csv": (32, 16384, 128, 64, "q_fastest"),
    "n_headfast_16384.csv": (32, 16384, 128, 64, "heads_fastest"),
    "ncu_probe128x128.csv": (64, 4096, 128, 128, "q_fastest"),
}


@pytest.fixture(scope="module")
def predicted():
    out = {}
    for f, (bh, n, bm, bn, order) in CASES.items():
        p = AttentionProblem(1, bh, bh, n, n, 64, "fp16")
        out[f] = (p, simulate(p, Schedule("flash2", "fwd", bm, bn, num_warps=8, grid_order=order), HW))
    return out


@pytest.mark.parametrize("f", CASES)
def test_global_loads_exact(predicted, f):
    """l1tex__t_bytes = loads + O stores; the probe writes no lse, so compare loads exactly."""
    p, r = predicted[f]
    m = ncu_metrics(f)
    if "l1tex__t_bytes.sum" not in m:
        pytest.skip("no l1tex metric in this file")
    assert r.total["global_read_bytes"] + p.o_bytes() == m["l1tex__t_bytes.sum"]


# Known misses of today's model against these probes (memsim/MODEL.md "Where it misses"), kept as strict xfails
# so that a model change that fixes one shows up (and must then drop its mark):
_MISS_MERGE = pytest.mark.xfail(strict=True, reason="request merging: the model's CTAs of one head stay in lockstep "
                                "(no drift mechanism since the fitted cta_time_jitter was deleted) and merge 2-3x "
                                "more reads than the card")
_MISS_DRIFT = pytest.mark.xfail(strict=True, reason="heads_fastest DRAM reads: how far CTAs of one head drift apart "
                                "in a thrashing L2 is not modelled (measured 37x compulsory, model about 11x)")

@pytest.mark.parametrize("f, tol", [("n_rowfast_4096.csv", 0.01), ("n_rowfast_16384.csv", 0.01),
                                    pytest.param("n_headfast_16384.csv", 0.15, marks=_MISS_DRIFT),
                                    ("ncu_probe128x128.csv", 0.01)])
def test_dram_reads(predicted, f, tol):
    _, r = predicted[f]
    assert r.total["dram_read_bytes"] == pytest.approx(ncu_metrics(f)["dram__bytes_read.sum"], rel=tol)


@pytest.mark.parametrize("f", CASES)
def test_time_within_25_percent(predicted, f):
    _, r = predicted[f]
    assert r.time_s == pytest.approx(ncu_metrics(f)["gpu__time_duration.sum"] * 1e-9, rel=0.25)


@pytest.mark.parametrize("f, tol", [pytest.param("n_rowfast_4096.csv", 0.15, marks=_MISS_MERGE),
                                    pytest.param("n_rowfast_16384.csv", 0.15, marks=_MISS_MERGE),
                                    ("n_headfast_16384.csv", 0.15),
                                    pytest.param("ncu_probe128x128.csv", 0.15, marks=_MISS_MERGE)])
def test_l2_reads(predicted, f, tol):
    _, r = predicted[f]
    measured = ncu_metrics(f)["lts__t_sectors_srcunit_tex_op_read.sum"] * 32
    assert r.total["l2_read_bytes"] == pytest.approx(measured, rel=tol)


@pytest.mark.parametrize("f, tol", [("n_rowfast_4096.csv", 0.15), ("n_rowfast_16384.csv", 0.15),
                                    ("n_headfast_16384.csv", 0.15), ("ncu_probe128x128.csv", 0.15)])
def test_dram_writes_leave_dirty_lines(predicted, f, tol):
    """ncu counts O minus what is still dirty in L2 at the end (33.5 MB written, 25.5 MB counted), plus what it
    left dirty itself (its ~2.4 MB residue, written back as the kernel's reads push it out).  The N=4096 probes were
    strict xfails until the L2's age law (MODEL.md "dirty lines under the kernel's other traffic"): under the 22 MB
    dirty limit alone the model kept ~22 MB of O dirty while the card keeps ~7 MB with K/V streaming past."""
    p, r = predicted[f]
    w = r.total["dram_write_bytes"]
    assert w == pytest.approx(ncu_metrics(f)["dram__bytes_write.sum"], rel=tol)


@_MISS_DRIFT
def test_grid_order_37x_but_same_time(predicted):
    p, q = predicted["n_rowfast_16384.csv"]
    _, h = predicted["n_headfast_16384.csv"]
    compulsory = p.q_bytes() + p.kv_bytes()
    assert q.total["dram_read_bytes"] == compulsory
    assert h.total["dram_read_bytes"] > 20 * compulsory  # measured 37x
    assert h.time_s == pytest.approx(q.time_s, rel=0.05)   # compute bound: measured +2.5 %


def test_issue_facts_default_problem():
    """B=4, H=16, N=4096, d=64, fp16 with the default schedules."""
    p = AttentionProblem(4, 16, 16, 4096, 4096, 64)
    f2 = simulate(p, Schedule("flash2"), HW).total
    nv = simulate(p, Schedule("naive"), HW, grain="cta").total
    g = lambda t: t["global_read_bytes"] + t["global_write_bytes"]  # noqa: E731
    d = lambda t: t["dram_read_bytes"] + t["dram_write_bytes"]  # noqa: E731
    # L2 absorbs every K/V re-read; the kernel's code is read once beside the inputs
    assert f2["dram_read_bytes"] - f2["code_dram_read_bytes"] == p.q_bytes() + p.kv_bytes()
    # The byte contract gives naive (fp16 S/P) 5.8x flash2's global traffic, not the 10x issue 2 hoped for;
    # at the DRAM level the gap is 70x.
    assert g(nv) > 5 * g(f2)
    assert d(nv) > 50 * d(f2)
    fp32 = analytic.global_bytes(p, Schedule("naive", sp_dtype="fp32"))  # == simulated (test_memsim_closed_form)
    assert g(fp32) > 9 * g(f2)
