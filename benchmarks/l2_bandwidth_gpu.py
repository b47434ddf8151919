"""How fast can the SMs read lines that are already in the L2, and what do TMA boxes that run past the end of their
tensor cost the L2?  (issue 8; notes/fidelity.md, ninth session.)

The preset's `l2_bw_Bps` (5.5 TB/s) is a published estimate, never measured here, and a measured attention forward
(live r26112_005, hopper d=32) moved 7.7 GB through the L2 in 1.165 ms: 6.6 TB/s.  Two plans, one ncu process each
(default cache control, --clock-control none):

* ``bandwidth``: 132 x c CTAs (c = 1, 2, 4 per SM) each stream `per_cta` bytes of an L2-resident working set of W
  bytes (8 or 24 MB: far below the 50 MB L2), CTA i starting at its own offset so no two CTAs ask for the same lines
  at once (nothing for the L2 request coalescer to merge), LSU loads or TMA boxes of 64 rows x 128 bf16.  The L2 read
  bandwidth = ncu's L2 read sectors x 32 B / kernel time; DRAM reads show how much of it the first pass missed.
* ``oob``: TMA boxes of 64 rows x C bf16 whose tensor has only R rows (R = 1, 3, 9, 33, 64; C = 16, 64): each of
  132 CTAs loads one box of its OWN tensor, so nothing merges; L2 read sectors per box against the R rows that exist
  and the 64 the box has.

    python3 benchmarks/l2_bandwidth_gpu.py --out $OUT/l2_bandwidth.json     # GPU machine
    python benchmarks/l2_bandwidth_gpu.py --analyse FILE                     # here
    python benchmarks/l2_bandwidth_gpu.py --compile                          # here: the kernels compile for sm_90a
    python benchmarks/l2_bandwidth_gpu.py --merge RUN                        # here: the l2_bandwidth fact

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

GRID_SMS = 132
ROWS, COLS = 64, 128  # the bandwidth plan's tile: 16 KB of bf16
PER_CTA_BYTES = 8 << 20
METRICS = ["gpu__time_duration.sum", "lts__t_sectors_srcunit_tex_op_read.sum", "dram__bytes_read.sum",
           "lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum", "sm__cycles_elapsed.avg.per_second"]
#: recorded from the `write` plan's run on (the 14:34 run had METRICS only)
WRITE_METRICS = ["lts__t_sectors_srcunit_tex_op_write.sum", "dram__bytes_write.sum"]


def points_bandwidth() -> list:
    return [{"plan": "bandwidth", "path": p, "ctas_per_sm": c, "working_set_bytes": w}
            for p in ("lsu", "tma") for c in (1, 2, 4) for w in (8 << 20, 24 << 20)]


def points_write() -> list:
    """Run 2: the same walks storing (write) or copying (read one tile, store it elsewhere: both), LSU only, 1-8
    CTAs per SM, 8 MB sets (writes stay dirty in the L2: under the 22 MB the L2 keeps dirty, nothing is evicted)."""
    return [{"plan": "write", "path": p, "ctas_per_sm": c, "working_set_bytes": 8 << 20}
            for p in ("store", "copy") for c in (1, 2, 4, 8)]


#: the `pitch` plan's row pitches (bytes) for 128-B rows of bf16: contiguous, then rows that start off a 32-B sector
PITCHES_B = (128, 130, 136, 144, 160, 192, 256)


def points_pitch() -> list:
    """Run 3: stores of 64 x 64 bf16 tiles (128-B rows) whose rows lie `pitch` bytes apart, as the naive kernels store
    S / P / dS rows of seq_kv elements: a pitch off the 32-B sector makes every row touch a partial sector at each end.
    4 CTAs per SM, each its own walk over an L2-resident set (<= 8 MB)."""
    return [{"plan": "pitch", "path": "store_pitch", "ctas_per_sm": 4, "pitch_bytes": pb} for pb in PITCHES_B]


def points_oob() -> list:
    return [{"plan": "oob", "path": "tma", "rows_exist": r, "cols": c} for c in (16, 64) for r in (1, 3, 9, 33, 64)]


def points_peak() -> list:
    """Run 2: the read walks at 8 and 16 CTAs per SM (the 14:34 run's rate still rose from 2 to 4)."""
    return [{"plan": "bandwidth", "path": p, "ctas_per_sm": c, "working_set_bytes": 8 << 20}
            for p in ("lsu", "tma") for c in (8, 16)]


PLANS = {"bandwidth": points_bandwidth, "oob": points_oob, "write": points_write, "peak": points_peak,
         "pitch": points_pitch}


def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def _mb_l2bw_lsu(src_ptr, out_ptr, n_tiles_set, n_iter, start_stride, ROWS: tl.constexpr, COLS: tl.constexpr):
        """Registers: one tile.  Reads n_iter tiles of the set in order from its own start (pid x start_stride)."""
        pid = tl.program_id(0)
        offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        acc = tl.zeros([ROWS, COLS], dtype=tl.float32)
        t0 = pid * start_stride
        for i in range(n_iter):
            t = (t0 + i) % n_tiles_set
            acc += tl.load(src_ptr + t * ROWS * COLS + offs).to(tl.float32)
        tl.store(out_ptr + pid * ROWS * COLS + offs, acc)

    @triton.jit
    def _mb_l2bw_tma(src_ptr, out_ptr, n_tiles_set, n_iter, start_stride, ROWS: tl.constexpr, COLS: tl.constexpr):
        """The same walk as TMA boxes (SRAM: the pipelined boxes)."""
        pid = tl.program_id(0)
        desc = tl.make_tensor_descriptor(src_ptr, shape=[n_tiles_set * ROWS, COLS], strides=[COLS, 1],
                                         block_shape=[ROWS, COLS])
        offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        acc = tl.zeros([ROWS, COLS], dtype=tl.float32)
        t0 = pid * start_stride
        for i in range(n_iter):
            t = (t0 + i) % n_tiles_set
            acc += desc.load([t * ROWS, 0]).to(tl.float32)
        tl.store(out_ptr + pid * ROWS * COLS + offs, acc)

    @triton.jit
    def _mb_l2bw_store(src_ptr, dst_ptr, n_tiles_set, n_iter, start_stride, ROWS: tl.constexpr, COLS: tl.constexpr):
        """Stores n_iter tiles into the set from its own start: registers hold one tile of values."""
        pid = tl.program_id(0)
        offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        val = (offs + pid).to(tl.bfloat16)
        t0 = pid * start_stride
        for i in range(n_iter):
            t = (t0 + i) % n_tiles_set
            tl.store(dst_ptr + t * ROWS * COLS + offs, val)

    @triton.jit
    def _mb_l2bw_store_pitch(dst_ptr, n_tiles_set, n_iter, start_stride, pitch, ROWS: tl.constexpr,
                             COLS: tl.constexpr):
        """Stores n_iter ROWS x COLS tiles whose rows are `pitch` elements apart (registers: one tile of values)."""
        pid = tl.program_id(0)
        offs = tl.arange(0, ROWS)[:, None] * pitch + tl.arange(0, COLS)[None, :]
        val = (tl.arange(0, ROWS)[:, None] + tl.arange(0, COLS)[None, :] + pid).to(tl.bfloat16)
        t0 = pid * start_stride
        for i in range(n_iter):
            t = (t0 + i) % n_tiles_set
            tl.store(dst_ptr + t * ROWS * pitch + offs, val)

    @triton.jit
    def _mb_l2bw_copy(src_ptr, dst_ptr, n_tiles_set, n_iter, start_stride, ROWS: tl.constexpr, COLS: tl.constexpr):
        """Reads tile t of the source set and stores it as tile t of the destination set (both L2-resident)."""
        pid = tl.program_id(0)
        offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        t0 = pid * start_stride
        for i in range(n_iter):
            t = (t0 + i) % n_tiles_set
            tl.store(dst_ptr + t * ROWS * COLS + offs, tl.load(src_ptr + t * ROWS * COLS + offs))

    @triton.jit
    def _mb_l2oob_tma(src_ptr, out_ptr, rows_exist, ROWS: tl.constexpr, COLS: tl.constexpr):
        """One box of ROWS x COLS from this CTA's own tensor of rows_exist rows (the rest is out of bounds)."""
        pid = tl.program_id(0)
        desc = tl.make_tensor_descriptor(src_ptr + pid * rows_exist * COLS, shape=[rows_exist, COLS], strides=[COLS, 1],
                                         block_shape=[ROWS, COLS])
        offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        tl.store(out_ptr + pid * ROWS * COLS + offs, desc.load([0, 0]).to(tl.float32))

    return {"lsu": _mb_l2bw_lsu, "tma": _mb_l2bw_tma, "oob": _mb_l2oob_tma, "store": _mb_l2bw_store,
            "copy": _mb_l2bw_copy, "store_pitch": _mb_l2bw_store_pitch}


PITCH_TILES = 512  # tiles in a pitch plan's set: 512 x 64 rows x <= 256 B = 8 MB


def _launch(ks, pt, bufs, out):
    if pt["plan"] == "pitch":
        pitch = pt["pitch_bytes"] // 2
        grid = GRID_SMS * pt["ctas_per_sm"]
        ks["store_pitch"][(grid,)](bufs["pitch"], PITCH_TILES, 256, max(1, PITCH_TILES // grid), pitch, ROWS=64,
                                   COLS=64, num_warps=4)
        return
    if pt["plan"] == "oob":
        r, c = pt["rows_exist"], pt["cols"]
        ks["oob"][(GRID_SMS,)](bufs[("oob", c)], out, r, ROWS=64, COLS=c, num_warps=4)
        return
    n_set = pt["working_set_bytes"] // (ROWS * COLS * 2)
    grid = GRID_SMS * pt["ctas_per_sm"]
    n_iter = PER_CTA_BYTES // (ROWS * COLS * 2)
    if pt["plan"] == "write":
        n_iter //= 4  # 2 MB per CTA: 132 x 8 CTAs still store 2 GB
    stride = max(1, n_set // grid)  # CTAs start spread over the set: no two ask for the same tile at once
    dst = bufs[("dst", pt["working_set_bytes"])] if pt["plan"] == "write" else out
    ks[pt["path"]][(grid,)](bufs[pt["working_set_bytes"]], dst, n_set, n_iter, stride, ROWS=ROWS, COLS=COLS,
                            num_warps=4)


def compile_check() -> int:
    import torch
    from kernels.compiled_facts import compile_launch
    ks = _kernels()
    src = torch.empty(1 << 20, dtype=torch.bfloat16)
    out = torch.empty(4 * GRID_SMS, ROWS, COLS, dtype=torch.float32)
    dst = torch.empty(1 << 20, dtype=torch.bfloat16)
    for p in ("lsu", "tma", "store", "copy"):
        f = compile_launch(ks[p], (src, dst if p in ("store", "copy") else out, 64, 512, 3),
                           {"ROWS": ROWS, "COLS": COLS, "num_warps": 4})
        print(p, f["regs_per_thread"], "regs", f["shared_bytes"], "B shared", f["kernel"])
    f = compile_launch(ks["store_pitch"], (dst, 64, 256, 1, 65), {"ROWS": 64, "COLS": 64, "num_warps": 4})
    print("store_pitch", f["regs_per_thread"], "regs", f["shared_bytes"], "B shared", f["kernel"])
    for c in (16, 64):
        f = compile_launch(ks["oob"], (src, out, 3), {"ROWS": 64, "COLS": c, "num_warps": 4})
        print("oob", c, f["regs_per_thread"], "regs", f["shared_bytes"], "B shared", f["kernel"])
    return 0


def child(plans: list) -> int:
    import torch
    import triton
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))
    ks = _kernels()
    pts = [pt for name in plans for pt in PLANS[name]()]
    bufs = {w: torch.randn(w // 2, device="cuda", dtype=torch.bfloat16) for w in (8 << 20, 24 << 20)}
    bufs[("dst", 8 << 20)] = torch.empty((8 << 20) // 2, device="cuda", dtype=torch.bfloat16)
    bufs["pitch"] = torch.zeros(PITCH_TILES * 64 * max(PITCHES_B) // 2 + 64, device="cuda", dtype=torch.bfloat16)
    for c in (16, 64):
        bufs[("oob", c)] = torch.randn(GRID_SMS * 64 * c, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(16 * GRID_SMS, ROWS, COLS, device="cuda", dtype=torch.float32)  # one tile per CTA
    for pt in pts:
        _launch(ks, pt, bufs, out)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for pt in pts:
        _launch(ks, pt, bufs, out)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    return 0


def run(out: str, plans: list) -> int:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import torch
    from verification import ncu as N
    cmd = N.build_command([sys.executable, os.path.abspath(__file__), "--child", ",".join(plans)],
                          metrics=METRICS + WRITE_METRICS, kernel_regex="_mb_l2")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    rows = N.parse_csv(p.stdout)
    order = [pt for name in plans for pt in PLANS[name]()]
    if len(rows) != len(order):
        print(p.stdout[-3000:], p.stderr[-3000:])
        raise SystemExit(f"expected {len(order)} profiled launches, got {len(rows)}")
    pts = []
    for pt, r in zip(order, rows):
        m = dict(r.metrics)
        l2 = m["lts__t_sectors_srcunit_tex_op_read.sum"] * N.SECTOR_BYTES
        t = m["gpu__time_duration.sum"]
        q = {**pt, "metrics": m, "l2_read_bytes": l2, "time_s": t}
        if pt["plan"] == "bandwidth":
            q["asked_bytes"] = GRID_SMS * pt["ctas_per_sm"] * PER_CTA_BYTES
            q["l2_read_Bps"] = l2 / t
        elif pt["plan"] == "pitch":
            w = m["lts__t_sectors_srcunit_tex_op_write.sum"] * N.SECTOR_BYTES
            stored = GRID_SMS * pt["ctas_per_sm"] * 256 * 64 * 128  # tiles x rows x 128 B
            q |= {"stored_bytes": stored, "l2_write_bytes": w, "l2_write_sectors_per_row":
                  m["lts__t_sectors_srcunit_tex_op_write.sum"] / (GRID_SMS * pt["ctas_per_sm"] * 256 * 64),
                  "stored_Bps": stored / t, "l2_write_Bps": w / t}
        elif pt["plan"] == "write":
            w = m["lts__t_sectors_srcunit_tex_op_write.sum"] * N.SECTOR_BYTES
            q["l2_write_bytes"] = w
            q["l2_write_Bps"] = w / t
            q["l2_read_Bps"] = l2 / t
        else:
            q["l2_bytes_per_box"] = l2 / GRID_SMS
            q["row_bytes"] = pt["cols"] * 2
        pts.append(q)
    res = {"format": "l2_bandwidth/1", "provenance": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "ncu": N.ncu_version(),
        "command": f"python3 benchmarks/l2_bandwidth_gpu.py --out {out} --plans {','.join(plans)}",
        "ncu_command": " ".join(cmd)},
        "points": pts}
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, out)
    return analyse(out)


def analyse(path: str) -> int:
    res = json.load(open(path))
    print(res["provenance"]["gpu"], res["provenance"]["date"])
    print("| path | CTAs/SM | set MB | L2 read GB | DRAM read MB | time us | L2 read TB/s | hit rate |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in res["points"]:
        if p["plan"] != "bandwidth":
            continue
        m = p["metrics"]
        hit = m["lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum"] / max(1.0, m["lts__t_sectors_srcunit_tex_op_read.sum"])
        print(f"| {p['path']} | {p['ctas_per_sm']} | {p['working_set_bytes'] >> 20} | {p['l2_read_bytes'] / 1e9:.2f} | "
              f"{m['dram__bytes_read.sum'] / 1e6:.1f} | {p['time_s'] * 1e6:.1f} | {p['l2_read_Bps'] / 1e12:.2f} | "
              f"{hit:.3f} |")
    print("| rows of 64 that exist | row B | L2 bytes per box | existing rows' bytes | whole box bytes |")
    print("| --- | --- | --- | --- | --- |")
    for p in res["points"]:
        if p["plan"] == "write":
            m = p["metrics"]
            print(f"write | {p['path']} | {p['ctas_per_sm']} CTAs/SM | L2 write {p['l2_write_bytes'] / 1e9:.2f} GB "
                  f"{p['l2_write_Bps'] / 1e12:.2f} TB/s | L2 read {p['l2_read_Bps'] / 1e12:.2f} TB/s | DRAM write "
                  f"{m.get('dram__bytes_write.sum', 0) / 1e6:.1f} MB | {p['time_s'] * 1e6:.1f} us")
    for p in res["points"]:
        if p["plan"] == "pitch":
            print(f"pitch {p['pitch_bytes']} B | L2 write sectors per 128-B row {p['l2_write_sectors_per_row']:.2f} | "
                  f"stored {p['stored_Bps'] / 1e12:.2f} TB/s | L2 write sectors x 32 B {p['l2_write_Bps'] / 1e12:.2f} TB/s "
                  f"| {p['time_s'] * 1e6:.1f} us")
    for p in res["points"]:
        if p["plan"] == "oob":
            print(f"| {p['rows_exist']} | {p['row_bytes']} | {p['l2_bytes_per_box']:.0f} | "
                  f"{p['rows_exist'] * p['row_bytes']} | {64 * p['row_bytes']} |")
    return 0


def merge(run_paths: list, into: str, *, replace: bool = False) -> int:
    """Add the runs' bandwidth, write and pitch points (slim, with their L2 hit rate) to `into` as the `l2_bandwidth`
    fact and show the figures `memsim.calibration.l2_bandwidth_from` derives from them.  The `oob` points stay in the run
    files (not a model figure yet: notes/fidelity.md)."""
    from run_file import load_runs, merge_fact

    from memsim.calibration import l2_bandwidth_from
    pts = []
    runs = load_runs(run_paths, "l2_bandwidth")
    for run in runs:
        for p in run["points"]:
            if p["plan"] == "pitch":
                pts.append({k: p[k] for k in ("plan", "path", "ctas_per_sm", "pitch_bytes", "time_s", "l2_write_bytes",
                                              "l2_write_sectors_per_row", "stored_bytes")}
                           | {"date": run["provenance"]["date"]})
                continue
            if p["plan"] not in ("bandwidth", "write"):
                continue
            m = p["metrics"]
            q = {k: p[k] for k in ("plan", "path", "ctas_per_sm", "working_set_bytes", "l2_read_bytes", "time_s",
                                   "l2_read_Bps") if k in p}
            q |= {"hit_rate": m["lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum"]
                  / max(1.0, m["lts__t_sectors_srcunit_tex_op_read.sum"]),
                  "dram_read_bytes": m["dram__bytes_read.sum"], "date": run["provenance"]["date"]}
            if p["plan"] == "write":
                q |= {"l2_write_bytes": p["l2_write_bytes"], "l2_write_Bps": p["l2_write_Bps"],
                      "dram_write_bytes": m.get("dram__bytes_write.sum")}
            pts.append(q)
    print(l2_bandwidth_from(pts))
    merge_fact(into, "l2_bandwidth", pts, run=runs[0], run_path=run_paths[0], replace=replace, also=run_paths[1:],
               note="L2-resident streams (LSU and TMA reads, 1-16 CTAs per SM; LSU stores and copies, 1-8): the L2 "
               "link's read and write rates")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="(GPU machine) the result JSON")
    g.add_argument("--child", metavar="PLANS", help=argparse.SUPPRESS)
    g.add_argument("--analyse", metavar="FILE")
    g.add_argument("--compile", action="store_true", help="compile the kernels for sm_90a (no GPU)")
    g.add_argument("--merge", nargs="+", metavar="RUN", help="add runs' bandwidth and write points to --into as the "
                   "l2_bandwidth fact")
    ap.add_argument("--into", default="memsim/presets/h100-sxm.calibration.json")
    ap.add_argument("--replace", action="store_true")
    ap.add_argument("--plans", default="bandwidth,oob", help="comma-separated plans for --out (bandwidth, oob, write, "
                    "peak, pitch)")
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if a.compile:
        return compile_check()
    if a.child:
        return child(a.child.split(","))
    if a.analyse:
        return analyse(a.analyse)
    if a.merge:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        return merge(a.merge, a.into, replace=a.replace)
    plans = a.plans.split(",")
    bad = [p for p in plans if p not in PLANS]
    if bad:
        ap.error(f"--plans: unknown {bad}; choose from {sorted(PLANS)}")
    return run(a.out, plans)


if __name__ == "__main__":
    sys.exit(main())
