"""Minimal reproducer of the Triton 3.6 Hopper warp-specialisation bug the hopper kernel works around (CPU only:
compiles for sm_90a with Triton's bundled tools, no GPU).

    python benchmarks/hopper_triton_ws_bug.py          # prints, per consumer partition, how the row index is formed

A 128-row tile, `tl.range(..., warp_specialize=True)`, num_warps=4: Triton's Hopper partitioner splits the rows over
two consumer warpgroups of 64.  A row index written ``start_m + tl.arange(0, 128)`` comes out in the second
warpgroup as ``splat(start_m + 64) + make_range(64, 128)`` -- 64 rows too far (the TMA coordinate of the same
warpgroup is right: start_m + 64).  On the H100 that made causal masks and stored row statistics wrong
(benchmarks/results/hopper-h100-2026-11-25-run1.json).  Writing the mask from ``tl.arange`` alone plus scalars
(``offs_n - rel_m <= start_m - start_n``), as kernels/hopper.py does, compiles right.  Exit status 1 when the
doubled offset is present in the plain variant (the bug), 0 when Triton has fixed it.
"""
from __future__ import annotations

import os
import re
import sys

if __name__ == "__main__":  # before triton is imported (compiling needs real JITFunctions); never when a
    os.environ.pop("TRITON_INTERPRET", None)  # test imports this module: the interpreter must stay on for the rest

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def _repro(Q, K, V, O, L, N, BM: tl.constexpr, BN: tl.constexpr, D: tl.constexpr, WORKAROUND: tl.constexpr):
    start_m = tl.program_id(0) * BM
    qd = tl.make_tensor_descriptor(Q, shape=[N, D], strides=[D, 1], block_shape=[BM, D])
    kd = tl.make_tensor_descriptor(K, shape=[N, D], strides=[D, 1], block_shape=[BN, D])
    vd = tl.make_tensor_descriptor(V, shape=[N, D], strides=[D, 1], block_shape=[BN, D])
    od = tl.make_tensor_descriptor(O, shape=[N, D], strides=[D, 1], block_shape=[BM, D])
    rel_m = tl.arange(0, BM)
    offs_m = start_m + rel_m
    offs_n = tl.arange(0, BN)
    q = qd.load([start_m, 0])
    m_i = tl.full([BM], float("-inf"), tl.float32)
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, D], tl.float32)
    for start_n in tl.range(0, start_m + BM, BN, warp_specialize=True):
        s = tl.dot(q, tl.trans(kd.load([start_n, 0])))
        if WORKAROUND:
            s = tl.where(offs_n[None, :] - rel_m[:, None] <= start_m - start_n, s, float("-inf"))
        else:
            s = tl.where(start_n + offs_n[None, :] <= offs_m[:, None], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(tl.bfloat16), vd.load([start_n, 0]))
        m_i = m_new
    od.store([start_m, 0], (acc / l_i[:, None]).to(tl.bfloat16))
    if WORKAROUND:
        tl.store(L + start_m + rel_m, m_i)
    else:
        tl.store(L + offs_m, m_i)


def doubled_offsets(ttgir: str) -> list[str]:
    """Lines of a consumer partition that add splat(x + 64) to make_range(64, ...) (the doubled offset)."""
    bad = []
    for k, part in enumerate(re.split(r"\n\s*partition\d+\(", ttgir)[1:]):
        defs = {m.group(1): m.group(2) for m in (re.match(r"\s*(%[\w.]+)(?::\d+)? = (.*)", ln)
                                                 for ln in part.splitlines()) if m}
        plus64 = {n for n, d in defs.items() if re.match(r"arith\.addi %[\w.]+, %c64_i32", d)}
        splat64 = {n for n, d in defs.items() if (m := re.match(r"tt\.splat (%[\w.]+)", d)) and m.group(1) in plus64}
        hi = {n for n, d in defs.items() if d.startswith("tt.make_range") and "start = 64" in d}
        for n, d in defs.items():
            m = re.match(r"arith\.addi (%[\w.]+), (%[\w.]+)", d)
            if m and {m.group(1), m.group(2)} & splat64 and {m.group(1), m.group(2)} & hi:
                bad.append(f"partition{k}: {n} = {d[:100]}")
    return bad


def compile_ttgir(workaround: bool) -> str:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    sig = {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "O": "*bf16", "L": "*fp32", "N": "i32",
           "BM": "constexpr", "BN": "constexpr", "D": "constexpr", "WORKAROUND": "constexpr"}
    src = ASTSource(_repro, sig, constexprs={"BM": 128, "BN": 128, "D": 128, "WORKAROUND": workaround})
    ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "num_stages": 2})
    return ck.asm["ttgir"]


def main() -> int:
    print(f"triton {triton.__version__}, sm_90a, 128x128 tile, num_warps 4, warp_specialize=True")
    status = 0
    for workaround in (False, True):
        ttg = compile_ttgir(workaround)
        ws = ttg.count("ttg.warp_specialize(")
        bad = doubled_offsets(ttg)
        print(f"{'workaround' if workaround else 'plain     '}: warp_specialize ops {ws}; doubled row offsets: "
              f"{len(bad)}")
        for line in bad:
            print("   ", line)
        if not workaround and bad:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
