"""A store microbenchmark for the model's missing term (issue 9 item 4, session 22): what one SM pays to store a
64 x d bf16 tile held in the wgmma accumulator layout -- by plain `st.global` from the registers (each warp's
instruction writes 4 bytes a lane: 8 rows x 16 B, 8 sectors of 8 lines) or by shared memory + one TMA store.

Not an attention kernel: a persistent grid (one CTA of one warpgroup per SM, or `--ctas-per-sm 2`) stores REPS tiles a
CTA to distinct rows of a [CTAs * REPS * 64, d] tensor and reads its SM's clock64 around the loop.  Per mode it prints
the cycles a tile (median over CTAs), the warp store instructions and the 32-byte sectors they touch a tile (from the
layout: 4 B a lane), and the cycles a sector-piece -- the L1 store wavefront rate the straight-code replay would need
(session 22's stamps: the hopper_fa3 backward's plain dK/dV epilogue, 2 x 16 KB a warpgroup, took 2.47 us; by TMA
0.85).  Prepared in session 22 (no device time left); the lead's calibration, if it wants the term.

    PYTHONPATH=. python benchmarks/hopper_fa3_store_wavefronts.py --out DIR [--d 128] [--reps 256] [--ctas-per-sm 1,2]
    PYTHONPATH=. python benchmarks/hopper_fa3_store_wavefronts.py --compile-only   (sm_90a on the CPU: SASS counts)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    os.environ.pop("TRITON_INTERPRET", None)  # compiling needs real JIT functions
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from kernels.hopper_gluon import gluon  # noqa: E402

if gluon is not None:
    from kernels.hopper_gluon import TensorDescriptor, fence_async_shared, gl, tma

    @gluon.jit
    def _store_probe(OUT, CYC, out_desc, REPS, D: gl.constexpr, MODE: gl.constexpr):
        """MODE 0: each tile by plain stores from the accumulator layout; 1: shared memory + one TMA store, its
        read waited for before the next tile's shared-memory store (the EPI_TMA epilogue's dV step)."""
        acc_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                             instr_shape=[16, D, 16])
        x = gl.full([64, D], 1.5, gl.float32, layout=acc_layout).to(gl.bfloat16)
        pid = gl.program_id(0)
        r = gl.arange(0, 64, layout=gl.SliceLayout(1, acc_layout))
        c = gl.arange(0, D, layout=gl.SliceLayout(0, acc_layout))
        offs = r[:, None] * D + c[None, :]
        buf = gl.allocate_shared_memory(gl.bfloat16, [64, D], out_desc.layout)
        one: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
        z = gl.zeros([1], gl.int32, layout=one)
        t0 = gl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l,r", [z], dtype=gl.int64, is_pure=False, pack=1)
        for i in range(REPS):
            row = (pid * REPS + i) * 64
            if MODE == 0:
                gl.store(OUT + row.to(gl.int64) * D + offs, x)
            else:
                tma.store_wait(0)
                buf.store(x)
                fence_async_shared()
                tma.async_copy_shared_to_global(out_desc, [row, 0], buf)
        if MODE == 1:
            tma.store_wait(0)
        t1 = gl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l,r", [z], dtype=gl.int64, is_pure=False, pack=1)
        gl.store(CYC + pid + z, t1 - t0)


def _args(ctas: int, reps: int, d: int, device):
    out = torch.empty(ctas * reps * 64, d, dtype=torch.bfloat16, device=device)
    cyc = torch.zeros(ctas, dtype=torch.int64, device=device)
    desc = TensorDescriptor.from_tensor(out, [64, d], gl.NVMMASharedLayout.get_default_for([64, d], gl.bfloat16))
    return out, cyc, desc


def compile_only(d: int) -> dict:
    """sm_90a on the CPU (no GPU): per mode the SASS's global stores, TMA stores, shared-memory stores."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.runtime.jit import create_function_from_signature

    from kernels.sass import disassemble
    got = {}
    for mode in (0, 1):
        out, cyc, desc = _args(2, 4, d, "cpu")
        jf = _store_probe
        target = GPUTarget("cuda", 90, 32)
        backend = make_backend(target)
        binder = create_function_from_signature(jf.signature, jf.params, backend)
        kw = dict(D=d, MODE=mode, num_warps=4)
        bound, spec, opts = binder(out, cyc, desc, 4, **kw)
        opts, sig, consts, attrs = jf._pack_args(backend, kw, bound, spec, opts)
        k = triton.compile(GluonASTSource(jf, sig, consts, attrs), target=target, options=opts.__dict__)
        sass = disassemble(k.asm["cubin"])
        got[mode] = {"STG": len(re.findall(r"\bSTG\.", sass)), "UTMASTG": len(re.findall(r"UTMASTG", sass)),
                     "STS": len(re.findall(r"\bSTS", sass)), "STSM": len(re.findall(r"\bSTSM", sass))}
    return got


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--reps", type=int, default=256)
    ap.add_argument("--ctas-per-sm", default="1,2")
    ap.add_argument("--compile-only", action="store_true")
    a = ap.parse_args(argv)
    if gluon is None:
        print("needs triton.experimental.gluon")
        return 1
    if a.compile_only:
        print(json.dumps(compile_only(a.d)))
        return 0
    import triton
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    # a tile from the accumulator layout: 64 x d bf16 over 128 threads, 2 elements (4 B) a store instruction
    warp_stores = 4 * (64 * a.d // 128 // 2)
    sectors = warp_stores * 8  # each warp store: 8 rows x 16 B (half a sector each)
    rec = []
    for per_sm in [int(x) for x in a.ctas_per_sm.split(",") if x]:
        for mode in (0, 1):
            ctas = sms * per_sm
            out, cyc, desc = _args(ctas, a.reps, a.d, "cuda")
            for _ in range(3):  # the first compiles
                _store_probe[(ctas,)](out, cyc, desc, a.reps, D=a.d, MODE=mode, num_warps=4)
            torch.cuda.synchronize()
            per_tile = cyc.double().median().item() / a.reps
            ms = triton.testing.do_bench(lambda: _store_probe[(ctas,)](out, cyc, desc, a.reps, D=a.d, MODE=mode,
                                                                      num_warps=4), return_mode="median")
            r = dict(mode=("plain" if mode == 0 else "tma"), ctas_per_sm=per_sm, d=a.d, reps=a.reps,
                     cycles_per_tile=per_tile, warp_stores_per_tile=warp_stores if mode == 0 else None,
                     sectors_per_tile=sectors if mode == 0 else None,
                     cycles_per_sector=per_tile / sectors if mode == 0 else None,
                     bytes_per_s=ctas * a.reps * 64 * a.d * 2 / (ms * 1e-3))
            rec.append(r)
            print(json.dumps(r), flush=True)
    print("\n| mode | CTAs / SM | cycles a tile (median CTA) | cycles a sector-piece | GB/s (whole grid) |\n"
          "| --- | --- | --- | --- | --- |")
    for r in rec:
        cps = f"{r['cycles_per_sector']:.2f}" if r["cycles_per_sector"] is not None else ""
        print(f"| {r['mode']} | {r['ctas_per_sm']} | {r['cycles_per_tile']:.0f} | {cps} | {r['bytes_per_s'] / 1e9:.0f} |")
    if a.out:
        prov = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                    date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), command=" ".join(sys.argv))
        Path(a.out).mkdir(parents=True, exist_ok=True)
        Path(a.out, "store_wavefronts.json").write_text(json.dumps(dict(provenance=prov, records=rec), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
