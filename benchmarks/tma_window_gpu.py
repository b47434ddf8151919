"""How long after one CTA's read does another CTA's read of the same lines still merge before the L2 -- for TMA
boxes and for LSU loads, by box size, and which SMs the CTAs ran on?  (issue 8; notes/fidelity.md, eighth session,
item 9: in attention forwards TMA box reads merged at most ~2x and not at all for 2-4 KB boxes, where LSU reads of
the same tiles merged ~3.6x; the session-4 microbenchmark `tma_merge_gpu.py` found TMA and LSU alike for CTAs that
start together and stream 8 KB boxes.)

One launch per point, grid of 132 CTAs (one per SM when the block scheduler deals breadth-first; each CTA records
its %smid, so the analysis knows); the first G CTAs read the same 1 MB working set (n_tiles boxes of 64 rows x COLS
bf16, contiguous, 2-16 KB per box), the others exit at once.  Odd readers first wait `delay` ns (a spin on
%globaltimer), so half the readers trail the other half by delay; after each box a reader spins `pace` ns (the
compute of an attention tile).  Each reader records (smid, start, end) in ns of %globaltimer.  ncu (default cache
control, --clock-control none) counts the L2 read sectors from the TEX units against the bytes the readers asked:
1/G is full merging, 1 none; with half the readers late, 2/G means the late half merged into nothing.

    python3 benchmarks/tma_window_gpu.py --out $OUT/tma_window.json     # GPU machine, one process under ncu
    python benchmarks/tma_window_gpu.py --analyse FILE                   # here: the table
    python benchmarks/tma_window_gpu.py --compile                        # here: both kernels compile for sm_90a

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

ROWS = 64
SET_BYTES = 1 << 20
GRID = 132
COLS = (16, 32, 64, 128)  # bf16: boxes of 2, 4, 8, 16 KB (rows of 32, 64, 128, 256 B)
READERS = (2, 16)
DELAYS_NS = (0, 1000, 4000, 16000)
PACES_NS = (0, 500)
PATHS = ("lsu", "tma")
METRICS = ["gpu__time_duration.sum", "lts__t_sectors_srcunit_tex_op_read.sum",
           "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum", "l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld.sum"]


def points() -> list:
    """Every launch in profiling order: (path, cols, readers, delay_ns, pace_ns)."""
    return [(p, c, g, d, s) for p in PATHS for c in COLS for g in READERS for d in DELAYS_NS for s in PACES_NS]


def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def _now():
        return tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False,
                                         pack=1)

    @triton.jit
    def _spin_until(t_ns):
        while _now() < t_ns:
            pass

    @triton.jit
    def _prologue(info_ptr, readers, delay_ns):
        pid = tl.program_id(0)
        smid = tl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=True, pack=1)
        t0 = _now()
        _spin_until(t0 + (pid % 2) * delay_ns)  # odd readers trail the even ones by delay_ns
        start = _now()
        tl.store(info_ptr + pid * 4, smid.to(tl.int64))
        tl.store(info_ptr + pid * 4 + 1, start)
        return start

    @triton.jit
    def _mb_window_lsu(src_ptr, out_ptr, info_ptr, n_tiles, readers, delay_ns, pace_ns, ROWS: tl.constexpr,
                       COLS: tl.constexpr):
        """Reader: n_tiles ROWS x COLS boxes in order, LSU loads through L1 (registers: one box; SRAM: none)."""
        pid = tl.program_id(0)
        if pid < readers:
            _prologue(info_ptr, readers, delay_ns)
            offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
            acc = tl.zeros([ROWS, COLS], dtype=tl.float32)
            for t in range(n_tiles):
                acc += tl.load(src_ptr + t * ROWS * COLS + offs).to(tl.float32)
                if pace_ns > 0:
                    _spin_until(_now() + pace_ns)
            tl.store(out_ptr + pid * ROWS * COLS + offs, acc)
            tl.store(info_ptr + pid * 4 + 2, _now())

    @triton.jit
    def _mb_window_tma(src_ptr, out_ptr, info_ptr, n_tiles, readers, delay_ns, pace_ns, ROWS: tl.constexpr,
                       COLS: tl.constexpr):
        """The same reads as TMA boxes (SRAM: the box the copy engine writes)."""
        pid = tl.program_id(0)
        if pid < readers:
            _prologue(info_ptr, readers, delay_ns)
            desc = tl.make_tensor_descriptor(src_ptr, shape=[n_tiles * ROWS, COLS], strides=[COLS, 1],
                                             block_shape=[ROWS, COLS])
            offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
            acc = tl.zeros([ROWS, COLS], dtype=tl.float32)
            for t in range(n_tiles):
                acc += desc.load([t * ROWS, 0]).to(tl.float32)
                if pace_ns > 0:
                    _spin_until(_now() + pace_ns)
            tl.store(out_ptr + pid * ROWS * COLS + offs, acc)
            tl.store(info_ptr + pid * 4 + 2, _now())

    return {"lsu": _mb_window_lsu, "tma": _mb_window_tma}


def compile_check() -> int:
    """Both kernels compile for sm_90a here (no GPU), every box width."""
    import torch
    from kernels.compiled_facts import compile_launch
    ks = _kernels()
    for path, k in ks.items():
        for cols in COLS:
            n = SET_BYTES // (ROWS * cols * 2)
            src = torch.empty(n * ROWS, cols, dtype=torch.bfloat16)
            out = torch.empty(GRID, ROWS, cols, dtype=torch.float32)
            info = torch.empty(GRID, 4, dtype=torch.int64)
            f = compile_launch(k, (src, out, info, n, 2, 1000, 500), {"ROWS": ROWS, "COLS": cols, "num_warps": 4})
            print(path, cols, f["regs_per_thread"], "regs", f["shared_bytes"], "B shared", f["kernel"])
    return 0


def child(info_path: str) -> int:
    """Every point once inside the profiler range, in `points()` order; the CTAs' records to info_path."""
    import torch
    import triton
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))
    ks = _kernels()
    srcs = {c: torch.randn(SET_BYTES // (c * 2), c, device="cuda", dtype=torch.bfloat16) for c in COLS}
    out = torch.empty(GRID, ROWS, max(COLS), device="cuda", dtype=torch.float32)
    infos = []
    for path in PATHS:  # compile and warm up outside the profiled range
        for c in COLS:
            info = torch.zeros(GRID, 4, device="cuda", dtype=torch.int64)
            ks[path][(GRID,)](srcs[c], out, info, srcs[c].shape[0] // ROWS, 2, 0, 0, ROWS=ROWS, COLS=c, num_warps=4)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for path, c, g, d, s in points():
        info = torch.zeros(GRID, 4, device="cuda", dtype=torch.int64)
        ks[path][(GRID,)](srcs[c], out, info, srcs[c].shape[0] // ROWS, g, d, s, ROWS=ROWS, COLS=c, num_warps=4)
        infos.append(info)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    rec = [i[: max(READERS)].tolist() for i in infos]
    with open(info_path, "w") as f:
        json.dump(rec, f)
    return 0


def run(out: str) -> int:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import torch
    from verification import ncu as N
    info_path = out + ".ctas.json"
    cmd = N.build_command([sys.executable, os.path.abspath(__file__), "--child", info_path], metrics=METRICS,
                          kernel_regex="_mb_window_")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=500)
    rows = N.parse_csv(p.stdout)
    order = points()
    if len(rows) != len(order):
        print(p.stdout[-3000:], p.stderr[-3000:])
        raise SystemExit(f"expected {len(order)} profiled launches, got {len(rows)}")
    ctas = json.load(open(info_path))
    pts = []
    for (path, c, g, d, s), r, info in zip(order, rows, ctas):
        m = dict(r.metrics)
        asked = g * SET_BYTES
        l2 = m["lts__t_sectors_srcunit_tex_op_read.sum"] * N.SECTOR_BYTES
        readers = info[:g]
        pts.append({"path": path, "cols": c, "box_bytes": ROWS * c * 2, "readers": g, "delay_ns": d, "pace_ns": s,
                    "set_bytes": SET_BYTES, "global_read_bytes_asked": asked, "metrics": m, "l2_read_bytes": l2,
                    "l2_per_global_byte": l2 / asked,
                    "smid": [x[0] for x in readers], "start_ns": [x[1] - readers[0][1] for x in readers],
                    "duration_ns": [x[2] - x[1] for x in readers]})
    res = {"format": "tma_window/1", "provenance": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "ncu": N.ncu_version(),
        "command": "python3 benchmarks/tma_window_gpu.py --out " + out, "ncu_command": " ".join(cmd)},
        "points": pts}
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, out)
    os.remove(info_path)
    return analyse(out)


def analyse(path: str) -> int:
    res = json.load(open(path))
    print(res["provenance"]["gpu"], res["provenance"]["date"])
    print("| path | box KB | readers | delay us | pace us | L2 / asked | late start us | dur us | SMs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in res["points"]:
        late = sorted(p["start_ns"])[-1] / 1e3
        print(f"| {p['path']} | {p['box_bytes'] / 1024:.0f} | {p['readers']} | {p['delay_ns'] / 1e3:g} | "
              f"{p['pace_ns'] / 1e3:g} | {p['l2_per_global_byte']:.3f} | {late:.1f} | "
              f"{max(p['duration_ns']) / 1e3:.0f} | {','.join(str(s) for s in p['smid'][:16])} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="(GPU machine) the result JSON")
    g.add_argument("--child", metavar="INFO_JSON", help=argparse.SUPPRESS)
    g.add_argument("--analyse", metavar="FILE")
    g.add_argument("--compile", action="store_true", help="compile both kernels for sm_90a (no GPU)")
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if a.compile:
        return compile_check()
    if a.child:
        return child(a.child)
    if a.analyse:
        return analyse(a.analyse)
    return run(a.out)


if __name__ == "__main__":
    sys.exit(main())
