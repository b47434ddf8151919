"""Does a line read by SMs in both halves of the H100's L2 take room twice?  (issue 8; notes/fidelity.md, twelfth
session: the age law of dirty lines, `benchmarks/l2_dirty_reads_gpu.py`, still under-predicts attention kernels'
write-backs, whose K / V lines are read by CTAs on many SMs; that run's `pairs_near` reads (CTAs p, p + 132: no
shared TPC) wrote back as if R were 3-4 MB larger than `pairs_far` (CTAs 2k, 2k + 1, a TPC's two SMs).)

Kernel `_mb_l2rd`: 264 CTAs; the first CTA to arrive on each SM (an atomic claim per %smid) works, the others exit,
so exactly one worker per SM, named by its SM id s.  Each worker stores its 1/132 of W bytes of a fresh buffer, then
reads lines of another fresh buffer (4 KB tiles, 4 warps; nothing else):

* ``solo``: SM s reads its own 1/132 of R (each line read by one SM);
* ``pair`` with distance D: SMs s and s + D (s with (s // D) even) read the same 1/66 of R, in lockstep -- D = 1 is a
  TPC's two SMs (they merge their requests), D = 2, 6, 22, 66 pair SMs further apart;
* ``all``: every SM reads all of R (132 readers per line);
* ``solo2``: as solo with two workers per SM (the first two CTAs to claim it), each its own 1/264 of W and R -- the
  `l2_dirty_reads` write_first program's shape (264 CTAs, one reader per line), which lost more than solo.

Plans: ``first`` (run 1, 22:35 UTC: R = 16, 24 MB, every mode) and ``sweep`` (R = 16-40 MB for solo, solo2, pair
D = 6 and all: the curves, to fit a law of readers per line).

R counts unique bytes: every variant brings the same R into the L2 once if a line takes room once.  ncu (default
cache control, --clock-control none): DRAM writes (what the stores lose to the reads), DRAM reads, L2 sectors.
W = 7.2 MB, R = 16 and 24 MB (where `l2_dirty_reads` writes back 0.4 / 2.8 MB with one reader per line); twice.

    run(command="python3 benchmarks/l2_readers_gpu.py --out $OUT/l2_readers.json [--plan sweep]", timeout_s=200)
    python benchmarks/l2_readers_gpu.py --analyse FILE
    python benchmarks/l2_readers_gpu.py --compile

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

MB = 1 << 20
NSM = 132
GRID = 3 * NSM  # enough CTAs that every SM gets its workers
ROWS, COLS = 32, 64  # 4 KB of bf16
TILE_BYTES = ROWS * COLS * 2
REPEATS = 2
W_BYTES = 7 * MB + MB // 5
METRICS = ["gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum",
           "lts__t_sectors_srcunit_tex_op_read.sum", "lts__t_sectors_srcunit_tex_op_write.sum"]
MODES = {"solo": 0, "pair": 1, "all": 2, "solo2": 0}


def points_first() -> list:
    pts = []
    for r in (16, 24):
        pts.append({"mode": "solo", "distance": 0, "read_bytes": r * MB})
        pts += [{"mode": "pair", "distance": d, "read_bytes": r * MB} for d in (1, 2, 6, 22, 66)]
        pts.append({"mode": "all", "distance": 0, "read_bytes": r * MB})
    return pts


def points_sweep() -> list:
    return [{"mode": m, "distance": d, "read_bytes": r * MB} for m, d in (("solo", 0), ("solo2", 0), ("pair", 6),
                                                                         ("all", 0)) for r in (16, 24, 32, 40)]


PLANS = {"first": points_first, "sweep": points_sweep}


def points(plan: str = "first") -> list:
    return PLANS[plan]()


def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def _mb_l2rd(src_ptr, dst_ptr, claim_ptr, out_ptr, n_w, n_r, D, MODE: tl.constexpr, NSM: tl.constexpr,
                 ROWS: tl.constexpr, COLS: tl.constexpr, ON_GPU: tl.constexpr, WPS: tl.constexpr = 1):
        """Registers: one tile to store, one accumulator tile.  One worker per SM (atomic claim on its %smid);
        it stores tiles s + k NSM of dst, then loads n_r tiles of src chosen by MODE (see the module)."""
        if ON_GPU:
            s = tl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=False, pack=1)
        else:
            s = tl.program_id(0) % NSM
        first = tl.atomic_add(claim_ptr + s, 1)
        if first < WPS:
            g = first * NSM + s  # this worker's id among NSM x WPS
            offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
            tile = ROWS * COLS
            val = (offs + s).to(tl.bfloat16)
            for j in range(n_w):
                tl.store(dst_ptr + (g + j * NSM * WPS).to(tl.int64) * tile + offs, val)
            if MODE == 0:
                base = g
                stride = NSM * WPS
            elif MODE == 1:
                lead = s - D * ((s // D) % 2)  # the pair's first SM
                base = (lead // (2 * D)) * D + lead % D  # 0 .. NSM / 2 - 1
                stride = NSM // 2
            else:
                base = s * 0
                stride = 1
            acc = tl.zeros([ROWS, COLS], dtype=tl.float32)
            for i in range(n_r):
                acc += tl.load(src_ptr + (base + i * stride).to(tl.int64) * tile + offs).to(tl.float32)
            tl.store(out_ptr + g * tile + offs, acc)

    return _mb_l2rd


def _wps(pt) -> int:
    return 2 if pt["mode"] == "solo2" else 1


def _per_worker(pt) -> tuple:
    """(tiles stored, tiles read) per worker and the number of distinct read streams."""
    readers = {"solo": NSM, "solo2": 2 * NSM, "pair": NSM // 2, "all": 1}[pt["mode"]]
    return W_BYTES // (TILE_BYTES * NSM * _wps(pt)), pt["read_bytes"] // (TILE_BYTES * readers), readers


def _launch(k, pt, src, dst, claim, out, on_gpu=True):
    n_w, n_r, _ = _per_worker(pt)
    claim.zero_()
    k[(GRID,)](src, dst, claim, out, n_w, n_r, max(1, pt["distance"]), MODE=MODES[pt["mode"]], NSM=NSM, ROWS=ROWS,
               COLS=COLS, ON_GPU=on_gpu, WPS=_wps(pt), num_warps=4)


def compile_check() -> int:
    import torch
    from kernels.compiled_facts import compile_launch
    k = _kernel()
    src = torch.empty(1 << 20, dtype=torch.bfloat16)
    claim = torch.zeros(NSM, dtype=torch.int32)
    out = torch.empty(2 * NSM, ROWS, COLS, dtype=torch.float32)
    for m, v in MODES.items():
        f = compile_launch(k, (src, src, claim, out, 4, 8, 2), {"MODE": v, "NSM": NSM, "ROWS": ROWS, "COLS": COLS,
                                                                "ON_GPU": True, "num_warps": 4})
        print(m, f["regs_per_thread"], "regs", f.get("local_bytes_per_thread"), "B local", f["kernel"])
    return 0


def child(plan: str) -> int:
    import torch
    k = _kernel()
    pts = points(plan)
    src = torch.randn(max(p["read_bytes"] for p in pts) // 2, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty(W_BYTES // 2, device="cuda", dtype=torch.bfloat16)
    claim = torch.zeros(NSM, device="cuda", dtype=torch.int32)
    out = torch.empty(2 * NSM, ROWS, COLS, device="cuda", dtype=torch.float32)
    for pt in pts:
        _launch(k, pt, src, dst, claim, out)
    torch.cuda.synchronize()
    workers = int((claim > 0).sum())  # SMs with a worker, after the last warm-up launch
    torch.cuda.profiler.start()
    for _ in range(REPEATS):
        for pt in pts:
            _launch(k, pt, src, dst, claim, out)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    print(f"SMs with a worker: {workers} of {NSM}")
    return 0


def run(out: str, plan: str) -> int:
    import time
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import ncu_rows, write_run

    from verification import ncu as N
    t0 = time.time()
    order = points(plan) * REPEATS
    rows, cmd, stdout = ncu_rows(os.path.abspath(__file__), ["--child", plan], metrics=METRICS,
                                 kernel_regex="_mb_l2rd", expected=len(order), timeout_s=300)
    workers = [ln for ln in stdout.splitlines() if ln.startswith("SMs with a worker")]
    pts = []
    for i, (pt, r) in enumerate(zip(order, rows)):
        n_w, n_r, readers = _per_worker(pt)
        pts.append({**pt, "stored_bytes": n_w * NSM * _wps(pt) * TILE_BYTES, "unique_read_bytes": n_r * readers * TILE_BYTES,
                    "repeat": i // len(points(plan)), "metrics": dict(r.metrics)})
    write_run(out, "l2_readers/1", pts, script="l2_readers_gpu.py", argv=None,
              method="ncu, default cache control, every point twice", t0=t0,
              extra={"ncu": N.ncu_version(), "ncu_command": " ".join(cmd), "grid": GRID, "tile_bytes": TILE_BYTES,
                     "workers": workers})
    return analyse(out)


def analyse(path: str) -> int:
    import statistics
    res = json.load(open(path))
    print(res["provenance"]["gpu"], res["provenance"]["date"], res["provenance"].get("workers"))
    g: dict = {}
    for p in res["points"]:
        g.setdefault((p["unique_read_bytes"], p["mode"], p["distance"]), []).append(p["metrics"])
    print("| R MB | readers | DRAM write MB (repeats) | DRAM read MB | L2 read MB | time us |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (r, m, d), ms in g.items():
        dw = [x["dram__bytes_write.sum"] / MB for x in ms]
        med = lambda key: statistics.median(x[key] for x in ms)  # noqa: E731
        name = f"pair D={d}" if m == "pair" else m
        print(f"| {r / MB:.1f} | {name} | {statistics.median(dw):.2f} ({', '.join(f'{x:.2f}' for x in dw)}) | "
              f"{med('dram__bytes_read.sum') / MB:.1f} | {med('lts__t_sectors_srcunit_tex_op_read.sum') * 32 / MB:.0f} | "
              f"{med('gpu__time_duration.sum') * 1e6:.1f} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="(GPU machine) the result JSON")
    g.add_argument("--child", metavar="PLAN", help=argparse.SUPPRESS)
    g.add_argument("--analyse", metavar="FILE")
    g.add_argument("--compile", action="store_true", help="compile the kernel for sm_90a (no GPU)")
    ap.add_argument("--plan", default="first", choices=sorted(PLANS), help="with --out: which points")
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if a.compile:
        return compile_check()
    if a.child:
        return child(a.child)
    if a.analyse:
        return analyse(a.analyse)
    return run(a.out, a.plan)


if __name__ == "__main__":
    sys.exit(main())
