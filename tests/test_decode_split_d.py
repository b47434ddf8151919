"""The head dim of V and O divided between CTAs that share a unit's keys (DecodeSchedule.split_d; issue 12, session 14):
launches, the schedule's checks, exactness in the interpreter (every split_d CTA writes its columns; the LSE once)."""
from __future__ import annotations

import os
from dataclasses import replace

import pytest

from memsim.inference import DecodeProblem, DecodeSchedule, decode_launches, v_columns
from memsim.schedule import ScheduleError


def test_split_d_grid_and_checks():
    p = DecodeProblem.uniform(8, 32, 8, 128, 1024, dtype="bf16")
    s = DecodeSchedule(num_splits=1, split_d=2)
    assert decode_launches(p, s)[0].grid == (1, 8 * 8 * 2, 1)
    assert [L.name for L in decode_launches(p, s)] == ["decode_split"]
    assert v_columns(p, s) == 64 and v_columns(p, DecodeSchedule()) == 128
    assert [L.grid for L in decode_launches(p, replace(s, num_splits=4))] == [(4, 128, 1), (4, 64, 1)]
    assert "split_d" not in DecodeSchedule().to_dict() and DecodeSchedule(split_d=2).to_dict()["split_d"] == 2
    for bad in (0, 3, 16, True):
        with pytest.raises(ScheduleError):
            DecodeSchedule(split_d=bad)
    with pytest.raises(ScheduleError, match="columns"):  # d = 16 has no room for two 16-column parts
        decode_launches(DecodeProblem.uniform(1, 4, 2, 16, 64, dtype="fp16"), DecodeSchedule(split_d=2))


def _interp():
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 set before triton is imported (the kernel tests' conftest)")


@pytest.mark.parametrize("name,sd,extra", [
    ("ragged_odd_split3", 2, {}), ("gqa4_fp32_split4", 4, {}), ("mqa_split2", 2, {"combine_fused": True}),
    ("paged16_ragged_split3", 2, {}), ("paged64_split2", 2, {"combine_fused": True}),
    ("gqa4_fp32_split4", 2, {"num_splits": 1}), ("ragged_odd_split3", 2, {"combine_fused": True})])
def test_split_d_exact_in_the_interpreter(name, sd, extra):
    """Each case passes the rule with split_d CTAs per unit (poisoned outputs: every column is written)."""
    _interp()
    from kernels.decode_testing import CASES, run_decode_case
    B, Nq, Hq, Hkv, d, lens, dt, page, S = CASES[name]
    sched = DecodeSchedule(num_splits=S or 1, block_n=16, num_warps=1, num_stages=1, split_d=sd,
                           page_prefetch=page is not None)
    sched = replace(sched, **extra)
    run_decode_case(B, Nq, Hq, Hkv, d, lens, dt, "cpu", page_size=page, schedule=sched, verbose=False)


def test_split_d_varlen_exact_in_the_interpreter():
    _interp()
    from kernels.decode_testing import VARLEN_CASES, run_varlen_case
    c = VARLEN_CASES["split3_q_longer_than_cache"]
    run_varlen_case("split3_q_longer_than_cache", "cpu", verbose=False,
                    case=(*c[:8], {**c[8], "split_d": 2, "block_n": 16, "num_warps": 1, "num_stages": 1}))
