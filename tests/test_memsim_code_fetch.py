"""A launch reads its kernel's code from DRAM once after an L2 flush (memsim/MODEL.md "the kernel's code"): the DRAM
level gains `code_bytes`, the global and L2 (TEX-unit) levels do not; without a flush nothing changes."""
from __future__ import annotations

from dataclasses import replace

import pytest

from memsim import sim
from memsim.compiled import CompiledFacts, lookup
from memsim.schedule import AttentionProblem, Schedule

P = AttentionProblem(1, 2, 2, 256, 256, 64, dtype="fp16")
S = Schedule("flash2", "fwd", 64, 64, 4, 2)


def _facts(code_bytes):
    base = lookup("flash2_fwd", P, S) or CompiledFacts(
        launch="flash2_fwd", regs_per_thread=128, spill_store_bytes=0, spill_load_bytes=0, local_bytes_per_thread=0,
        shared_bytes=24576, num_warps=4, num_stages=2, source="test")
    return replace(base, code_bytes=code_bytes)


@pytest.mark.parametrize("code", [16 * 1024, 200 * 1024])
def test_code_is_read_once_per_launch_from_dram(code):
    a = sim.simulate(P, S, "h100-sxm", compiled_facts={"flash2_fwd": _facts(None)}).to_dict()["kernels"][0]
    b = sim.simulate(P, S, "h100-sxm", compiled_facts={"flash2_fwd": _facts(code)}).to_dict()["kernels"][0]
    assert b["dram_read_bytes"] - a["dram_read_bytes"] == code
    for key in ("global_read_bytes", "l2_read_bytes", "dram_write_bytes"):
        assert b[key] == a[key], f"{key}: {a[key]} -> {b[key]}"


def test_no_flush_no_fetch():
    a = sim.simulate(P, S, "h100-sxm", flush_l2=False, compiled_facts={"flash2_fwd": _facts(None)}).to_dict()
    b = sim.simulate(P, S, "h100-sxm", flush_l2=False, compiled_facts={"flash2_fwd": _facts(65536)}).to_dict()
    assert b["kernels"][0]["dram_read_bytes"] == a["kernels"][0]["dram_read_bytes"]
