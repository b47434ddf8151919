"""One device call: do an attention loop's dots (tensor cores) and exponentials (SFU) overlap on an SM?

The model adds a tile's dot time and exp time (memsim.engine: dur = FLOPs x s/FLOP + exps x s/exp).  On the card
the tensor cores and the SFU are separate units: while one warp waits on its exps another warp's dot can run.
`_mb_dot_exp` runs flash attention's loop body with no memory traffic -- S = A B (BM x BN x BK), P = exp2(S),
acc += P V (BM x BK x BN) -- in three modes: dots only, exps only, both; grid = num_sms x ctas_per_sm.  The overlap
is (t_dot + t_exp - t_both) / min(t_dot, t_exp) (1 = the shorter one is hidden, 0 = they add up).

    run(command="python3 benchmarks/dot_exp_overlap_gpu.py --out $OUT/dot_exp.json", timeout_s=300)
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

CONFIGS = [(64, 64, 64, 4), (128, 64, 64, 4), (128, 64, 64, 8), (128, 128, 64, 8), (128, 64, 128, 8),
           (128, 128, 128, 8), (64, 32, 64, 2), (32, 32, 64, 1), (16, 64, 32, 1), (64, 64, 64, 1)]
CTAS_PER_SM = (1, 2)
MODES = ("dot", "exp", "both")


@triton.jit
def _mb_dot_exp(a_ptr, b_ptr, v_ptr, out_ptr, n_iter, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                DOTS: tl.constexpr, EXPS: tl.constexpr):
    """On chip: A (BM x BK), B (BK x BN), V (BN x BK) loaded once; S (BM x BN) and the accumulator (BM x BK).
    Each iteration: S = A B (or S rescaled without the dot), P = exp2(S) (or P = S), acc += P V (or acc += P's row
    sums)."""
    pid = tl.program_id(0)
    a = tl.load(a_ptr + tl.arange(0, BM)[:, None] * BK + tl.arange(0, BK)[None, :])
    b = tl.load(b_ptr + tl.arange(0, BK)[:, None] * BN + tl.arange(0, BN)[None, :])
    v = tl.load(v_ptr + tl.arange(0, BN)[:, None] * BK + tl.arange(0, BK)[None, :])
    s = tl.zeros([BM, BN], dtype=tl.float32)
    acc = tl.zeros([BM, BK], dtype=tl.float32)
    for _ in range(n_iter):
        if DOTS:
            s = tl.dot(a, b)
        else:
            s = s * 0.999 + 0.001
        if EXPS:
            p = tl.math.exp2(s * 0.01)
        else:
            p = s
        if DOTS:
            acc += tl.dot(p.to(v.dtype), v)
        else:
            acc += tl.sum(p, axis=1)[:, None]
        a = (a * 0.5).to(a.dtype)
    tl.store(out_ptr + pid * BM * BK + tl.arange(0, BM)[:, None] * BK + tl.arange(0, BK)[None, :], acc)


def measure(bm, bn, bk, warps, ctas_per_sm, mode, num_sms, n_iter):
    a = torch.randn(bm, bk, device="cuda", dtype=torch.float16)
    b = torch.randn(bk, bn, device="cuda", dtype=torch.float16)
    v = torch.randn(bn, bk, device="cuda", dtype=torch.float16)
    grid = num_sms * ctas_per_sm
    out = torch.empty(grid, bm, bk, device="cuda", dtype=torch.float32)
    kw = dict(BM=bm, BN=bn, BK=bk, DOTS=mode != "exp", EXPS=mode != "dot", num_warps=warps, num_stages=1)
    run = lambda: _mb_dot_exp[(grid,)](a, b, v, out, n_iter, **kw)
    run()
    torch.cuda.synchronize()
    ms = triton.testing.do_bench(run, warmup=5, rep=40, return_mode="median")
    k = _mb_dot_exp.warmup(a, b, v, out, n_iter, grid=(grid,), **kw)
    return {"block_m": bm, "block_n": bn, "block_k": bk, "num_warps": warps, "ctas_per_sm": ctas_per_sm,
            "mode": mode, "n_iter": n_iter, "ctas": grid, "time_s": ms * 1e-3,
            "flops": (4.0 * bm * bn * bk * n_iter * grid) if mode != "exp" else 0.0,
            "exps": (1.0 * bm * bn * n_iter * grid) if mode != "dot" else 0.0,
            "regs_per_thread": int(k.n_regs), "spills": int(k.n_spills)}


def _write(path, rows, props, argv, t0):
    out = {"format": "dot_exp_overlap/1", "provenance": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": props.name, "sm_count": props.multi_processor_count, "torch": torch.__version__,
        "triton": triton.__version__, "cuda": torch.version.cuda,
        "command": "python3 benchmarks/dot_exp_overlap_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "method": "triton.testing.do_bench median (warmup 5 ms, rep 40 ms), fp16 operands, fp32 S and accumulator"},
        "points": rows, "seconds": round(time.time() - t0, 1)}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=200)
    ap.add_argument("--n-iter", type=int, default=1024)
    a = ap.parse_args(argv)
    props = torch.cuda.get_device_properties(0)
    t0 = time.time()
    rows = []
    for bm, bn, bk, w in CONFIGS:
        for c in CTAS_PER_SM:
            if time.time() - t0 > a.budget_s:
                break
            got = {}
            for mode in MODES:
                try:
                    r = measure(bm, bn, bk, w, c, mode, props.multi_processor_count, a.n_iter)
                except Exception as e:  # noqa: BLE001 -- recorded, not fatal
                    r = {"block_m": bm, "block_n": bn, "block_k": bk, "num_warps": w, "ctas_per_sm": c, "mode": mode,
                         "error": f"{type(e).__name__}: {str(e)[:160]}"}
                rows.append(r)
                got[mode] = r.get("time_s")
            _write(a.out, rows, props, argv, t0)
            if all(got.values()):
                td, te, tb = got["dot"], got["exp"], got["both"]
                ov = (td + te - tb) / min(td, te)
                print(f"{bm:4d} {bn:4d} {bk:4d} w{w} c{c}: dot {td * 1e6:8.1f} exp {te * 1e6:8.1f} both {tb * 1e6:8.1f} us"
                      f"  overlap {ov:5.2f}", flush=True)
    _write(a.out, rows, props, argv, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
