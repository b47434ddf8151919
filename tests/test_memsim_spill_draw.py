"""memsim.spill_draw: a tile loop's replay with each spill reload drawn (notes/spills.md sessions 11-12; diagnostic,
used only behind MEMSIM_SPILL_DRAW)."""
import pickle
from dataclasses import replace

import pytest

import memsim
from memsim import spill_draw as S
from memsim.calibration import load_calibration
from memsim.warp_issue import Instr, replay


def _body():
    # two reloads issued back to back, then each used (a batch of 2), a little arithmetic between trips
    return [Instr("LDL", 1, write_sb=0), Instr("LDL", 1, write_sb=1), Instr("FFMA", 4, wait_mask=0b11),
            Instr("STL", 1), Instr("FFMA", 4), Instr("FFMA", 4)]


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    entry = {"launch": "x", "regs_per_thread": 255, "local_bytes_per_thread": 64, "shared_bytes": 0,
             "num_warps": 1, "num_stages": 1, "issue": {"tile_cycles": [10.0], "tile_cycles_local_l2": [20.0]}}
    fp = S.fingerprint(entry)
    (tmp_path / S.body_file(fp)).write_bytes(pickle.dumps({"key": "k", "fingerprint": fp, "body": _body()}))
    monkeypatch.setenv("MEMSIM_SPILL_DRAW", str(tmp_path))
    S._body.cache_clear()
    S._drawn.cache_clear()
    return entry


def test_no_folder_no_draw(monkeypatch):
    monkeypatch.delenv("MEMSIM_SPILL_DRAW", raising=False)
    lat = load_calibration(memsim.load_hardware("h100-sxm")).issue
    assert S.drawn_cycles({"launch": "x"}, warps=1, ctas=1, lat=lat, m=0.5, d=0.1, dram_cycles=683) is None


def test_the_draw_ends_at_the_two_replays_the_table_keeps(folder):
    lat = load_calibration(memsim.load_hardware("h100-sxm")).issue.at_load_latency("l2")
    body = _body()
    all_l1 = replay(body, warps_per_cta=1, ctas=2, lat=lat)
    all_l2 = replay(body, warps_per_cta=1, ctas=2, lat=replace(lat, local_cycles=lat.load_l2_cycles))
    assert S.drawn_cycles(folder, warps=1, ctas=2, lat=lat, m=0.0, d=0.0, dram_cycles=683) == pytest.approx(all_l1)
    assert S.drawn_cycles(folder, warps=1, ctas=2, lat=lat, m=1.0, d=0.0, dram_cycles=683) == pytest.approx(all_l2)
    # every reload a DRAM miss: the batch waits the DRAM latency
    assert S.drawn_cycles(folder, warps=1, ctas=2, lat=lat, m=1.0, d=1.0, dram_cycles=1500) > all_l2 + 1000
