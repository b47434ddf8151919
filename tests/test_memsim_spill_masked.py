"""Spill bytes of the masked copy of the tile loop (memsim.spill_masked; notes/spills.md session 13).

ncu's local store / load bytes per launch (kept in every random-set record) against the compiled table's SASS counts:
each trip runs its own loop copy's STL / LDL.  These tests read committed records and the compiled table, no GPU.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from memsim import compiled
from memsim.spill_masked import BAND_ENV, band_local_bytes, cta_spill_mix, trip_spill_factors

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "verification/data/nvidia-h100-80gb-hbm3/random"
ST, LD = "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum", "l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum"

#: (record, launch, trips per CTA, of them in the masked copy, the picked tile loop is the masked copy)
#: S 015: hopper_bwd_dkdvdq, 12 Q blocks of 128 rows per 16-key block, causal top-left: only Q block 0 holds the
#: diagonal of keys 0..106 -- 1 masked trip, 11 whole; ptxas' first MMA-work loop (the tile loop) is the masked one.
#: R 015: flash2_bwd_dq, 110 x 110 causal bottom-right, 128-key blocks: each of the 2 Q-block CTAs makes one trip,
#: in the masked copy; the tile loop is the whole copy.
CASES = [
    ("S-seed26112622/r26112622_015_hopper_fa3_bwd_fp32_d32_q1536_k107_bh13.json", "hopper_bwd_dkdvdq", 12, 1, True),
    ("R-seed26112621/r26112621_015_flash2_bwd_fp32_d32_q110_k110_bh1.json", "flash2_bwd_dq", 1, 1, False),
]


def _launch(path, launch):
    rec = json.loads((DATA / path).read_text())
    from verification.suite import case_from_record
    case = case_from_record(rec)
    k = next(i for i, x in enumerate(rec["kernels"]) if x["name"] == launch)
    ctas = math.prod(int(x) for x in rec["kernels"][k]["grid"].strip("()").split(","))
    ms = [rp["metrics"][k] for rp in rec["repeats"]]
    med = lambda key: sorted(m[key] for m in ms)[len(ms) // 2]  # noqa: E731
    f = compiled.lookup(launch, case.problem, case.schedule)
    threads = 32 * f.num_warps
    return f, med(ST) / (ctas * threads), med(LD) / (ctas * threads)


@pytest.mark.parametrize("path,launch,trips,masked,tile_is_masked", CASES, ids=["S015", "R015"])
def test_each_trip_runs_its_own_copys_spills(path, launch, trips, masked, tile_is_masked):
    """Per thread per CTA, ncu's local bytes = the code outside the loop + masked trips x the masked copy's bytes + the
    rest x the whole copy's (within 2 %); the model's rule -- every trip at the picked loop's bytes -- is off by more
    than 20 % on both."""
    f, st, ld = _launch(path, launch)
    reg = f.local_regions
    outside = [sum(reg.get(n, (0, 0))[i] for n in ("straight", "pre_straight")) for i in (0, 1)]
    tile = (f.loop["local_store_bytes"], f.loop["local_load_bytes"])
    other = tuple(reg["other"])
    m_b, w_b = (tile, other) if tile_is_masked else (other, tile)
    for i, meas in ((0, st), (1, ld)):
        per_copy = outside[i] + masked * m_b[i] + (trips - masked) * w_b[i]
        picked = outside[i] + trips * tile[i]
        assert abs(per_copy / meas - 1) < 0.02, (i, per_copy, meas)
        assert abs(picked / meas - 1) > 0.2, (i, picked, meas)


def _entry(launch, band_masked=None, band_local=None, other=None, st=1000, ld=2000, band_instructions=None):
    iss = {}
    if band_instructions is not None:
        iss["band_instructions"] = band_instructions
    if band_masked is not None:
        iss["band_masked"] = band_masked
    if band_local is not None:
        iss["band_local_bytes"] = band_local
    return SimpleNamespace(launch=launch, issue=iss, loop={"local_store_bytes": st, "local_load_bytes": ld},
                           local_regions={"tile": [st, ld], **({"other": other} if other else {})})


def test_factors_follow_the_kernels_program_order(monkeypatch):
    monkeypatch.delenv(BAND_ENV, raising=False)
    # dK/dV passes run their masked copy first (the tile loop): whole trips at the other copy's bytes
    assert trip_spill_factors(_entry("hopper_bwd_dkdvdq", other=[250, 500])) == ((0.25, 0.25), (1.0, 1.0))
    # forward / dQ: the other copy is the masked one; band_local_bytes wins over local_regions
    assert trip_spill_factors(_entry("flash2_bwd_dq", band_local=[1500, 3000], other=[1, 1])) == ((1.0, 1.0), (1.5, 1.5))
    # the table's band_masked (the SASS's: the copy with the mask's selects) decides where the entry has it
    assert trip_spill_factors(_entry("hopper_fwd", band_masked=False, other=[500, 500])) == ((0.5, 0.25), (1.0, 1.0))
    assert trip_spill_factors(_entry("hopper_fwd", band_masked=True, other=[500, 500])) == ((1.0, 1.0), (0.5, 0.25))
    # a launch without two copies, an entry that says it has no band, no bytes, identical copies: nothing to scale
    assert trip_spill_factors(_entry("flash1_fwd", other=[12, 12])) is None
    assert trip_spill_factors(_entry("flash2_fwd", other=[250, 500], band_instructions=0)) is None
    assert band_local_bytes(_entry("flash2_fwd", other=[0, 0])) is None
    assert trip_spill_factors(_entry("flash2_fwd", other=[1000, 2000])) is None
    monkeypatch.setenv(BAND_ENV, "0")
    assert trip_spill_factors(_entry("hopper_bwd_dkdvdq", other=[250, 500])) is None


def test_the_order_rule_matches_the_two_live_cases():
    """S 015's launch runs its masked copy first (the tile loop is masked), R 015's dQ second."""
    from memsim.spill_masked import MASKED_SECOND
    assert [MASKED_SECOND[c[1]] for c in CASES] == [not c[4] for c in CASES]


def test_a_ctas_mix_is_its_share_of_masked_trips():
    f = ((0.25, 0.5), (1.0, 1.0))
    assert cta_spill_mix(f, 1, 12) == pytest.approx((0.25 + 0.75 / 12, 0.5 + 0.5 / 12))
    assert cta_spill_mix(f, 0, 5) == (0.25, 0.5)
    assert cta_spill_mix(f, 9, 5) == (1.0, 1.0)
    assert cta_spill_mix(None, 1, 2) == (1.0, 1.0)
    assert cta_spill_mix(f, 1, 0) == (1.0, 1.0)
