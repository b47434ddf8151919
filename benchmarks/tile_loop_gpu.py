"""One device call: the real tile loops of our kernels, isolated -- the period of one trip and the fixed cost.

`memsim` times a launch from what its compiled code does per tile-loop trip (`memsim.warp_issue.replay` of the
loop's SASS, `kernels.sass.issue_profile`) plus what it does once per CTA (prologue, first loads, epilogue).  Every
random set says the model is 10-25 % too fast on most launches, short and long alike.  This benchmark measures
those two parts on the real kernels with no other effect in the way:

* one wave: exactly 132 x c CTAs (c = 1, 2 per SM), so no tail and no second wave;
* operands that stay in the L2: every CTA reads the same K/V (one head), a few hundred KB, so after the first
  CTA's reads the loop's loads hit the L2 and DRAM bandwidth does not bind;
* T = 2, 8 and 24 trips of the tile loop per CTA: the launch's time against T is a line whose slope is one
  trip's period with c CTAs on each SM and whose intercept is the fixed cost (launch, CTA start, prologue,
  epilogue and store drain).

The launch of interest per variant (`LAUNCH`): flash2/hopper forward (grid over query blocks, the loop over key
blocks), flash2 backward dK/dV (grid over key blocks, the loop over query blocks) and dQ (the converse).

Times are ncu's gpu__time_duration per launch (default cache control, `--clock-control none`), 3 repeats in
one process, with the SM clock (sm__cycles_elapsed.avg.per_second); a second ncu pass collects the
ComputeWorkloadAnalysis / WarpStateStats / InstructionStats sections of the T=24 point (pipe utilisation, stall
reasons) -- the evidence for *which* mechanism the replay lacks, if it misses.

    run(command="python3 benchmarks/tile_loop_gpu.py --out $OUT", timeout_s=420)

Here (no GPU): ``python benchmarks/tile_loop_gpu.py --analyse RUN.json`` prints measured period / intercept
against the replay (the compiled table's `tile_cycles`, compiled here for sm_90 when missing) and memsim's launch
time.
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

#: (name, algorithm, phase, launch, dtype, head_dim, block_m, block_n, num_warps, num_stages)
VARIANTS = (
    ("f2fwd_bf16_d128_128x64_w4", "flash2", "fwd", "flash2_fwd", "bf16", 128, 128, 64, 4, 2),
    ("f2fwd_bf16_d128_64x64_w4", "flash2", "fwd", "flash2_fwd", "bf16", 128, 64, 64, 4, 3),
    ("f2fwd_bf16_d64_128x64_w4", "flash2", "fwd", "flash2_fwd", "bf16", 64, 128, 64, 4, 2),
    ("f2fwd_fp16_d32_64x32_w2", "flash2", "fwd", "flash2_fwd", "fp16", 32, 64, 32, 2, 2),
    ("f2fwd_bf16_d16_64x64_w4", "flash2", "fwd", "flash2_fwd", "bf16", 16, 64, 64, 4, 2),
    ("f2fwd_bf16_d256_64x32_w4", "flash2", "fwd", "flash2_fwd", "bf16", 256, 64, 32, 4, 2),
    ("f2fwd_fp32_d64_64x32_w4", "flash2", "fwd", "flash2_fwd", "fp32", 64, 64, 32, 4, 2),
    ("f2fwd_fp32_d128_32x32_w4", "flash2", "fwd", "flash2_fwd", "fp32", 128, 32, 32, 4, 2),
    ("f2dkdv_bf16_d64_64x64_w4", "flash2", "bwd", "flash2_bwd_dkdv", "bf16", 64, 64, 64, 4, 2),
    ("f2dq_bf16_d64_64x64_w4", "flash2", "bwd", "flash2_bwd_dq", "bf16", 64, 64, 64, 4, 2),
    ("f2dkdv_fp16_d128_64x64_w8", "flash2", "bwd", "flash2_bwd_dkdv", "fp16", 128, 64, 64, 8, 2),
    ("f2dq_fp16_d128_64x64_w8", "flash2", "bwd", "flash2_bwd_dq", "fp16", 128, 64, 64, 8, 2),
    ("hfwd_bf16_d128_128x128_w8", "hopper", "fwd", "hopper_fwd", "bf16", 128, 128, 128, 8, 2),
    ("hfwd_bf16_d64_128x128_w8", "hopper", "fwd", "hopper_fwd", "bf16", 64, 128, 128, 8, 2),
)
TRIPS = (2, 8, 24)
CTAS_PER_SM = (1, 2)
SECTIONS = ("ComputeWorkloadAnalysis", "WarpStateStats", "InstructionStats")
METRICS = ("gpu__time_duration.sum", "sm__cycles_elapsed.avg.per_second", "smsp__inst_executed.sum",
           "sm__warps_active.avg.per_cycle_active", "dram__bytes_read.sum", "lts__t_sectors_srcunit_tex_op_read.sum",
           # shared-memory loads: requests, wavefronts and bank conflicts (the fp32 loops' short-scoreboard waits)
           "smsp__inst_executed_op_shared_ld.sum", "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
           "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum")
#: the dot chains whose FLOP/s the replay's tensor figures come from (memsim.issue_fit.tensor_rates: the best
#: register-resident mma and wgmma points of benchmarks/dot_rate_gpu.py) and an fp32 one: (BM, BN, BK, warps,
#: CTAs per SM, dtype) -- `--dot-clock` runs them under ncu for the SM clock they ran at
DOT_CLOCK_POINTS = ((32, 128, 64, 1, 4, "fp16"), (128, 128, 128, 4, 4, "fp16"), (64, 64, 64, 4, 1, "fp16"),
                    (128, 128, 64, 8, 4, "fp32"))


def variant(name: str) -> dict:
    for v in VARIANTS:
        if v[0] == name:
            keys = ("name", "algorithm", "phase", "launch", "dtype", "head_dim", "block_m", "block_n", "num_warps",
                    "num_stages")
            return dict(zip(keys, v))
    raise KeyError(f"no variant {name!r}; known: {', '.join(v[0] for v in VARIANTS)}")


def problem_and_schedule(v: dict, ctas_per_sm: int, trips: int, n_sms: int = 132):
    """The problem whose launch `v['launch']` runs exactly n_sms x ctas_per_sm CTAs of `trips` loop trips each
    (one head: every CTA reads the same K/V or Q/dO, which stay in the L2)."""
    from memsim.schedule import AttentionProblem, Schedule, kernel_launches
    s = Schedule(algorithm=v["algorithm"], phase=v["phase"], block_m=v["block_m"], block_n=v["block_n"],
                 num_warps=v["num_warps"], num_stages=v["num_stages"])
    ctas = n_sms * ctas_per_sm
    if v["launch"] == "flash2_bwd_dkdv":  # grid over key blocks, the loop over query blocks
        seq_q, seq_kv = trips * v["block_m"], ctas * v["block_n"]
    else:  # grid over query blocks, the loop over key blocks
        seq_q, seq_kv = ctas * v["block_m"], trips * v["block_n"]
    p = AttentionProblem(batch=1, heads_q=1, heads_kv=1, seq_q=seq_q, seq_kv=seq_kv, head_dim=v["head_dim"],
                         dtype=v["dtype"])
    launches = kernel_launches(p, s)
    grid = next(L.grid for L in launches if L.name == v["launch"])
    if grid[0] * grid[1] * grid[2] != ctas:
        raise ValueError(f"{v['name']}: {v['launch']} has grid {grid}, not {ctas} CTAs")
    return p, s, [L.name for L in launches]


def worker(manifest: str, sections_only: bool, repeats: int, names: list[str]) -> int:
    """Run every point inside cudaProfilerStart/Stop (warm-up and forward-for-backward outside); write the
    launch order to `manifest`."""
    import torch

    import kernels
    from kernels._common import TORCH_DTYPES
    dev = torch.device("cuda")
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    order = []
    for name in names:
        v = variant(name)
        for c in CTAS_PER_SM:
            for T in TRIPS:
                if sections_only and (T != TRIPS[-1] or c != CTAS_PER_SM[-1]):
                    continue
                try:
                    p, s, launch_names = problem_and_schedule(v, c, T, n_sms)
                    dt = TORCH_DTYPES[p.dtype]
                    g = torch.Generator(device=dev).manual_seed(0)
                    q = torch.randn(1, 1, p.seq_q, p.head_dim, device=dev, dtype=dt, generator=g)
                    k = torch.randn(1, 1, p.seq_kv, p.head_dim, device=dev, dtype=dt, generator=g)
                    vv = torch.randn(1, 1, p.seq_kv, p.head_dim, device=dev, dtype=dt, generator=g)
                    if s.phase == "fwd":
                        def run():
                            kernels.forward(p, s, q, k, vv)
                    else:
                        from memsim.schedule import Schedule
                        fs = Schedule(algorithm="flash2", phase="fwd", block_m=64, block_n=64, num_warps=4,
                                      num_stages=2)
                        f = kernels.forward(p, fs, q, k, vv)
                        do = torch.randn_like(q)

                        def run():
                            kernels.backward(p, s, q, k, vv, f.o, do, f)
                    run()  # compile, outside the profiled range
                    torch.cuda.synchronize()
                except Exception as e:  # noqa: BLE001 -- a variant that does not fit is recorded, not fatal
                    order.append({"variant": name, "ctas_per_sm": c, "trips": T, "error": f"{type(e).__name__}: {e}"[:300]})
                    print(f"{name} c={c} T={T}: {order[-1]['error']}", flush=True)
                    continue
                for r in range(1 if sections_only else repeats):
                    torch.cuda.profiler.start()
                    run()
                    torch.cuda.synchronize()
                    torch.cuda.profiler.stop()
                    order.append({"variant": name, "ctas_per_sm": c, "trips": T, "repeat": r,
                                  "launches": launch_names})
                print(f"{name} c={c} T={T}: ok", flush=True)
                del q, k, vv
    tmp = manifest + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(order, fh)
    os.replace(tmp, manifest)
    return 0


def dot_clock_worker(manifest: str) -> int:
    """Run each DOT_CLOCK_POINTS dot chain once inside cudaProfilerStart/Stop (compiled before)."""
    import torch
    sys.path.insert(0, HERE)
    from dot_rate_gpu import _mb_dot_chain
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    order = []
    for bm, bn, bk, w, c, dt in DOT_CLOCK_POINTS:
        dtype = torch.float16 if dt == "fp16" else torch.float32
        a = torch.randn(bm, bk, device="cuda", dtype=dtype)
        b = torch.randn(2, bk, bn, device="cuda", dtype=dtype)
        grid = n_sms * c
        out = torch.empty(grid, bm, bn, device="cuda", dtype=torch.float32)
        n_iter = 4096 if dt == "fp16" else 512

        def run():
            _mb_dot_chain[(grid,)](a, b, out, n_iter, BM=bm, BN=bn, BK=bk, PREC="ieee" if dt == "fp32" else None,
                                   RELOAD=False, num_warps=w, num_stages=1)
        run()
        torch.cuda.synchronize()
        for r in range(3):
            torch.cuda.profiler.start()
            run()
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
            order.append({"dot": [bm, bn, bk, w, c, dt], "repeat": r, "n_iter": n_iter, "ctas": grid})
    tmp = manifest + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(order, fh)
    os.replace(tmp, manifest)
    return 0


def _ncu(args: list[str], log: str, timeout_s: float) -> str:
    with open(log, "w") as fh:
        try:
            subprocess.run(args, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            fh.write(f"\n== timed out after {timeout_s} s ==\n")
    return open(log, errors="replace").read()


def drive(out: str, repeats: int, budget_s: float, names: list[str], dot_clock: bool = False,
          sections: bool = True) -> int:
    from verification.ncu import parse_csv
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    me = [sys.executable, os.path.abspath(__file__), "--worker"]
    man = os.path.join(out, "tile_loop.manifest.json")
    base = ["ncu", "--clock-control", "none", "--profile-from-start", "off", "--csv", "--print-units", "base",
            "-k", "regex:^_(flash2|hopper)_"]
    from verification.ncu import available_metrics, filter_metrics
    metrics, dropped = filter_metrics(list(METRICS), available_metrics("gh100"))
    if dropped:
        print(f"ncu does not know {dropped}: left out", flush=True)
    text = _ncu(base + ["--metrics", ",".join(metrics)] + me + ["--manifest", man, "--repeats", str(repeats),
                                                                "--variants", ",".join(names)],
                os.path.join(out, "tile_loop.ncu.log"), budget_s * 0.6)
    rows = parse_csv(text)
    order = json.load(open(man)) if os.path.exists(man) else []
    points, i = [], 0
    for o in order:
        if "error" in o:
            points.append(o)
            continue
        got = rows[i:i + len(o["launches"])]
        i += len(o["launches"])
        if len(got) < len(o["launches"]):
            points.append({**o, "error": "ncu profiled fewer launches than ran"})
            continue
        for name, row in zip(o["launches"], got):
            points.append({"variant": o["variant"], "ctas_per_sm": o["ctas_per_sm"], "trips": o["trips"],
                           "repeat": o["repeat"], "launch": name, "kernel": row.name, "grid": row.grid,
                           "block": row.block, "metrics": row.metrics})
    if dot_clock:
        man3 = os.path.join(out, "tile_loop.dot_clock.manifest.json")
        dtext = _ncu(["ncu", "--clock-control", "none", "--profile-from-start", "off", "--csv", "--print-units", "base",
                      "-k", "regex:_mb_dot_chain", "--metrics", "gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second"]
                     + me + ["--manifest", man3, "--dot-clock"], os.path.join(out, "tile_loop.dot_clock.ncu.log"), 120)
        drows = parse_csv(dtext)
        dorder = json.load(open(man3)) if os.path.exists(man3) else []
        for o, row in zip(dorder, drows):
            flops = 2.0 * o["dot"][0] * o["dot"][1] * o["dot"][2] * o["n_iter"] * o["ctas"]
            t = row.metrics.get("gpu__time_duration.sum")
            points.append({"kind": "dot_clock", **o, "time_s": t, "sm_clock_Hz":
                           row.metrics.get("sm__cycles_elapsed.avg.per_second"),
                           "flops_per_s": flops / t if t else None})
        for p in points:
            if p.get("kind") == "dot_clock":
                print(f"dot chain {p['dot']}: {p['sm_clock_Hz'] / 1e9:.3f} GHz, "
                      f"{(p['flops_per_s'] or 0) / 1e12:.1f} TFLOP/s", flush=True)
    sec_log = os.path.join(out, "tile_loop.sections.csv")
    left = budget_s - (time.time() - t0) if sections else 0
    if left > 30:
        man2 = os.path.join(out, "tile_loop.sections.manifest.json")
        args = ["ncu", "--clock-control", "none", "--profile-from-start", "off", "--csv", "--page", "raw",
                "-k", "regex:^_(flash2|hopper)_"]
        for s in SECTIONS:
            args += ["--section", s]
        _ncu(args + me + ["--manifest", man2, "--sections-only", "--variants", ",".join(names)], sec_log, left - 10)
    sys.path.insert(0, HERE)
    from run_file import write_run
    write_run(os.path.join(out, "tile_loop.json"), "tile_loop/1", points, script="tile_loop_gpu.py", argv=None,
              t0=t0, method="ncu gpu__time_duration per launch (default cache control, --clock-control none), "
                            f"{repeats} repeats in one process; one wave of 132 x c CTAs; K/V of one head")
    ok = [p for p in points if "error" not in p]
    print(f"{len(ok)} launches profiled, {len(points) - len(ok)} errors, {time.time() - t0:.0f} s", flush=True)
    _table(points)
    return 0 if ok else 1


def _own_launches(points: list):
    """The measured launches of each variant's own kernel (not its preprocess, not the dot-clock points)."""
    for p in points:
        if "error" not in p and p.get("kind") != "dot_clock" and p["launch"] == variant(p["variant"])["launch"]:
            yield p


