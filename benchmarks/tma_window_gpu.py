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

Plans: `window` (run 1, H200 14:12 UTC: box widths, delays, paces; one set), `sets` (run 2: 1 or 4 sets of 16
readers -- 64 busy SMs as 4 heads of 16 Q blocks -- side by side or dealt across sets, 8 KB boxes of 32 / 64 / 128-B
rows, with the L2 Request Coalescer's `lrc__` counters; then five attention forwards under the same counters).

    python3 benchmarks/tma_window_gpu.py --out $OUT/tma_window.json --plan sets   # GPU machine, under ncu
    python benchmarks/tma_window_gpu.py --analyse FILE                   # here: the table
    python benchmarks/tma_window_gpu.py --compile                        # here: both kernels compile for sm_90a
    python benchmarks/tma_window_gpu.py --merge RUN [RUN...]             # here: the tma_window calibration fact

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

GRID = 132
SET_BYTES = 1 << 20  # per set: what each reader streams
PATHS = ("lsu", "tma")
METRICS = ["gpu__time_duration.sum", "lts__t_sectors_srcunit_tex_op_read.sum",
           "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum", "l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld.sum"]
#: the L2 Request Coalescer's own counters (`ncu --query-metrics --chip gh100`; the `sets` plan records them)
LRC_METRICS = ["lrc__xbar2lrc_requests_op_read.sum", "lrc__request_sectors_op_read_coalescable.sum",
               "lrc__lrc2xbar_sectors_op_read.sum", "lrc__lrc2xbar_sectors_op_read_coalescing_achieved.sum",
               "lrc__lrc2xbar_sectors_op_read_coalescing_none.sum", "lrc__xbar2gpc_sectors_op_read_coalescing_achieved.sum"]


def _pt(path, rows, cols, readers, delay_ns=0, pace_ns=0, n_sets=1, sets_fastest=0) -> dict:
    return {"path": path, "rows": rows, "cols": cols, "readers": readers, "delay_ns": delay_ns, "pace_ns": pace_ns,
            "n_sets": n_sets, "sets_fastest": sets_fastest}


def points_window() -> list:
    """Run 1 (14:12 UTC): 64-row boxes of 16..128 bf16 columns (2..16 KB, rows of 32..256 B), 2 or 16 readers of
    one set, the odd ones 0..16 us late, 0 or 0.5 us of pace per box."""
    return [_pt(p, 64, c, g, d, s) for p in PATHS for c in (16, 32, 64, 128) for g in (2, 16)
            for d in (0, 1000, 4000, 16000) for s in (0, 500)]


#: (rows, cols) of the `sets` plan: 8 KB boxes with 32 / 64 / 128-B rows (row width apart from box size), 16 KB
BOXES_SETS = ((256, 16), (128, 32), (64, 64), (128, 64), (64, 128))


def points_sets() -> list:
    """Run 2: do 4 sets of 16 readers each (64 busy SMs, as 4 heads of 16 Q blocks) coalesce as one set of 16 does,
    with readers of a set side by side or dealt across sets, and is it row width or box size?"""
    out = []
    for p in PATHS:
        for rows, cols in BOXES_SETS:
            for n_sets, fastest in ((1, 0), (4, 0), (4, 1)):
                for pace in (0, 500):
                    out.append(_pt(p, rows, cols, 16 * n_sets, 0, pace, n_sets, fastest))
    return out


PLANS = {"window": (points_window, METRICS), "sets": (points_sets, METRICS + LRC_METRICS)}


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
    def _mb_window_lsu(src_ptr, out_ptr, info_ptr, n_tiles, readers, delay_ns, pace_ns, n_sets, sets_fastest,
                       ROWS: tl.constexpr, COLS: tl.constexpr):
        """Reader: n_tiles ROWS x COLS boxes of its set in order, LSU loads through L1 (registers: one box; SRAM:
        none).  Reader i reads set i // (readers / n_sets) (a head's Q blocks side by side), or i % n_sets with
        sets_fastest (heads_fastest)."""
        pid = tl.program_id(0)
        if pid < readers:
            _prologue(info_ptr, readers, delay_ns)
            sid = pid % n_sets if sets_fastest else pid // (readers // n_sets)
            base = src_ptr + sid * n_tiles * ROWS * COLS
            offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
            acc = tl.zeros([ROWS, COLS], dtype=tl.float32)
            for t in range(n_tiles):
                acc += tl.load(base + t * ROWS * COLS + offs).to(tl.float32)
                if pace_ns > 0:
                    _spin_until(_now() + pace_ns)
            tl.store(out_ptr + pid * ROWS * COLS + offs, acc)
            tl.store(info_ptr + pid * 4 + 2, _now())

    @triton.jit
    def _mb_window_tma(src_ptr, out_ptr, info_ptr, n_tiles, readers, delay_ns, pace_ns, n_sets, sets_fastest,
                       ROWS: tl.constexpr, COLS: tl.constexpr):
        """The same reads as TMA boxes (SRAM: the box the copy engine writes), one descriptor over every set."""
        pid = tl.program_id(0)
        if pid < readers:
            _prologue(info_ptr, readers, delay_ns)
            sid = pid % n_sets if sets_fastest else pid // (readers // n_sets)
            desc = tl.make_tensor_descriptor(src_ptr, shape=[n_sets * n_tiles * ROWS, COLS], strides=[COLS, 1],
                                             block_shape=[ROWS, COLS])
            offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
            acc = tl.zeros([ROWS, COLS], dtype=tl.float32)
            for t in range(n_tiles):
                acc += desc.load([(sid * n_tiles + t) * ROWS, 0]).to(tl.float32)
                if pace_ns > 0:
                    _spin_until(_now() + pace_ns)
            tl.store(out_ptr + pid * ROWS * COLS + offs, acc)
            tl.store(info_ptr + pid * 4 + 2, _now())

    return {"lsu": _mb_window_lsu, "tma": _mb_window_tma}


def _args(pt: dict, src, out, info) -> tuple:
    n_tiles = SET_BYTES // (pt["rows"] * pt["cols"] * 2)
    return (src, out, info, n_tiles, pt["readers"], pt["delay_ns"], pt["pace_ns"], pt["n_sets"], pt["sets_fastest"])


def compile_check() -> int:
    """Both kernels compile for sm_90a here (no GPU), every box of both plans."""
    import torch
    from kernels.compiled_facts import compile_launch
    ks = _kernels()
    boxes = sorted({(pt["rows"], pt["cols"]) for fn, _ in PLANS.values() for pt in fn()})
    for path, k in ks.items():
        for rows, cols in boxes:
            pt = _pt(path, rows, cols, 64, 1000, 500, 4, 1)
            src = torch.empty(4 * SET_BYTES // (cols * 2), cols, dtype=torch.bfloat16)
            out = torch.empty(GRID, 256, 128, dtype=torch.float32)
            info = torch.empty(GRID, 4, dtype=torch.int64)
            f = compile_launch(k, _args(pt, src, out, info), {"ROWS": rows, "COLS": cols, "num_warps": 4})
            print(path, rows, cols, f["regs_per_thread"], "regs", f["shared_bytes"], "B shared", f["kernel"])
    return 0


def child(plan: str, info_path: str) -> int:
    """Every point of the plan once inside the profiler range, in order; the CTAs' records to info_path."""
    import torch
    import triton
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))
    ks = _kernels()
    pts = PLANS[plan][0]()
    max_sets = max(pt["n_sets"] for pt in pts)
    srcs = {c: torch.randn(max_sets * SET_BYTES // (c * 2), c, device="cuda", dtype=torch.bfloat16)
            for c in {pt["cols"] for pt in pts}}
    out = torch.empty(GRID, 256, 128, device="cuda", dtype=torch.float32)
    for pt in pts:  # compile and warm up outside the profiled range
        info = torch.zeros(GRID, 4, device="cuda", dtype=torch.int64)
        ks[pt["path"]][(GRID,)](*_args(pt, srcs[pt["cols"]], out, info), ROWS=pt["rows"], COLS=pt["cols"],
                                num_warps=4)
    torch.cuda.synchronize()
    infos = []
    torch.cuda.profiler.start()
    for pt in pts:
        info = torch.zeros(GRID, 4, device="cuda", dtype=torch.int64)
        ks[pt["path"]][(GRID,)](*_args(pt, srcs[pt["cols"]], out, info), ROWS=pt["rows"], COLS=pt["cols"],
                                num_warps=4)
        infos.append(info)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    with open(info_path, "w") as f:
        json.dump([i[: pt["readers"]].tolist() for i, pt in zip(infos, pts)], f)
    return 0


#: attention forwards profiled with the LRC counters (`--attention`): (name, algorithm, d, block_n); 4 heads of
#: 2048 queries and keys, bf16, 128-row Q blocks: 16 CTAs per head
ATTENTION = (("hopper_d16", "hopper", 16, 64), ("hopper_d64", "hopper", 64, 64), ("hopper_d128", "hopper", 128, 64),
             ("flash2_d64", "flash2", 64, 64), ("hopper_d64_hf", "hopper", 64, 64))


def child_attention() -> int:
    import torch
    import triton

    import kernels
    from memsim.schedule import Schedule
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))
    runs = []
    for name, alg, d, bn in ATTENTION:
        q, k, v = (torch.randn(1, 4, 2048, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        sch = Schedule(alg, "fwd", 128, bn, 4, 2, grid_order="heads_fastest" if name.endswith("_hf") else "q_fastest")
        kernels.attention(q, k, v, schedule=sch)
        runs.append((q, k, v, sch))
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for q, k, v, sch in runs:
        kernels.attention(q, k, v, schedule=sch)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    return 0


def run(out: str, plan: str) -> int:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import torch
    from verification import ncu as N
    pts_fn, metrics = PLANS[plan]
    info_path = out + ".ctas.json"
    cmd = N.build_command([sys.executable, os.path.abspath(__file__), "--child", plan, info_path], metrics=metrics,
                          kernel_regex="_mb_window_")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=500)
    rows = N.parse_csv(p.stdout)
    order = pts_fn()
    if len(rows) != len(order):
        print(p.stdout[-3000:], p.stderr[-3000:])
        raise SystemExit(f"expected {len(order)} profiled launches, got {len(rows)}")
    ctas = json.load(open(info_path))
    pts = []
    for pt, r, readers in zip(order, rows, ctas):
        m = dict(r.metrics)
        asked = pt["readers"] * SET_BYTES
        l2 = m["lts__t_sectors_srcunit_tex_op_read.sum"] * N.SECTOR_BYTES
        pts.append({**pt, "box_bytes": pt["rows"] * pt["cols"] * 2, "row_bytes": pt["cols"] * 2,
                    "set_bytes": SET_BYTES, "global_read_bytes_asked": asked, "metrics": m, "l2_read_bytes": l2,
                    "l2_per_global_byte": l2 / asked,
                    "smid": [x[0] for x in readers], "start_ns": [x[1] - readers[0][1] for x in readers],
                    "duration_ns": [x[2] - x[1] for x in readers]})
    res = {"format": "tma_window/2", "plan": plan, "provenance": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "ncu": N.ncu_version(),
        "command": f"python3 benchmarks/tma_window_gpu.py --out {out} --plan {plan}", "ncu_command": " ".join(cmd)},
        "points": pts}
    if plan == "sets":  # the attention forwards under the same counters (a failure here keeps the points)
        acmd = N.build_command([sys.executable, os.path.abspath(__file__), "--attention"], metrics=metrics,
                               kernel_regex="_(hopper|flash2)_fwd")
        res["attention"] = {"cases": [list(a) for a in ATTENTION], "ncu_command": " ".join(acmd)}
        try:
            p = subprocess.run(acmd, capture_output=True, text=True, timeout=300)
            arows = N.parse_csv(p.stdout)
            res["attention"]["kernels"] = [{"kernel": r.name, "metrics": dict(r.metrics)} for r in arows]
            if len(arows) != len(ATTENTION):
                res["attention"]["error"] = (p.stdout[-2000:] + p.stderr[-2000:])
        except Exception as e:  # noqa: BLE001 -- recorded with the data
            res["attention"]["error"] = f"{type(e).__name__}: {e}"
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, out)
    os.remove(info_path)
    return analyse(out)


