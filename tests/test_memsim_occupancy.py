"""memsim.costs.launch_cost from the compiled kernel: CTAs per SM from registers AND shared memory; spill reloads in
the replay.

A case's launches share one schedule, but not their shared memory: set E's naive softmax allocates none while the
schedule's nominal tiles (what `sram_bytes_per_cta` says for the whole case) need ~100 KB; taking the nominal figure
gave it 1 CTA per SM where 12 fit (the case was predicted 9.8x too slow)."""
from __future__ import annotations

import pytest

from memsim.calibration import calibration_for
from memsim.compiled import CompiledFacts
from memsim.costs import launch_cost
from memsim.hardware import load_hardware
from memsim.schedule import AttentionProblem, Schedule

HW = load_hardware("h100-sxm")
CAL = calibration_for(HW)
P = AttentionProblem(batch=4, heads_q=8, heads_kv=8, seq_q=1024, seq_kv=1024, head_dim=64, dtype="fp16")
S = Schedule("naive", "fwd", 64, 64, 4, 2)


def _facts(shared, regs=64, warps=4):
    return CompiledFacts(launch="naive_softmax", regs_per_thread=regs, spill_store_bytes=0, spill_load_bytes=0,
                         local_bytes_per_thread=0, shared_bytes=shared, num_warps=warps, num_stages=2, source="test")


@pytest.mark.parametrize("compiled_shared, nominal, want", [
    (0, 100_000, 8),            # registers bind (64 x 128 threads: 8 CTAs), the nominal tiles would say 2
    (100_000, 0, 2),            # the compiled kernel's 100 KB bind though the schedule says none
    (56_000, 56_000, 4),        # both agree: 233472 // (56000 + 1024 reserved)
])
def test_shared_memory_of_the_compiled_launch_decides(compiled_shared, nominal, want):
    c = launch_cost(HW, CAL, "naive_softmax", P, S, nominal, facts=_facts(compiled_shared), num_ctas=4096)
    assert c.ctas_per_sm == want, (f"compiled {compiled_shared} B, nominal {nominal} B: {c.ctas_per_sm} CTAs per SM "
                                   f"({c.occupancy_limit}), expected {want}")


def test_without_compiled_facts_the_nominal_tiles_decide():
    c = launch_cost(HW, CAL, "no_such_launch", P, S, 100_000, num_ctas=4096)
    assert c.ctas_per_sm == 2 and c.occupancy_limit == "shared memory", (c.ctas_per_sm, c.occupancy_limit)


def _replayed(tile, local_l2, *, spills=True):
    issue = {"tile_cycles": [tile] * 8, "straight_cycles": [0.0] * 8, "tile_instructions": 500,
             "straight_instructions": 0, "tile_mma_flops_per_warp": 0.0, "latencies": CAL.issue.fingerprint(),
             "profile": 7}
    if local_l2 is not None:
        issue["tile_cycles_local_l2"] = [local_l2] * 8
    loop = {"instructions": 500, "local_store_bytes": 64 if spills else 0, "local_load_bytes": 64 if spills else 0,
            "label": ".L"}
    return CompiledFacts(launch="flash2_fwd", regs_per_thread=255, spill_store_bytes=64 if spills else 0,
                         spill_load_bytes=64 if spills else 0, local_bytes_per_thread=4096 if spills else 0,
                         shared_bytes=32768, num_warps=4, num_stages=2, source="test", loop=loop, issue=issue)


