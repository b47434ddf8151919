"""The model books spill traffic outside the tile loop (memsim/MODEL.md row "spill traffic outside the tile loop";
the mechanism's microbenchmark check is tests/test_memsim_spill_outside.py): the straight code's and the guarded
pre-header's local stores and reloads once per CTA, a walk's code around the tile loop with each tile it stores."""
from __future__ import annotations

from dataclasses import replace

import pytest

from memsim import sim
from memsim.calibration import calibration_for
from memsim.compiled import CompiledFacts, lookup
from memsim.costs import _outside_spills
from memsim.hardware import load_hardware
from memsim.schedule import AttentionProblem, Schedule, kernel_launches

HW = load_hardware("h100-sxm")
CAL = calibration_for(HW)
P = AttentionProblem(2, 4, 4, 512, 512, 64, dtype="fp16")
S = Schedule("flash2", "fwd", 64, 64, 4, 2)


def _facts(regions: dict | None) -> CompiledFacts:
    base = lookup("flash2_fwd", P, S)
    if base is None:  # the table lacks this shape: a plain entry with the loop's own figures
        base = CompiledFacts(launch="flash2_fwd", regs_per_thread=128, spill_store_bytes=0, spill_load_bytes=0,
                             local_bytes_per_thread=0, shared_bytes=24576, num_warps=4, num_stages=2, source="test")
    return replace(base, local_regions=regions, local_bytes_per_thread=max(base.local_bytes_per_thread, 256))


@pytest.mark.parametrize("regions, cta, walk", [
    ({"straight": [64, 32]}, (64, 32), (0, 0)),
    ({"straight": [64, 32], "pre_straight": [16, 16]}, (80, 48), (0, 0)),
    ({"walk": [8, 8], "pre_walk": [100, 100]}, (0, 0), (8, 8)),  # a pre-header inside the walk: only with a trip
    ({"tile": [40, 40], "other": [12, 12]}, (0, 0), (0, 0)),  # the loop's own and its masked copy: booked per trip
])
def test_regions_to_bytes(regions, cta, walk):
    f = _facts(regions)
    threads = 128
    got_cta, got_walk = _outside_spills(f, CAL, threads, reload_per_byte=0.5, once_per_cta=False, walks=True)
    assert _outside_spills(f, CAL, threads, reload_per_byte=0.5, once_per_cta=False)[1] == (0, 0), \
        "a loop around the tile loop that is not a persistent walk is not booked"
    w = CAL.l2_write_per_spill_store_byte
    assert got_cta == (int(w * cta[0] * threads), int(0.5 * cta[1] * threads))
    assert got_walk == (int(w * walk[0] * threads), int(0.5 * walk[1] * threads))


def test_no_tile_loop_means_no_extra():
    """A kernel without a tile loop books its static counts once per CTA already: nothing added."""
    assert _outside_spills(_facts({"straight": [64, 64]}), CAL, 128, 1.0, once_per_cta=True) == ((0, 0), (0, 0))
    assert _outside_spills(_facts(None), CAL, 128, 1.0, once_per_cta=False) == ((0, 0), (0, 0))


def test_engine_books_the_prologue_once_per_cta():
    n_ctas = kernel_launches(P, S)[0].num_ctas
    base = sim.simulate(P, S, HW, compiled_facts={"flash2_fwd": _facts(None)}).to_dict()["kernels"][0]
    out = sim.simulate(P, S, HW, compiled_facts={"flash2_fwd": _facts({"straight": [64, 32]})}).to_dict()["kernels"][0]
    (w, r), _ = _outside_spills(_facts({"straight": [64, 32]}), CAL, 128, CAL.l2_read_per_spill_load_byte, False)
    extra_w = out["spill_l2_write_bytes"] - base["spill_l2_write_bytes"]
    extra_r = out["spill_l2_read_bytes"] - base["spill_l2_read_bytes"]
    assert extra_w == w * n_ctas, f"stores outside the loop: {extra_w} B booked, {w} x {n_ctas} CTAs expected"
    assert extra_r >= r * n_ctas * 0.99 and out["l2_write_bytes"] - base["l2_write_bytes"] == extra_w
    assert out["time_s"] >= base["time_s"]
