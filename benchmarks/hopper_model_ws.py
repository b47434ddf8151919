"""What memsim would predict for the warp-specialised Hopper launches if it read their SASS as warp-specialised code
(issue 9 item 4, session 6): a prototype of the changes asked of the lead (notes/hopper.md, "For the lead"), applied
to run5's measured records.  CPU only; nothing is written to memsim/presets/compiled/.  Since compiled-table profile 9
(2026-11-26, eighth session) memsim reads these facts itself (kernels.sass.warp_specialised, memsim.costs): on a
refreshed table the "memsim" column already holds them and the prototype's patch applies them a second time.

    python benchmarks/hopper_model_ws.py benchmarks/results/hopper-h100-2026-11-26-run5.json --out FILE
    python benchmarks/hopper_model_ws.py --facts hopper_ws,fwd,128,128,128     # one schedule's SASS facts (JSON)

Triton 3.6's warp specialisation (`tl.range(..., warp_specialize=True)`: hopper_fwd, hopper_fwd_persistent,
hopper_bwd_dkdv_ws) compiles ONE kernel of 12 warps (ncu block size 384, run4/run5) out of a `num_warps=4` launch:
two consumer warpgroups (4 warps each, `USETMAXREG.TRY_ALLOC` 232 registers) that run the same tile loop on their
half of the tile, and a producer (`USETMAXREG.DEALLOC` 40 registers) that builds the TMA descriptors and issues the
loads.  What the committed model reads instead (kernels.sass, memsim.costs, as of 5f091fc):

1. **occupancy** from `Schedule.num_warps` (4): 168 registers x 128 threads leave room for 3 CTAs, so d=64 launches
   get 2 per SM (shared memory).  The card runs 1 (ncu `launch__occupancy_limit_registers` = 1 for every 384-thread
   hopper launch, run4 and run5: 168 x 384 = 64 512 of 65 536 registers).  Here: `memsim.costs.ctas_per_sm` with the
   launched warps (`CompiledKernel.metadata.num_warps`, 12).
2. **the tile loop's period**: the table replays ONE consumer warpgroup (`tile_cycles[0]`, 4 warps); the engine then
   books a step as dot + exp (calibrated rates, one after the other) or that replay, whichever is longer.  Both
   consumer warpgroups share the SM's tensor cores and SFUs and overlap one's softmax with the other's HGMMAs.  Here:
   `memsim.warp_issue.replay` of the tile loop with two groups of 4 warps (ctas=2: each group its own barriers and
   wgmma queue, the SM's pipes shared), at the tensor clock, and the step's compute = max(dot, that replay): the
   replay's SFU pipe carries the exps (printed: exp alone is below the replay on every launch here).
3. **the producer's descriptors**: `kernels.sass._outside_loops` drops every instruction between a label and a
   backward branch to it; the out-of-line mbarrier-wait stubs after the final EXIT branch back into the partitions,
   so almost the whole kernel counts as "in a loop": straight_instructions 7, tma_descriptor_inits 0 in the table.
   The producer builds its descriptors one after the other before its first load (SASS: 3 `UTMACCTL.IV` for Q, K, V
   in the forwards; 6 in the dK/dV pass, before the first Q/dO load).  Here: `LaunchCost.cta_start_s` = a + b x that
   count (`Calibration.tma_descriptor_s`, the `tma_descriptor` microbenchmark's one-wave fit; one CTA per SM, so
   nothing overlaps it).
4. **the consumers' code outside the tile loop** (prologue, epilogue: O / lse / dK, dV stores): replayed with the
   two groups once (`cta_fixed_s`).  The persistent forward's epilogue is inside its outer tile loop: once per TILE;
   the engine adds `cta_fixed_s` once per CTA, so here it is prologue + epilogue x the CTA's mean tile count
   (tiles / CTAs; the CTAs differ by at most one tile).

Columns: memsim as committed; the prototype (1-4); "replay only": the prototype with the step's compute = the
two-group replay alone, the dot-chain floor dropped too (the dK/dV pass's 64x128x128 dots are read at 620 TFLOP/s
from the dot_chain points, but the pass ran 703 TFLOP/s of them under ncu in run5 -- the replay's wgmma rate, the
best dot-chain points, is the one the card reached).  Data only (no assertion).  The flash2 records are simulated
unchanged, as the reference.  Older runs: a record timed with run4's `kernels.hopper.PERSISTENT` switch
(`"persistent": true`) is hopper_ws fwd (the same SASS, session 5); a causal per-tile forward timed in the grid's
order (`"longest_first": false`) is simulated in that order, as benchmarks/hopper_model_check.py does.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace

if __name__ == "__main__":
    os.environ.pop("TRITON_INTERPRET", None)  # compiling needs real JIT functions
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

#: the warps of one consumer warpgroup (a Hopper warpgroup is 4 warps)
GROUP_WARPS = 4


def ws_facts(sass: str, lat, *, persistent: bool = False) -> dict | None:
    """The four facts of the module doc from one warp-specialised kernel's SASS (None: not warp-specialised);
    the partitions are `kernels.sass.warp_specialised`'s (what the compiled table records since profile 9)."""
    from kernels.sass import _decode, warp_specialised
    from memsim.warp_issue import replay
    ins, loops, marks = _decode(sass)
    ws = warp_specialised(ins, loops, marks)
    if ws is None:
        return None
    body = ins[ws.tile[0]:ws.tile[1] + 1]

    def rep(code, trips):
        return replay(list(code), warps_per_cta=GROUP_WARPS, ctas=ws.groups, lat=lat, trips=trips) if code else 0.0
    return {"groups": ws.groups, "launched_warps": GROUP_WARPS * (ws.groups + 1),
            "producer_descriptors": ws.producer_descriptors,
            "tile_instructions": len(body), "tile_cycles": rep(body, 3),
            "tile_cycles_one_group": replay(body, warps_per_cta=GROUP_WARPS, ctas=1, lat=lat),
            "once_instructions": len(ws.once), "once_cycles": rep(ws.once, 1),
            "per_tile_instructions": len(ws.per_tile), "per_tile_cycles": rep(ws.per_tile, 1),
            "persistent": bool(ws.per_tile)}