def analyse(path: str) -> int:
    res = json.load(open(path))
    print(res["provenance"]["gpu"], res["provenance"]["date"])
    print("| path | box KB | row B | readers | sets | delay us | pace us | L2 / asked | coalescable / LRC sectors "
          "| late start us | dur us | SMs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in res["points"]:
        late = sorted(p["start_ns"])[-1] / 1e3
        m = p["metrics"]
        lrc = m.get("lrc__request_sectors_op_read_coalescable.sum")
        tot = m.get("lrc__lrc2xbar_sectors_op_read.sum")
        co = f"{lrc / tot:.2f}" if lrc is not None and tot else "-"
        sets = f"{p.get('n_sets', 1)}{'f' if p.get('sets_fastest') else ''}"
        print(f"| {p['path']} | {p['box_bytes'] / 1024:.0f} | {p.get('row_bytes', p['box_bytes'] // 64)} | "
              f"{p['readers']} | {sets} | {p['delay_ns'] / 1e3:g} | "
              f"{p['pace_ns'] / 1e3:g} | {p['l2_per_global_byte']:.3f} | {co} | {late:.1f} | "
              f"{max(p['duration_ns']) / 1e3:.0f} | {','.join(str(s) for s in p['smid'][:16])} |")
    for k in res.get("attention", {}).get("kernels", []):
        m = k["metrics"]
        print(k["kernel"][:30], {n.split("__")[1][:40]: m[n] for n in m})
    return 0


def merge(run_paths: list, into: str, *, replace: bool = False) -> int:
    """Add the runs' points (slim: what `memsim.calibration.tma_coalesce_from` reads, and the card and date of
    each) to calibration file `into` as the `tma_window` fact, then show the threshold the rule derives."""
    from run_file import load_runs, merge_fact

    from memsim.calibration import tma_coalesce_from
    pts = []
    runs = load_runs(run_paths, "tma_window")
    for run in runs:
        for p in run["points"]:
            pts.append({k: p.get(k, d) for k, d in (("path", None), ("rows", 64), ("cols", None), ("readers", None),
                                                    ("n_sets", 1), ("sets_fastest", 0), ("delay_ns", 0),
                                                    ("pace_ns", 0), ("l2_per_global_byte", None))}
                       | {"row_bytes": p.get("row_bytes", p["box_bytes"] // 64), "box_bytes": p["box_bytes"],
                          "gpu": run["provenance"]["gpu"], "date": run["provenance"]["date"]})
    print(tma_coalesce_from(pts))
    merge_fact(into, "tma_window", pts, run=runs[0], run_path=run_paths[0], replace=replace, also=run_paths[1:],
               note="TMA vs LSU readers of the same lines: L2 / asked by box row width, readers, sets, delay, pace")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="(GPU machine) the result JSON")
    g.add_argument("--child", nargs=2, metavar=("PLAN", "INFO_JSON"), help=argparse.SUPPRESS)
    g.add_argument("--attention", action="store_true", help=argparse.SUPPRESS)
    g.add_argument("--analyse", metavar="FILE")
    g.add_argument("--compile", action="store_true", help="compile both kernels for sm_90a (no GPU)")
    g.add_argument("--merge", nargs="+", metavar="RUN", help="add runs of one card to --into as the tma_window fact")
    ap.add_argument("--into", default="memsim/presets/h100-sxm.calibration.json")
    ap.add_argument("--replace", action="store_true", help="--merge over an existing tma_window fact")
    ap.add_argument("--plan", choices=sorted(PLANS), default="sets")
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if a.compile:
        return compile_check()
    if a.child:
        return child(*a.child)
    if a.attention:
        return child_attention()
    if a.analyse:
        return analyse(a.analyse)
    if a.merge:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        return merge(a.merge, a.into, replace=a.replace)
    return run(a.out, a.plan)


if __name__ == "__main__":
    sys.exit(main())