def _medians(points: list) -> dict:
    """{(variant, c, T): (median time of the variant's launch, median clock)}."""
    acc = {}
    for p in _own_launches(points):
        m = p["metrics"]
        acc.setdefault((p["variant"], p["ctas_per_sm"], p["trips"]), []).append(
            (m.get("gpu__time_duration.sum"), m.get("sm__cycles_elapsed.avg.per_second")))
    return {k: (statistics.median(t for t, _ in v if t), statistics.median(c for _, c in v if c)) for k, v in acc.items()}


def fit_line(ts: dict) -> tuple[float, float]:
    """(slope, intercept) of time against trips, least squares."""
    xs, ys = list(ts), [ts[x] for x in ts]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return slope, my - slope * mx


def lines(points: list) -> dict:
    """{(variant, c): {"period_s", "intercept_s", "clock_Hz", "times": {T: s}}} from the run's points."""
    med = _medians(points)
    out = {}
    for (name, c, T), (t, clk) in med.items():
        e = out.setdefault((name, c), {"times": {}, "clocks": []})
        e["times"][T] = t
        e["clocks"].append(clk)
    for e in out.values():
        if len(e["times"]) >= 2:
            e["period_s"], e["intercept_s"] = fit_line(e["times"])
        e["clock_Hz"] = statistics.median(e["clocks"])
    return out


