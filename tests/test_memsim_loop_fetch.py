"""The fetch curve of a loop body (memsim.issue_fit.icache_loop_curve_from; memsim/MODEL.md "instruction fetch").

The `icache` microbenchmark measured the K-FFMA loop at 4-512 KB of code with a gap between 128 KB (2.85 cycles per
instruction) and 256 KB (5.9); `spill_fetch` measured the same loop at 192 KB: 5.96 -- the 256 KB rate.  Straight-line
code of 192 KB ran at the 128 KB rate (set E's naive_qk), so only loop bodies read the new point."""
from __future__ import annotations

import pytest

from memsim.issue_fit import fetch_cycles, icache_curve_from, icache_loop_curve_from

CLOCK = 2.0e9


def _icache(kb: int, cpi: float) -> dict:
    n = kb * 1024 // 16
    return {"code_bytes": kb * 1024, "num_warps": 1, "ctas_per_sm": 1, "s_per_iter": n * cpi / CLOCK}


def _loop(kb: int, cpi: float, *, wait: int = 0, warps: int = 1) -> dict:
    n = kb * 1024 // 16
    return {"code_bytes": kb * 1024, "num_warps": warps, "wait": wait, "n_iter": 100, "loop_instructions": n,
            "time_s": 100 * n * cpi / CLOCK}


ICACHE = [_icache(4, 1.0), _icache(128, 2.85), _icache(256, 5.9)]


@pytest.mark.parametrize("kb, straight, loop", [(64, 1.0, 1.0), (160, 2.85, 2.85), (192, 2.85, 5.96),
                                                (224, 2.85, 5.96), (300, 5.9, 5.9)])
def test_a_loop_body_reads_the_loop_point(kb, straight, loop):
    fetch = [_loop(192, 5.96), _loop(192, 9.0, wait=1), _loop(192, 7.0, warps=8)]  # only the no-wait 1-warp point
    sc, lc = icache_curve_from(ICACHE, CLOCK), icache_loop_curve_from(ICACHE, fetch, CLOCK)
    n = kb * 1024 // 16
    assert fetch_cycles(sc, n) / n == pytest.approx(straight), f"straight code of {kb} KB"
    assert fetch_cycles(lc, n) / n == pytest.approx(loop), f"a loop body of {kb} KB"


def test_the_h100_calibration_has_the_loop_curve():
    import memsim
    from memsim.calibration import calibration_for
    cal = calibration_for(memsim.load_hardware("h100-sxm"))
    assert cal.icache_loop_curve is not None
    n = 200 * 1024 // 16
    assert fetch_cycles(cal.icache_loop_curve, n) > 1.9 * fetch_cycles(cal.icache_curve, n), (
        cal.icache_loop_curve, cal.icache_curve)
