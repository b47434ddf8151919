"""One device call: how long a group of asynchronous copies (cp.async) takes to land, against its bytes.

`memsim.warp_issue` releases a cp.async group (LDGSTS ... LDGDEPBAR) one load latency after its commit, whatever
its size.  `benchmarks/tile_loop_gpu.py` measured the real tile loops of flash2 on the card: with the group at the
DRAM latency the replay is still 10-50 % under the measured period of every two-stage loop (which waits for the
whole group at the top of each trip), and the gap grows with the bytes of the group -- 100-450 cycles at 4-16 KB,
750-2000 at 32 KB.  If the SM takes L2 data in at a bounded rate, a group of G bytes lands about G / rate after
its first bytes: this program measures that, with nothing else in the way.

`_mb_fill`: each CTA walks `n_trips` tiles of BR x BC fp16 through a Triton-pipelined loop (`tl.range`,
num_stages = STAGES): the loads become cp.async copies (LDGSTS) committed once per trip, and the only use of a
tile is one small `tl.dot` (BR x BC x 16: under 100 cycles), so a trip is the group's round trip (two stages:
issued at the end of a trip, waited at the top of the next) or the copy's throughput (three stages).  The tiles
come from an 8 MB buffer that stays in the L2 (warmed by a first launch); CTA p starts at tile 7p, so CTAs read
different lines at once (no request merging).  Timed in the kernel with `%clock64` at two trip counts (the slope
is one trip, in SM cycles, whatever the clock), CTA by CTA, with each CTA's `%smid`.

Grids: 16 CTAs (one per SM on 16 SMs: the L2 is nearly idle, so a per-SM limit shows alone), 132 (every SM) and
264 (two per SM where they fit).

    run(command="python3 benchmarks/sm_fill_gpu.py --out $OUT/sm_fill.json", timeout_s=300)

Here (no GPU): ``python benchmarks/sm_fill_gpu.py --analyse RUN.json`` replays each variant's SASS
(`kernels.sass.issue_profile`, the calibration's latencies) and prints measured cycles per trip against it, with
the group's bytes.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

KB = 1024
SHARED_PER_SM_BYTES = 227 * KB  # H100: the most shared memory the CTAs of one SM may hold
BUFFER_BYTES = 8 << 20
TRIPS = (32, 160)
GRIDS = (16, 132, 264)
#: (BR, BC, num_warps, num_stages): group bytes = BR x BC x 2
VARIANTS = (
    (16, 64, 4, 2), (32, 64, 4, 2), (64, 64, 4, 2), (128, 64, 4, 2), (256, 64, 4, 2),
    (128, 128, 4, 2), (256, 128, 4, 2),
    (64, 64, 1, 2), (128, 64, 8, 2), (256, 128, 8, 2),
    (64, 64, 4, 3), (128, 64, 4, 3), (128, 128, 4, 3),
)


def variant_name(br: int, bc: int, w: int, st: int) -> str:
    return f"{br}x{bc}_w{w}_s{st}"


def group_bytes(br: int, bc: int) -> int:
    return br * bc * 2


def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def _clock():
        return tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)

    @triton.jit
    def _smid():
        return tl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=True, pack=1)

    @triton.jit
    def _mb_fill(src_ptr, out_ptr, cyc_ptr, sm_ptr, n_trips, n_tiles,
                 BR: tl.constexpr, BC: tl.constexpr, STAGES: tl.constexpr):
        """In SRAM: STAGES tiles of BR x BC fp16 (the pipeline's buffers).  In registers: a BR x 16 fp32
        accumulator and a BC x 16 selector.  Each trip reads one tile (BR x BC x 2 bytes, L2-resident) and does
        one small dot with it."""
        pid = tl.program_id(0)
        rows = tl.arange(0, BR)[:, None]
        cols = tl.arange(0, BC)[None, :]
        sel = (tl.arange(0, BC)[:, None] == tl.arange(0, 16)[None, :]).to(tl.float16)
        acc = tl.zeros((BR, 16), dtype=tl.float32)
        t0 = _clock()
        for i in tl.range(0, n_trips, num_stages=STAGES):
            tile = (pid * 7 + i) % n_tiles
            x = tl.load(src_ptr + tile * (BR * BC) + rows * BC + cols)
            acc = tl.dot(x, sel, acc)
        t1 = _clock()
        tl.store(out_ptr + pid, tl.sum(tl.sum(acc, axis=1), axis=0))
        tl.store(cyc_ptr + pid, t1 - t0)
        tl.store(sm_ptr + pid, _smid())

    return _mb_fill


def drive(out: str, repeats: int, budget_s: float) -> int:
    import torch
    from run_file import write_run
    fill = _kernel()
    dev = torch.device("cuda")
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    src = torch.randn(BUFFER_BYTES // 2, dtype=torch.float16, device=dev)
    t0 = time.time()
    rows, sass = [], {}
    for br, bc, w, st in VARIANTS:
        name = variant_name(br, bc, w, st)
        n_tiles = BUFFER_BYTES // group_bytes(br, bc)
        for grid in GRIDS:
            if time.time() - t0 > budget_s:
                print(f"budget reached at {name} grid {grid}", flush=True)
                break
            outb = torch.empty(grid, dtype=torch.float32, device=dev)
            cyc = torch.empty(grid, dtype=torch.int64, device=dev)
            sm = torch.empty(grid, dtype=torch.int32, device=dev)
            per_t = {}
            for T in TRIPS:
                reps, wall = [], []
                for r in range(repeats + 1):
                    torch.cuda.synchronize()
                    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    e0.record()
                    ck = fill[(grid,)](src, outb, cyc, sm, T, n_tiles, BR=br, BC=bc, STAGES=st,
                                       num_warps=w, num_stages=st)
                    e1.record()
                    torch.cuda.synchronize()
                    if r == 0:  # compile + warm the L2
                        continue
                    wall.append(e0.elapsed_time(e1) * 1e-3)
                    reps.append(statistics.median(cyc.cpu().tolist()))
                per_t[T] = {"cycles_median_over_ctas_repeats": reps, "cycles": statistics.median(reps),
                            "time_s_repeats": wall, "time_s": statistics.median(wall)}
                if name not in sass:
                    try:
                        from kernels.sass import disassemble
                        sass[name] = disassemble(ck.asm["cubin"])
                    except Exception as e:  # noqa: BLE001 -- a record, the figures stand without it
                        sass[name] = f"unavailable: {type(e).__name__}: {e}"[:200]
            smids = sm.cpu().tolist()
            lo, hi = TRIPS[0], TRIPS[-1]
            per_trip = (per_t[hi]["cycles"] - per_t[lo]["cycles"]) / (hi - lo)
            rows.append({"kind": "sm_fill", "variant": name, "block_r": br, "block_c": bc, "num_warps": w,
                         "num_stages": st, "group_bytes": group_bytes(br, bc), "ctas": grid,
                         "distinct_sms": len(set(smids)), "max_ctas_on_one_sm": max(smids.count(s) for s in set(smids)),
                         "trips": {str(T): v for T, v in per_t.items()}, "cycles_per_trip": per_trip})
            print(f"{name:16s} grid {grid:4d} ({len(set(smids)):3d} SMs): {per_trip:8.1f} cycles/trip "
                  f"({group_bytes(br, bc) / KB:4.0f} KB: {group_bytes(br, bc) / per_trip:6.1f} B/cycle per CTA)",
                  flush=True)
    for name, text in sass.items():
        rows.append({"kind": "sm_fill_sass", "variant": name, "sass": text})
    write_run(out, "sm_fill/1", rows, script="sm_fill_gpu.py", argv=sys.argv[1:], t0=t0,
              method="%clock64 around the pipelined tile loop in the kernel (median over CTAs, then over repeats "
                     "after one dropped launch that compiles and warms the L2); slope between the two trip counts; "
                     "clocks not locked")
    return 0


def analyse(run_path: str, hw_name: str = "h100-sxm") -> list:
    """Measured cycles per trip against the replay of each variant's own SASS (L2 latency for the commit)."""
    import memsim
    from kernels.sass import issue_profile
    from memsim.calibration import calibration_for
    from memsim.io import read_json
    run = read_json(run_path)  # plain or gzipped (the committed run is .json.gz)
    cal = calibration_for(memsim.load_hardware(hw_name))
    sass = {p["variant"]: p["sass"] for p in run["points"] if p.get("kind") == "sm_fill_sass"}
    out = []
    print(f"{'variant':16s} {'ctas':>5s} {'SMs':>4s} {'KB':>4s} {'meas':>8s} {'replay':>8s} {'gap':>7s} "
          f"{'B/cyc(gap)':>10s}")
    for p in run["points"]:
        if p.get("kind") != "sm_fill":
            continue
        # CTAs resident at once on an SM: those the grid put there, as far as their stage buffers fit (beyond,
        # they ran one after another and each CTA's own clock saw one CTA per SM)
        c = max(1, min(p["max_ctas_on_one_sm"], SHARED_PER_SM_BYTES // (p["num_stages"] * p["group_bytes"])))
        prof = issue_profile(sass[p["variant"]], num_warps=p["num_warps"], max_ctas=c, lat=cal.issue)
        rep = prof["tile_cycles"][c - 1] if prof else float("nan")
        gap = p["cycles_per_trip"] - rep
        row = {**{k: p[k] for k in ("variant", "ctas", "distinct_sms", "group_bytes", "num_stages", "num_warps")},
               "ctas_per_sm": c, "measured_cycles": p["cycles_per_trip"], "replay_cycles": rep, "gap_cycles": gap}
        out.append(row)
        print(f"{p['variant']:16s} {p['ctas']:5d} {p['distinct_sms']:4d} {p['group_bytes'] / KB:4.0f} "
              f"{p['cycles_per_trip']:8.1f} {rep:8.1f} {gap:7.1f} {c * p['group_bytes'] / gap if gap > 0 else float('nan'):10.1f}")
    return out


CALIBRATION = os.path.join(ROOT, "memsim", "presets", "h100-sxm.calibration.json")


def merge(run_path: str, into: str, *, replace: bool = False) -> int:
    """Add a run's points to calibration file `into` as the ``sm_fill`` fact (atomically; an existing fact is kept
    unless `replace`), each with its variant's tile loop decoded for the replay (`kernels.sass.tile_loop_body`)."""
    from kernels.sass import tile_loop_body
    sys.path.insert(0, HERE)
    from run_file import load_runs, merge_fact
    run = load_runs([run_path], "sm_fill")[0]
    sass = {p["variant"]: p["sass"] for p in run["points"] if p.get("kind") == "sm_fill_sass"}
    pts = []
    for p in run["points"]:
        if p.get("kind") != "sm_fill":
            continue
        body = tile_loop_body(sass.get(p["variant"], ""), num_warps=p["num_warps"])
        if not any(x.op == "LDGSTS" for x in body):
            raise SystemExit(f"--merge: {p['variant']}'s tile loop has no LDGSTS in the run's SASS ({run_path})")
        pts.append({**p, "body": [x.to_list() for x in body]})
    merge_fact(into, "sm_fill", pts, run=run, run_path=run_path, replace=replace,
               note="benchmarks/sm_fill_gpu.py: Triton-pipelined loops of cp.async tile copies (2-64 KB per trip, "
                    "L2-resident, 1/4/8 warps, 2/3 stages) on 16, 132 and 264 CTAs, %clock64 slopes in the kernel; "
                    "each point's tile loop decoded by --merge; memsim.issue_fit.sm_fill_from derives the rate")
    print(f"sm_fill: {len(pts)} points merged into {into}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="run file to write (on the GPU machine)")
    g.add_argument("--analyse", metavar="RUN", help="compare a run with the replay (no GPU)")
    g.add_argument("--merge", metavar="RUN", help="add a run to the preset's calibration as the sm_fill fact")
    ap.add_argument("--into", default=CALIBRATION, help="with --merge: the calibration file (default: h100-sxm's)")
    ap.add_argument("--replace", action="store_true", help="with --merge: overwrite an existing sm_fill fact")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=200)
    a = ap.parse_args(argv)
    if a.analyse:
        analyse(a.analyse)
        return 0
    if a.merge:
        return merge(a.merge, os.path.normpath(a.into), replace=a.replace)
    sys.path.insert(0, HERE)
    return drive(a.out, a.repeats, a.budget_s)


if __name__ == "__main__":
    sys.exit(main())
