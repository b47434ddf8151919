"""TMA loads move whole boxes (memsim.workloads_hopper): the global/L2 traffic of a ragged tile is its full box,
the byte contract (sectors=False) is the rows that exist -- as set C's hopper cases measured on the H100."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import memsim
from memsim.schedule import AttentionProblem, Schedule

DATA = Path(__file__).resolve().parent.parent / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "random"


@pytest.mark.parametrize("seq, bm, bn", [(9, 64, 64), (100, 64, 32), (128, 64, 64)])
def test_ragged_tiles_load_whole_boxes(seq, bm, bn):
    hw = memsim.load_hardware("h100-sxm")
    p = AttentionProblem(1, 1, 1, seq, seq, 64, dtype="fp16")
    s = Schedule("hopper", "fwd", block_m=bm, block_n=bn, num_warps=4, num_stages=2)
    traffic = memsim.simulate(p, s, hw).total["global_read_bytes"]
    contract = memsim.simulate(p, s, hw, sectors=False).total["global_read_bytes"]
    row = 64 * 2
    mb, nb = -(-seq // bm), -(-seq // bn)
    assert contract == seq * row + mb * 2 * seq * row  # Q once, K and V once per Q block: the rows that exist
    want = mb * bm * row + mb * 2 * nb * bn * row  # every CTA: its Q box, then all K and V boxes
    assert traffic == want, f"seq {seq}, {bm}x{bn}: traffic {traffic} B, whole boxes {want} B"
    assert (traffic > contract) is (seq % bm != 0 or seq % bn != 0)


def test_matches_the_measured_set_c_case():
    f = DATA / "C-seed112526" / "r112526_002_hopper_fwd_fp16_d256_q9_k9_bh28.json"
    if not f.exists():
        pytest.skip("set C not committed")
    r = json.loads(f.read_text())
    from memsim.schedule import problem_from_dict, schedule_from_dict
    pred = memsim.simulate(problem_from_dict(r["problem"]), schedule_from_dict(r["schedule"]), "h100-sxm").total
    measured = r["total"]["global_read_bytes"]
    assert pred["global_read_bytes"] == pytest.approx(measured, rel=0.01), (pred["global_read_bytes"], measured)
