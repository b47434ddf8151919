"""The hopper forward compiled for sm_90a on the CPU (Triton 3.6's own compiler, no GPU): the warp-specialised
loop really is partitioned, its shared memory is what the registry's SRAM formula says, and the row indices of the
second consumer warpgroup are not offset twice (the Triton 3.6 partitioner bug that made causal masks and lse rows
64 rows off on the H100; notes/hopper.md).  One compile, in a subprocess without TRITON_INTERPRET."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

_SCRIPT = r"""
import json, os, sys
os.environ.pop("TRITON_INTERPRET", None)
import triton
from triton.backends.compiler import GPUTarget
from kernels.compiled_facts import capture, _specialise
from memsim.schedule import AttentionProblem, Schedule, sram_bytes_per_cta
p = AttentionProblem(1, 2, 2, 1000, 1000, 128, "bf16", True)
s = Schedule("hopper", "fwd", 128, 128, 4, 2)
(jf, args, kw, grid), = capture(p, s)
t = GPUTarget("cuda", 90, 32)
src, opt = _specialise(jf, args, kw, t)
ck = triton.compile(src, target=t, options=opt.__dict__)
print(json.dumps({"ttgir": ck.asm["ttgir"], "shared": ck.metadata.shared, "warps": ck.metadata.num_warps,
                  "sram": sram_bytes_per_cta(p, s)}))
"""


@pytest.fixture(scope="module")
def compiled():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"sm_90a compile failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_loop_is_warp_specialised(compiled):
    ttg = compiled["ttgir"]
    assert ttg.count("ttg.warp_specialize(") == 1 and "partition1(" in ttg
    assert compiled["warps"] == 12  # a producer warpgroup + two consumer warpgroups


def test_shared_memory_is_the_registry_formula_plus_barriers(compiled):
    extra = compiled["shared"] - compiled["sram"]
    assert 0 <= extra < 1024, (compiled["shared"], compiled["sram"])  # only mbarriers beside the tiles


def _partitions(ttg: str) -> list[str]:
    parts = re.split(r"\n\s*partition\d+\(", ttg)
    return parts[1:]


def test_second_consumer_row_indices_are_not_offset_twice(compiled):
    """In each consumer partition, no `splat(x) + make_range(start=64..)` where x = start_m + 64."""
    bad = []
    for k, part in enumerate(_partitions(compiled["ttgir"])):
        defs = {}
        for line in part.splitlines():
            m = re.match(r"\s*(%[\w.]+)(?::\d+)? = (.*)", line)
            if m:
                defs[m.group(1)] = m.group(2)
        plus64 = {n for n, d in defs.items() if re.match(r"arith\.addi %[\w.]+, %c64_i32", d)}
        splat_plus64 = {n for n, d in defs.items()
                        if (m := re.match(r"tt\.splat (%[\w.]+)", d)) and m.group(1) in plus64}
        ranges_hi = {n for n, d in defs.items() if d.startswith("tt.make_range") and "start = 64" in d}
        for n, d in defs.items():
            m = re.match(r"arith\.addi (%[\w.]+), (%[\w.]+)", d)
            if m and {m.group(1), m.group(2)} & splat_plus64 and {m.group(1), m.group(2)} & ranges_hi:
                bad.append(f"partition{k}: {n} = {d[:120]}")
    assert not bad, "row indices offset twice (Triton's partitioner bug is back):\n" + "\n".join(bad)


def test_the_check_above_can_fail():
    """The pattern the H100 run exposed, as it appeared in the TTGIR of the first version."""
    ttg = ("\n    partition0(%a) {\n"
           "      %48 = arith.addi %start_m, %c64_i32_12 {x} : i32\n"
           "      %offs_m_21 = tt.make_range {async_task_id = array<i32: 2>, end = 128 : i32, start = 64 : i32} : t\n"
           "      %offs_m_23 = tt.splat %48 {x} : i32 -> tensor<64xi32>\n"
           "      %offs_m_25 = arith.addi %offs_m_23, %offs_m_21 {x} : tensor<64xi32>\n")
    with pytest.raises(AssertionError, match="offset twice"):
        test_second_consumer_row_indices_are_not_offset_twice({"ttgir": ttg})


_WS_BWD_SCRIPT = r"""
import json, os, sys
os.environ.pop("TRITON_INTERPRET", None)
import triton
from triton.backends.compiler import GPUTarget
from kernels.compiled_facts import capture, _specialise
from memsim.schedule import AttentionProblem, Schedule
p = AttentionProblem(1, 4, 2, 1000, 1000, 128, "bf16", True)
t = GPUTarget("cuda", 90, 32)
for jf, args, kw, grid in capture(p, Schedule("hopper_ws", "bwd", 64, 128, 4, 2)):
    if jf.fn.__name__ == "_hopper_bwd_dkdv_ws":
        src, opt = _specialise(jf, args, kw, t)
        ck = triton.compile(src, target=t, options=opt.__dict__)
        print(json.dumps({"ttgir": ck.asm["ttgir"], "warps": ck.metadata.num_warps}))
"""


def test_ws_backward_dkdv_pass_rows_not_offset_twice():
    """hopper_ws bwd's warp-specialised dK/dV pass (run4's LOOP='ws+f2dq'; kernels/hopper_bwd.py), compiled for sm_90a: it is
    partitioned (12 warps, two consumers) and no consumer forms its K/V rows as splat(start + 64) + range(64, 128)
    (run3 on the H100 stored the second consumer's dK/dV rows 64 too far); and no TMA copy is larger than its barrier's
    expected bytes (benchmarks/hopper_triton_ws_tma_split_bug.py)."""
    pytest.importorskip("triton")
    sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
    from hopper_triton_ws_bug import doubled_offsets
    from hopper_triton_ws_tma_split_bug import copies
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _WS_BWD_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"sm_90a compile failed:\n{r.stderr[-3000:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert d["warps"] == 12 and "partition1(" in d["ttgir"]
    assert doubled_offsets(d["ttgir"]) == []
    assert [c for c in copies(d["ttgir"]) if c[0] > c[1]] == []
