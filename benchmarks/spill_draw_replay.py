"""Spill reloads drawn one by one in the replay, against the `spill_sm` fact (issue 8, CPU only).

    python benchmarks/spill_draw_replay.py [--seeds 2] [--max-warps 4] [--json OUT]

memsim.costs mixes a tile loop's replay linearly between "every reload an L1 hit" and "every reload an L2 hit" by
the launch's L1-miss fraction m, and its DRAM misses at the unloaded pointer-chase latency (683 cycles on the H100).
Here each LDL of `_mb_spill_sm`'s tile loop (compiled for sm_90 on this CPU, as `spill_sm_gpu.py --replay` does) is
drawn instead: an L1 miss with the point's measured m, and of those a DRAM miss with its measured L2-miss fraction
d (DRAM reads beyond the global loads / the reloads reaching the L2); `memsim.warp_issue.replay` then waits on each
at its own latency -- a warp's batch of reloads waits for its slowest, as the hardware does.  A DRAM miss is
replayed at the unloaded latency and at a loaded one, 683 / (1 - u) with u the point's DRAM bytes per second over
the calibrated copy rate (a queue; notes/spills.md session 9, next 3), and at the `dram_stream` curve's loaded
latency at the point's DRAM bytes per second (`calibration.dram_queue_latency`, what the attention engine waits
since 277b5cd: the pointer chase's 683 cycles + the curve's excess over its unloaded end; session 12).

Each point: measured cycles per iteration of the SM's CTAs over the replay (linear mix; drawn, DRAM at 683; drawn,
DRAM loaded).  Only points with at most `--max-warps` warps per SM (one warp per scheduler: past that the chip's
store rate binds, which no replay has), on every SM (`--all-sms`: also on 16-99).  The points without write-backs
give the kernel's own offset (its all-L1 point is 1.11x its replay).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bodies():
    os.environ.pop("TRITON_INTERPRET", None)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    import triton
    from triton.backends.compiler import GPUTarget

    import spill_sm_gpu as B
    from kernels.compiled_facts import _specialise
    from kernels.sass import disassemble, tile_loop_body
    out = {}
    for v, (rows, warps, maxnreg, n_iter) in B.VARIANTS.items():
        src = torch.empty(16, dtype=torch.float32, device="meta")
        sm = torch.empty(16, dtype=torch.int32, device="meta")
        kw = dict(ROWS=rows, COLS=64, num_warps=warps, **({"maxnreg": maxnreg} if maxnreg else {}))
        s, o = _specialise(B._mb_spill_sm, (src, src, sm, n_iter, 132), kw, GPUTarget("cuda", 90, 32))
        text = disassemble(triton.compile(s, target=GPUTarget("cuda", 90, 32), options=o.__dict__).asm["cubin"])
        out[v] = (tile_loop_body(text, num_warps=warps), warps)
    return out


def drawn(body, warps: int, ctas: int, lat, m: float, d: float, dram_cycles: float, seeds: int) -> float:
    """Mean over `seeds` draws of the replay with each LDL an L1 hit, an L2 hit (`load_l2_cycles`) or a DRAM miss
    (`dram_cycles`), drawn with probabilities 1 - m, m (1 - d), m d."""
    from memsim.warp_issue import replay
    lat2 = replace(lat, cycles={**lat.cycles, "LDL_L2": lat.load_l2_cycles, "LDL_DRAM": dram_cycles})
    out = []
    for seed in range(seeds):
        rnd = random.Random(seed)
        b = [replace(x, op=("LDL_DRAM" if rnd.random() < d else "LDL_L2")) if x.op == "LDL" and rnd.random() < m
             else x for x in body]
        out.append(replay(b, warps_per_cta=warps, ctas=ctas, lat=lat2))
    return statistics.mean(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--max-warps", type=int, default=4)
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--all-sms", action="store_true", help="also the points on fewer SMs (16-99; the rest exit)")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import memsim
    from memsim.calibration import curve_latency_s, dram_queue_latency, load_calibration
    from memsim.warp_issue import replay
    import spill_sm_gpu as B  # noqa: F401 -- imported by _bodies
    cal = load_calibration(memsim.load_hardware("h100-sxm"))
    dq = dram_queue_latency(cal, cal.dram_Bps)
    lat = cal.issue
    bodies = _bodies()
    fact = json.loads((ROOT / "memsim/presets/h100-sxm.calibration.json").read_text())["facts"]["spill_sm"]
    rows, seen = [], set()
    print("| point | run | warps/SM | m | d | w | u | measured / linear | / drawn 683 | / drawn loaded (cycles) | "
          "/ drawn curve (cycles) |")
    print("| --- " * 11 + "|")
    for p in fact:
        if p["sms_used"] != 132 and not a.all_sms:
            continue
        if p["warps_per_sm"] > a.max_warps or (p["id"], p["time_s"]) in seen:
            continue
        seen.add((p["id"], p["time_s"]))
        body, warps = bodies[p["variant"]]
        k = p["ctas_per_sm"]
        m = p["reload_l1_miss_fraction"] or 0.0
        reach = max(0.0, p["l2_read_bytes"] - p["global_read_bytes"])
        miss = max(0.0, p["dram_read_bytes"] - p["global_read_bytes"])
        d = min(1.0, miss / reach) if reach > 0.01 * p["local_ld_bytes"] else 0.0
        w = max(0.0, p["dram_write_bytes"] - p["global_write_bytes"]) / p["local_st_bytes"]
        u = (p["dram_read_bytes"] + p["dram_write_bytes"]) / p["time_s"] / cal.dram_Bps
        meas = p["time_s"] * p["ncu_sm_clock_Hz"] / p["n_iter"]
        t1 = replay(body, warps_per_cta=warps, ctas=k, lat=lat)
        t2 = replay(body, warps_per_cta=warps, ctas=k, lat=replace(lat, local_cycles=lat.load_l2_cycles))
        hit = lat.cycles.get("LDL", lat.cycles.get("LDS", 0.0))
        x = m * ((1 - d) * lat.load_l2_cycles + d * lat.load_dram_cycles - hit) / (lat.load_l2_cycles - hit)
        lin = t1 + x * (t2 - t1)
        loaded = lat.load_dram_cycles / max(0.05, 1 - u)
        r683 = drawn(body, warps, k, lat, m, d, lat.load_dram_cycles, a.seeds)
        rld = drawn(body, warps, k, lat, m, d, loaded, a.seeds) if d > 0 else r683
        # the dram_stream curve at the point's own DRAM rate (the engine's loaded latency, in the point's clock)
        curved = lat.load_dram_cycles + (curve_latency_s(dq[0], (p["dram_read_bytes"] + p["dram_write_bytes"])
                                                          / p["time_s"]) * p["ncu_sm_clock_Hz"] if dq else 0.0)
        rcv = drawn(body, warps, k, lat, m, d, curved, a.seeds) if d > 0 else r683
        row = {"id": p["id"], "run": p.get("run"), "warps_per_sm": p["warps_per_sm"], "m": m, "d": d, "w": w, "u": u,
               "measured": meas, "linear": lin, "drawn_683": r683, "drawn_loaded": rld, "loaded_cycles": loaded,
               "drawn_curve": rcv, "curve_cycles": curved}
        rows.append(row)
        print(f"| {p['id']} | {(p.get('run') or '')[15:30]} | {p['warps_per_sm']:.0f} | {m:.2f} | {d:.2f} | {w:.2f} | "
              f"{u:.2f} | {meas / lin:.2f} | {meas / r683:.2f} | {meas / rld:.2f} ({loaded:.0f}) | "
              f"{meas / rcv:.2f} ({curved:.0f}) |", flush=True)
    for key in ("linear", "drawn_683", "drawn_loaded", "drawn_curve"):
        r = [x["measured"] / x[key] for x in rows]
        wb = [x["measured"] / x[key] for x in rows if x["w"] > 0.1]
        print(f"measured / {key}: median {statistics.median(r):.2f} (range {min(r):.2f}-{max(r):.2f}) over {len(r)} "
              f"points; write-back points (w > 0.1) {statistics.median(wb) if wb else float('nan'):.2f} "
              f"({min(wb) if wb else float('nan'):.2f}-{max(wb) if wb else float('nan'):.2f}, {len(wb)})")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
