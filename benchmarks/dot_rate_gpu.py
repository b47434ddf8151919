"""One device call: the tensor-core rate of a chain of `tl.dot` on one tile shape, by shape and warps.

Attention loops are chains of small dots (S = Q K^T on a block_m x block_n x d tile, O += P V on block_m x d x
block_n), not one large GEMM: with small tiles and few warps the SM's tensor cores wait on each dot's latency.
`_mb_dot_chain` keeps an A tile (BM x BK) and a B tile (BK x BN) on chip and accumulates n_iter dots into a BM x BN
fp32 tile, with no memory traffic in the loop; grid = num_sms x ctas_per_sm.  FLOP/s per SM against the shape and
the warps on the SM is the figure (`memsim.calibration.dot_rate_from`).

    run(command="python3 benchmarks/dot_rate_gpu.py --out $OUT/dot_rate.json", timeout_s=400)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import torch
import triton
import triton.language as tl

SHAPES = [(16, 16, 64), (16, 64, 64), (32, 32, 64), (64, 32, 64), (32, 128, 64), (64, 64, 64), (128, 64, 64),
          (128, 128, 64), (64, 64, 16), (64, 64, 32), (64, 64, 128), (16, 32, 128), (128, 128, 128)]
WARPS = (1, 2, 4, 8)
CTAS_PER_SM = (1, 4)


@triton.jit
def _mb_dot_chain(a_ptr, b_ptr, out_ptr, n_iter, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                  PREC: tl.constexpr, RELOAD: tl.constexpr = False):
    """Stays on chip: A (BM x BK) and B (BK x BN), loaded once; the BM x BN fp32 accumulator.  Each iteration:
    one dot; A is rescaled so the compiler cannot fold the chain into one product."""
    pid = tl.program_id(0)
    a = tl.load(a_ptr + tl.arange(0, BM)[:, None] * BK + tl.arange(0, BK)[None, :])
    b = tl.load(b_ptr + tl.arange(0, BK)[:, None] * BN + tl.arange(0, BN)[None, :])
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for i in range(n_iter):
        if RELOAD:  # as attention's K/V tiles: B comes from memory (an L1/L2-resident pair of tiles) every
            # iteration, staged through shared memory by the pipeliner, then fed to the MMAs
            b = tl.load(b_ptr + (i % 2) * BK * BN + tl.arange(0, BK)[:, None] * BN + tl.arange(0, BN)[None, :])
        acc += tl.dot(a, b, input_precision=PREC)
        a = (a * 0.5).to(a.dtype)
    tl.store(out_ptr + pid * BM * BN + tl.arange(0, BM)[:, None] * BN + tl.arange(0, BN)[None, :], acc)


def measure(bm, bn, bk, warps, ctas_per_sm, dtype, num_sms, n_iter=4096, reload=False):
    # fp32 as our kernels run it: input_precision="ieee" (FMA dots, no TF32)
    prec = "ieee" if dtype == torch.float32 else None
    a = torch.randn(bm, bk, device="cuda", dtype=dtype)
    b = torch.randn(2, bk, bn, device="cuda", dtype=dtype)
    grid = num_sms * ctas_per_sm
    out = torch.empty(grid, bm, bn, device="cuda", dtype=torch.float32)
    stages = 2 if reload else 1
    run = lambda: _mb_dot_chain[(grid,)](a, b, out, n_iter, BM=bm, BN=bn, BK=bk, PREC=prec, RELOAD=reload,
                                         num_warps=warps, num_stages=stages)
    run()
    torch.cuda.synchronize()
    ms = triton.testing.do_bench(run, warmup=5, rep=40, return_mode="median")
    flops = 2.0 * bm * bn * bk * n_iter * grid
    k = _mb_dot_chain.warmup(a, b, out, n_iter, BM=bm, BN=bn, BK=bk, PREC=prec, RELOAD=reload, num_warps=warps,
                             num_stages=stages, grid=(grid,))
    return {"block_m": bm, "block_n": bn, "block_k": bk, "num_warps": warps, "ctas_per_sm": ctas_per_sm,
            "dtype": str(dtype).split(".")[-1], "operand_b": "memory" if reload else "registers", "n_iter": n_iter,
            "ctas": grid, "time_s": ms * 1e-3,
            "flops_per_s": flops / (ms * 1e-3), "flops_per_sm_s": flops / (ms * 1e-3) / num_sms,
            "regs_per_thread": int(k.n_regs), "spills": int(k.n_spills)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=300)
    ap.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16",
                    help="fp32: the dots as our fp32 kernels run them (input_precision='ieee', FMA pipes)")
    ap.add_argument("--n-iter", type=int, default=4096)
    ap.add_argument("--reload", action="store_true",
                    help="load B from memory every iteration (through shared memory, as attention's K/V tiles)")
    a = ap.parse_args(argv)
    props = torch.cuda.get_device_properties(0)
    t0 = time.time()
    dtype = {"fp16": torch.float16, "fp32": torch.float32}[a.dtype]
    rows = []
    for (bm, bn, bk) in SHAPES:
        for w in WARPS:
            if bm * bn < 16 * 8 * w or bm < 16:  # a warp's share of the tile under one m16n8 MMA: not a real config
                continue
            if a.dtype == "fp32" and bm * bn > 128 * 32 * w:  # > 128 fp32 accumulators per thread: spills, and
                continue                                      # ptxas takes minutes (not what attention runs)
            for c in CTAS_PER_SM:
                if time.time() - t0 > a.budget_s:
                    break
                try:
                    rows.append(measure(bm, bn, bk, w, c, dtype, props.multi_processor_count, n_iter=a.n_iter,
                                        reload=a.reload))
                except Exception as e:  # noqa: BLE001 -- a shape the compiler refuses: recorded, not fatal
                    rows.append({"block_m": bm, "block_n": bn, "block_k": bk, "num_warps": w, "ctas_per_sm": c,
                                 "error": f"{type(e).__name__}: {str(e)[:160]}"})
                r = rows[-1]
                _write(a.out, props, argv, rows, t0, a.dtype)
                print(f"{bm:4d} {bn:4d} {bk:4d} w{w} c{c}: " + (f"{r['flops_per_s'] / 1e12:7.1f} TFLOP/s"
                      if "error" not in r else r["error"]), flush=True)
    _write(a.out, props, argv, rows, t0, a.dtype)
    return 0


def _write(path, props, argv, rows, t0, dtype_name):
    out = {"format": "dot_rate/1", "provenance": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": props.name, "sm_count": props.multi_processor_count, "torch": torch.__version__,
        "triton": triton.__version__, "cuda": torch.version.cuda,
        "command": "python3 benchmarks/dot_rate_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "method": f"triton.testing.do_bench median (warmup 5 ms, rep 40 ms), {dtype_name} inputs, fp32 accumulator"},
        "points": rows, "seconds": round(time.time() - t0, 1)}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
