"""One device call: what a CTA pays for each memory round trip its prologue waits for in a row (issue 8;
memsim/MODEL.md "the prologue's round trips").

flash2's dK/dV pass loads K and V into registers and stores them to shared memory -- the store waits for the
loads -- before it issues the first Q / dO copies; its forward does the same with Q, its dQ pass with Q and dO.  A
CTA that makes one or two trips of the tile loop therefore waits two DRAM round trips before it computes, and the
engine charged one (the masked_band run's 2112-4224-CTA launches: dK/dV 14-31 % too fast with bytes exact).
`kernels.sass.prologue_round_trips` counts them from the SASS (`_round_trip_levels`: a load issued after waiting
for level L lands at level L + 1).

The isolating program: each CTA reads `LOADS` tiles of BLOCK fp32 (1 KB or 8 KB each, `CONFIGS`) and
writes one.  `chain`: the
address of tile t + 1 depends on a reduction of tile t (a comparison that is never true for the data, which the
compiler cannot fold), so the loads go out one round trip after another -- LOADS round trips; `flat`: the same loads,
the same bytes, all issued at once -- one round trip.  Grids of 16, 64 and 256 waves of 132 x 8 CTAs (8 warps
each: 8 per SM fill it by warps, so a wave is a round of CTAs; many waves, so the GPU and not the host's launch sets
the time -- at 1-4 waves the first run measured Triton's launch path, ~30 us).  1 KB tiles: a wave's loads are 1 MB
per level, a third of what the DRAM moves in one latency (the round trip alone); 8 KB tiles: flash2's K or V tile
at d = 64, 64 rows (the round trip and the DRAM's rate together).  Per wave, chain - flat is the difference of their round
trips at the latency of the DRAM at that load.  The walk `prologue_round_trips` uses reads each variant's SASS
(`--levels`, no GPU): chain LOADS levels, flat one -- `--analyse` divides by the walk's levels, not by LOADS.

    run(command="python3 benchmarks/prologue_trips_gpu.py --out $OUT/prologue_trips.json", timeout_s=200)
    python benchmarks/prologue_trips_gpu.py --analyse FILE    (per-wave excess per extra round trip, against the
                                                               calibration's unloaded DRAM latency)
    python benchmarks/prologue_trips_gpu.py --levels          (the SASS walk of every variant; CPU)
    python benchmarks/prologue_trips_gpu.py --merge RUN       (here: the prologue_trips fact, with the walk's levels)

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

#: (fp32 elements of one tile, warps): 1 KB a tile (one element per thread: the round trip alone) and 8 KB (flash2's
#: K or V tile at d=64 x 64 rows: latency and the DRAM's rate together); 8 warps, so 8 CTAs fill an SM by warps
CONFIGS = ((256, 8), (2048, 8))
BLOCK, NUM_WARPS = CONFIGS[0]  # what --levels compiles (the SASS walk reads the same levels for both)
CTAS_PER_SM = 8
#: grids of this many rounds of 132 x 8 CTAs: enough that the GPU, not the host's launch, sets the time
WAVES = (16, 64, 256)
LOADS = (1, 2, 3, 4)
REPEATS = 20
#: the plans: `dram` (each CTA its own tiles: every level a DRAM round trip; the first run) and `l2` (every CTA the
#: tiles of a CTA of the first wave: past that wave every level an L2 hit -- what a loopless kernel pays per level
#: for data already in the L2.  A first version had every CTA read the SAME 1 KB: 1056 CTAs on a few lines of one
#: L2 slice, whose per-level cost (0.24-0.5 us) was that hot spot's, not an L2 hit's)
PLANS = ("dram", "l2")


def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def _mb_prologue_trips(src, dst, LOADS: tl.constexpr, CHAIN: tl.constexpr, BLOCK: tl.constexpr,
                           SETS: tl.constexpr = 0):
        # registers only: tile t lives in `x` until it is summed into `acc`; each level reads one tile per CTA.
        # SETS > 0: CTA i reads the tiles of CTA i % SETS (one wave's CTAs their own lines, as in the dram plan; the
        # later waves the same lines again), so past the first wave every level is an L2 hit on lines no other CTA
        # of the wave asks for
        pid = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        base = src + ((pid % SETS) if SETS else pid).to(tl.int64) * (LOADS * BLOCK)
        acc = tl.zeros([BLOCK], tl.float32)
        dep = 0
        for t in tl.static_range(LOADS):
            x = tl.load(base + t * BLOCK + offs + dep)
            acc += x
            if CHAIN:
                # never true for the data (values in [0, 1)): the next address waits for this tile
                dep = (tl.sum(x, axis=0) < -1.0).to(tl.int32)
        tl.store(dst + pid.to(tl.int64) * BLOCK + offs, acc)
    return _mb_prologue_trips


def variants():
    return [(n, chain) for n in LOADS for chain in ((False, True) if n > 1 else (False,))]


def sass_levels(block: int = BLOCK, warps: int = NUM_WARPS, sets: int = 0) -> dict:
    """{(loads, chain): round-trip levels} of every variant (tiles of `block` fp32, `warps` warps; `sets`: the l2
    plan's CTA sets) compiled for sm_90 (no GPU), by the walk
    `kernels.sass.prologue_round_trips` uses (`_round_trip_levels`): the level its last loads land at."""
    import triton
    from triton.backends.compiler import GPUTarget

    from kernels.sass import _decode, _round_trip_levels, disassemble
    k = _kernel()
    out = {}
    for n, chain in variants():
        src = triton.compiler.ASTSource(fn=k, signature={"src": "*fp32", "dst": "*fp32", "LOADS": "constexpr",
                                                         "CHAIN": "constexpr", "BLOCK": "constexpr",
                                                         "SETS": "constexpr"},
                                        constexprs={"LOADS": n, "CHAIN": chain, "BLOCK": block, "SETS": sets})
        c = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
        ins, _, _ = _decode(disassemble(c.asm["cubin"]))
        _level, _groups, sb = _round_trip_levels(ins)
        out[(n, chain)] = max(sb)
    return out


def levels() -> int:
    for block, warps in CONFIGS:
        for (n, chain), lv in sass_levels(block, warps).items():
            print(f"{block * 4 // 1024} KB loads {n} {'chain' if chain else 'flat ':5s}: its loads land at level {lv}")
    return 0


def run(out: str, plan: str = "dram") -> int:
    import torch
    sys.path.insert(0, HERE)
    from run_file import event_times_s, write_run
    t0 = time.time()
    k = _kernel()
    dev = torch.cuda.current_device()
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    rows = []
    flush = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")  # past the 50 MB L2: every launch cold
    shared = plan == "l2"
    for block, warps in (CONFIGS[:1] if shared else CONFIGS):
        for waves in WAVES:
            ctas = sms * CTAS_PER_SM * waves
            sets = sms * CTAS_PER_SM if shared else 0
            src = torch.rand((sets or ctas) * max(LOADS) * block, device="cuda")
            dst = torch.empty(ctas * block, device="cuda")
            for n, chain in variants():
                def launch():
                    k[(ctas,)](src, dst, LOADS=n, CHAIN=chain, BLOCK=block, SETS=sets, num_warps=warps)
                launch()
                torch.cuda.synchronize()
                ts = event_times_s(launch, REPEATS, before=flush.zero_)
                mine = torch.arange(ctas, device="cuda") % sets if shared else torch.arange(ctas, device="cuda")
                want = src[:(sets or ctas) * n * block].view(sets or ctas, n, block).sum(1)[mine]
                ok = torch.allclose(dst.view(ctas, block), want)
                rows.append({"block": block, "num_warps": warps, "waves": waves, "ctas": ctas, "loads": n,
                             "chain": chain, "shared": shared, "time_s": statistics.median(ts), "times_s": ts,
                             "bytes": ctas * (n + 1) * block * 4, "exact": bool(ok)})
                print(f"{block * 4 // 1024} KB waves {waves:3d} loads {n} {'chain' if chain else 'flat '}: "
                      f"{statistics.median(ts) * 1e6:9.2f} us{'' if ok else '  WRONG RESULT'}", flush=True)
            del src, dst
    write_run(out, "prologue_trips/1", rows, script="prologue_trips_gpu.py", argv=["--out", out, "--plan", plan],
              t0=t0, method=f"CUDA events, median of {REPEATS} launches, a 64 MB memset before each (cold "
                            f"L2); (BLOCK fp32, warps) {CONFIGS}, {CTAS_PER_SM} CTAs per SM a wave; plan {plan}"
                            + (" (CTA i reads CTA i % (132 x 8)'s tiles: L2 hits past the first wave)" if shared
                               else ""))
    return 0


def analyse(path: str) -> int:
    """Per wave and per extra round trip: (chain - flat) / (waves x (loads - 1)), against the calibration's unloaded
    DRAM latency (what the engine charges a round trip before the DRAM's queue term)."""
    import memsim
    from memsim.calibration import calibration_for, dram_queue_latency
    doc = json.load(open(path))
    hw = memsim.load_hardware("h100-sxm")
    q = dram_queue_latency(calibration_for(hw), hw.dram_bw_Bps)
    unloaded = q[1] if q else hw.mem_latency_s
    by = {(r.get("shared", False), r.get("block", BLOCK), r["waves"], r["loads"], r["chain"]): r
          for r in doc["points"]}
    lvs = {b: sass_levels(b, w) for b, w in CONFIGS}
    print(f"{doc['provenance']['gpu']}, {doc['provenance']['date']}; the engine's unloaded round trip "
          f"{unloaded * 1e6:.2f} us (hw.mem_latency_s {hw.mem_latency_s * 1e6:.2f} us)")
    print(f"{'tile':>5s} {'waves':>5s} {'loads':>5s} {'levels':>6s} {'flat us':>9s} {'chain us':>9s} "
          f"{'excess/wave/level us':>21s}")
    per_all: dict = {}
    for (shared, block, waves, n, chain), r in sorted(by.items()):
        if not chain:
            continue
        f = by[(shared, block, waves, n, False)]
        lv = lvs[block]
        extra = lv[(n, True)] - lv[(n, False)]
        per = (r["time_s"] - f["time_s"]) / (waves * extra) if extra else float("nan")
        per_all.setdefault((shared, block), []).append(per)
        print(f"{'L2 ' if shared else ''}{block * 4 // 1024:3d}KB {waves:5d} {n:5d} {lv[(n, False)]}->{lv[(n, True)]:<3d} "
              f"{f['time_s'] * 1e6:9.2f} {r['time_s'] * 1e6:9.2f} {per * 1e6:21.3f}")
    for (shared, block), v in per_all.items():
        print(f"{block * 4 // 1024} KB tiles{' (L2 hits)' if shared else ''}: median excess per wave per level "
              f"{statistics.median(v) * 1e6:.3f} us")
    return 0


def merge(run_paths: list, into: str, *, replace: bool = False) -> int:
    """Set the runs' points, each with the SASS walk's levels of its variant, as the `prologue_trips` fact of `into`
    and show the round trips `memsim.calibration.prologue_trips_from` derives from them (dram-plan points:
    `round_trip_s`; l2-plan points: `round_trip_l2_s`)."""
    sys.path.insert(0, HERE)
    from run_file import load_runs, merge_fact

    from memsim.calibration import prologue_trips_from
    runs = load_runs(run_paths, "prologue_trips")
    lvs: dict = {}
    pts = []
    for run in runs:
        for p in run["points"]:
            key = (p["block"], p["num_warps"], p["ctas"] // p["waves"] if p.get("shared") else 0)  # l2: one wave
            if key not in lvs:
                lvs[key] = sass_levels(*key)
            pts.append(p | {"levels": lvs[key][(p["loads"], p["chain"])], "date": run["provenance"]["date"]})
    got = prologue_trips_from(pts)
    if "round_trip_s" not in got:
        raise SystemExit("--merge: the runs have no 1 KB chain / flat pairs of the dram plan: no round trip")
    print(f"one more round trip: {got['round_trip_s'] * 1e6:.3f} us" + (
        f"; of L2 hits {got['round_trip_l2_s'] * 1e6:.3f} us" if "round_trip_l2_s" in got else ""))
    merge_fact(into, "prologue_trips", pts, run=runs[0], run_path=run_paths[0], replace=replace,
               also=[os.path.relpath(p_, ROOT) for p_ in run_paths[1:]],
               note="CTAs whose 1 KB / 8 KB tile loads go out level after level (a reduction of each tile in the "
               "next address) or at once, 16-256 waves of 132 x 8 CTAs: one more round trip in a row, from the DRAM "
               "(dram plan) or the L2 (l2 plan); each level includes the chain's cross-warp reduction")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--plan", choices=PLANS, default="dram",
                    help="dram: each CTA its own tiles (the first run); l2: every CTA the same tiles (L2 hits)")
    ap.add_argument("--analyse")
    ap.add_argument("--levels", action="store_true")
    ap.add_argument("--merge", metavar="RUN", nargs="+", help="set the runs' points as --into's prologue_trips fact")
    ap.add_argument("--into", default=os.path.join(ROOT, "memsim", "presets", "h100-sxm.calibration.json"))
    ap.add_argument("--replace", action="store_true")
    a = ap.parse_args(argv)
    if a.levels:
        return levels()
    if a.merge:
        return merge(a.merge, a.into, replace=a.replace)
    if a.analyse:
        return analyse(a.analyse)
    if not a.out:
        ap.error("one of --out, --analyse, --levels")
    return run(a.out, a.plan)


if __name__ == "__main__":
    sys.exit(main())
