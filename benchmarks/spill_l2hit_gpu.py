"""What an L2-hit spill reload costs a loop on the card, beside what the SASS replay charges (issue 8, session 18).

With the spill reloads aged from their last access at the L2 (MEMSIM_SPILL_LRU, the default since the sixteenth
session) the model waits far fewer reloads at the DRAM latency, and the spilling loops whose reloads now hit the L2
run 5-20 % too fast (fp32 flash1, fp32 flash2 / hopper_ws backward: r61126_001, r2611261_005, r26112620_008,
r26112706_015).  Their tile loops are big -- 21-47 k SASS instructions, 335-734 KB of code, far past the 128 KB
instruction cache -- and the model takes a trip as max(replay with the reload waits, fetch of the code)
(memsim.costs; `spill_fetch`, session 16: a 192 KB loop's fetch and its MUFU waits overlapped, 1.10x the larger).
Two questions, one call:

* **the spilling loop** (`_mb_spill_unroll`): `_mb_spill_sm`'s body (a 256 x 64 fp32 tile read and rewritten every
  step: ptxas spills most of it, one warp) unrolled U times per trip -- U = 1: 2983 SASS instructions (47 KB of
  code, the calibration's f2976), U = 3 and 4: ~150 / 204 KB.  The reloads hit L1 (no shared memory: 256 KB of L1,
  one CTA per SM) or miss it and hit the L2 (8 KB of dynamic shared memory: Triton's loader leaves 28 KB of L1;
  `spill_sm` carveout / chain plans: m = 0.96-1.00 even at one CTA), at 1, 2 and 4 resident CTAs per SM on 33 SMs
  (GPU footprint <= 15 MB: under the L2's dirty capacity, no write-back, no L2 miss).  %clock64 around the loop per
  CTA (cycles per trip = median over CTAs / n_iter), and the event time.  The replay (here, `--analyse`: compiled
  for sm_90 on the CPU) at L1 and at the L2 latency, and the fetch of the code: does the L2-latency part add to the
  fetch (SUM) or hide under it (MAX, memsim.costs)?
* **the chase** (`_mb_l2_chase`): one warp per CTA walks 256 lines 256 B apart in dependent warp loads of 32 x 4 B
  (`.cg`: L1 bypassed), the next address depending on the value loaded; the lines READ by the same CTA in the
  previous launch (the `load_latency` / `spill_rowchain` pattern: 296-312 cycles) or WRITTEN by the same CTA just
  before the walk (a spill reload's case: the line was stored by this SM and sits dirty in the L2).  1 and 4 CTAs
  per SM on all SMs.

    run(command="python3 benchmarks/spill_l2hit_gpu.py --out $OUT/spill_l2hit.json --budget-s 110", timeout_s=150)
    (run 2026-11-27 08:13 UTC, H100 80GB HBM3, driver 580.159.04, 57 s: verification/data/nvidia-h100-80gb-hbm3/
    calibration/spill_l2hit-2026-11-27T0813.json.gz + .log)
    python benchmarks/spill_l2hit_gpu.py --analyse RUN.json [--write-table T.json]   # here: the replay of the
                                                             # run's own cubins beside each point

Data only (no assertion but the chase's checksum).
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
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

ROWS, COLS = 256, 64
UNROLLS = (1, 3, 4)
SMS_USED = 33
#: (U, dynamic shared memory, CTAs per SM): the L1-hit reference at one CTA, the L2-hit points at 1, 2, 4
SPILL_POINTS = [(u, smem, k) for u in UNROLLS for smem, k in ((0, 1), (8 << 10, 1), (8 << 10, 2), (8 << 10, 4))]
#: n_iter per U (a launch of ~1-3 ms)
N_ITER = {1: 96, 3: 40, 4: 32}
CHASE_DEP, CHASE_STEP_B = 256, 256
#: (mode, CTAs per SM)
CHASE_POINTS = [("read", 1), ("written", 1), ("read", 4), ("written", 4)]

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def _smid():
    return tl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _clock():
    return tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)


@triton.jit
def _mb_spill_unroll(src_ptr, out_ptr, sm_ptr, cyc_ptr, n_iter, n_sms_used, ROWS: tl.constexpr, COLS: tl.constexpr,
                     U: tl.constexpr):
    """`_mb_spill_sm` with its step unrolled U times per trip (U x the code, the same kind of instructions); the CTAs
    on SMs >= n_sms_used exit at once; each CTA writes its SM and the cycles of its loop."""
    pid = tl.program_id(0).to(tl.int64)
    sm = _smid()
    tl.store(sm_ptr + pid, sm)
    if sm < n_sms_used:
        offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        x = tl.load(src_ptr + pid * ROWS * COLS + offs)
        t0 = _clock()
        for _ in range(n_iter):
            for _u in tl.static_range(U):
                s = tl.sum(x, axis=1)
                x = x * 0.5 + s[:, None] * 0.001
        t1 = _clock()
        tl.store(out_ptr + pid * ROWS * COLS + offs, x)
        tl.store(cyc_ptr + pid, t1 - t0)


@triton.jit
def _mb_l2_chase(buf_ptr, zero_ptr, out_ptr, cyc_ptr, n_dep, step, WRITE: tl.constexpr):
    """One warp per CTA walks its own region: n_dep dependent warp loads (.cg) of 32 contiguous int32, `step`
    elements apart, the next address adding (v & zero) (zero read from memory: ptxas cannot drop the wait).  WRITE:
    the CTA first stores every line it will walk (the lines sit dirty in the L2, stored by this SM)."""
    pid = tl.program_id(0).to(tl.int64)
    lanes = tl.arange(0, 32)
    base = pid * n_dep * step
    zero = tl.load(zero_ptr)
    if WRITE:
        for i in range(n_dep):
            tl.store(buf_ptr + base + i * step + lanes, (lanes + i + pid).to(tl.int32))
    off = base + lanes
    acc = tl.zeros([32], dtype=tl.int32)
    t0 = _clock()
    for i in range(n_dep):
        v = tl.load(buf_ptr + off, cache_modifier=".cg")
        acc += v
        off = off + step + (v & zero).to(tl.int64)
    t1 = _clock()
    tl.store(out_ptr + pid * 32 + lanes, acc)
    tl.store(cyc_ptr + pid + lanes * 0, t1 - t0, mask=lanes == 0)


def _with_shared(kern, smem: int, args, kw):
    """A CompiledKernel of `kern` that Triton launches with `smem` bytes of dynamic shared memory (spill_sm_gpu.py's
    helper: its loader then applies the > 48 KB rule as for a kernel that allocates them).  Launch it as
    ``ck[grid](*args, *constexprs)``."""
    from triton.compiler import CompiledKernel, make_backend
    ck0 = kern.warmup(*args, grid=(1,), **kw)
    if hasattr(ck0, "result"):
        ck0 = ck0.result()
    ck = CompiledKernel(ck0.src, ck0.metadata_group, ck0.hash)
    ck.metadata = ck.metadata._replace(shared=int(smem))
    ck.packed_metadata = make_backend(ck.metadata.target).pack_metadata(ck.metadata)
    return ck


def _compile_one(u: int) -> None:
    """(child process) compile U's kernel into Triton's cache."""
    import torch
    n = torch.cuda.get_device_properties(0).multi_processor_count
    src = torch.rand(n * ROWS * COLS, device="cuda")
    smid = torch.empty(n, dtype=torch.int32, device="cuda")
    cyc = torch.empty(n, dtype=torch.int64, device="cuda")
    # the same integer arguments as the timed launch (Triton specialises an int on == 1 and on divisibility by 16)
    _mb_spill_unroll.warmup(src, src, smid, cyc, N_ITER[u], SMS_USED, ROWS=ROWS, COLS=COLS, U=u, num_warps=1,
                            grid=(1,))


def _spill_point(u: int, smem: int, k: int) -> dict:
    import torch
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    ctas, n_iter = n_sms * k, N_ITER[u]
    src = torch.rand(ctas * ROWS * COLS, device="cuda", dtype=torch.float32)
    out = torch.empty_like(src)
    smid = torch.full((ctas,), -1, device="cuda", dtype=torch.int32)
    cyc = torch.zeros(ctas, device="cuda", dtype=torch.int64)
    args = (src, out, smid, cyc, n_iter, SMS_USED)
    ck = _with_shared(_mb_spill_unroll, smem, args, dict(ROWS=ROWS, COLS=COLS, U=u, num_warps=1))

    def run():
        ck[(ctas, 1, 1)](*args, ROWS, COLS, u)
    run()
    torch.cuda.synchronize()
    # correctness gate: the working CTAs' tiles against the same recurrence in float64
    ids = smid.cpu()
    work = [i for i in range(ctas) if 0 <= int(ids[i]) < SMS_USED][:4]
    for i in work:
        x = src[i * ROWS * COLS:(i + 1) * ROWS * COLS].view(ROWS, COLS).double()
        for _ in range(n_iter * u):
            x = x * 0.5 + x.sum(1, keepdim=True) * 0.001
        got = out[i * ROWS * COLS:(i + 1) * ROWS * COLS].view(ROWS, COLS).double()
        err = ((got - x).norm() / x.norm()).item()
        assert err < 1e-4, f"spill U={u}: relative error {err}"
    times, cycles = [], []
    for _ in range(7):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        run()
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1) * 1e-3)
        c = cyc.cpu().tolist()
        cycles.append(statistics.median(c[i] for i in range(ctas) if 0 <= int(ids[i]) < SMS_USED))
    per_sm: dict = {}
    for s in ids.tolist():
        if 0 <= s < SMS_USED:
            per_sm[s] = per_sm.get(s, 0) + 1
    return {"kind": "spill", "U": u, "dynamic_smem": smem, "ctas_per_sm": k, "sms_used": SMS_USED, "ctas": ctas,
            "n_iter": n_iter, "regs": int(ck.n_regs), "spills": int(ck.n_spills),
            "ctas_working": sum(per_sm.values()), "ctas_per_sm_max": max(per_sm.values()) if per_sm else 0,
            "time_s_repeats": times, "cycles_repeats": cycles,
            "cycles_per_trip": statistics.median(cycles) / n_iter,
            "cubin_b64": base64.b64encode(ck.asm["cubin"]).decode() if k == 1 and smem == 0 else None}


def _chase_point(mode: str, k: int) -> dict:
    import torch
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    ctas, step = n_sms * k, CHASE_STEP_B // 4
    buf = torch.randint(0, 1 << 20, (ctas * CHASE_DEP * step + 64,), dtype=torch.int32, device="cuda")
    torch.empty(64 << 20, dtype=torch.float32, device="cuda").fill_(1.0)  # 256 MB: the fill's dirty lines leave the L2
    zero = torch.zeros(1, dtype=torch.int32, device="cuda")
    out = torch.empty(ctas * 32, dtype=torch.int32, device="cuda")
    cyc = torch.empty(ctas, dtype=torch.int64, device="cuda")
    write = mode == "written"
    cycles = []
    for r in range(6):  # r = 0: compile and (read) warm the L2 with this CTA's lines
        _mb_l2_chase[(ctas,)](buf, zero, out, cyc, CHASE_DEP, step, WRITE=write, num_warps=1, num_stages=1)
        torch.cuda.synchronize()
        if r:
            cycles.append(statistics.median(cyc.cpu().tolist()))
    b = buf[:ctas * CHASE_DEP * step].view(ctas, CHASE_DEP, step)[:, :, :32].to(torch.int64)
    ref = b.sum(1).to(torch.int32).flatten()
    assert torch.equal(ref, out), "chase: wrong checksum"
    c = statistics.median(cycles)
    return {"kind": "chase", "mode": mode, "ctas_per_sm": k, "ctas": ctas, "n_dep": CHASE_DEP,
            "step_bytes": CHASE_STEP_B, "cycles_repeats": cycles, "cycles_per_load": c / CHASE_DEP}


def gpu(out: str, budget_s: float, argv) -> int:
    t0 = time.time()
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--compile-one", str(u)]) for u in UNROLLS]
    rows = []
    for kind, pts in (("chase", CHASE_POINTS),):
        for p in pts:
            try:
                rows.append(_chase_point(*p))
            except Exception as e:  # noqa: BLE001 -- recorded, not fatal
                rows.append({"kind": kind, "point": list(p), "error": f"{type(e).__name__}: {str(e)[:300]}"})
            print({k: v for k, v in rows[-1].items() if k != "cycles_repeats"}, flush=True)
    for p in procs:
        try:
            p.wait(timeout=max(5.0, 0.8 * budget_s - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
    print(f"compiled in {time.time() - t0:.0f} s", flush=True)
    for p in sorted(SPILL_POINTS, key=lambda p: (p[0] != 1, p)):
        if time.time() - t0 > budget_s:
            rows.append({"kind": "spill", "point": list(p), "error": "budget"})
            continue
        try:
            rows.append(_spill_point(*p))
        except Exception as e:  # noqa: BLE001
            rows.append({"kind": "spill", "point": list(p), "error": f"{type(e).__name__}: {str(e)[:300]}"})
        r = rows[-1]
        print(r if "error" in r else f"U={r['U']} smem={r['dynamic_smem']} k={r['ctas_per_sm']}: "
              f"{r['cycles_per_trip']:.0f} cycles/trip ({min(r['cycles_repeats']) / r['n_iter']:.0f}.."
              f"{max(r['cycles_repeats']) / r['n_iter']:.0f}), {r['time_s_repeats'][len(r['time_s_repeats']) // 2] * 1e3:.3f} ms, "
              f"regs {r['regs']}, ctas/SM max {r['ctas_per_sm_max']}", flush=True)
        with open(out + ".partial", "w") as fh:
            json.dump(rows, fh)
    sys.path.insert(0, HERE)
    from run_file import write_run
    write_run(out, "spill_l2hit/1", rows, script="spill_l2hit_gpu.py", argv=argv, t0=t0,
              method="%clock64 around the loop per CTA, median over working CTAs and over 7 launches (spill) / 5 "
                     "(chase); no ncu; clocks not locked")
    return 0


def _replay_entry(iss: dict, lp: dict, regs: int, cal) -> dict:
    from memsim.issue_fit import fetch_cycles
    return {"instructions": iss["tile_instructions"], "l1": iss["tile_cycles"], "l2": iss["tile_cycles_local_l2"],
            "fetch": fetch_cycles(cal.icache_loop_curve or cal.icache_curve, iss["tile_instructions"]),
            "regs": regs, "local_load_bytes": lp["local_load_bytes"], "local_store_bytes": lp["local_store_bytes"],
            "local": lp["local"]}


def _show_replay(u: int, v: dict, src: str) -> None:
    print(f"U={u} ({src}): {v['instructions']} instructions ({v['instructions'] * 16 / 1024:.0f} KB), regs {v['regs']}, "
          f"local ld/st {v['local_load_bytes']} / {v['local_store_bytes']} B per trip, replay L1 "
          f"{[round(c) for c in v['l1'][:4]]}, L2 {[round(c) for c in v['l2'][:4]]}, fetch {v['fetch']:.0f}", flush=True)


def replay_variants(unrolls=UNROLLS) -> dict:
    """(here) `kernels.compiled_facts.compile_launch` of each U compiled for sm_90 on the CPU: the tile loop's
    instructions, the replay at 1..k resident CTAs with reloads at L1 (`tile_cycles`) and at the L2 latency
    (`tile_cycles_local_l2`), and the loop fetch (memsim.issue_fit.fetch_cycles over the loop curve)."""
    import torch
    import memsim
    from kernels.compiled_facts import compile_launch
    from memsim.calibration import load_calibration
    cal = load_calibration(memsim.load_hardware("h100-sxm"))
    out = {}
    for u in unrolls:
        src = torch.empty(16, dtype=torch.float32, device="meta")
        sm = torch.empty(16, dtype=torch.int32, device="meta")
        cyc = torch.empty(16, dtype=torch.int64, device="meta")
        f = compile_launch(_mb_spill_unroll, (src, src, sm, cyc, N_ITER[u], SMS_USED),
                           dict(ROWS=ROWS, COLS=COLS, U=u, num_warps=1))
        out[u] = _replay_entry(f["issue"], f["loop"], f["regs_per_thread"], cal)
        _show_replay(u, out[u], "compiled here")
    return out


def replay_run(rows: list) -> dict:
    """(here) The replay of the cubins the run itself launched (kept in its U's one-CTA L1 point), as
    kernels.compiled_facts.issue_facts replays a table entry's SASS."""
    import memsim
    from kernels.compiled_facts import issue_facts
    from kernels.sass import disassemble, tile_loop
    from memsim.calibration import load_calibration
    cal = load_calibration(memsim.load_hardware("h100-sxm"))
    out = {}
    for r in rows:
        if r.get("kind") != "spill" or not r.get("cubin_b64"):
            continue
        text = disassemble(base64.b64decode(r["cubin_b64"]))
        iss = issue_facts(text, "sm90", num_warps=1, regs=r["regs"], shared=0)
        out[r["U"]] = _replay_entry(iss, tile_loop(text).to_dict(), r["regs"], cal)
        _show_replay(r["U"], out[r["U"]], "the run's cubin")
    return out


def analyse(path: str, replay: dict | None = None) -> list:
    from memsim.io import read_json  # plain or gzipped
    doc = read_json(path)
    rows = doc["points"]
    print(f"{doc['provenance']['gpu']}, {doc['provenance']['date']}")
    for r in rows:
        if r.get("kind") == "chase" and "error" not in r:
            print(f"chase {r['mode']:8s} {r['ctas_per_sm']} CTA/SM: {r['cycles_per_load']:.1f} cycles per load")
    rep = replay or replay_run(rows) or replay_variants(sorted({r["U"] for r in rows if r.get("kind") == "spill" and "U" in r}))
    print("| U | KB | L1/L2 | k | measured cycles/trip | replay L1 | replay L2 | fetch | MAX (memsim) | SUM | "
          "meas / MAX | meas / SUM |")
    print("| --- " * 12 + "|")
    out = []
    for r in rows:
        if r.get("kind") != "spill" or "error" in r:
            continue
        v, k = rep[r["U"]], r["ctas_per_sm"]
        l1, l2 = v["l1"][min(k, len(v["l1"])) - 1], v["l2"][min(k, len(v["l2"])) - 1]
        rl = l2 if r["dynamic_smem"] else l1
        mx, sm = max(rl, v["fetch"]), rl + v["fetch"]
        meas = r["cycles_per_trip"]
        out.append({"U": r["U"], "smem": r["dynamic_smem"], "k": k, "meas": meas, "replay": rl, "fetch": v["fetch"],
                    "max": mx, "sum": sm})
        print(f"| {r['U']} | {v['instructions'] * 16 / 1024:.0f} | {'L2' if r['dynamic_smem'] else 'L1'} | {k} | "
              f"{meas:.0f} | {l1:.0f} | {l2:.0f} | {v['fetch']:.0f} | {mx:.0f} | {sm:.0f} | {meas / mx:.2f} | "
              f"{meas / sm:.2f} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--budget-s", type=float, default=120.0)
    ap.add_argument("--compile-one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--analyse", metavar="RUN")
    ap.add_argument("--write-table", metavar="JSON", help="with --analyse: the table (measured beside the replay of "
                    "the run's own cubins) as JSON, for tests/test_spill_l2hit.py (no compiler needed there)")
    a = ap.parse_args(argv)
    if a.compile_one is not None:
        _compile_one(a.compile_one)
        return 0
    if a.analyse:
        table = analyse(a.analyse)
        if a.write_table:
            from memsim.io import read_json
            doc = read_json(a.analyse)
            chase = [{k: r[k] for k in ("mode", "ctas_per_sm", "cycles_per_load")} for r in doc["points"]
                     if r.get("kind") == "chase" and "error" not in r]
            with open(a.write_table, "w") as fh:
                json.dump({"run": os.path.basename(a.analyse), "provenance": doc["provenance"], "chase": chase,
                           "spill": table}, fh, indent=1)
        return 0
    return gpu(a.out, a.budget_s, argv)


if __name__ == "__main__":
    sys.exit(main())
