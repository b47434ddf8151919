"""One device call: do TMA loads of the same lines by CTAs on different SMs merge before the L2, as LSU loads do?

`verification calibrate` (l2_merge) showed that G CTAs reading the same lines in lockstep with LSU loads
(`tl.load`) send about 1/G of the requests to the L2 (up to groups of ~4 SMs).  The hopper kernel loads its K/V
tiles by TMA (`tl.make_tensor_descriptor(...).load`).  Here the same 2 MB working set (n_tiles tiles of ROWS x 64
fp16) is read by G CTAs in lockstep, once with 2-D LSU loads and once with TMA, and ncu counts L2 read sectors
(lts__t_sectors_srcunit_tex_op_read) against the global bytes each CTA asked for.

    run(command="python3 benchmarks/tma_merge_gpu.py --out $OUT/tma_merge.json", timeout_s=300)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

ROWS, COLS = 64, 64
SET_BYTES = 2 * 1024 * 1024
GROUPS = (1, 2, 4, 8, 32, 132)
METRICS = ["gpu__time_duration.sum", "lts__t_sectors_srcunit_tex_op_read.sum",
           "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum", "l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld.sum"]


def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def _mb_merge_lsu(src_ptr, out_ptr, n_tiles, ROWS: tl.constexpr, COLS: tl.constexpr):
        """Each CTA reads the same n_tiles ROWS x COLS tiles in order (lockstep) with LSU loads."""
        pid = tl.program_id(0)
        offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        acc = tl.zeros([ROWS, COLS], dtype=tl.float32)
        for t in range(n_tiles):
            acc += tl.load(src_ptr + t * ROWS * COLS + offs).to(tl.float32)
        tl.store(out_ptr + pid * ROWS * COLS + offs, acc)

    @triton.jit
    def _mb_merge_tma(src_ptr, out_ptr, n_tiles, ROWS: tl.constexpr, COLS: tl.constexpr):
        """The same reads through a TMA descriptor over the [n_tiles * ROWS, COLS] buffer."""
        pid = tl.program_id(0)
        desc = tl.make_tensor_descriptor(src_ptr, shape=[n_tiles * ROWS, COLS], strides=[COLS, 1],
                                         block_shape=[ROWS, COLS])
        offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        acc = tl.zeros([ROWS, COLS], dtype=tl.float32)
        for t in range(n_tiles):
            acc += desc.load([t * ROWS, 0]).to(tl.float32)
        tl.store(out_ptr + pid * ROWS * COLS + offs, acc)

    return _mb_merge_lsu, _mb_merge_tma


def child() -> int:
    """Launch every (kind, G) once inside the profiler range, in a fixed order (the parent maps rows by order)."""
    import torch
    import triton
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))
    lsu, tma = _kernels()
    n_tiles = SET_BYTES // (ROWS * COLS * 2)
    src = torch.randn(n_tiles * ROWS, COLS, device="cuda", dtype=torch.float16)
    out = torch.empty(max(GROUPS), ROWS, COLS, device="cuda", dtype=torch.float32)
    for k in (lsu, tma):  # compile and warm up outside the profiled range
        k[(1,)](src, out, n_tiles, ROWS=ROWS, COLS=COLS, num_warps=4)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for k in (lsu, tma):
        for g in GROUPS:
            k[(g,)](src, out, n_tiles, ROWS=ROWS, COLS=COLS, num_warps=4)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out")
    ap.add_argument("--child", action="store_true")
    a = ap.parse_args(argv)
    if a.child:
        return child()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from verification import ncu as N
    cmd = N.build_command([sys.executable, os.path.abspath(__file__), "--child"], metrics=METRICS,
                          kernel_regex="_mb_merge_")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    rows = N.parse_csv(p.stdout)
    order = [(kind, g) for kind in ("lsu", "tma") for g in GROUPS]
    if len(rows) != len(order):
        print(p.stdout[-3000:], p.stderr[-3000:])
        raise SystemExit(f"expected {len(order)} profiled launches, got {len(rows)}")
    import torch
    pts = []
    for (kind, g), r in zip(order, rows):
        m = dict(r.metrics)
        asked = g * SET_BYTES
        l2 = m["lts__t_sectors_srcunit_tex_op_read.sum"] * N.SECTOR_BYTES
        pts.append({"kind": kind, "ctas": g, "set_bytes": SET_BYTES, "global_read_bytes_asked": asked,
                    "metrics": m, "l2_read_bytes": l2, "l2_per_global_byte": l2 / asked})
        print(f"{kind} G={g:3d}: L2 read / bytes asked {l2 / asked:.3f}  "
              f"(LSU {m['l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum'] / 1e6:.1f} MB, "
              f"TMA {m['l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld.sum'] / 1e6:.1f} MB)")
    res = {"format": "tma_merge/1", "provenance": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "ncu": N.ncu_version(),
        "command": "python3 benchmarks/tma_merge_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "ncu_command": " ".join(cmd)}, "points": pts}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