def _table(points: list) -> None:
    print(f"{'variant':28s} {'c':>2s} " + " ".join(f"T={T:<4d}us" for T in TRIPS) + "  period_us  intercept_us  GHz")
    for (name, c), e in sorted(lines(points).items()):
        ts = " ".join(f"{e['times'].get(T, float('nan')) * 1e6:9.2f}" for T in TRIPS)
        print(f"{name:28s} {c:2d} {ts}  {e.get('period_s', float('nan')) * 1e6:9.3f}  "
              f"{e.get('intercept_s', float('nan')) * 1e6:12.2f}  {e['clock_Hz'] / 1e9:.3f}")


def analyse(run_path: str, hw_name: str = "h100-sxm") -> int:
    """Measured period and intercept against the replay's tile_cycles and memsim's launch time (CPU side).  The
    variants' launches are compiled for sm_90 here and added to the compiled table where it lacks them (exact
    entries, not a neighbour's)."""
    import memsim
    from kernels.compiled_facts import _locked_merge, _table_path, facts_for_case
    from memsim.compiled import key
    doc = json.load(open(run_path))
    hw = memsim.load_hardware(hw_name)
    n_sms = doc["provenance"].get("sm_count", 132)
    table = json.load(open(_table_path("sm90")))["entries"]
    new = {}
    for v in map(variant, sorted({p["variant"] for p in doc["points"] if "variant" in p})):
        for c in CTAS_PER_SM:
            for T in TRIPS:
                p, s, _ = problem_and_schedule(v, c, T, n_sms)
                new.update(facts_for_case(p, s, have={**table, **new}, case_name=f"tile_loop:{v['name']}"))
    if new:
        _locked_merge("sm90", new, command=f"python benchmarks/tile_loop_gpu.py --analyse {run_path}")
        table = json.load(open(_table_path("sm90")))["entries"]
    print(f"{'variant':28s} {'c':>2s} {'meas period':>11s} {'replay':>8s} {'err':>6s}   {'meas icpt':>9s} "
          f"{'model icpt':>10s}  {'model period':>12s} {'err':>6s}")
    rows = []
    for (name, c), e in sorted(lines(doc["points"]).items()):
        if "period_s" not in e:
            continue
        v = variant(name)
        p, s, _ = problem_and_schedule(v, c, TRIPS[-1], n_sms)
        tc = ((table.get(key(v["launch"], p, s)) or {}).get("issue") or {}).get("tile_cycles") or []
        rep = tc[min(c, len(tc)) - 1] / e["clock_Hz"] if tc else float("nan")
        model = {}
        for T in TRIPS:
            pT, sT, _ = problem_and_schedule(v, c, T, n_sms)
            res = memsim.simulate(pT, sT, hw)
            model[T] = next(k["time_s"] for k in res.kernels if k["name"] == v["launch"])
        mp, mi = fit_line(model)
        rows.append({"variant": name, "ctas_per_sm": c, "period_s": e["period_s"], "intercept_s": e["intercept_s"],
                     "replay_period_s": rep, "model_period_s": mp, "model_intercept_s": mi,
                     "clock_Hz": e["clock_Hz"]})
        print(f"{name:28s} {c:2d} {e['period_s'] * 1e6:9.3f}us {rep * 1e6:7.3f} {rep / e['period_s'] - 1:+6.2f}   "
              f"{e['intercept_s'] * 1e6:8.2f}us {mi * 1e6:9.2f}us  {mp * 1e6:10.3f}us {mp / e['period_s'] - 1:+6.2f}")
    return 0


