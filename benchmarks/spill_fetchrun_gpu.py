"""Does the instruction fetch hide under a loop's waits only a few lines ahead? (issue 8, spills session 19)

The fp32 spilling loops run ~14 % faster in the model than on the card (81 live launches, median signed -13.8 %;
notes/spills.md sessions 18-19).  memsim.costs takes a trip as max(replay, fetch of its code): the fetch of the whole
loop hides under the waits of the whole loop.  ncu's per-instruction stall samples of r5126_005's fp32 forward
(101 KB loop, replay 1.75x its fetch; reports/h100-sxm/spills-session18/) say otherwise: its 23 % "no instruction"
samples sit only on the first instruction of a 128-B line, and only where the warp has issued ~40 or more
instructions since its last scoreboard wait -- the fetch runs ahead of the warp by a few lines during a wait, and
in a long wait-free run (the dot's FFMAs) the warp catches up and waits for every line.  If so, a trip is not
max(replay, fetch) but the sum over the runs between waits of max(run's issue, run's fetch less what was fetched
during the wait before it).

`_mb_fetch_run`: `spill_fetch`'s FFMA loop (K FFMAs a trip in 8 independent chains, unrolled) with waits: a wait
group is a chain of C dependent MUFU.EX2 (each ~25 cycles: release 19 + its FMUL) whose result every chain then
reads (so ptxas cannot move FFMAs across it), followed by the group's 8 FFMAs.  One group in P waits; the same
waits either spread (INTERLEAVED: groups 0, P, 2P, ...: a run of 8 (P - 1) FFMAs after each) or CLUSTERED at the
start of the trip (groups 0 .. n/P - 1, then one wait-free run of the rest): the same instructions, the same replay
and the same fetch total -- max(replay, fetch) says the same time for both.  P = 0: no waits (the fetch rate of
that code size).  One CTA per SM (132 CTAs), 1 (and 4: lockstep) warps; %clock64 around each warp's loop, cycles
per trip = median over warps of all CTAs / n_iter, median over 5 launches.  Sizes: ~10 KB (in the instruction
cache: the control), ~100 KB (r5126_005's band, 64-128 KB: 2.8 cycles an instruction) and ~200 KB (past 128 KB:
5.9, the band of most live fp32 spilling loops).  The cubins come back in the run file; `--analyse` replays
them here (memsim.warp_issue: without fetch, and with the fetch window of the switch `MEMSIM_FETCH_RUN`).

    run(command="python3 benchmarks/spill_fetchrun_gpu.py --out $OUT/spill_fetchrun.json --budget-s 150",
        timeout_s=190)
    python benchmarks/spill_fetchrun_gpu.py --analyse RUN.json     # here: measured beside replay / fetch / MAX

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p_ in (ROOT, HERE):
    if p_ not in sys.path:
        sys.path.insert(0, p_)

#: MUFUs in a wait's dependent chain
C_WAIT = 6
#: (K FFMAs a trip, P, CLUSTER, warps, CTAs per SM) -- P = 0: no waits
POINTS = (
    [(512, 0, 0, 1, 1), (512, 4, 0, 1, 1), (512, 4, 1, 1, 1)]
    + [(4608, 0, 0, 1, 1), (4608, 4, 0, 1, 1), (4608, 4, 1, 1, 1), (4608, 16, 0, 1, 1), (4608, 16, 1, 1, 1),
       (4608, 2, 0, 1, 1), (4608, 4, 0, 4, 1), (4608, 4, 1, 4, 1)]
    + [(9216, 0, 0, 1, 1), (9216, 4, 0, 1, 1), (9216, 4, 1, 1, 1)]
    # independent streams (one-warp CTAs, 2 / 4 per SM): do they share the fetch?
    + [(4608, 0, 0, 1, 2), (4608, 0, 0, 1, 4), (4608, 4, 0, 1, 2), (4608, 4, 1, 1, 2)]
)
#: the kernels to compile (the CTAs per SM are the grid's)
COMPILES = sorted({p[:4] for p in POINTS})

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from spill_fetchdrift_gpu import _clock_after  # noqa: E402  (%clock64 read after a value is computed)


@triton.jit
def _ex2(v):
    return tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=f,f", [v], dtype=tl.float32, is_pure=True,
                                     pack=1)


@triton.jit
def _mb_fetch_run(x_ptr, out_ptr, cyc_ptr, n_iter, K: tl.constexpr, P: tl.constexpr, CLUSTER: tl.constexpr,
                  C: tl.constexpr, NUM_WARPS: tl.constexpr):
    """K FFMAs a trip in 8 chains; group j (8 FFMAs) of the K // 8 first waits for a chain of C dependent MUFUs
    when P > 0 and (CLUSTER: j < K // 8 // P; else j % P == 0).  Each warp writes its loop's cycles."""
    offs = tl.arange(0, 32 * NUM_WARPS)
    wid = offs // 32
    x = tl.load(x_ptr + offs)
    a0 = x
    a1 = x + 1.0
    a2 = x + 2.0
    a3 = x + 3.0
    a4 = x + 4.0
    a5 = x + 5.0
    a6 = x + 6.0
    a7 = x + 7.0
    t0 = _clock_after(x)
    for i in range(n_iter):
        for j in tl.static_range(K // 8):
            wait = False
            if P > 0:
                if CLUSTER:
                    wait = j < K // 8 // P
                else:
                    wait = j % P == 0
            if wait:
                v = _ex2(a0 * -0.001)
                for c in tl.static_range(C - 1):
                    v = _ex2(v * -0.5)
                a0 = a0 * 0.999 + v
                a1 = a1 * 0.999 + v
                a2 = a2 * 0.999 + v
                a3 = a3 * 0.999 + v
                a4 = a4 * 0.999 + v
                a5 = a5 * 0.999 + v
                a6 = a6 * 0.999 + v
                a7 = a7 * 0.999 + v
            else:
                a0 = a0 * 0.999 + 0.001
                a1 = a1 * 0.999 + 0.002
                a2 = a2 * 0.999 + 0.003
                a3 = a3 * 0.999 + 0.004
                a4 = a4 * 0.999 + 0.005
                a5 = a5 * 0.999 + 0.006
                a6 = a6 * 0.999 + 0.007
                a7 = a7 * 0.999 + 0.008
    s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7
    t1 = _clock_after(s)
    pid = tl.program_id(0)
    tl.store(out_ptr + pid * 32 * NUM_WARPS + offs, s)
    tl.store(cyc_ptr + pid * NUM_WARPS + wid, t1 - t0, mask=offs % 32 == 0)


def _n_iter(k: int) -> int:
    return max(8, (1 << 20) // k)


def _kernel(k: int, p: int, cl: int, w: int, n_sms: int):
    """(run, cyc, out) for a grid of n_sms CTAs (all resident: one-warp CTAs of few registers)."""
    import torch
    x = torch.rand(32 * w, device="cuda", dtype=torch.float32)
    out = torch.empty(n_sms * 32 * w, device="cuda", dtype=torch.float32)
    cyc = torch.zeros(n_sms * w, device="cuda", dtype=torch.int64)

    def run():
        return _mb_fetch_run[(n_sms,)](x, out, cyc, _n_iter(k), K=k, P=p, CLUSTER=cl, C=C_WAIT, NUM_WARPS=w,
                                       num_warps=w, num_stages=1)
    return run, cyc, out


def _point(k: int, p: int, cl: int, w: int, per_sm: int) -> dict:
    import torch
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    run, cyc, out = _kernel(k, p, cl, w, n_sms * per_sm)
    ck = run()
    torch.cuda.synchronize()
    assert bool(torch.isfinite(out).all()), "non-finite result"
    cycles = []
    for r in range(6):  # the first launch dropped
        run()
        torch.cuda.synchronize()
        if r:
            cycles.append(statistics.median(cyc.cpu().tolist()))
    n_iter = _n_iter(k)
    return {"kind": "fetch_run", "K": k, "P": p, "cluster": cl, "C": C_WAIT, "num_warps": w, "ctas_per_sm": per_sm,
            "ctas": n_sms * per_sm,
            "n_iter": n_iter, "regs": int(ck.n_regs), "spills": int(ck.n_spills), "cycles_repeats": cycles,
            "cycles_per_trip": statistics.median(cycles) / n_iter,
            "spread": max(cycles) / min(cycles),
            "cubin_b64": base64.b64encode(ck.asm["cubin"]).decode() if per_sm == 1 else None}


def gpu(out: str, budget_s: float, argv, points=POINTS) -> int:
    t0 = time.time()
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--compile-one", *map(str, pt)])
             for pt in sorted({p[:4] for p in points})]
    for pr in procs:
        try:
            pr.wait(timeout=max(5.0, 0.75 * budget_s - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            pr.kill()
    print(f"compiled in {time.time() - t0:.0f} s", flush=True)
    rows = []
    for pt in points:
        if time.time() - t0 > budget_s:
            rows.append({"kind": "fetch_run", "point": list(pt), "error": "budget"})
            continue
        try:
            rows.append(_point(*pt))
        except Exception as e:  # noqa: BLE001 -- recorded, not fatal
            rows.append({"kind": "fetch_run", "point": list(pt), "error": f"{type(e).__name__}: {str(e)[:300]}"})
        r = rows[-1]
        print(r if "error" in r else f"K={r['K']} P={r['P']} cluster={r['cluster']} w{r['num_warps']} "
              f"x{r['ctas_per_sm']}: "
              f"{r['cycles_per_trip']:.0f} cycles/trip (spread {r['spread']:.3f}), regs {r['regs']}", flush=True)
        with open(out + ".partial", "w") as fh:
            json.dump([{k: v for k, v in x.items() if k != "cubin_b64"} for x in rows], fh)
    from run_file import write_run
    write_run(out, "spill_fetchrun/1", rows, script="spill_fetchrun_gpu.py", argv=argv, t0=t0,
              method="%clock64 around each warp's loop, cycles per trip = median over the warps of all CTAs / "
                     "n_iter, median over 5 launches after one dropped; one CTA per SM; clocks not locked")
    return 0


def _body(r: dict) -> list:
    """The tile loop of a point's kernel as memsim.warp_issue replays it (kernels.sass.tile_loop_body): from the
    run's cubin, else compiled here for sm_90 (the 09:49 run's file has none: same Triton and ptxas, the same
    registers on every point)."""
    from kernels.sass import disassemble, tile_loop_body
    if r.get("cubin_b64"):
        return tile_loop_body(disassemble(base64.b64decode(r["cubin_b64"])), num_warps=r["num_warps"])
    import torch
    from triton.backends.compiler import GPUTarget
    from kernels.compiled_facts import ARCHS, _specialise
    tgt = GPUTarget("cuda", ARCHS["sm90"][0], 32)
    x = torch.empty(16, dtype=torch.float32, device="meta")
    cyc = torch.empty(16, dtype=torch.int64, device="meta")
    src, options = _specialise(_mb_fetch_run, (x, x, cyc, r["n_iter"]),
                               dict(K=r["K"], P=r["P"], CLUSTER=r["cluster"], C=r["C"], NUM_WARPS=r["num_warps"],
                                    num_warps=r["num_warps"], num_stages=1), tgt)
    ck = triton.compile(src, target=tgt, options=options.__dict__)
    return tile_loop_body(disassemble(ck.asm["cubin"]), num_warps=r["num_warps"])


def analyse(path: str, bodies: str | None = None) -> list:
    """Measured cycles per trip beside the replay of the point's loop (memsim.warp_issue: no fetch), the fetch of
    its code (memsim.issue_fit.fetch_cycles over the loop curve), their MAX (memsim.costs today) and the replay with
    the fetch window (`memsim.fetch_run`: at the curve's rate, and at the rate of the run's own wait-free loop of
    that K where it has one).  `bodies`: a JSON cache of the replay bodies (written if missing)."""
    import memsim
    from memsim import fetch_run
    from memsim.calibration import load_calibration
    from memsim.io import read_json
    from memsim.issue_fit import fetch_cycles
    from memsim.warp_issue import Instr, replay
    cal = load_calibration(memsim.load_hardware("h100-sxm"))
    curve = cal.icache_loop_curve or cal.icache_curve
    doc = read_json(path)
    pv = doc["provenance"]
    print(f"{pv.get('gpu')}, driver {pv.get('driver')}, {pv.get('date')}, torch {pv.get('torch')}, "
          f"triton {pv.get('triton')}")
    pts = [r for r in doc["points"] if r.get("kind") == "fetch_run" and "error" not in r]
    cache = json.load(open(bodies)) if bodies and os.path.exists(bodies) else {}
    own_rate = {}  # K -> cycles per instruction of the run's wait-free loop
    out = []
    print("| K | P | waits | warps x CTAs | instr | KB | measured | replay | fetch | MAX | meas / MAX | window "
          "(curve) | meas / window | window (run's rate) | meas / window |")
    print("| --- " * 15 + "|")
    for r in sorted(pts, key=lambda r: (r["K"], r["P"] != 0)):
        key = f"{r['K']}:{r['P']}:{r['cluster']}:{r['num_warps']}"
        if key not in cache:
            cache[key] = [b.to_list() for b in _body(r)]
        body = [Instr.from_list(x) for x in cache[key]]
        n, k = len(body), r.get("ctas_per_sm", 1)
        meas = r["cycles_per_trip"]
        if r["P"] == 0 and k == 1:
            own_rate[r["K"]] = meas / n
        rp = replay(body, warps_per_cta=r["num_warps"], ctas=k, lat=cal.issue)
        fe = fetch_cycles(curve, n)
        win = replay(body, warps_per_cta=r["num_warps"], ctas=k, lat=cal.issue, fetch=fetch_run.window(curve, n))
        own = own_rate.get(r["K"])
        win_own = replay(body, warps_per_cta=r["num_warps"], ctas=k, lat=cal.issue,
                         fetch=(8 * own, fetch_run.DEPTH_LINES)) if own else None
        lay = "none" if not r["P"] else ("clustered" if r["cluster"] else "spread")
        out.append({"K": r["K"], "P": r["P"], "cluster": r["cluster"], "warps": r["num_warps"], "ctas_per_sm": k,
                    "instructions": n, "measured": meas, "replay": rp, "fetch": fe, "max": max(rp, fe),
                    "window_curve": win, "window_run_rate": win_own, "run_cpi": own})
        wo = f"{win_own:.0f} | {meas / win_own:.2f}" if win_own else "- | -"
        print(f"| {r['K']} | {r['P']} | {lay} | {r['num_warps']} x {k} | {n} | {n * 16 / 1024:.0f} | {meas:.0f} | "
              f"{rp:.0f} | {fe:.0f} | {max(rp, fe):.0f} | {meas / max(rp, fe):.2f} | {win:.0f} | {meas / win:.2f} | "
              f"{wo} |", flush=True)
    if bodies:
        with open(bodies, "w") as fh:
            json.dump(cache, fh)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--budget-s", type=float, default=150.0)
    ap.add_argument("--compile-one", nargs=4, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--analyse", metavar="RUN")
    ap.add_argument("--points", help="K:P:CLUSTER:WARPS:CTAS_PER_SM,... instead of POINTS (e.g. the streams the 09:49 "
                    "run did not reach: 4608:0:0:1:1,4608:0:0:1:2,4608:0:0:1:4,4608:4:1:1:1,4608:4:1:1:2)")
    ap.add_argument("--write-table", metavar="JSON", help="with --analyse: the table as JSON (tests need no compiler)")
    ap.add_argument("--bodies", metavar="JSON", help="with --analyse: cache of the replay bodies (compiling the "
                    "100 KB kernels here takes minutes)")
    a = ap.parse_args(argv)
    if a.compile_one:
        import torch
        run, *_ = _kernel(*a.compile_one, torch.cuda.get_device_properties(0).multi_processor_count)
        run()
        return 0
    if a.analyse:
        t = analyse(a.analyse, a.bodies)
        if a.write_table:
            with open(a.write_table, "w") as fh:
                json.dump({"run": os.path.basename(a.analyse), "points": t}, fh, indent=1)
        return 0
    pts = [tuple(int(v) for v in x.split(":")) for x in a.points.split(",")] if a.points else POINTS
    return gpu(a.out, a.budget_s, argv, pts)


if __name__ == "__main__":
    sys.exit(main())