def compile_sass(problem, schedule) -> dict:
    """{launch name: (SASS text, launched warps, shared bytes)} of the case's launches, compiled for sm_90a here."""
    import triton
    from triton.backends.compiler import GPUTarget

    from kernels.compiled_facts import capture, _specialise
    from kernels.sass import disassemble
    target = GPUTarget("cuda", 90, 32)
    out = {}
    for jf, args, kwargs, grid in capture(problem, schedule):
        name = jf.__name__[1:] if jf.__name__.startswith("_") else jf.__name__
        if name in out:
            continue
        src, options = _specialise(jf, args, kwargs, target)
        ck = triton.compile(src, target=target, options=options.__dict__)
        out[name] = (disassemble(ck.asm["cubin"]), int(ck.metadata.num_warps), int(ck.metadata.shared))
    return out


def simulate_in_order(p, s, hw, grid_order: bool) -> float:
    """memsim's time (ms) of (p, s); grid_order: a causal hopper forward in the grid's order, not longest first."""
    import memsim
    import memsim.workloads_hopper as wh
    rule = wh.longest_first
    if grid_order:
        wh.longest_first = lambda p_: False
    try:
        return memsim.simulate(p, s, hw).total["time_s"] * 1e3
    finally:
        wh.longest_first = rule


def print_facts(specs: list, hardware: str) -> int:
    """`--facts ALG,PHASE,BM,BN,D[,causal]`: the module doc's facts of each warp-specialised launch of that schedule
    (B=1, H=2, N=1024, bf16, num_warps 4, num_stages 2), one JSON object {"ALG,...:launch": facts} on stdout."""
    import memsim
    from memsim.calibration import calibration_for
    from memsim.schedule import AttentionProblem, Schedule
    lat = calibration_for(memsim.load_hardware(hardware)).issue
    out = {}
    for spec in specs:
        alg, phase, bm, bn, d, *rest = spec.split(",")
        p = AttentionProblem(1, 2, 2, 1024, 1024, int(d), "bf16", rest == ["causal"])
        s = Schedule(alg, phase, int(bm), int(bn), 4, 2)
        for launch, (sass, warps, _) in compile_sass(p, s).items():
            w = ws_facts(sass, lat) if warps > s.num_warps else None
            out[f"{spec}:{launch}"] = dict(w or {}, metadata_warps=warps)
    print(json.dumps(out))
    return 0