CALIBRATION = os.path.join(ROOT, "memsim", "presets", "h100-sxm.calibration.json")


def _load_run(run_path: str, flag: str) -> dict:
    """A tile_loop run file (a clear exit naming `flag` when it is another kind of file)."""
    run = json.load(open(run_path, encoding="utf-8"))
    if run.get("format") != "tile_loop/1":
        raise SystemExit(f"{flag}: {run_path} is not a tile_loop run (format {run.get('format')!r})")
    return run


def merge(run_path: str, into: str, *, replace: bool = False) -> int:
    """Add a run's launches to calibration file `into` as the ``tile_loop`` fact (atomically; an existing fact is
    kept unless `replace`): per launch of a variant's own kernel, its time, SM clock and whether it issues
    tensor-core instructions (our fp16/bf16 dots are HMMA / HGMMA; fp32 ones, IEEE precision, are FFMA).
    memsim.calibration reads the tensor clock from it (`Calibration.mma_sm_clock_Hz`)."""
    run = _load_run(run_path, "--merge")
    pts = []
    for p in _own_launches(run["points"]):
        m = p["metrics"]
        pts.append({"variant": p["variant"], "launch": p["launch"], "ctas_per_sm": p["ctas_per_sm"],
                    "trips": p["trips"], "repeat": p["repeat"], "time_s": m.get("gpu__time_duration.sum"),
                    "sm_clock_Hz": m.get("sm__cycles_elapsed.avg.per_second"),
                    "mma": variant(p["variant"])["dtype"] != "fp32"})
    if not pts:
        raise SystemExit(f"--merge: no measured launch in {run_path}")
    sys.path.insert(0, HERE)
    from run_file import merge_fact
    merge_fact(into, "tile_loop", pts, run=run, run_path=run_path, replace=replace,
               note="benchmarks/tile_loop_gpu.py: the real tile loops in one wave of 132 x c CTAs with L2-resident "
                    "operands, 2/8/24 trips, ncu time and SM clock per launch; memsim.calibration reads the tensor "
                    "clock (mma_sm_clock_Hz) from the launches that issue tensor-core instructions")
    clk = sorted(x["sm_clock_Hz"] for x in pts if x["mma"] and x["sm_clock_Hz"])
    print(f"tile_loop: {len(pts)} launches merged into {into}; tensor clock {statistics.median(clk) / 1e9:.3f} GHz "
          f"({clk[0] / 1e9:.3f}-{clk[-1] / 1e9:.3f}) over {len(clk)}")
    return 0


