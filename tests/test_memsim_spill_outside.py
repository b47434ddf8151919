"""Spill traffic outside the tile loop runs once per CTA (notes/spills.md, session 11; benchmarks/spill_regions.py).

The `spill_sm` fact (benchmarks/spill_sm_gpu.py, 85 points under ncu, H100 80GB HBM3, six plans): ncu's local
store and load bytes less the tile loop's SASS bytes x n_iter x threads x CTAs leave, per thread per CTA, exactly
the bytes of the SASS's STL / LDL outside every loop -- whatever the CTAs per SM (1-32), the SMs (16-132) or the L1
left beside the carve-out.  The model books the tile loop's bytes per trip only (memsim.costs); these tests hold the
fact that the code outside it adds its own once per CTA.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FACT = ROOT / "memsim/presets/h100-sxm.calibration.json"


def _outside(p):
    c = p["compiled"]
    th, ctas = 32 * p["num_warps"], p["observed"]["ctas_working"]
    st = (p["local_st_bytes"] - c["loop_store_bytes"] * p["n_iter"] * th * ctas) / (th * ctas)
    ld = (p["local_ld_bytes"] - c["loop_load_bytes"] * p["n_iter"] * th * ctas) / (th * ctas)
    return st, ld


def test_bytes_outside_the_loop_are_a_per_cta_constant():
    pts = json.loads(FACT.read_text())["facts"]["spill_sm"]
    by: dict = {}
    for p in pts:
        by.setdefault(p["variant"], set()).add(tuple(round(x, 1) for x in _outside(p)))
    assert set(by) == {"f576", "f1008", "f2976", "w4"}
    for v, seen in by.items():
        assert len(seen) == 1, (v, seen)  # the same at 1-32 CTAs per SM, 16 or 132 SMs, any carve-out
    # the one-warp variants' prologue stores (and the epilogue reloads) the whole stack frame once
    for v, frame in (("f576", 576), ("f1008", 1008), ("f2976", 2976)):
        assert by[v] == {(float(frame), float(frame))}


_WALK_OPS = [
    "STL [R1], R2", ".L_x_1", "STL [R1+0x4], R2", "@!P1 BRA `(.L_x_3)", "STL.64 [R1+0x8], R2", ".L_x_2",
    "LDL R3, [R1+0x8]", "STL [R1+0x8], R3", "@P0 BRA `(.L_x_2)", ".L_x_3", "LDL.128 R4, [R1+0x10]",
    "@P2 BRA `(.L_x_1)", "LDL R5, [R1]", "EXIT",
]


def _sass(ops: list) -> str:
    """nvdisasm -hex text: each instruction followed by its control word (no stall, no scoreboard)."""
    out, addr = [], 0
    for op in ops:
        if op.startswith(".L_x_"):
            out.append(f"{op}:")
            continue
        out.append(f"        /*{addr:04x}*/                   {op} ;        /* 0x0000000000000000 */")
        out.append("                                                      /* 0x000fc00000000000 */")
        addr += 16
    return "\n".join(out)


def test_regions_of_a_persistent_walk():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import spill_regions as S
    r = S.regions(_sass(_WALK_OPS), ".L_x_2")
    assert r["tile"] == [4, 4]
    assert r["pre_walk"] == [8, 0]  # between the guard (no trip: skip to just past the loop) and the loop
    assert r["walk"] == [4, 16]  # around the tile loop inside the walk: once per tile
    assert r["straight"] == [4, 4]  # outside every loop: once per CTA
    assert r["other"] == [0, 0] and r["pre_straight"] == [0, 0]


def test_sass_outside_the_loop_is_what_ncu_counts():
    """`_mb_spill_sm` compiled for sm_90 on this CPU (a subprocess: the tests run Triton's interpreter)."""
    import os
    import subprocess
    pytest.importorskip("triton")
    import kernels.sass as KS
    try:
        KS.nvdisasm_path()
    except KS.SassError as e:
        pytest.skip(str(e))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/spill_regions.py"), "--microbench"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    import re
    m = re.search(r"(\d+) of (\d+) points", r.stdout)
    assert m and m.group(1) == m.group(2), r.stdout[-500:]
