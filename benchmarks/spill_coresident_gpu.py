"""Do co-resident CTAs slow an fp32 spilling loop beyond its replay, and on what do they wait? (issue 8, spills s20)

The live fp32 spilling launches split by the warps an SM holds (notes/spills.md session 19): one warp per SM +8 %
(model too slow), two or more -17 % (62 launches; 2-3 warps per SM -20 %), whatever the loop's size, its fetch over
replay or its reload placement (session 20's CPU tables: correlation of the signed error with fetch / replay -0.04,
with log code size +0.05, with m -0.13; the model's m inside ncu's bounds on most).  The replay
(memsim.warp_issue) runs co-resident warps side by side on their own schedulers, sharing only the shared-memory
port and the barriers, so a latency-bound trip takes about the same at 1, 2 or 3 resident CTAs; session 18's
`_mb_spill_unroll` (FFMA + LDL/STL only) ran so on the card (1.04-1.06x at 1 / 2 / 4 CTAs).  The live loops do not.

This takes one live loop as compiled -- r61126_001's `_flash1_fwd` (fp32 d=128, 32 x 32 tiles, one warp, two
stages, causal bottom-right, GQA 13; a 21 447-instruction = 335 KB tile loop, 5896 B of local memory per thread;
live: 2 CTAs per SM, -23 %, 1.51x its all-L2 replay) -- and changes only the CTAs per SM: B x 13 heads = 65, 130,
260, 390 one-warp CTAs (1 per SM on half the SMs, 1, 2, 3 per SM), seq_q 5, seq_kv 512 and 1024 (16 / 32 trips a
CTA, every CTA the same walk).  The kernel's 33 KB of shared memory make the driver take the 228 KB carve-out
whatever the grid (6 CTAs fit: 28 KB of L1), so the reload placement is the same at every k (m ~ 1; ncu checks).
Per point: do_bench's median (L2 cleared), and the trip = the slope between the two seq_kv.  Then ncu (warp
states, scheduler, per-instruction stall samples, local-load L1 hits, DRAM bytes) on the 65-, 130- and 260-CTA launches at seq_kv
512: which stall reason grows when a second CTA shares the SM.

    run(command="python3 benchmarks/spill_coresident_gpu.py --out $OUT", timeout_s=200)
    python benchmarks/spill_coresident_gpu.py --analyse RUN_DIR|RUN.json[.gz]   # here: the model beside each point
    (run 2026-11-27 12:23 UTC, H100 80GB HBM3, driver 580.159.04, 61.6 s: verification/data/nvidia-h100-80gb-hbm3/
    calibration/spill_coresident-2026-11-27T1223.json.gz + .log; ncu pages in reports/h100-sxm/spills-session20/)

`--plan blocker` (the second call): the same kernel at 2 (3) CTAs per SM WITHOUT more CTAs on the GPU -- a
`_blocker` kernel (one warp, 200 KB of dynamic shared memory, spinning on %clock64) is launched first on its own
stream on n SMs, so the flash1 CTAs launched next on another stream fit only on the other SMs: 130 CTAs on 66
SMs, 65 on 33, 195 on 65, against 130 and 65 on the whole GPU.  The local footprint on the GPU (and the L2's
write-back of it) stays that of the 1-per-SM point; what changes is only who shares an SM.  Events around the
flash1 launch, the L2 cleared before each (a 256 MB write), 5 repeats, median.

    run(command="python3 benchmarks/spill_coresident_gpu.py --out $OUT --plan blocker", timeout_s=120)
    (run 2026-11-27 12:28 UTC, H100 80GB HBM3, 12.8 s: calibration/spill_coresident_blocker-2026-11-27T1228.*;
    the trip at 2 CTAs per SM with the footprint held is 1.09-1.11x the 1-per-SM trip -- 1.44x at 260 CTAs on all SMs)

Data only (no assertion but the correctness gate).
"""
from __future__ import annotations

import argparse
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

#: r61126_001's problem with batch and seq_kv free
BASE_PROBLEM = {"batch": 19, "heads_q": 13, "heads_kv": 1, "seq_q": 5, "seq_kv": 4480, "head_dim": 128,
                "dtype": "fp32", "causal": True, "scale": 0.08838834764831843, "causal_align": "bottom_right"}
