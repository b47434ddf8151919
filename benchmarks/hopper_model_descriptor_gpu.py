"""One device call (issue 9 item 4, session 6): do CTAs that sit alone on their SM pay their device-built TMA
descriptors one after the other, wave after wave?

The `tma_descriptor` calibration (benchmarks/tma_descriptor_gpu.py, run-2026-11-26T0445) fitted a + b x n = 0.42 us +
1.04 us per descriptor on ONE wave; its eight-wave points paid only 0.22 / 0.70 us per wave, because its small CTAs
were resident together and overlapped the builds.  The per-tile warp-specialised hopper launches have one CTA per
SM (12 warps x 168 registers) and many waves: there each CTA's builds (3 in the forward's producer, 6 in the dK/dV
pass's) would sit on the critical path of every wave.  This program measures that regime without an attention
kernel: `_mb_desc` loads NTILES 128 x 128 bf16 tiles through NDESC descriptors it builds itself (tile i through
descriptor i % NDESC; the same rows and bytes for every NDESC), sums them and their squares and stores one tile;
32 warps, so that one CTA fits per SM (registers: 1024 threads x more than 32 registers); grids of 1, 4 and 16
waves.  If the builds are serial per CTA, t(waves, NDESC) - t(waves, 1) grows as waves x (NDESC - 1) x b.

    run(command="python3 benchmarks/hopper_model_descriptor_gpu.py --out $OUT/descriptor.json", timeout_s=240)
    python benchmarks/hopper_model_descriptor_gpu.py --analyse FILE      # CPU: the per-wave differences
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

BR, BC = 128, 128
NTILES = 6
DESCS = (1, 3, 6)
WAVES = (1, 4, 16)
#: 32 warps: 1024 threads x more than 32 registers leave room for one CTA per SM (registers), as the 384-thread,
#: 168-register hopper launches
WARPS = 32


def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def _mb_desc(X, OUT, ROWS, NDESC: tl.constexpr, NTILES: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr):
        """NTILES tiles of BR x BC from X (NTILES x ROWS rows): tile i at rows i * ROWS + row0, through descriptor
        i % NDESC (descriptor j starts at row j * ROWS).  Every descriptor is built before the first load."""
        pid = tl.program_id(0)
        row0 = (pid * BR) % ROWS
        span = NTILES * ROWS
        d0 = tl.make_tensor_descriptor(X, shape=[span, BC], strides=[BC, 1], block_shape=[BR, BC])
        if NDESC > 1:
            d1 = tl.make_tensor_descriptor(X + ROWS * BC, shape=[span - ROWS, BC], strides=[BC, 1],
                                           block_shape=[BR, BC])
            d2 = tl.make_tensor_descriptor(X + 2 * ROWS * BC, shape=[span - 2 * ROWS, BC], strides=[BC, 1],
                                           block_shape=[BR, BC])
        if NDESC > 3:
            d3 = tl.make_tensor_descriptor(X + 3 * ROWS * BC, shape=[span - 3 * ROWS, BC], strides=[BC, 1],
                                           block_shape=[BR, BC])
            d4 = tl.make_tensor_descriptor(X + 4 * ROWS * BC, shape=[span - 4 * ROWS, BC], strides=[BC, 1],
                                           block_shape=[BR, BC])
            d5 = tl.make_tensor_descriptor(X + 5 * ROWS * BC, shape=[span - 5 * ROWS, BC], strides=[BC, 1],
                                           block_shape=[BR, BC])
        acc = tl.zeros([BR, BC], dtype=tl.float32)
        sq = tl.zeros([BR, BC], dtype=tl.float32)  # a second live sum: registers enough for one CTA per SM
        for i in tl.static_range(NTILES):
            r = (i - i % NDESC) * ROWS + row0
            if i % NDESC == 0:
                t = d0.load([r, 0])
            elif i % NDESC == 1:
                t = d1.load([r, 0])
            elif i % NDESC == 2:
                t = d2.load([r, 0])
            elif i % NDESC == 3:
                t = d3.load([r, 0])
            elif i % NDESC == 4:
                t = d4.load([r, 0])
            else:
                t = d5.load([r, 0])
            tf = t.to(tl.float32)
            acc += tf
            sq += tf * tf
        rr = tl.arange(0, BR)
        cc = tl.arange(0, BC)
        tl.store(OUT + pid * BR * BC + rr[:, None] * BC + cc[None, :], acc + sq)
    return _mb_desc


def measure(out_path: str, argv) -> int:
    import torch
    import triton
    props = torch.cuda.get_device_properties(0)
    n_sms = props.multi_processor_count

    @functools.lru_cache(maxsize=None)
    def scratch(size: int, alignment: int):  # the descriptors' global scratch, one buffer per request shape
        return torch.empty(size, device="cuda", dtype=torch.int8)
    triton.set_allocator(lambda size, alignment, stream: scratch(size, alignment))
    kern = _kernel()
    rows = BR * n_sms
    x = torch.randn(NTILES * rows * BC, device="cuda", dtype=torch.bfloat16)
    t0 = time.time()
    pts = []
    for waves in WAVES:
        grid = n_sms * waves
        out = torch.empty(grid * BR * BC, device="cuda", dtype=torch.float32)
        for nd in DESCS:
            def run():
                return kern[(grid,)](x, out, rows, NDESC=nd, NTILES=NTILES, BR=BR, BC=BC, num_warps=WARPS, num_stages=1)
            try:
                ck = run()
                torch.cuda.synchronize()
                tiles = [x.view(NTILES, rows, BC)[i, :BR].float() for i in range(NTILES)]
                ref = sum(tiles) + sum(t_ * t_ for t_ in tiles)
                ok = bool(torch.allclose(out[:BR * BC].view(BR, BC), ref, atol=1e-2, rtol=1e-3))
                t = triton.testing.do_bench(run, warmup=10, rep=100, return_mode="median") * 1e-3
                pts.append({"kind": "descriptor_waves", "waves": waves, "ctas": grid, "ndesc": nd, "ntiles": NTILES,
                            "time_s": t, "correct": ok, "n_regs": int(ck.n_regs),
                            "shared_bytes": int(ck.metadata.shared), "num_warps": WARPS})
            except Exception as e:  # noqa: BLE001 -- recorded, not fatal
                pts.append({"kind": "descriptor_waves", "waves": waves, "ndesc": nd,
                            "error": f"{type(e).__name__}: {str(e)[:300]}"})
            p = pts[-1]
            print(f"waves {waves:2d} ndesc {nd}: " + (f"{p['time_s'] * 1e6:9.2f} us  regs {p['n_regs']} smem "
                                                     f"{p['shared_bytes']} correct {p['correct']}"
                                                     if "error" not in p else p["error"]), flush=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import write_run
    write_run(out_path, "descriptor_waves/1", pts, script="hopper_model_descriptor_gpu.py", argv=argv, t0=t0,
              method="triton.testing.do_bench median (warmup 10 ms, rep 100 ms); clocks not locked")
    return 0


def analyse(path: str) -> int:
    """Per wave: t(waves, n) - t(waves, 1) over waves, against (n - 1) x b of the calibration."""
    doc = json.load(open(path))
    t = {(p["waves"], p["ndesc"]): p["time_s"] for p in doc["points"] if "time_s" in p}
    print(f"{doc['provenance'].get('gpu')} {doc['provenance'].get('date')}")
    for (w, n), v in sorted(t.items()):
        base = t.get((w, 1))
        if base is None or n == 1:
            continue
        d = v - base
        print(f"waves {w:2d} ndesc {n}: +{d * 1e6:7.2f} us in all, +{d / w * 1e6:6.2f} us per wave, "
              f"{d / w / (n - 1) * 1e6:5.2f} us per extra descriptor per wave")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", help="measure (GPU) and write the run file here")
    what.add_argument("--analyse", metavar="FILE", help="print a run file's per-wave differences (CPU)")
    a = ap.parse_args(argv)
    return analyse(a.analyse) if a.analyse else measure(a.out, argv)


if __name__ == "__main__":
    sys.exit(main())
