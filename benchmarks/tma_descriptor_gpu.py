"""One device call: what a CTA pays to build TMA descriptors on the device before its first tile arrives.

The hopper kernels build their tensor descriptors in the kernel (`tl.make_tensor_descriptor`: the descriptor is
written to a global scratch buffer, the TMA unit's descriptor cache is invalidated -- SASS ``UTMACCTL.IV`` -- and a
proxy fence orders the two) -- four per CTA (Q, K, V, O).  Small hopper cases ran 4-14 us per wave slower than the
model predicts.  `_mb_tile` loads NDESC 64 x 64 fp16 tiles per CTA and writes one: through NDESC device-built
descriptors (TMA) or through plain pointer loads, NDESC = 1 or 4, one wave (one CTA per SM) or eight.  The
difference per wave is the descriptors' latency on the CTA's critical path.

    run(command="python3 benchmarks/tma_descriptor_gpu.py --out $OUT/tma_descriptor.json", timeout_s=300)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import triton
import triton.language as tl

BLOCK = 64


@triton.jit
def _mb_tile(X, OUT, ROWS, NDESC: tl.constexpr, USE_TMA: tl.constexpr, BLOCK: tl.constexpr):
    """NDESC tiles of BLOCK x BLOCK fp16 from NDESC separate row ranges of X (each ROWS x BLOCK), summed in fp32,
    one BLOCK x BLOCK tile stored.  USE_TMA: each range through its own device-built tensor descriptor."""
    pid = tl.program_id(0)
    row0 = (pid * BLOCK) % ROWS
    acc = tl.zeros([BLOCK, BLOCK], dtype=tl.float32)
    r = tl.arange(0, BLOCK)
    for i in tl.static_range(NDESC):
        base = X + i * ROWS * BLOCK
        if USE_TMA:
            d = tl.make_tensor_descriptor(base, shape=[ROWS, BLOCK], strides=[BLOCK, 1], block_shape=[BLOCK, BLOCK])
            acc += d.load([row0, 0]).to(tl.float32)
        else:
            acc += tl.load(base + (row0 + r)[:, None] * BLOCK + r[None, :]).to(tl.float32)
    tl.store(OUT + pid * BLOCK * BLOCK + r[:, None] * BLOCK + r[None, :], acc)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    props = torch.cuda.get_device_properties(0)
    n_sms = props.multi_processor_count
    scratch = {}

    def alloc(size: int, alignment: int, stream):
        key = (size, alignment)
        if key not in scratch:
            scratch[key] = torch.empty(size, device="cuda", dtype=torch.int8)
        return scratch[key]
    triton.set_allocator(alloc)
    rows = BLOCK * n_sms
    x = torch.randn(4 * rows * BLOCK, device="cuda", dtype=torch.float16)
    t0 = time.time()
    out_rows = []
    for waves in (1, 8):
        grid = n_sms * waves
        out = torch.empty(grid * BLOCK * BLOCK, device="cuda", dtype=torch.float32)
        for ndesc in (1, 4):
            for tma in (False, True):
                run = lambda: _mb_tile[(grid,)](x, out, rows, NDESC=ndesc, USE_TMA=tma, BLOCK=BLOCK,  # noqa: E731
                                                num_warps=4, num_stages=1)
                try:
                    run()
                    torch.cuda.synchronize()
                    t = triton.testing.do_bench(run, warmup=10, rep=100, return_mode="median") * 1e-3
                    out_rows.append({"kind": "tma_descriptor", "waves": waves, "ctas": grid, "ndesc": ndesc,
                                     "tma": tma, "time_s": t})
                except Exception as e:  # noqa: BLE001 -- recorded, not fatal
                    out_rows.append({"kind": "tma_descriptor", "waves": waves, "ctas": grid, "ndesc": ndesc,
                                     "tma": tma, "error": f"{type(e).__name__}: {str(e)[:200]}"})
                r = out_rows[-1]
                print(f"waves {waves} ndesc {ndesc} {'TMA  ' if tma else 'plain'}: "
                      + (f"{r['time_s'] * 1e6:8.2f} us" if "error" not in r else r["error"]), flush=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import write_run
    write_run(a.out, "tma_descriptor/1", out_rows, script="tma_descriptor_gpu.py", argv=argv, t0=t0,
              method="triton.testing.do_bench median (warmup 10 ms, rep 100 ms); clocks not locked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