SCHEDULE = {"algorithm": "flash1", "phase": "fwd", "block_m": 32, "block_n": 32, "num_warps": 1, "num_stages": 2,
            "grid_order": "heads_fastest", "sp_dtype": None}
BATCHES = (5, 10, 20, 30)  # x 13 heads: 65, 130, 260, 390 CTAs
SEQ_KVS = (512, 1024)
NCU_POINTS = ((5, 512), (10, 512), (20, 512))
KREGEX = "_flash1_fwd"
NCU_METRICS = ",".join([
    "sm__cycles_active.avg", "sm__cycles_active.max", "sm__warps_active.avg.per_cycle_active",
    "smsp__inst_executed.sum", "smsp__inst_executed_op_local_ld.sum", "smsp__inst_executed_op_local_st.sum",
    "l1tex__t_sectors_pipe_lsu_mem_local_op_ld_lookup_hit.sum", "l1tex__t_sectors_pipe_lsu_mem_local_op_ld_lookup_miss.sum",
    "l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum", "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum",
    "lts__t_sectors_srcunit_tex_op_read.sum", "dram__bytes_read.sum", "dram__bytes_write.sum",
    "gpu__time_duration.sum", "sm__cycles_elapsed.avg.per_second"])


def spec(batch: int, seq_kv: int) -> dict:
    p = dict(BASE_PROBLEM, batch=batch, seq_kv=seq_kv)
    return {"name": f"coresident_b{batch}_k{seq_kv}", "problem": p, "schedule": dict(SCHEDULE),
            "hardware": "h100-sxm", "launches": ["flash1_fwd"]}


