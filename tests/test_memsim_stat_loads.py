"""Per-row statistics that every warp loads (kernels.stat_loads, memsim.sectors.stat_load_count, memsim.sim).

The anchor is ncu's per-instruction count of a real flash2 dK/dV pass (benchmarks/ldg_sectors_gpu.sh, H100 80GB HBM3,
2026-11-26 18:04 UTC, verification/data/nvidia-h100-80gb-hbm3/calibration/run-2026-11-26T1804-ldg_sectors.tar.gz):
bf16 d64 bm128 bn64 w8, seq_q 1024 -- at one stage lse / delta as 16 LDG.E.64 per warp and trip each, one L2 sector
per instruction (2048 executions each), the launch's L1 global load sectors 344,064; at two stages 16 LDGSTS.E.64
each that only one warp's 4 lanes execute (224 tag requests of 2048 executions), 286,720 sectors.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from memsim.costs import stat_loads_key
from memsim.sectors import stat_load_count

ROOT = Path(__file__).resolve().parents[1]
LDG_RUN = ROOT / "verification/data/nvidia-h100-80gb-hbm3/calibration/run-2026-11-26T1804-ldg_sectors.tar.gz"


def _mma_columns(length: int, warps: int, vec: int) -> tuple:
    """The MMA accumulator's column slice as kernels.stat_loads reads it: lane group g = lane % 4 holds columns
    8j + 2g, 8j + 2g + 1; every warp holds every column."""
    per_thread = [[8 * j + 2 * g + c for j in range(length // 8) for c in (0, 1)] for g in range(4)]
    instrs = tuple(tuple(sorted({e for g in range(4) for e in per_thread[g][k:k + vec]}))
                   for k in range(0, len(per_thread[0]), vec))
    return length, ((warps, instrs),)


@pytest.mark.parametrize("pitch, vec, warps, want", [
    # aligned rows, two elements a lane: 4 lane groups x 8 B = one whole sector an instruction: the bytes once per warp
    (1024, 2, 8, 8.0),
    (1024, 2, 4, 4.0),
    # one element a lane, rows on the sector: instruction (j, c) touches 8j+c .. 8j+6+c, one sector, for 16 B of it
    (1024, 1, 8, 16.0),
    (1024, 1, 1, 2.0),
])
def test_count_of_aligned_rows(pitch, vec, warps, want):
    got = stat_load_count(pitch, 8, _mma_columns(128, warps, vec))
    assert got == pytest.approx(want), f"pitch {pitch} vec {vec} warps {warps}: {got} counted per booked byte, want {want}"


def test_count_of_rows_off_the_sector():
    """A pitch of 1 mod 8 (seq_q 62465, like live r26112617_010's 7809): row h starts h x 4 bytes off the sector
    (mod 32), so the 8 rows cycle through every offset.  At offset o (elements), instruction (j, c) covers elements
    o+8j+c .. o+8j+c+6: two sectors where (o + c) % 8 >= 2.  By hand, instructions c = 0 and 1 together touch
    2, 3, 4, 4, 4, 4, 4, 3 sectors at o = 0..7 (28 over the 8 rows) for 8 elements (32 B) each; a row has 488 full
    128-element blocks (16 such pairs each) and a last block of one element, which only instruction (0, 0) loads:
    one sector for 4 booked bytes."""
    pitch = 488 * 128 + 1
    sectors = 488 * 16 * 28 + 8 * 1
    booked = 8 * (488 * 128 * 4 + 4)
    got = stat_load_count(pitch, 8, _mma_columns(128, 1, 1))
    assert got == pytest.approx(32.0 * sectors / booked), f"{got} vs {32.0 * sectors / booked}"


@pytest.mark.parametrize("rows, pairs", [(1, [2]), (3, [2, 3, 4]), (8, [2, 3, 4, 4, 4, 4, 4, 3]),
                                         (10, [2, 3, 4, 4, 4, 4, 4, 3, 2, 3])])
def test_rows_take_their_own_offsets(rows, pairs):
    """Live r26112617_010 has batch x heads = 3 rows: only offsets 0, 1, 2 occur, not all eight (the first version
    averaged over all eight and over-counted that launch by 7 %)."""
    pitch = 488 * 128 + 1
    sectors = 488 * 16 * sum(pairs) + rows
    booked = rows * (488 * 128 * 4 + 4)
    got = stat_load_count(pitch, rows, _mma_columns(128, 1, 1))
    assert got == pytest.approx(32.0 * sectors / booked), f"{rows} rows: {got} vs {32.0 * sectors / booked}"


def test_the_ragged_block_counts_only_its_valid_lanes():
    """A block with one valid element: only the instruction holding element 0 issues a sector, for 4 booked bytes."""
    got = stat_load_count(1, 8, _mma_columns(128, 8, 1))
    assert got == pytest.approx(8 * 32 / 4)


def test_key_refuses_loops_whose_statistics_differ():
    g = {"loads": 1, "length": 16, "vec": 1, "per_thread": 1, "warps": [[1, [[0]]]]}
    assert stat_loads_key([g]) == (16, ((1, ((0,),)),))
    assert stat_loads_key([g, dict(g, length=32)]) is None
    assert stat_loads_key(None) is None


def _ncu_kernel_sectors(case: str, kernel: str) -> float:
    with tarfile.open(LDG_RUN) as tf:
        member = tf.getmember(f"{case}.details.csv")
        rows = list(csv.reader(io.TextIOWrapper(tf.extractfile(member), encoding="utf-8")))
    h = rows[0]
    for r in rows[1:]:
        if r[h.index("Kernel Name")] == kernel and r[h.index("Metric Name")] == \
                "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum":
            return float(r[h.index("Metric Value")].replace(",", ""))
    raise AssertionError(f"no sector count of {kernel} in {LDG_RUN.name}")


@pytest.mark.parametrize("stages, copy, warps, factor", [
    # one stage: register loads, every warp its own copy -- 8x
    (1, False, [8], 8.0),
    # two stages: the loop's cp.async copies into shared memory, the 7 redundant warps predicated off -- once
    (2, True, [1], 1.0),
])
def test_a_real_compile_reads_what_ncu_counted(stages, copy, warps, factor):
    """Compile the anchor's dK/dV pass for sm_90 (no GPU), read its statistics loads, and price the launch's global
    reads: ncu counted 344,064 sectors at one stage and 286,720 at two; the model books Q / dO / K / V once and
    lse / delta `factor` times."""
    pytest.importorskip("triton")
    code = (
        "import json\n"
        "from memsim.schedule import AttentionProblem, Schedule\n"
        "from kernels.compiled_facts import capture, compile_launch\n"
        "p = AttentionProblem(1, 2, 2, 1024, 1024, 64, dtype='bf16')\n"
        f"s = Schedule('flash2', 'bwd', 128, 64, 8, {stages})\n"
        "jf, args, kw, _ = [c for c in capture(p, s) if c[0].__name__ == '_flash2_bwd_dkdv'][0]\n"
        "print(json.dumps(compile_launch(jf, args, kw)['stat_loads']))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    groups = json.loads(out.stdout.strip().splitlines()[-1])
    assert [(g["loads"], g["length"], g["vec"], g["copy"]) for g in groups] == [(2, 128, 2, copy)], groups
    assert [n for n, _ in groups[0]["warps"]] == warps
    got = stat_load_count(1024, 2, stat_loads_key(groups))
    assert got == pytest.approx(factor)
    ctas, trips, e = 2 * (1024 // 64), 1024 // 128, 2
    tiles = ctas * trips * 2 * 128 * 64 * e + ctas * 2 * 64 * 64 * e  # Q, dO a trip; K, V once
    stats = ctas * trips * 2 * 128 * 4 * got
    want = _ncu_kernel_sectors(f"f2bwd_bf16_d64_128x64_w8_st{stages}", "_flash2_bwd_dkdv") * 32
    assert tiles + stats == pytest.approx(want, rel=1e-6), f"model {tiles + stats:.0f} B, ncu {want:.0f} B"


_TTGIR = """#blocked = #ttg.blocked<{sizePerThread = [4, 4], threadsPerWarp = [1, 32], warpsPerCTA = [8, 1], order = [1, 0]}>
#mma = #ttg.nvidia_mma<{versionMajor = 3, versionMinor = 0, warpsPerCTA = [8, 1], instrShape = [16, 64, 16]}>
module attributes {"ttg.num-warps" = 8 : i32} {
  tt.func public @k() {
    %a = tt.load %p, %m, %c : tensor<128x!tt.ptr<f32>, #ttg.slice<{dim = 1, parent = #blocked}>> loc(#l)
    %r:2 = scf.for %h = %c0 to %G step %c1 iter_args(%x = %y) -> (tensor<1xf32>) : i32 {
      %pro = ttg.async_copy_global_to_local %q, %b mask %mm other %cc {contiguity = 2 : i32} : tensor<128x!tt.ptr<f32>, #ttg.slice<{dim = 0, parent = #mma}>> -> <128xf32, #shared2, #smem, mutable> loc(#l)
      %i:2 = scf.for %s = %lo to %hi step %c128 iter_args(%z = %w) -> (tensor<1xf32>) : i32 {
        %l1 = tt.load %lp, %rm, %cst : tensor<128x!tt.ptr<f32>, #ttg.slice<{dim = 0, parent = #mma}>> loc(#l)
        %l2 = ttg.async_copy_global_to_local %dp, %db mask %rm other %cst {contiguity = 2 : i32} : tensor<128x!tt.ptr<f32>, #ttg.slice<{dim = 0, parent = #mma}>> -> <128xf32, #shared2, #smem, mutable> loc(#l)
        scf.yield %z : tensor<1xf32>
      }
      scf.yield %x : tensor<1xf32>
    }
    tt.return
  }
}"""


def test_the_ttgir_reading_keeps_the_innermost_loops_and_the_loads_outside():
    """A GQA dK/dV pass: an outer loop over the group's heads holds the pipelined inner loop's prologue copies; the
    inner loop is the tile loop.  The load before every loop is the `once` reading's."""
    from kernels.stat_loads import _attributes, ttgir_num_warps, vector_loads
    loops, outside = vector_loads(_TTGIR)
    assert [[(n, copy) for n, _, copy in lp] for lp in loops] == [[(128, False), (128, True)]]
    assert [(n, copy) for n, _, copy in outside] == [(128, False)]
    assert ttgir_num_warps(_TTGIR) == 8
    assert set(_attributes(_TTGIR)) == {"#blocked", "#mma"}


@pytest.mark.parametrize("copy, warps", [(False, [8]), (True, [1])])
def test_a_copy_drops_the_threads_that_hold_another_threads_data(copy, warps):
    """The MMA column slice (every warp, and 8 lanes of each, hold the same columns): a register load issues in every
    warp and lane; a cp.async copy only in warp 0's lanes 0-3 (Triton's redundant-thread predicate)."""
    pytest.importorskip("triton")
    from triton.experimental.gluon import language as gl

    from kernels.stat_loads import lane_elements, warp_instructions
    mma = gl.NVMMADistributedLayout([3, 0], [8, 1], [16, 64, 16])
    lanes = lane_elements(gl.SliceLayout(0, mma), 128, 8, unique=copy)
    issuing = [w for w, per_lane in enumerate(lanes) if warp_instructions(per_lane, 2)]
    assert len(issuing) == warps[0]
    active = [ln for ln, x in enumerate(lanes[0]) if x is not None]
    assert active == (list(range(4)) if copy else list(range(32)))
    assert warp_instructions(lanes[0], 2)[0] == tuple(range(8))  # 4 lane groups x 2 columns: one sector
