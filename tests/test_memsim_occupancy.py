"""CTAs per SM from each launch's compiled kernel (memsim.costs.launch_cost): registers AND shared memory.

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
