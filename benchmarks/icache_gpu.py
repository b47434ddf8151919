"""One device call: what a loop costs when its code does not fit the SM's instruction caches.

fp32 attention kernels run their dots on the FMA pipes with the dot unrolled: tile loops of 6 000 - 63 000 SASS
instructions (16 bytes each: 0.1 - 1 MB of code), and the naive kernels' unrolled dots are straight-line code of
the same size.  `memsim.warp_issue` replays such a loop as if every instruction were at hand; the card has to fetch
them.  `_mb_code` is a loop of K independent FFMA chains (8 accumulators per thread, no memory traffic in the
loop), K = 256 ... 32768 FFMAs per trip (4 KB ... 512 KB of code): below the instruction caches' capacity a trip
takes its replayed cycles, above it the fetch rate binds.  Points at 1, 4 and 16 warps per SM (1 CTA per SM or 4)
show whether warps running the same code share the fetches.  Each point carries its SASS body (control bits), so
the CPU side replays it (memsim.issue_fit) and the excess over the replay is the fetch cost.

    run(command="python3 benchmarks/icache_gpu.py --out $OUT/icache.json", timeout_s=480)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import triton
import triton.language as tl

SIZES = (256, 1024, 2048, 4096, 8192, 16384, 32768)
WARPS_CTAS = ((1, 1), (4, 1), (4, 4))


@triton.jit
def _mb_code(x_ptr, out_ptr, n_iter, K: tl.constexpr, NUM_WARPS: tl.constexpr):
    """In registers: 8 fp32 accumulators per thread.  Each iteration: K FFMAs, K/8 per accumulator, unrolled
    (tl.static_range): K x 16 bytes of straight-line code inside the loop."""
    offs = tl.arange(0, 32 * NUM_WARPS)
    x = tl.load(x_ptr + offs)
    a0 = x
    a1 = x + 1.0
    a2 = x + 2.0
    a3 = x + 3.0
    a4 = x + 4.0
    a5 = x + 5.0
    a6 = x + 6.0
    a7 = x + 7.0
    for i in range(n_iter):
        for j in tl.static_range(K // 8):
            a0 = a0 * 0.999 + 0.001
            a1 = a1 * 0.999 + 0.002
            a2 = a2 * 0.999 + 0.003
            a3 = a3 * 0.999 + 0.004
            a4 = a4 * 0.999 + 0.005
            a5 = a5 * 0.999 + 0.006
            a6 = a6 * 0.999 + 0.007
            a7 = a7 * 0.999 + 0.008
    tl.store(out_ptr + tl.program_id(0) * 32 * NUM_WARPS + offs, a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=360)
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from issue_latency_gpu import loop_body
    props = torch.cuda.get_device_properties(0)
    n_sms = props.multi_processor_count
    t0 = time.time()
    rows = []
    for k in SIZES:
        for w, c in WARPS_CTAS:
            if time.time() - t0 > a.budget_s:
                break
            n_iter = max(4, (1 << 22) // k)
            x = torch.rand(32 * w, device="cuda", dtype=torch.float32)
            grid = n_sms * c
            out = torch.empty(grid * 32 * w, device="cuda", dtype=torch.float32)
            run = lambda: _mb_code[(grid,)](x, out, n_iter, K=k, NUM_WARPS=w, num_warps=w, num_stages=1)  # noqa: E731
            try:
                run()
                torch.cuda.synchronize()
                t = triton.testing.do_bench(run, warmup=5, rep=40, return_mode="median") * 1e-3
                ck = _mb_code.warmup(x, out, n_iter, K=k, NUM_WARPS=w, num_warps=w, num_stages=1, grid=(grid,))
                body, unroll = loop_body(ck.asm["cubin"])
                rows.append({"kind": "icache", "kernel": "_mb_code", "constexprs": {"K": k, "NUM_WARPS": w},
                             "num_warps": w, "ctas_per_sm": c, "ctas": grid, "n_iter": n_iter, "time_s": t,
                             "s_per_iter": t / n_iter, "code_bytes": 16 * len(body), "regs_per_thread": int(ck.n_regs),
                             "spills": int(ck.n_spills), "iterations_per_trip": unroll, "body": body})
            except Exception as e:  # noqa: BLE001 -- recorded, not fatal
                rows.append({"kind": "icache", "constexprs": {"K": k, "NUM_WARPS": w}, "num_warps": w,
                             "ctas_per_sm": c, "error": f"{type(e).__name__}: {str(e)[:160]}"})
            r = rows[-1]
            print(f"K={k:6d} w{w} c{c}: " + (f"{r['s_per_iter'] * 1e9:10.1f} ns/iter, {r['code_bytes'] / 1024:7.1f} KB "
                  f"of loop code, {r['s_per_iter'] * 1.98e9 / k:.2f} cyc/FFMA at 1.98 GHz" if "error" not in r
                  else r["error"]), flush=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import write_run
    write_run(a.out, "icache/1", rows, script="icache_gpu.py", argv=argv, t0=t0,
              method="triton.testing.do_bench median (warmup 5 ms, rep 40 ms); clocks not locked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
