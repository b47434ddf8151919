"""Do warps that drift apart in a loop larger than the instruction cache each pay their own fetch? (issue 8, session 17)

Held-out W's r26112704_002 (hopper bwd fp32 d=128: a 14 502-instruction = 232 KB tile loop, 8 warps of one CTA per
SM) ran 2.1x the model: 240 k cycles a trip where the model's trip is max(replay 97-113 k, fetch 86 k) (notes/
spills.md session 16: no_instruction 43 % of its warps' stall samples).  The fetch figure comes from loops whose
warps run in step (the `icache` and `spill_fetch` kernels: one warp, or one CTA's warps issuing the same
instruction at the same time, so a line fetched for one serves all).  W 002's warps wait on their own LDS / LDL at
their own times and drift apart; if each then streams its own part of the loop's code, the SM's fetch is asked for
up to one line stream per warp.

`_mb_fetch_drift` = `spill_fetch`'s `_mb_code_wait` without waits (K independent FFMAs a trip in 8 chains) whose
warp w first spins for w x DELAY cycles (%clock64, before any loop code), then times its own loop with %clock64:
DELAY = 0 keeps the warps in step; a DELAY of about a trip / warps spreads them evenly around the loop (each warp
at another part of the code for the whole run, unless the fetch pulls them together again).  K = 12288 (192 KB of
loop code: past the 128 KB cache) and K = 512 (8 KB: in it, the control), 2 / 4 / 8 warps in one CTA per SM (132
CTAs).  Cycles per loop instruction per warp = the warp's loop cycles / (trips x instructions of a trip), median
over the warps of all CTAs, median over repeats.

    run(command="python3 benchmarks/spill_fetchdrift_gpu.py --out $OUT/spill_fetchdrift.json", timeout_s=170)
    python benchmarks/spill_fetchdrift_gpu.py --show RUN.json     # here: the table

Run 2026-11-27 07:28 UTC (H100 80GB HBM3, 115.8 s): only K = 512 and K = 12288 at 2 warps timed -- the delay was an
integer argument then, and 0 (divisible by 16) and the other delays compiled two kernels each, the second one inside
the timing budget; it is read from memory now (one kernel per K, warps).  A 192 KB loop takes ~50 s of ptxas on the
device (no Triton cache survives between calls; one built here does not load there: libtriton differs between
Python 3.11 and 3.12, and the cache key hashes it).  Next: `--points 12288:8,6912:8 --budget-s 140` (~70 s).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SIZES = (512, 12288)
WARPS = (2, 4, 8)
#: spin per warp index, in cycles: 0 (in step), a little (a few lines apart), "spread" (= the in-step trip / warps)
DELAYS = ("0", "300", "spread")
#: cycles an instruction of the big loop takes in step (spill_fetch 06:16 UTC: 5.96-6.15) -- only to place the spread
STEP_CPI = 6.0

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)  # kernels.sass (issue_latency_gpu.loop_body)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def _clock_after(v):
    """%clock64, read once `v` (float32) is computed (its input: the read cannot move above v's code)."""
    return tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l,f", [v], dtype=tl.int64, is_pure=False, pack=1)


@triton.jit
def _spin(cycles):
    """Each thread spins until `cycles` (int64) have passed on its SM clock; returns 0 (int32)."""
    return tl.inline_asm_elementwise(
        "{\n.reg .u64 t0, t1;\n.reg .pred p;\nmov.u64 t0, %clock64;\nSPIN_DRIFT:\nmov.u64 t1, %clock64;\n"
        "sub.u64 t1, t1, t0;\nsetp.lt.u64 p, t1, $1;\n@p bra SPIN_DRIFT;\nmov.u32 $0, 0;\n}",
        "=r,l", [cycles], dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def _mb_fetch_drift(x_ptr, out_ptr, cyc_ptr, delay_ptr, n_iter, K: tl.constexpr, NUM_WARPS: tl.constexpr):
    """K FFMAs a trip in 8 independent chains, warp w starting w x delay cycles after warp 0 (the delay read from
    memory: one compiled kernel for every delay -- an integer argument specialises on its divisibility by 16)."""
    offs = tl.arange(0, 32 * NUM_WARPS)
    wid = offs // 32
    z = _spin(wid.to(tl.int64) * tl.load(delay_ptr))
    x = tl.load(x_ptr + offs) + z.to(tl.float32)
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


def _kernel_run(k: int, w: int):
    import torch
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    n_iter = max(8, (1 << 21) // k)
    x = torch.rand(32 * w, device="cuda", dtype=torch.float32)
    out = torch.empty(n_sms * 32 * w, device="cuda", dtype=torch.float32)
    cyc = torch.empty(n_sms * w, device="cuda", dtype=torch.int64)
    dly = torch.zeros(1, device="cuda", dtype=torch.int64)

    def run(delay: int):
        dly.fill_(delay)
        return _mb_fetch_drift[(n_sms,)](x, out, cyc, dly, n_iter, K=k, NUM_WARPS=w, num_warps=w, num_stages=1)
    return run, cyc, n_iter, n_sms


def _points(k: int, w: int, repeats: int) -> list:
    import torch
    run, cyc, n_iter, n_sms = _kernel_run(k, w)
    ck = run(0)
    torch.cuda.synchronize()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from issue_latency_gpu import loop_body
    body, unroll = loop_body(ck.asm["cubin"])
    per_trip = len(body) / max(1, unroll)  # instructions of one source trip
    rows = []
    for d in DELAYS:
        delay = int(d) if d != "spread" else int(STEP_CPI * per_trip / w)
        cpis, spreads = [], []
        for r in range(repeats + 1):
            run(delay)
            torch.cuda.synchronize()
            if r == 0:
                continue
            c = [v / (n_iter * per_trip) for v in cyc.cpu().tolist()]
            cpis.append(statistics.median(c))
            spreads.append(max(c) / min(c))
        rows.append({"kind": "fetch_drift", "K": k, "num_warps": w, "delay": d, "delay_cycles": delay,
                     "n_iter": n_iter, "ctas": n_sms, "loop_instructions": len(body), "iterations_per_trip": unroll,
                     "code_bytes": 16 * len(body), "regs": int(ck.n_regs), "spills": int(ck.n_spills),
                     "cpi_repeats": cpis, "cpi_median": statistics.median(cpis),
                     "warp_max_over_min": statistics.median(spreads)})
        print(f"K={k} w{w} delay {d} ({delay} cyc): {rows[-1]['cpi_median']:.2f} cycles / instr / warp "
              f"({len(body)} instr, warps max/min {rows[-1]['warp_max_over_min']:.3f})", flush=True)
    return rows


def show(path: str) -> int:
    doc = json.load(open(path))
    pv = doc["provenance"]
    print(f"{pv['gpu']}, {pv['date']}, triton {pv['triton']}")
    by = {(p["K"], p["num_warps"], p["delay"]): p for p in doc["points"] if p.get("kind") == "fetch_drift"}
    print("| K | code KB | warps | cpi in step | +300 cycles a warp | spread | spread / in step |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for k, w in sorted({(p["K"], p["num_warps"]) for p in doc["points"] if p.get("kind") == "fetch_drift"}):
        if True:
            p = [by.get((k, w, d)) for d in DELAYS]
            if not all(p):
                continue
            print(f"| {k} | {p[0]['code_bytes'] / 1024:.0f} | {w} | {p[0]['cpi_median']:.2f} | {p[1]['cpi_median']:.2f} | "
                  f"{p[2]['cpi_median']:.2f} | {p[2]['cpi_median'] / p[0]['cpi_median']:.2f} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out")
    ap.add_argument("--show", metavar="RUN")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile-one", nargs=2, type=int, metavar=("K", "W"), help=argparse.SUPPRESS)
    ap.add_argument("--budget-s", type=float, default=120.0, help="(GPU) no new kernel after this many seconds")
    ap.add_argument("--points", help="K:W,K:W,... instead of every SIZES x WARPS (e.g. 12288:8,6912:8)")
    ap.add_argument("--no-precompile", action="store_true", help="skip the parallel compile processes")
    a = ap.parse_args(argv)
    if a.show:
        return show(a.show)
    if a.compile_one:
        run, *_ = _kernel_run(*a.compile_one)
        run(0)
        return 0
    todo = [tuple(int(v) for v in kw.split(":")) for kw in a.points.split(",")] if a.points else \
        [(k, w) for k in SIZES for w in WARPS]
    t0 = time.time()
    procs = [] if a.no_precompile else [
        subprocess.Popen([sys.executable, os.path.abspath(__file__), "--compile-one", str(k), str(w)]) for k, w in todo]
    for p in procs:
        try:
            p.wait(timeout=max(5.0, 0.7 * a.budget_s - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
    print(f"compiled in {time.time() - t0:.0f} s", flush=True)
    rows = []
    for k, w in todo:
        if time.time() - t0 > a.budget_s:
            rows.append({"K": k, "num_warps": w, "error": "budget"})
            continue
        try:
            rows += _points(k, w, a.repeats)
        except Exception as e:  # noqa: BLE001 -- recorded, not fatal
            rows.append({"K": k, "num_warps": w, "error": f"{type(e).__name__}: {str(e)[:300]}"})
            print(rows[-1], flush=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import write_run
    write_run(a.out, "spill_fetchdrift/1", rows, script="spill_fetchdrift_gpu.py", argv=argv, t0=t0,
              method="%clock64 around each warp's loop (after its spin), cycles per loop instruction per warp, median "
                     "over the warps of all CTAs, median over repeats after one dropped launch; one CTA per SM; "
                     "clocks not locked")
    show(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