def test_spill_reloads_move_the_replay_by_their_expected_latency():
    """issue = L1-hit replay + x (L2-hit replay - L1-hit replay), x = (expected reload latency - L1 hit) / (L2 - L1
    hit) from memsim.local_memory's miss fractions; the spill-rate curve then no longer binds."""
    p, s = AttentionProblem(batch=8, heads_q=16, heads_kv=16, seq_q=4096, seq_kv=4096, head_dim=128), \
        Schedule("flash2", "fwd", 128, 64, 4, 2)
    base = launch_cost(HW, CAL, "flash2_fwd", p, s, 32768, facts=_replayed(10000.0, None), num_ctas=4096)
    more = launch_cost(HW, CAL, "flash2_fwd", p, s, 32768, facts=_replayed(10000.0, 20000.0), num_ctas=4096)
    lat, loc = CAL.issue, more.local
    hit = lat.cycles["LDL"]
    expect = (1 - loc.l1_miss_fraction) * hit + loc.l1_miss_fraction * (
        (1 - loc.dram_read_fraction) * lat.load_l2_cycles + loc.dram_read_fraction * lat.load_dram_cycles)
    x = (expect - hit) / (lat.load_l2_cycles - hit)
    resident = more.ctas_per_sm
    want = base.issue_s_per_tile + x * 10000.0 * resident / min(resident, 8) / (resident * CAL.sm_clock_Hz)
    assert more.issue_s_per_tile == pytest.approx(want, rel=1e-9), (more.issue_s_per_tile, want, x)
    assert 0 < x and more.local_s_per_tile == 0.0 and base.local_s_per_tile > 0.0, (x, more.local_s_per_tile,
                                                                                     base.local_s_per_tile)


@pytest.mark.parametrize("mma", [0, 24])
def test_kernels_with_tensor_instructions_run_at_the_tensor_clock(mma):
    """The replay's cycles become seconds at `Calibration.mma_sm_clock_Hz` (the `tile_loop` fact: 1.79 GHz) when the
    kernel's SASS has HMMA / HGMMA instructions, else at `sm_clock_Hz` (1.98 GHz)."""
    from dataclasses import replace
    p, s = AttentionProblem(batch=8, heads_q=16, heads_kv=16, seq_q=4096, seq_kv=4096, head_dim=64), \
        Schedule("flash2", "fwd", 128, 64, 4, 2)
    f = _replayed(8000.0, None, spills=False)
    f = replace(f, issue={**f.issue, "straight_cycles": [1000.0] * 8, "mma_instructions": mma, "profile": 8})
    c = launch_cost(HW, CAL, "flash2_fwd", p, s, 32768, facts=f, num_ctas=4096)
    clock = CAL.mma_sm_clock_Hz if mma else CAL.sm_clock_Hz
    r = c.ctas_per_sm
    assert c.issue_s_per_tile == pytest.approx(8000.0 * r / min(r, 8) / (r * clock), rel=1e-9), (c.issue_s_per_tile,
                                                                                               clock)
    assert c.cta_fixed_s == pytest.approx(1000.0 * r / min(r, 8) / (r * clock), rel=1e-9)
    assert ("tensor clock" in c.facts_source) == bool(mma), c.facts_source


def test_tensor_clock_is_the_median_of_the_tile_loop_tensor_launches():
    """`derive` reads the tensor clock from the `tile_loop` fact's launches with tensor instructions only; those
    launches never move the calibration clock (`sm_clock_Hz`, the issue figures' clock)."""
    import copy
    import json

    from memsim.calibration import calibration_path, derive
    raw = json.loads(calibration_path(HW).read_text())
    raw2 = copy.deepcopy(raw)
    raw2["facts"]["tile_loop"] = [{"mma": True, "sm_clock_Hz": 1.70e9}, {"mma": True, "sm_clock_Hz": 1.80e9},
                                  {"mma": True, "sm_clock_Hz": 1.75e9}, {"mma": False, "sm_clock_Hz": 1.2e9}]
    a, b = derive(raw, HW), derive(raw2, HW)
    assert b.mma_sm_clock_Hz == pytest.approx(1.75e9), b.mma_sm_clock_Hz
    assert b.sm_clock_Hz == a.sm_clock_Hz and b.issue.fingerprint() == a.issue.fingerprint()
    raw2["facts"].pop("tile_loop")
    assert derive(raw2, HW).mma_sm_clock_Hz is None
