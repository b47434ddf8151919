"""How many of a kernel's own dirty lines does the L2 write back while the kernel reads other data?  (issue 8;
notes/fidelity.md, twelfth session.)

The `l2_writeback` fact measured the L2 writing alone: W fresh bytes stay dirty up to ~22 MB and none reach DRAM
inside the kernel.  The live random sets say otherwise for attention: 105 of 275 cases miss their DRAM writes by
> 15 %, and 27 of them are kernels whose whole output (1-20 MB) stays far below 22 MB, which the model therefore
predicts to write nothing, yet the card writes 10-60 % of it during the kernel (r11262_005: 3.8 MB stored, 25 MB
read once, 1.08 MB written back).  What differs from the `l2_writeback` program is the reads streaming through the
L2 beside the dirty lines.  This program isolates that: W bytes stored, R other bytes read, nothing else.

Kernel `_mb_l2dr` (4 warps, 4 KB tiles of bf16, 132 x 2 CTAs: all resident at once, so CTAs walk the buffers in
lockstep, tile p, p + G, p + 2G, ...):

* ``write_first``: every CTA stores its W / G bytes of a fresh buffer, then loads its R / G bytes of another fresh
  buffer (each line read by one CTA).  An LRU over a capacity C writes back min(W, max(0, W + R - C)).
* ``interleaved``: the same bytes, the stores spread evenly among the loads (as attention CTAs store their output
  while others stream K / V).
* ``pairs_near`` / ``pairs_far``: write_first, but every read tile is read by two CTAs: CTA p and p + G / 2 (on the
  same SM in the first wave: p mod 132) or CTAs 2k and 2k + 1 (on two different SMs, often of the two L2 halves).
  If a line read from both halves of the L2 takes a line in each, pairs_far writes back at about half the R.
* ``reread``: no stores; each CTA reads its R / G bytes twice (the second pass starts after the first): DRAM reads
  beyond R are the second pass's misses -- the L2's capacity for clean lines.  ``reread_w``: W stored first.

ncu (default cache control: the L2 is flushed before each launch; --clock-control none); metrics: DRAM read / write
bytes, L2 read / write sectors from the SMs, time.  Every point twice.

    run(command="python3 benchmarks/l2_dirty_reads_gpu.py --out $OUT/l2_dirty_reads.json", timeout_s=300)
    python benchmarks/l2_dirty_reads_gpu.py --analyse FILE      # here: the table
    python benchmarks/l2_dirty_reads_gpu.py --compile           # here: the kernel compiles for sm_90a
    python benchmarks/l2_dirty_reads_gpu.py --merge RUN         # here: the l2_dirty_reads fact (the age law)

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

MB = 1 << 20
GRID = 132 * 2
ROWS, COLS = 32, 64  # one tile: 4 KB of bf16
TILE_BYTES = ROWS * COLS * 2
REPEATS = 2
METRICS = ["gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum",
           "lts__t_sectors_srcunit_tex_op_read.sum", "lts__t_sectors_srcunit_tex_op_write.sum",
           "lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum"]
MODES = {"write_first": 0, "interleaved": 1, "pairs_near": 2, "pairs_far": 3, "reread": 4, "reread_w": 5}


def points() -> list:
    pts = [{"mode": "write_first", "write_bytes": w * MB, "read_bytes": r * MB}
           for w in (4, 8, 16) for r in (0, 8, 16, 24, 32, 40, 48, 64, 96)]
    pts += [{"mode": "write_first", "write_bytes": 0, "read_bytes": r * MB} for r in (24, 48, 96)]  # ncu's residue
    pts += [{"mode": "interleaved", "write_bytes": w * MB, "read_bytes": r * MB}
            for w in (4, 8, 16) for r in (16, 32, 48, 96)]
    pts += [{"mode": m, "write_bytes": 8 * MB, "read_bytes": r * MB}
            for m in ("pairs_near", "pairs_far") for r in (8, 16, 24, 32, 48)]
    pts += [{"mode": "reread", "write_bytes": 0, "read_bytes": r * MB} for r in (16, 24, 32, 40, 48, 64)]
    pts += [{"mode": "reread_w", "write_bytes": 8 * MB, "read_bytes": r * MB} for r in (16, 32, 40)]
    return pts


def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def _mb_l2dr(src_ptr, dst_ptr, out_ptr, n_w, n_r, MODE: tl.constexpr, G: tl.constexpr, ROWS: tl.constexpr,
                 COLS: tl.constexpr):
        """Registers: one tile of values to store and one accumulator tile.  CTA p stores tiles p + kG of dst
        (n_w per CTA) and loads tiles of src (n_r per CTA) in the MODE's order; nothing stays in shared memory."""
        pid = tl.program_id(0)
        offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        val = (offs + pid).to(tl.bfloat16)
        acc = tl.zeros([ROWS, COLS], dtype=tl.float32)
        tile = ROWS * COLS
        if MODE == 2:
            rp = pid % (G // 2)  # partner p + G/2: the same SM in the first wave
            rg = G // 2
        elif MODE == 3:
            rp = pid // 2  # partner p xor 1: another SM
            rg = G // 2
        else:
            rp = pid
            rg = G
        if MODE != 1:
            for j in range(n_w):
                tl.store(dst_ptr + (pid + j * G).to(tl.int64) * tile + offs, val)
            for i in range(n_r):
                acc += tl.load(src_ptr + (rp + i * rg).to(tl.int64) * tile + offs).to(tl.float32)
            if MODE >= 4:
                for i in range(n_r):
                    acc += tl.load(src_ptr + (rp + i * rg).to(tl.int64) * tile + offs).to(tl.float32)
        else:
            for i in range(n_r):
                acc += tl.load(src_ptr + (rp + i * rg).to(tl.int64) * tile + offs).to(tl.float32)
                for j in range((i * n_w) // n_r, ((i + 1) * n_w) // n_r):
                    tl.store(dst_ptr + (pid + j * G).to(tl.int64) * tile + offs, val)
        tl.store(out_ptr + pid * tile + offs, acc)

    return _mb_l2dr


def _per_cta(pt) -> tuple:
    """(stores, loads) per CTA: the point's bytes over the grid (pairs: G / 2 readers of each half)."""
    n_w = pt["write_bytes"] // (TILE_BYTES * GRID)
    rg = GRID // 2 if pt["mode"].startswith("pairs") else GRID
    n_r = pt["read_bytes"] // (TILE_BYTES * rg)
    return n_w, n_r


def _actual(pt) -> dict:
    """The bytes the launch really stores and reads (whole tiles per CTA: the point's W and R rounded down)."""
    n_w, n_r = _per_cta(pt)
    readers = GRID // 2 if pt["mode"].startswith("pairs") else GRID
    return {"stored_bytes": n_w * GRID * TILE_BYTES, "unique_read_bytes": n_r * readers * TILE_BYTES}


def _launch(k, pt, src, dst, out):
    n_w, n_r = _per_cta(pt)
    k[(GRID,)](src, dst, out, n_w, n_r, MODE=MODES[pt["mode"]], G=GRID, ROWS=ROWS, COLS=COLS, num_warps=4)


def compile_check() -> int:
    import torch
    from kernels.compiled_facts import compile_launch
    k = _kernel()
    src = torch.empty(1 << 20, dtype=torch.bfloat16)
    out = torch.empty(GRID, ROWS, COLS, dtype=torch.float32)
    for m, v in MODES.items():
        f = compile_launch(k, (src, src, out, 4, 8), {"MODE": v, "G": GRID, "ROWS": ROWS, "COLS": COLS,
                                                       "num_warps": 4})
        print(m, f["regs_per_thread"], "regs", f.get("local_bytes_per_thread"), "B local", f["kernel"])
    return 0


def child() -> int:
    import torch
    k = _kernel()
    pts = points()
    big = max(p["read_bytes"] for p in pts)
    src = torch.randn(big // 2, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty(max(p["write_bytes"] for p in pts) // 2, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(GRID, ROWS, COLS, device="cuda", dtype=torch.float32)
    for pt in pts:  # compile and warm every variant outside the profiled range
        _launch(k, pt, src, dst, out)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for _ in range(REPEATS):
        for pt in pts:
            _launch(k, pt, src, dst, out)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    return 0


def run(out: str) -> int:
    import time
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import ncu_rows, write_run

    from verification import ncu as N
    t0 = time.time()
    order = points() * REPEATS
    rows, cmd, _ = ncu_rows(os.path.abspath(__file__), ["--child"], metrics=METRICS, kernel_regex="_mb_l2dr",
                            expected=len(order), timeout_s=500)
    write_run(out, "l2_dirty_reads/1", [{**pt, **_actual(pt), "repeat": i // len(points()), "metrics": dict(r.metrics)}
                                        for i, (pt, r) in enumerate(zip(order, rows))],
              script="l2_dirty_reads_gpu.py", argv=None, method="ncu, default cache control, every point twice",
              t0=t0, extra={"ncu": N.ncu_version(), "ncu_command": " ".join(cmd), "grid": GRID,
                            "tile_bytes": TILE_BYTES})
    return analyse(out)


def analyse(path: str) -> int:
    import statistics
    res = json.load(open(path))
    print(res["provenance"]["gpu"], res["provenance"]["date"])
    groups: dict = {}
    for p in res["points"]:
        groups.setdefault((p["mode"], p["stored_bytes"], p["unique_read_bytes"]), []).append(p["metrics"])
    print("| mode | W MB | R MB | DRAM write MB (repeats) | written back / W | DRAM read MB | beyond R MB | time us |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (m, w, r), ms in groups.items():
        dw = [x["dram__bytes_write.sum"] / MB for x in ms]
        dr = statistics.median(x["dram__bytes_read.sum"] / MB for x in ms)
        t = statistics.median(x["gpu__time_duration.sum"] * 1e6 for x in ms)
        frac = statistics.median(dw) / (w / MB) if w else float("nan")
        print(f"| {m} | {w / MB:.1f} | {r / MB:.1f} | {statistics.median(dw):.2f} ({', '.join(f'{x:.2f}' for x in dw)}) | "
              f"{frac:.3f} | {dr:.1f} | {dr - r / MB:.1f} | {t:.1f} |")
    return 0


def merge(run_paths: list, into: str, *, replace: bool = False) -> int:
    """Add the runs' points (every repeat, with its metrics) to `into` as the `l2_dirty_reads` fact and show the age
    law `memsim.calibration.l2_clean_age_from` derives from them."""
    from run_file import load_runs, merge_fact

    from memsim.calibration import l2_clean_age_from
    runs = load_runs(run_paths, "l2_dirty_reads")
    pts = [p | {"date": run["provenance"]["date"]} for run in runs for p in run["points"]]
    law = l2_clean_age_from(pts).get("l2_clean_age")
    if law is None:
        raise SystemExit("--merge: the runs hold no write_first points with W = 0 and W > 0: no age law")
    print(f"age law: mean {law[0] / MB:.2f} MB, sd {law[1] / MB:.2f} MB")
    merge_fact(into, "l2_dirty_reads", pts, run=runs[0], run_path=run_paths[0], replace=replace, also=run_paths[1:],
               note="W bytes stored and R other bytes read (write-first, interleaved, read pairs, re-reads): the age "
               "at which the L2 writes back a dirty line")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="(GPU machine) the result JSON")
    g.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    g.add_argument("--analyse", metavar="FILE")
    g.add_argument("--compile", action="store_true", help="compile the kernel for sm_90a (no GPU)")
    g.add_argument("--merge", nargs="+", metavar="RUN", help="add runs to --into as the l2_dirty_reads fact")
    ap.add_argument("--into", default="memsim/presets/h100-sxm.calibration.json")
    ap.add_argument("--replace", action="store_true")
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if a.compile:
        return compile_check()
    if a.child:
        return child()
    if a.analyse:
        return analyse(a.analyse)
    if a.merge:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        return merge(a.merge, a.into, replace=a.replace)
    return run(a.out)


if __name__ == "__main__":
    sys.exit(main())
