"""kernels.sass: loop bodies and instruction counts from SASS text (synthetic, and one real sm_90 compile)."""
from __future__ import annotations

import pytest

from kernels import sass as S

SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   ISETP.GE.AND P0, PT, R0, 0x1, PT ;
.L_x_0:
        /*0020*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
        /*0030*/                   HGMMA.64x64x16.F32 R24, gdesc[UR8], R24 ;
        /*0040*/                   MUFU.EX2 R5, R5 ;
        /*0050*/                   FADD R6, R5, R6 ;
        /*0060*/               @P0 BRA `(.L_x_0) ;
.L_x_1:
        /*0070*/                   STL.64 [R1], R6 ;
        /*0080*/                   LDL R7, [R1] ;
        /*0090*/                   FADD R7, R7, 1 ;
        /*00a0*/              @!P1 BRA `(.L_x_1) ;
        /*00b0*/                   BRA `(.L_x_2) ;
.L_x_2:
        /*00c0*/                   EXIT ;
"""


def test_parse_finds_backward_branches_only():
    loops = S.parse(SASS)
    assert [(lb, len(b)) for lb, b in loops] == [(".L_x_0", 5), (".L_x_1", 4)]


def test_tile_loop_is_the_one_with_tensor_instructions():
    p = S.tile_loop(SASS)
    assert (p.label, p.instructions, p.mma, p.mufu, p.memory, p.local) == (".L_x_0", 5, 1, 1, 1, 0)


def test_local_bytes_by_width():
    loops = dict(S.parse(SASS))
    p = S.profile(loops[".L_x_1"], ".L_x_1")
    assert (p.local, p.local_store_bytes, p.local_load_bytes) == (2, 8, 4), p


def test_without_mma_the_longest_loop():
    text = SASS.replace("HGMMA.64x64x16.F32 R24, gdesc[UR8], R24", "FFMA R24, R24, R24, R24")
    text = text.replace("FADD R6, R5, R6 ;", "FADD R6, R5, R6 ;\n        /*0055*/ FADD R6, R6, R6 ;")
    p = S.tile_loop(text)
    assert p.label == ".L_x_0" and p.instructions == 6 and p.mma == 0


def test_no_loop():
    assert S.tile_loop("        /*0000*/  EXIT ;\n") is None


_COMPILE = r"""
import inspect, json, triton
from triton.backends.compiler import GPUTarget
import kernels.flash2 as f2
from kernels import sass as S
sig = {}
for name in inspect.signature(f2._flash2_fwd.fn).parameters:  # stride_q, ...: a (batch, head, row) tuple each
    sig[name] = ("*fp16" if name in ("Q", "K", "V", "O") else "*fp32" if name == "LSE"
                 else "fp32" if name == "qk_scale2" else ("i32",) * 3 if name.startswith("stride_") else "i32")
const = dict(GROUP=1, HEAD_DIM=64, BLOCK_M=128, BLOCK_N=64, CAUSAL=False, Q_FASTEST=True, PREC="tf32")
sig.update({k: "constexpr" for k in const})
c = triton.compile(triton.compiler.ASTSource(fn=f2._flash2_fwd, signature=sig, constexprs=const),
                   target=GPUTarget("cuda", 90, 32), options=dict(num_warps=8, num_stages=2))
print(json.dumps(S.cubin_tile_loop(c.asm["cubin"]).to_dict()))
"""


def test_real_sm90_compile_has_a_tensor_core_tile_loop():
    """Compiles flash2_fwd for sm_90 on this CPU (a subprocess: the tests run Triton's interpreter)."""
    import json
    import os
    import subprocess
    import sys
    pytest.importorskip("triton")
    try:
        S.nvdisasm_path()
    except S.SassError as e:
        pytest.skip(str(e))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", _COMPILE], capture_output=True, text=True, env=env, cwd=root,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    p = json.loads(r.stdout.strip().splitlines()[-1])
    assert p["mma"] > 0, p
    # the online softmax of a 128 x 64 tile over 256 threads: 32 exp2 per thread, plus the row statistics
    assert 32 <= p["mufu"] <= 48, p


_REUSE = """
.L_x_5:
        /*0000*/                   STL [R1+0x10], R2 ;
        /*0010*/                   STL.64 [R1+0x20], R4 ;
        /*0020*/                   LDL R6, [R1+0x30] ;
        /*0030*/                   LDL R7, [R1+0x10] ;
        /*0040*/                   STL [R1+0x10], R7 ;
        /*0050*/                   LDL.64 R8, [R1+0x20] ;
        /*0060*/               @P0 BRA `(.L_x_5) ;
"""


def test_local_reuse_distances():
    """Words: 0x10 (4 B), 0x20-0x27 (8 B), 0x30 (4 B, never stored in the loop: stored before it)."""
    body = dict(S.parse(_REUSE))[".L_x_5"]
    r = S.local_reuse(body, bucket_bytes=4)
    # reloads: LDL 0x30, no STL of it -> the loop's footprint, 16 B; LDL 0x10 since STL 0x10 at 0000: touched
    # 0x20-0x27 and 0x30, 12 B; LDL.64 0x20 since STL.64 at 0010: 0x10 (twice) and 0x30, 8 B
    assert r["reload"] == [[8, 8], [12, 4], [16, 4]], r
    # stores count only other words stored in between: STL 0x10 at 0000 back around to STL 0x10 at 0040: none,
    # 0 B; STL.64 0x20 back around to itself: 0x10, 4 B; STL 0x10 at 0040 back to 0000: 0x20-0x27, 8 B
    assert r["restore"] == [[0, 4], [4, 8], [8, 4]], r
    assert S.local_reuse(body)["reload"] == [[16, 16]], "16-byte buckets, half up"


def test_local_reuse_none_without_local_memory():
    body = dict(S.parse(SASS))[".L_x_0"]
    assert S.local_reuse(body) is None
    assert S.profile(body, ".L_x_0").local_reuse is None


def _loop(label: str, ops: list[str], addr: int) -> tuple[str, int]:
    lines = [f"{label}:"]
    for op in ops + [f"@P0 BRA `({label})"]:
        lines.append(f"        /*{addr:04x}*/                   {op} ;")
        addr += 16
    return "\n".join(lines), addr


@pytest.mark.parametrize("first_ffma,second_ffma,want", [
    (0, 40, ".L_x_1"),    # set I's fp32 flash1: a store loop zeroing O comes first, then the dot loop
    (40, 44, ".L_x_0"),   # flash2 fp32: unmasked loop first, the masked copy (a few more) second
    (10, 40, ".L_x_1"),   # a first loop with a quarter of the FFMAs is not the tile loop
])
def test_without_mma_the_first_loop_with_most_of_the_ffmas(first_ffma, second_ffma, want):
    a, addr = _loop(".L_x_0", ["STG.E [R2.64], RZ"] * 12 + ["FFMA R4, R5, R6, R4"] * first_ffma, 0)
    b, addr = _loop(".L_x_1", ["LDL R7, [R1]"] * 4 + ["FFMA R4, R5, R6, R4"] * second_ffma, addr)
    assert S.tile_loop(a + "\n" + b + "\n").label == want
