"""Sector granularity of misaligned rows (memsim.sectors) against the row_alignment microbenchmark."""
from __future__ import annotations

import json

import pytest

from memsim.calibration import calibration_path
from memsim.hardware import load_hardware
from memsim.sectors import row_sector_factor, sectors_touched

ELEM = {"fp16": 2, "bf16": 2, "fp32": 4}


@pytest.mark.parametrize("offset, nbytes, want", [(0, 32, 1), (0, 64, 2), (2, 64, 3), (16, 64, 3), (31, 2, 2),
                                                  (0, 1, 1), (5, 0, 0)])
def test_sectors_touched(offset, nbytes, want):
    assert sectors_touched(offset, nbytes) == want


def _row_alignment_points():
    p = calibration_path(load_hardware("h100-sxm"))
    pts = json.loads(p.read_text())["facts"].get("row_alignment") or []
    return [pytest.param(r, id=r["id"]) for r in pts]


@pytest.mark.parametrize("point", _row_alignment_points())
def test_rule_reproduces_the_measured_sector_bytes(point):
    e = ELEM[point["dtype"]]
    contract = point["rows"] * point["cols"] * e
    measured = point["median"]["l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum"] / contract
    model = row_sector_factor(point["pitch"] * e, point["cols"] * e, e)
    assert model == pytest.approx(measured, abs=0.005), (
        f"{point['id']}: measured {measured:.4f} sector bytes per byte, rule {model:.4f}")


def test_row_alignment_was_measured():
    assert len(_row_alignment_points()) >= 8, "the calibration file lacks the row_alignment fact"


@pytest.mark.parametrize("args", [(0, 64, 2), (64, 0, 2), (64, 64, 0)])
def test_bad_arguments(args):
    with pytest.raises(ValueError, match="positive"):
        row_sector_factor(*args)


def test_short_contiguous_rows_are_one_run():
    # seq_kv = 1: rows of 2 bytes, one instruction covers 32 rows contiguously
    assert row_sector_factor(2, 2, 2) == 1.0


@pytest.mark.parametrize("pitch, seg, lane, share, want", [
    (8, 8, 2, False, 4.0),    # 4-key fp16 rows in a tile kernel: a whole sector per 8-byte row (set D, measured 4.0x)
    (8, 8, 2, True, 1.0),     # the same rows in the row kernels' whole-row tiles: lanes span rows
    (2, 2, 2, False, 1.0),    # one-element rows: unit stride, lanes along the rows (set B's seq_kv = 1 cases)
])
def test_short_rows(pitch, seg, lane, share, want):
    assert row_sector_factor(pitch, seg, lane, rows_share_instructions=share) == pytest.approx(want)
