"""Minimal reproducer of a second Triton 3.6 Hopper warp-specialisation bug, the likely cause of the LOOP="ws" backward
hanging on the H100 (notes/hopper.md, run3) -- CPU only: compiles for sm_90a with Triton's bundled tools, no GPU.

    python benchmarks/hopper_triton_ws_tma_split_bug.py

A 128-row tile with `tl.range(..., warp_specialize=True)` and num_warps=4: the partitioner splits the 128 rows over two
consumer warpgroups of 64 and splits every TMA load of the tile with them.  A per-row vector loaded through a 2-D
descriptor with box [1, 128] (the rows' logsumexp, fp32) is split too -- into two 64-element destinations whose
mbarrier expects 256 bytes each -- but the copies keep the [1, 128] descriptor (512 bytes a box).  The transaction
count of the barrier then never balances: the consumers wait forever (or the copy writes past its 64-element buffer).
2-D tiles whose ROWS are split ([128, d] -> [64, d]) get new descriptors and are right; so is a [1, 64] vector that is
not split.  Prints every TMA copy with its box bytes next to the barrier_expect before it; exit status 1 when a copy's
box is larger than the bytes its barrier expects (the bug), 0 when Triton has fixed it.
"""
from __future__ import annotations

import os
import re
import sys

if __name__ == "__main__":  # before triton is imported (compiling needs real JITFunctions); never when a
    os.environ.pop("TRITON_INTERPRET", None)  # test imports this module: the interpreter must stay on for the rest

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

_BYTES = {"f32": 4, "bf16": 2, "f16": 2}


@triton.jit
def _repro(Q, K, LSE, O, N, BM: tl.constexpr, BN: tl.constexpr, D: tl.constexpr):
    start_m = tl.program_id(0) * BM
    qd = tl.make_tensor_descriptor(Q, shape=[N, D], strides=[D, 1], block_shape=[BM, D])
    kd = tl.make_tensor_descriptor(K, shape=[N, D], strides=[D, 1], block_shape=[BN, D])
    od = tl.make_tensor_descriptor(O, shape=[N, D], strides=[D, 1], block_shape=[BM, D])
    ld = tl.make_tensor_descriptor(LSE, shape=[1, N], strides=[N, 1], block_shape=[1, BM])  # one row of BM values
    q = qd.load([start_m, 0])
    lse = ld.load([0, start_m]).reshape(BM)
    acc = tl.zeros([BM, D], tl.float32)
    for start_n in tl.range(0, N, BN, warp_specialize=True):
        k = kd.load([start_n, 0])
        p = tl.math.exp2(tl.dot(q, tl.trans(k)) - lse[:, None])
        acc += tl.dot(p.to(tl.bfloat16), k)
    od.store([start_m, 0], acc.to(tl.bfloat16))


def copies(ttgir: str) -> list[tuple[int, int, str]]:
    """(box bytes, expected bytes, the copy's text) of every TMA load in the TTGIR, paired with the barrier_expect
    just before it."""
    out, expect = [], None
    for ln in ttgir.splitlines():
        m = re.search(r"ttng\.barrier_expect %[\w.]+, (\d+)", ln)
        if m:
            expect = int(m.group(1))
            continue
        m = re.search(r"ttng\.async_tma_copy_global_to_local .*tensordesc<tensor<([\dx]+)x(f32|bf16|f16)", ln)
        if m and expect is not None:
            n = 1
            for x in m.group(1).split("x"):
                n *= int(x)
            out.append((n * _BYTES[m.group(2)], expect, ln.strip()[:120]))
            expect = None
    return out


def main() -> int:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    sig = {"Q": "*bf16", "K": "*bf16", "LSE": "*fp32", "O": "*bf16", "N": "i32",
           "BM": "constexpr", "BN": "constexpr", "D": "constexpr"}
    src = ASTSource(_repro, sig, constexprs={"BM": 128, "BN": 64, "D": 128})
    ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "num_stages": 2})
    ttg = ck.asm["ttgir"]
    print(f"triton {triton.__version__}, sm_90a, 128-row tile, num_warps 4, warp_specialize=True; "
          f"warp_specialize ops: {ttg.count('ttg.warp_specialize(')}")
    bad = 0
    for box, expect, text in copies(ttg):
        flag = "MISMATCH" if box > expect else "ok"
        bad += box > expect
        print(f"  {flag:8s} box {box:6d} B, barrier expects {expect:6d} B: {text}")
    print(f"{bad} copies larger than their barrier's expected bytes")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