def _check(sp: dict, fn) -> float:
    """Relative error of the output against an fp64 reference on the same inputs (the correctness gate)."""
    import torch
    from memsim.schedule import problem_from_dict
    from verification.caserunner import make_inputs
    p = problem_from_dict(sp["problem"])
    q, k, v, _ = make_inputs(p, "cuda")
    o = fn().o.double()
    qd, kd, vd = q.double(), k.double(), v.double()
    kd = kd.repeat_interleave(p.heads_q // p.heads_kv, dim=1)
    vd = vd.repeat_interleave(p.heads_q // p.heads_kv, dim=1)
    s = (qd @ kd.transpose(-1, -2)) * p.scale
    i = torch.arange(p.seq_q, device="cuda")[:, None] + (p.seq_kv - p.seq_q)  # bottom-right causal
    j = torch.arange(p.seq_kv, device="cuda")[None, :]
    s = s.masked_fill(j > i, float("-inf"))
    ref = torch.softmax(s, -1) @ vd
    return float((o - ref).norm() / ref.norm())


def gpu(out_dir: str, argv) -> int:
    import torch
    import triton
    from triton.testing import do_bench
    from verification.caserunner import prepare
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    rows = []
    part = os.path.join(out_dir, "spill_coresident.partial.json")
    for b in BATCHES:
        for sk in SEQ_KVS:
            sp = spec(b, sk)
            try:
                fn, keep = prepare(sp)
                fn()
                torch.cuda.synchronize()
                err = _check(sp, fn) if (b, sk) == (BATCHES[0], SEQ_KVS[0]) else None
                if err is not None:
                    assert err < 1e-3, f"relative error {err}"
                ts = [do_bench(fn, warmup=25, rep=120, return_mode="median") * 1e-3 for _ in range(3)]
                rows.append({"batch": b, "ctas": b * BASE_PROBLEM["heads_q"], "seq_kv": sk, "trips": sk // 32,
                             "time_s_repeats": ts, "time_s": statistics.median(ts), "rel_err": err})
                print(f"b{b} ({b * 13} CTAs) seq_kv {sk}: {statistics.median(ts) * 1e6:.1f} us "
                      f"(repeats {', '.join(f'{x * 1e6:.1f}' for x in ts)}) {time.time() - t0:.0f} s", flush=True)
            except Exception as e:  # noqa: BLE001 -- recorded, not fatal
                rows.append({"batch": b, "seq_kv": sk, "error": f"{type(e).__name__}: {str(e)[:300]}"})
                print(rows[-1], flush=True)
            json.dump(rows, open(part, "w"))
    prov = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__,
            "cuda": torch.version.cuda, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "python3 benchmarks/spill_coresident_gpu.py " + " ".join(argv or [])}
    try:
        prov["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    doc = {"format": "spill_coresident/1", "provenance": prov, "problem": BASE_PROBLEM, "schedule": SCHEDULE,
           "method": "do_bench median (L2 cleared before each run), 3 repeats, median; clocks not locked",
           "points": rows}
    json.dump(doc, open(os.path.join(out_dir, "spill_coresident.json"), "w"), indent=1)
    os.remove(part)
    print(f"timing done {time.time() - t0:.0f} s", flush=True)
    # ncu: the 65-, 130- and 260-CTA launches (one profiled process)
    rep = os.path.join(out_dir, "coresident")
    cmd = ["ncu", "--clock-control", "none", "-k", f"regex:{KREGEX}", "--section", "WarpStateStats",
           "--section", "SchedulerStats", "--section", "LaunchStats", "--section", "Occupancy",
           "--section", "SourceCounters", "--metrics", NCU_METRICS, "-f", "-o", rep,
           sys.executable, os.path.abspath(__file__), "--ncu-child"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
        print("ncu rc", r.returncode, r.stdout[-800:], r.stderr[-800:], flush=True)
        for page, extra in (("details", ["--print-units", "base"]), ("source", ["--print-source", "sass"])):
            with open(f"{rep}.{page}.csv", "w") as fh:
                subprocess.run(["ncu", "--import", rep + ".ncu-rep", "--csv", "--page", page, *extra], stdout=fh,
                               stderr=subprocess.STDOUT, timeout=120)
            subprocess.run(["gzip", "-f", f"{rep}.{page}.csv"])
    except Exception as e:  # noqa: BLE001
        print("ncu failed:", type(e).__name__, e, flush=True)
    print(f"all done {time.time() - t0:.0f} s", flush=True)
    return 0


#: (batch, SMs blocked): 130 CTAs on 132 / 66 SMs, 65 on 132 / 33, 195 on 65
BLOCKER_POINTS = ((10, 0), (10, 66), (5, 0), (5, 99), (15, 67), (20, 0))
BLOCKER_SMEM = 200 << 10


try:  # the blocker is a module-level Triton kernel (Triton resolves `tl` in the module's globals)
    import triton
    import triton.language as tl

    @triton.jit
    def _blocker(out_ptr, cycles_ptr):
        """One warp spinning for *cycles_ptr SM clock cycles (%clock64)."""
        offs = tl.arange(0, 32)
        c = tl.load(cycles_ptr)
        z = tl.inline_asm_elementwise(
            "{\n.reg .u64 t0, t1;\n.reg .pred p;\nmov.u64 t0, %clock64;\nSPIN_BLOCK:\nmov.u64 t1, %clock64;\n"
            "sub.u64 t1, t1, t0;\nsetp.lt.u64 p, t1, $1;\n@p bra SPIN_BLOCK;\nmov.u32 $0, 0;\n}",
            "=r,l", [c + offs.to(tl.int64) * 0], dtype=tl.int32, is_pure=False, pack=1)
        tl.store(out_ptr + tl.program_id(0) * 32 + offs, z)
except ImportError:  # pragma: no cover -- --analyse needs no Triton
    _blocker = None


def gpu_blocker(out_dir: str, argv) -> int:
    import torch
    import triton
    from verification.caserunner import prepare
    sys.path.insert(0, HERE)
    from spill_sm_gpu import _with_shared
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    blk = _blocker
    bout = torch.zeros(n_sms * 32, dtype=torch.int32, device="cuda")
    cyc = torch.full((1,), 40_000_000, dtype=torch.int64, device="cuda")  # ~20 ms at 1.98 GHz
    ck = _with_shared(blk, BLOCKER_SMEM, (bout, cyc), dict(num_warps=1))
    sa, sb = torch.cuda.Stream(), torch.cuda.Stream()
    flush = torch.empty(64 << 20, dtype=torch.float32, device="cuda")
    rows = []
    part = os.path.join(out_dir, "spill_coresident_blocker.partial.json")
    for b, blocked in BLOCKER_POINTS:
        for sk in SEQ_KVS:
            try:
                fn, keep = prepare(spec(b, sk))
                fn()
                torch.cuda.synchronize()
                ts = []
                for r in range(6):
                    with torch.cuda.stream(sb):
                        flush.fill_(float(r))
                    torch.cuda.synchronize()
                    if blocked:
                        with torch.cuda.stream(sa):
                            ck[(blocked, 1, 1)](bout, cyc)
                    with torch.cuda.stream(sb):
                        torch.cuda._sleep(100_000)  # ~50 us: the blocker's CTAs are resident first
                        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        e0.record()
                        fn()
                        e1.record()
                    torch.cuda.synchronize()
                    if r:
                        ts.append(e0.elapsed_time(e1) * 1e-3)
                ctas = b * BASE_PROBLEM["heads_q"]
                rows.append({"batch": b, "ctas": ctas, "sms_blocked": blocked, "seq_kv": sk, "trips": sk // 32,
                             "ctas_per_free_sm": ctas / (n_sms - blocked), "time_s_repeats": ts,
                             "time_s": statistics.median(ts)})
                print(f"b{b} ({ctas} CTAs) on {n_sms - blocked} SMs, seq_kv {sk}: {statistics.median(ts) * 1e6:.1f} us "
                      f"({', '.join(f'{x * 1e6:.0f}' for x in ts)}) {time.time() - t0:.0f} s", flush=True)
            except Exception as e:  # noqa: BLE001 -- recorded, not fatal
                rows.append({"batch": b, "sms_blocked": blocked, "seq_kv": sk,
                             "error": f"{type(e).__name__}: {str(e)[:300]}"})
                print(rows[-1], flush=True)
            json.dump(rows, open(part, "w"))
    prov = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__,
            "cuda": torch.version.cuda, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "python3 benchmarks/spill_coresident_gpu.py " + " ".join(argv or [])}
    doc = {"format": "spill_coresident_blocker/1", "provenance": prov, "problem": BASE_PROBLEM, "schedule": SCHEDULE,
           "method": "events around the flash1 launch on its own stream, a 200 KB-shared-memory spinning blocker "
                     "launched first on the blocked SMs; L2 cleared (256 MB write) before each; 5 repeats, median",
           "points": rows}
    json.dump(doc, open(os.path.join(out_dir, "spill_coresident_blocker.json"), "w"), indent=1)
    os.remove(part)
    print(f"all done {time.time() - t0:.0f} s", flush=True)
    return 0


#: `--plan w2` (the third call): two live fp32 loops of TWO-warp CTAs at one CTA per SM -- r26112703_009's flash1
#: (d=128, 16 x 128 tiles, 3 stages: a 363 KB loop, 12 KB of local memory a thread, live -17 %) on 16 SMs (13 MB of
#: frames) and r26112609_005's flash1 (d=16, 128 x 32, causal: a 59 KB loop in the cache, 40 B of local memory, live
#: -20 %) on 132 SMs -- timing beside memsim.simulate, and ncu's warp states: is the missing time fetch (the two
#: warps drifting apart between barriers: two streams), barriers, or waits?
W2_SPECS = {
    "w2_big": {"problem": {"batch": 16, "heads_q": 1, "heads_kv": 1, "seq_q": 128, "seq_kv": 524, "head_dim": 128,
                           "dtype": "fp32", "causal": False, "scale": 0.08838834764831843, "causal_align": "top_left"},
               "schedule": {"algorithm": "flash1", "phase": "fwd", "block_m": 16, "block_n": 128, "num_warps": 2,
                            "num_stages": 3, "grid_order": "q_fastest", "sp_dtype": None}},
    "w2_small": {"problem": {"batch": 12, "heads_q": 11, "heads_kv": 11, "seq_q": 939, "seq_kv": 939, "head_dim": 16,
                             "dtype": "fp32", "causal": True, "scale": 0.25, "causal_align": "top_left"},
                 "schedule": {"algorithm": "flash1", "phase": "fwd", "block_m": 128, "block_n": 32, "num_warps": 2,
                              "num_stages": 2, "grid_order": "q_fastest", "sp_dtype": None}},
}


def w2_spec(name: str, batch: int | None = None) -> dict:
    sp = {"name": name, **json.loads(json.dumps(W2_SPECS[name])), "hardware": "h100-sxm", "launches": ["flash1_fwd"]}
    if batch:
        sp["problem"]["batch"] = batch
    return sp


#: `--plan w2k` (the fourth call): r26112609_005's in-cache, L1-resident two-warp loop (w2_small) at 1 / 2 / 3 CTAs
#: per SM (batch 12 / 24 / 36 x 11 heads = 132 / 264 / 396 CTAs; 4 fit by registers; frames of 40 B a thread: no
#: footprint) -- does co-residency cost a loop that neither fetches from the L2 nor shares an L1 under pressure?
#: ncu's warp states at 132 and 264 CTAs.
W2K_BATCHES = (12, 24, 36)


def gpu_w2k(out_dir: str, argv) -> int:
    import torch
    import triton
    from triton.testing import do_bench
    from verification.caserunner import prepare
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    rows = []
    for b in W2K_BATCHES:
        try:
            fn, keep = prepare(w2_spec("w2_small", b))
            fn()
            torch.cuda.synchronize()
            ts = [do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e-3 for _ in range(3)]
            rows.append({"name": "w2_small", "batch": b, "ctas": b * 11, "time_s_repeats": ts,
                         "time_s": statistics.median(ts)})
            print(f"w2_small batch {b}: {statistics.median(ts) * 1e6:.1f} us "
                  f"({', '.join(f'{x * 1e6:.1f}' for x in ts)}) {time.time() - t0:.0f} s", flush=True)
        except Exception as e:  # noqa: BLE001
            rows.append({"name": "w2_small", "batch": b, "error": f"{type(e).__name__}: {str(e)[:300]}"})
            print(rows[-1], flush=True)
    prov = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__,
            "cuda": torch.version.cuda, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "python3 benchmarks/spill_coresident_gpu.py " + " ".join(argv or [])}
    json.dump({"format": "spill_coresident_w2k/1", "provenance": prov, "method": "do_bench median (L2 cleared), 3 "
               "repeats; ncu at batch 12 and 24", "points": rows},
              open(os.path.join(out_dir, "spill_coresident_w2k.json"), "w"), indent=1)
    rep = os.path.join(out_dir, "w2k")
    cmd = ["ncu", "--clock-control", "none", "-k", f"regex:{KREGEX}", "--section", "WarpStateStats",
           "--section", "SchedulerStats", "--metrics", NCU_METRICS, "-f", "-o", rep,
           sys.executable, os.path.abspath(__file__), "--ncu-child", "w2k"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        print("ncu rc", r.returncode, r.stdout[-400:], r.stderr[-400:], flush=True)
        with open(f"{rep}.details.csv", "w") as fh:
            subprocess.run(["ncu", "--import", rep + ".ncu-rep", "--csv", "--page", "details", "--print-units",
                            "base"], stdout=fh, stderr=subprocess.STDOUT, timeout=60)
        os.remove(rep + ".ncu-rep")
    except Exception as e:  # noqa: BLE001
        print("ncu failed:", type(e).__name__, e, flush=True)
    print(f"all done {time.time() - t0:.0f} s", flush=True)
    return 0


def gpu_w2(out_dir: str, argv) -> int:
    import torch
    import triton
    from triton.testing import do_bench
    from verification.caserunner import prepare
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    rows = []
    for name in W2_SPECS:
        try:
            fn, keep = prepare(w2_spec(name))
            fn()
            torch.cuda.synchronize()
            ts = [do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e-3 for _ in range(3)]
            rows.append({"name": name, **W2_SPECS[name], "time_s_repeats": ts, "time_s": statistics.median(ts)})
            print(f"{name}: {statistics.median(ts) * 1e6:.1f} us ({', '.join(f'{x * 1e6:.1f}' for x in ts)}) "
                  f"{time.time() - t0:.0f} s", flush=True)
        except Exception as e:  # noqa: BLE001
            rows.append({"name": name, "error": f"{type(e).__name__}: {str(e)[:300]}"})
            print(rows[-1], flush=True)
    prov = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__,
            "cuda": torch.version.cuda, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "python3 benchmarks/spill_coresident_gpu.py " + " ".join(argv or [])}
    json.dump({"format": "spill_coresident_w2/1", "provenance": prov, "method": "do_bench median (L2 cleared), 3 "
               "repeats; ncu on both", "points": rows},
              open(os.path.join(out_dir, "spill_coresident_w2.json"), "w"), indent=1)
    rep = os.path.join(out_dir, "w2")
    cmd = ["ncu", "--clock-control", "none", "-k", f"regex:{KREGEX}", "--section", "WarpStateStats",
           "--section", "SchedulerStats", "--section", "SourceCounters", "--metrics", NCU_METRICS, "-f", "-o", rep,
           sys.executable, os.path.abspath(__file__), "--ncu-child", "w2"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        print("ncu rc", r.returncode, r.stdout[-600:], r.stderr[-600:], flush=True)
        for page, extra in (("details", ["--print-units", "base"]), ("source", ["--print-source", "sass"])):
            with open(f"{rep}.{page}.csv", "w") as fh:
                subprocess.run(["ncu", "--import", rep + ".ncu-rep", "--csv", "--page", page, *extra], stdout=fh,
                               stderr=subprocess.STDOUT, timeout=100)
            subprocess.run(["gzip", "-f", f"{rep}.{page}.csv"])
        os.remove(rep + ".ncu-rep")
    except Exception as e:  # noqa: BLE001
        print("ncu failed:", type(e).__name__, e, flush=True)
    print(f"all done {time.time() - t0:.0f} s", flush=True)
    return 0


def ncu_child(plan: str = "") -> int:
    import torch
    from verification.caserunner import prepare
    specs = ([w2_spec(n) for n in W2_SPECS] if plan == "w2" else
             [w2_spec("w2_small", b) for b in W2K_BATCHES[:2]] if plan == "w2k" else
             [spec(b, sk) for b, sk in NCU_POINTS])
    for sp in specs:
        fn, keep = prepare(sp)
        fn()
        torch.cuda.synchronize()
    return 0


def analyse(run_dir: str) -> list:
    """Measured time and trip slope beside memsim.simulate's and the replay's (memsim.costs' figures per trip)."""
    import memsim
    from memsim.calibration import load_calibration
    from memsim.costs import launch_cost
    from memsim.schedule import check_fits, kernel_launches, problem_from_dict, schedule_from_dict
    from memsim.io import read_json
    doc = read_json(run_dir if os.path.isfile(run_dir) else os.path.join(run_dir, "spill_coresident.json"))
    hw = memsim.load_hardware("h100-sxm")
    cal = load_calibration(hw)
    clock = cal.sm_clock_Hz or hw.clock_Hz
    pts = {(r["batch"], r["seq_kv"]): r for r in doc["points"] if "error" not in r}
    out = []
    print(f"{doc['provenance'].get('gpu')}, driver {doc['provenance'].get('driver')}, {doc['provenance'].get('date')}")
    print("| CTAs | per SM | measured 512 / 1024 (us) | model 512 / 1024 | trip measured (k cycles) | trip model "
          "| measured / model (trip) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for b in BATCHES:
        got = [pts.get((b, sk)) for sk in SEQ_KVS]
        if not all(got):
            continue
        pred = []
        for sk in SEQ_KVS:
            sp = spec(b, sk)
            prob, sched = problem_from_dict(sp["problem"]), schedule_from_dict(sp["schedule"])
            pred.append(memsim.simulate(prob, sched, hw).total["time_s"])
        dt = SEQ_KVS[1] // 32 - SEQ_KVS[0] // 32
        tm = (got[1]["time_s"] - got[0]["time_s"]) / dt * clock
        tp = (pred[1] - pred[0]) / dt * clock
        ctas = b * BASE_PROBLEM["heads_q"]
        per_sm = -(-ctas // hw.num_sms)
        prob, sched = problem_from_dict(spec(b, 512)["problem"]), schedule_from_dict(SCHEDULE)
        smem = check_fits(prob, sched, hw.smem_per_block_bytes, hw.name)
        la = kernel_launches(prob, sched)[0]
        c = launch_cost(hw, cal, la.name, prob, sched, smem, num_ctas=la.num_ctas)
        row = {"batch": b, "ctas": ctas, "per_sm": per_sm, "measured_s": [g["time_s"] for g in got],
               "model_s": pred, "trip_measured_cycles": tm, "trip_model_cycles": tp,
               "issue_s_per_tile": c.issue_s_per_tile, "chain_ratio": c.chain_ratio,
               "m": c.local.l1_miss_fraction if c.local else None}
        out.append(row)
        print(f"| {ctas} | {per_sm} | {got[0]['time_s'] * 1e6:.0f} / {got[1]['time_s'] * 1e6:.0f} | "
              f"{pred[0] * 1e6:.0f} / {pred[1] * 1e6:.0f} | {tm / 1e3:.0f} | {tp / 1e3:.0f} | {tm / tp:.2f} |")
    return out


def analyse_blocker(path: str) -> list:
    """The blocker run: the trip (slope between the two seq_kv) at each (CTAs, SMs free), beside the 1-per-SM point
    of the same CTAs (the same GPU footprint)."""
    from memsim.io import read_json
    doc = read_json(path if os.path.isfile(path) else os.path.join(path, "spill_coresident_blocker.json"))
    pts = {(r["batch"], r["sms_blocked"], r["seq_kv"]): r["time_s"] for r in doc["points"] if "error" not in r}
    print(f"{doc['provenance'].get('gpu')}, {doc['provenance'].get('date')}")
    print("| CTAs | SMs free | CTAs per SM | time 512 / 1024 (us) | trip (k cycles, 1.98 GHz) | / 1 per SM, same CTAs |")
    print("| --- | --- | --- | --- | --- | --- |")
    out, base = [], {}
    for b, blocked in BLOCKER_POINTS:
        t = [pts.get((b, blocked, sk)) for sk in SEQ_KVS]
        if not all(t):
            continue
        trip = (t[1] - t[0]) / (SEQ_KVS[1] // 32 - SEQ_KVS[0] // 32) * 1.98e9
        if not blocked:
            base[b] = (trip, t)
        ctas, free = b * BASE_PROBLEM["heads_q"], 132 - blocked
        ref = base.get(b)
        rel = f"{trip / ref[0]:.2f} (totals {t[0] / ref[1][0]:.2f} / {t[1] / ref[1][1]:.2f})" if ref and blocked else "-"
        out.append({"batch": b, "ctas": ctas, "sms_free": free, "trip_cycles": trip, "time_s": t})
        print(f"| {ctas} | {free} | {ctas / free:.2f} | {t[0] * 1e6:.0f} / {t[1] * 1e6:.0f} | {trip / 1e3:.0f} | {rel} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="(GPU) output folder")
    ap.add_argument("--ncu-child", nargs="?", const="", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--analyse", metavar="RUN_DIR")
    ap.add_argument("--write-table", metavar="JSON", help="with --analyse: the table as JSON")
    ap.add_argument("--plan", choices=("residency", "blocker", "w2", "w2k"), default="residency")
    a = ap.parse_args(argv)
    if a.ncu_child is not None:
        return ncu_child(a.ncu_child)
    if a.analyse:
        blk = "blocker" in os.path.basename(a.analyse.rstrip("/")) and os.path.isfile(a.analyse)
        t = analyse_blocker(a.analyse) if blk else analyse(a.analyse)
        if a.write_table:
            json.dump(t, open(a.write_table, "w"), indent=1)
        return 0
    if a.plan == "w2":
        return gpu_w2(a.out, argv)
    if a.plan == "w2k":
        return gpu_w2k(a.out, argv)
    return gpu_blocker(a.out, argv) if a.plan == "blocker" else gpu(a.out, argv)


if __name__ == "__main__":
    sys.exit(main())