def main(argv=None) -> int:
    from hopper_model_check import bench_parser
    ap = bench_parser(__doc__, required=False)
    ap.add_argument("--facts", action="append", metavar="ALG,PHASE,BM,BN,D[,causal]",
                    help="print the warp-specialised SASS facts of that schedule's launches (JSON) and stop")
    a = ap.parse_args(argv)
    if a.facts:
        return print_facts(a.facts, a.hardware)
    if not (a.bench_json and a.out):
        ap.error("give a benchmark JSON and --out FILE (or --facts)")
    import memsim
    import memsim.sim as msim
    from memsim.calibration import calibration_for
    from memsim.costs import ctas_per_sm
    from memsim.io import base_provenance, write_json
    from memsim.schedule import AttentionProblem, Schedule, kernel_launches
    hw = memsim.load_hardware(a.hardware)
    cal = calibration_for(hw)
    clock = cal.mma_sm_clock_Hz or cal.sm_clock_Hz
    base_cost = msim.launch_cost
    ws_by_launch: dict = {}
    variant = {"replay_only": False}

    def ws_cost(hw_, cal_, name, problem, schedule, smem, facts=None, num_ctas=None):
        c = base_cost(hw_, cal_, name, problem, schedule, smem, facts=facts, num_ctas=num_ctas)
        w = ws_by_launch.get(name)
        if w is None:
            return c
        per_sm, limit = ctas_per_sm(hw_, w["shared_bytes"], w["launched_warps"], c.regs_per_thread)
        fixed = w["once_cycles"] + w["per_tile_cycles"] * w["tiles_per_cta"]
        start = (cal_.tma_descriptor_s[0] + cal_.tma_descriptor_s[1] * w["producer_descriptors"]
                 if cal_.tma_descriptor_s and w["producer_descriptors"] else 0.0)
        return replace(c, ctas_per_sm=per_sm, occupancy_limit=limit, issue_s_per_tile=w["tile_cycles"] / clock,
                       issue_s_per_tile_dram=0.0, cta_fixed_s=fixed / clock, cta_start_s=start, sec_per_exp=0.0,
                       sec_per_flop=0.0 if variant["replay_only"] else c.sec_per_flop,
                       facts_source=c.facts_source + "; hopper_model_ws prototype (warp-specialised SASS)")
    bench = json.loads(open(a.bench_json).read())
    rows, sass_memo = [], {}
    print("| pass | algorithm dtype | d | causal | N | measured ms | memsim ms | ratio | ws prototype ms | ratio | "
          "replay only | launch: descriptors, groups, trip us (1 group), exp us/tile, fixed us |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in bench["records"]:
        if r["impl"] not in ("hopper", "hopper_ws", "flash2") or r["pass"] not in ("fwd", "bwd") or not r.get("ms"):
            continue
        if r["impl"] == "hopper" and r["pass"] == "bwd" or "default" in r["variant"]:
            continue
        p = AttentionProblem(r["batch"], r["heads"], r["heads"], r["seq"], r["seq"], r["head_dim"], r["dtype"],
                             r["causal"])
        sd = dict(r["schedule"])
        if r.get("persistent") and r["impl"] == "hopper" and r["pass"] == "fwd":
            sd["algorithm"] = "hopper_ws"  # run4's kernels.hopper.PERSISTENT switch: hopper_ws fwd's SASS (session 5)
        s = Schedule(**sd)
        # a causal per-tile forward timed in the grid's order (run4: longest_first False) is simulated in that order
        grid_order = r["impl"] == "hopper" and p.causal and r.get("longest_first") is False and s.algorithm == "hopper"
        t0 = simulate_in_order(p, s, hw, grid_order)
        info = {}
        ws_by_launch.clear()
        if r["impl"] != "flash2":
            key = (p, s)
            if key not in sass_memo:
                sass_memo[key] = compile_sass(p, s)
            for L in kernel_launches(p, s):
                sass, launched, shared = sass_memo[key].get(L.name, (None, 0, 0))
                w = ws_facts(sass, cal.issue) if sass and launched > s.num_warps else None
                if w is None:
                    continue
                ntiles = (-(-p.seq_q // s.block_m)) * p.batch * p.heads_q
                w.update(shared_bytes=shared, launched_warps=launched,
                         tiles_per_cta=(ntiles / L.num_ctas - 1) if w["persistent"] else 0.0)
                ws_by_launch[L.name] = w
                exp_tile = s.block_m * s.block_n / cal.exp_per_sm_s
                info[L.name] = dict(w, exp_s_per_tile=exp_tile)
        msim.launch_cost = ws_cost
        try:
            t1 = simulate_in_order(p, s, hw, grid_order)
            variant["replay_only"] = True
            t2 = simulate_in_order(p, s, hw, grid_order) if info else t1
        finally:
            msim.launch_cost = base_cost
            variant["replay_only"] = False
        rows.append(dict(phase=r["pass"], impl=r["impl"], algorithm=s.algorithm, dtype=p.dtype, variant=r["variant"],
                         head_dim=p.head_dim, causal=p.causal,
                         seq=p.seq_q, schedule=s.to_dict(), measured_ms=r["ms"], memsim_ms=t0, ws_prototype_ms=t1,
                         ws_replay_only_ms=t2,
                         launches={k: {x: v for x, v in w.items()} for k, w in info.items()}))
        desc = "; ".join(f"{k}: {w['producer_descriptors']}, {w['groups']}, {w['tile_cycles'] / clock * 1e6:.2f} "
                         f"({w['tile_cycles_one_group'] / clock * 1e6:.2f}), {w['exp_s_per_tile'] * 1e6:.2f}, "
                         f"{(w['once_cycles'] + w['per_tile_cycles'] * w['tiles_per_cta']) / clock * 1e6:.1f}"
                         for k, w in info.items())
        alg = s.algorithm + (" [grid order]" if grid_order else "")
        print(f"| {r['pass']} | {alg} {p.dtype} | {p.head_dim} | {p.causal} | {p.seq_q} | {r['ms']:.3f} | {t0:.3f} | "
              f"{t0 / r['ms']:.2f} | {t1:.3f} | {t1 / r['ms']:.2f} | {t2 / r['ms']:.2f} | {desc} |", flush=True)
    write_json(a.out, {"provenance": base_provenance("python benchmarks/hopper_model_ws.py " + " ".join(
        sys.argv[1:] if argv is None else argv)), "hardware": a.hardware, "bench": a.bench_json,
        "clock_Hz": clock, "rows": rows}, overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