def merge_dot_clock(run_path: str, into: str, *, replace: bool = False) -> int:
    """Add a run's `--dot-clock` points to calibration file `into` as the ``dot_clock`` fact (atomically): the SM
    clock ncu measured while each dot chain behind the replay's tensor figures ran.  memsim.issue_fit reads the
    tensor pipes' FLOPs per cycle at that clock (the chains' FLOP/s / their own clock), not at the calibrate
    plan's."""
    run = _load_run(run_path, "--merge-dot-clock")
    pts = [{k: p[k] for k in ("dot", "repeat", "n_iter", "ctas", "time_s", "sm_clock_Hz", "flops_per_s") if k in p}
           for p in run["points"] if p.get("kind") == "dot_clock" and p.get("sm_clock_Hz")]
    if not pts:
        raise SystemExit(f"--merge-dot-clock: no dot-clock point in {run_path} (run with --dot-clock)")
    sys.path.insert(0, HERE)
    from run_file import merge_fact
    merge_fact(into, "dot_clock", pts, run=run, run_path=run_path, replace=replace,
               note="benchmarks/tile_loop_gpu.py --dot-clock: ncu's SM clock while each dot chain of DOT_CLOCK_POINTS "
                    "ran (dot = [block_m, block_n, block_k, num_warps, ctas_per_sm, dtype]); memsim.issue_fit "
                    "reads the tensor pipes' FLOPs per cycle at that clock")
    for p in pts:
        print(f"dot_clock {p['dot']}: {p['sm_clock_Hz'] / 1e9:.3f} GHz")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="folder for the run (on the GPU machine): tile_loop.json + ncu logs")
    g.add_argument("--worker", action="store_true", help="(internal) the program ncu profiles")
    g.add_argument("--analyse", metavar="RUN", help="compare a run with the replay and memsim (no GPU)")
    g.add_argument("--merge", metavar="RUN", help="add a run to the preset's calibration as the tile_loop fact")
    g.add_argument("--merge-dot-clock", metavar="RUN",
                   help="add a --dot-clock run's chain clocks to the preset's calibration as the dot_clock fact")
    ap.add_argument("--into", default=CALIBRATION, help="with --merge: the calibration file (default: h100-sxm's)")
    ap.add_argument("--replace", action="store_true", help="with --merge: overwrite an existing tile_loop fact")
    ap.add_argument("--manifest", help="(worker) launch order file")
    ap.add_argument("--sections-only", action="store_true", help="(worker) only the T=max, c=max point, once")
    ap.add_argument("--dot-clock", action="store_true",
                    help="also run the dot chains of DOT_CLOCK_POINTS under ncu for their SM clock (with --out); "
                         "with --worker: be that program")
    ap.add_argument("--no-sections", action="store_true", help="skip the ncu sections pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=360)
    ap.add_argument("--variants", default=",".join(v[0] for v in VARIANTS),
                    help="comma-separated variant names (default: all)")
    a = ap.parse_args(argv)
    names = [n for n in a.variants.split(",") if n]
    for n in names:
        variant(n)  # unknown names fail here, with the list
    if a.merge:
        return merge(a.merge, os.path.normpath(a.into), replace=a.replace)
    if a.merge_dot_clock:
        return merge_dot_clock(a.merge_dot_clock, os.path.normpath(a.into), replace=a.replace)
    if a.analyse:
        return analyse(a.analyse)
    if a.worker:
        if not a.manifest:
            ap.error("--worker needs --manifest")
        if a.dot_clock:
            return dot_clock_worker(a.manifest)
        return worker(a.manifest, a.sections_only, a.repeats, names)
    return drive(a.out, a.repeats, a.budget_s, names, dot_clock=a.dot_clock, sections=not a.no_sections)


if __name__ == "__main__":
    sys.exit(main())
