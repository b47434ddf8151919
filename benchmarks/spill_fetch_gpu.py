"""Do instruction-fetch stalls add to a loop's data waits, or hide under them? (issue 8, session 16; one device call)

Held-out W's r26112704_002 (hopper bwd fp32 d=128: a 14 502-instruction = 232 KB tile loop with 1859 spill
instructions, 8 warps per SM) ran 2x the model: ncu's stall samples put 43 % of its warps' time on "no
instruction" (fetch), 24 % on LDS and 17 % on LDL/LDG waits (reports/h100-sxm/spills-session16/stalls.txt).  The
model takes a trip as max(replay, fetch of its code) (memsim.costs, `issue_fit.fetch_cycles`: the `icache` curve,
measured on loops of independent FFMAs with no waits, one warp or one lockstep CTA).  If a warp that waits for its
code cannot wait for its data at the same time, the two add.

`_mb_code_wait`: the `icache` kernel (K independent FFMAs a trip, 8 accumulators, unrolled) plus, when WAIT > 0,
a dependent MUFU.EX2 every WAIT groups of 8 FFMAs (of a running accumulator, into it: a short-scoreboard wait of
~20-25 cycles each, as W 002's LDS operands are; a dependent L1-hit load chain took ptxas minutes to compile).  K = 512 (about 10 KB of code: in
the instruction cache) and K = 12288 (about 210 KB: W 002's size), WAIT = 0 / 1, 1, 4 and 8 warps in one CTA per
SM (132 CTAs).  All 12 variants compiled first in parallel processes, then timed (triton.testing.do_bench median,
L2 not relevant: the data is a 4 KB table).  Cycles per instruction of the trip from ncu-free timing at the SM
clock of the run (nvidia-smi's at start; the FFMA kernels run at ~1.98 GHz on this card).

    run(command="python3 benchmarks/spill_fetch_gpu.py --out $OUT/spill_fetch.json --budget-s 125", timeout_s=160)
    (run 2026-11-27 06:16 UTC, H100 80GB HBM3: verification/data/nvidia-h100-80gb-hbm3/calibration/
    run-2026-11-27T0616-spill_fetch.json, 98.4 s)
    python benchmarks/spill_fetch_gpu.py --analyse RUN.json     # here: per warps, MAX vs SUM of the two costs

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SIZES = (512, 12288)
WAITS = (0, 1)
WARPS = (1, 4, 8)


import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def _mb_code_wait(x_ptr, t_ptr, out_ptr, n_iter, K: tl.constexpr, NUM_WARPS: tl.constexpr, WAIT: tl.constexpr):
    """K FFMAs a trip in 8 independent chains; with WAIT > 0 a dependent MUFU.EX2 on the first chain every WAIT groups
    of 8 (t_ptr unused: kept so the launch signature stays)."""
    offs = tl.arange(0, 32 * NUM_WARPS)
    x = tl.load(x_ptr + offs)
    a0 = x
    a1 = x + 1.0
    a2 = x + 2.0
    a3 = x + 3.0
    a4 = x + 4.0
    a5 = x + 5.0
    a6 = x + 6.0
    a7 = x + 7.0
    for i in range(n_iter):
        for j in tl.static_range(K // 8):
            if WAIT > 0:
                if j % WAIT == 0:
                    # a dependent MUFU (short scoreboard, ~20 cycles): a0 waits for it before its next FFMA.  (An
                    # L1-hit load chain in its place took ptxas 200 s at K = 4096: too slow for a device call)
                    v = tl.exp2(a0 * -0.001)
                    a0 = a0 * 0.999 + v * 0.001
                else:
                    a0 = a0 * 0.999 + 0.001
            else:
                a0 = a0 * 0.999 + 0.001
            a1 = a1 * 0.999 + 0.002
            a2 = a2 * 0.999 + 0.003
            a3 = a3 * 0.999 + 0.004
            a4 = a4 * 0.999 + 0.005
            a5 = a5 * 0.999 + 0.006
            a6 = a6 * 0.999 + 0.007
            a7 = a7 * 0.999 + 0.008
    tl.store(out_ptr + tl.program_id(0) * 32 * NUM_WARPS + offs, a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7)


def _point(k: int, w: int, wait: int, time_it: bool) -> dict:
    import torch
    kern = _mb_code_wait
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    n_iter = max(4, (1 << 21) // k)
    x = torch.rand(32 * w, device="cuda", dtype=torch.float32)
    t = torch.rand(1024, device="cuda", dtype=torch.float32)
    out = torch.empty(n_sms * 32 * w, device="cuda", dtype=torch.float32)

    def run():
        return kern[(n_sms,)](x, t, out, n_iter, K=k, NUM_WARPS=w, WAIT=wait, num_warps=w, num_stages=1)
    ck = run()
    torch.cuda.synchronize()
    row = {"K": k, "num_warps": w, "wait": wait, "n_iter": n_iter, "ctas": n_sms, "regs": int(ck.n_regs),
           "spills": int(ck.n_spills)}
    if time_it:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from issue_latency_gpu import loop_body
        body, unroll = loop_body(ck.asm["cubin"])
        row.update(time_s=triton.testing.do_bench(run, warmup=5, rep=40, return_mode="median") * 1e-3,
                   loop_instructions=len(body), code_bytes=16 * len(body), iterations_per_trip=unroll,
                   ldg=sum(1 for b in body if "MUFU" in str(b)))
    return row


def merge(run_path: str, into: str, *, replace: bool = False) -> int:
    """Set the run's points as `into`'s `spill_fetch` fact: its loop points without waits extend the fetch curve
    of loop bodies (memsim.issue_fit.icache_loop_curve_from: a 192 KB loop at the 256 KB rate)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import load_runs, merge_fact
    run = load_runs([run_path], "spill_fetch")[0]
    merge_fact(into, "spill_fetch", [p | {"date": run["provenance"]["date"]} for p in run["points"]], run=run,
               run_path=run_path, replace=replace,
               note="the icache loop (K independent FFMAs) at 8 and 192 KB of code, with and without a dependent "
                    "MUFU every 8 FFMAs, 1 / 4 / 8 warps of one CTA per SM: the loop points without waits extend "
                    "the fetch curve of loop bodies")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out")
    ap.add_argument("--merge", metavar="RUN", help="set the run's points as --into's spill_fetch fact")
    ap.add_argument("--into", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                   "memsim", "presets", "h100-sxm.calibration.json"))
    ap.add_argument("--replace", action="store_true")
    ap.add_argument("--compile-one", nargs=3, type=int, metavar=("K", "W", "WAIT"), help=argparse.SUPPRESS)
    ap.add_argument("--analyse", metavar="RUN")
    ap.add_argument("--clock-hz", type=float, default=1.98e9)
    ap.add_argument("--budget-s", type=float, default=140.0, help="(GPU) no new point after this many seconds")
    a = ap.parse_args(argv)
    if a.compile_one:
        _point(*a.compile_one, time_it=False)
        return 0
    if a.merge:
        return merge(a.merge, a.into, replace=a.replace)
    if a.analyse:
        return analyse(a.analyse)
    t0 = time.time()
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--compile-one", str(k), str(w), str(wt)])
             for k in SIZES for w in WARPS for wt in WAITS]
    for p in procs:
        try:
            p.wait(timeout=max(5.0, 0.75 * a.budget_s - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
    print(f"compiled in {time.time() - t0:.0f} s", flush=True)
    clock = None
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
        clock = float(q.split()[0]) * 1e6
    except Exception:  # noqa: BLE001
        pass
    rows = []
    for k in SIZES:
        for w in WARPS:
            for wt in WAITS:
                if time.time() - t0 > a.budget_s:
                    rows.append({"K": k, "num_warps": w, "wait": wt, "error": "budget"})
                    continue
                try:
                    rows.append(_point(k, w, wt, time_it=True))
                except Exception as e:  # noqa: BLE001 -- recorded, not fatal
                    rows.append({"K": k, "num_warps": w, "wait": wt, "error": f"{type(e).__name__}: {str(e)[:200]}"})
                r = rows[-1]
                print(r if "error" in r else
                      f"K={k} w{w} wait{wt}: {r['time_s'] / r['n_iter'] * 1e9:.0f} ns/trip, {r['loop_instructions']} "
                      f"instr ({r['code_bytes'] / 1024:.0f} KB), {r['ldg']} MUFU", flush=True)
                with open(a.out + ".partial", "w") as fh:  # a run stopped at its limit keeps what it timed
                    json.dump(rows, fh)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import write_run
    write_run(a.out, "spill_fetch/1", rows, script="spill_fetch_gpu.py", argv=argv, t0=t0,
              method="triton.testing.do_bench median (warmup 5 ms, rep 40 ms); one CTA per SM; clocks not locked; "
                     f"nvidia-smi clocks.max.sm {clock}")
    analyse(a.out, clock or a.clock_hz)
    return 0


def analyse(path: str, clock: float = 1.98e9) -> int:
    """Cycles per loop instruction per warp: the in-cache loop (K = 512) gives the loop's own rate (data waits), the
    no-wait big loop the fetch rate; the waiting big loop against MAX (today's costs) and SUM of the excesses."""
    doc = json.load(open(path))
    rows = doc["points"] if isinstance(doc, dict) and "points" in doc else doc
    by = {(r["K"], r["num_warps"], r["wait"]): r for r in rows if "time_s" in r}

    def cpi(r):  # per instruction of one iteration of the source loop (LLVM may unroll it)
        return r["time_s"] / r["n_iter"] * clock / (r["loop_instructions"] / max(1, r["iterations_per_trip"]))
    print(f"| warps | cpi small no-wait | small wait | big no-wait (fetch) | big wait | MAX | SUM | big wait / MAX "
          f"| / SUM |  (cycles per loop instruction per warp at {clock / 1e9:.2f} GHz)")
    print("| --- " * 9 + "|")
    big, small = max(SIZES), min(SIZES)
    for w in WARPS:
        try:
            s0, s1 = cpi(by[(small, w, 0)]), cpi(by[(small, w, WAITS[-1])])
            b0, b1 = cpi(by[(big, w, 0)]), cpi(by[(big, w, WAITS[-1])])
        except KeyError:
            continue
        mx, sm = max(s1, b0), s1 + (b0 - s0)
        print(f"| {w} | {s0:.2f} | {s1:.2f} | {b0:.2f} | {b1:.2f} | {mx:.2f} | {sm:.2f} | {b1 / mx:.2f} | "
              f"{b1 / sm:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
