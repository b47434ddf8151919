"""benchmarks/tma_l2_gpu.py: its cases are valid schedules that fit the H100's shared memory, the pairs it compares
(hopper vs flash2, share vs solo) exist for every head dim, and the committed run has a record per case."""
from __future__ import annotations

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
RUN = ROOT / "verification/data/nvidia-h100-80gb-hbm3/calibration/tma_l2-2026-11-26T1316"


def _cases():
    from tma_l2_gpu import cases
    return cases()


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c.name)
def test_case_is_a_valid_schedule_that_fits(case):
    from memsim.schedule import kernel_launches
    from memsim.hardware import load_hardware
    from kernels._common import sram_bytes_per_cta
    launches = kernel_launches(case.problem, case.schedule)
    assert launches, case
    hw = load_hardware("h100-sxm")
    assert sram_bytes_per_cta(case.problem, case.schedule) <= hw.smem_per_sm_bytes, case


def test_every_head_dim_has_both_paths_shared_and_alone():
    from tma_l2_gpu import D_VALUES
    names = {c.name for c in _cases()}
    missing = [f"tmal2_{a}_d{d}_{s}" for d in D_VALUES for a in ("hopper", "flash2") for s in ("share", "solo")
               if f"tmal2_{a}_d{d}_{s}" not in names]
    assert not missing, missing


def test_committed_run_has_a_record_per_case():
    have = {p.stem for p in RUN.glob("tmal2_*.json")}
    want = {c.name for c in _cases()}
    assert have == want, (sorted(want - have), sorted(have - want))
