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
for name in inspect.signature(f2._flash2_fwd.fn).parameters:
    sig[name] = ("*fp16" if name in ("Q", "K", "V", "O") else "*fp32" if name == "LSE"
                 else "fp32" if name == "qk_scale2" else "i32")
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
