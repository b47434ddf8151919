"""One device call: shared-memory wavefronts per instruction of real tile loops, against `kernels.smem_banks`.

`kernels.smem_banks` computes, on the CPU, the wavefronts each LDS / LDSM / STS of a compiled kernel needs (the
lanes' shared addresses from the SASS, the H100's bank rules).  This benchmark checks it on tile loops nobody
tuned it on: fp32 flash2 loops (FMA dots: operands shared -> registers with LDS.128 / LDS.64) of other block
shapes, warps and head dims than the two of run-2026-11-26T0948, the fp32 backward loops, and fp16 loops on
mma.sync (LDSM).  The loops run as in `benchmarks/tile_loop_gpu.py` (one wave of 132 CTAs, one head, T = 4 and 12
trips): the difference between the two counts is 8 trips' worth.

    python benchmarks/smem_banks_gpu.py --predict OUT.json          # here, before the call: the predictions
    run(command="python3 benchmarks/smem_banks_gpu.py --out $OUT", timeout_s=120)
    python benchmarks/smem_banks_gpu.py --analyse RUN.json --predictions OUT.json

Counters (ncu, default cache control, ``--clock-control none``): ``smsp__inst_executed_op_shared_ld`` /
``_st`` / ``_ldsm`` (warp instructions; ncu counts predicated-off ones too) and
``l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld`` / ``_st`` / ``_ldsm``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import tile_loop_gpu as T  # noqa: E402

#: (name, algorithm, phase, launch, dtype, head_dim, block_m, block_n, num_warps, num_stages)
VARIANTS = (
    ("f2fwd_fp32_d64_64x32_w4", "flash2", "fwd", "flash2_fwd", "fp32", 64, 64, 32, 4, 2),  # run 2's, again
    ("f2fwd_fp32_d64_32x32_w4", "flash2", "fwd", "flash2_fwd", "fp32", 64, 32, 32, 4, 2),
    ("f2fwd_fp32_d32_64x32_w4", "flash2", "fwd", "flash2_fwd", "fp32", 32, 64, 32, 4, 2),
    ("f2fwd_fp32_d64_32x64_w2", "flash2", "fwd", "flash2_fwd", "fp32", 64, 32, 64, 2, 2),
    ("f2fwd_fp32_d128_32x32_w2", "flash2", "fwd", "flash2_fwd", "fp32", 128, 32, 32, 2, 2),
    ("f2fwd_fp32_d64_64x32_w8", "flash2", "fwd", "flash2_fwd", "fp32", 64, 64, 32, 8, 2),
    ("f2fwd_fp32_d16_64x64_w4", "flash2", "fwd", "flash2_fwd", "fp32", 16, 64, 64, 4, 2),
    ("f2dkdv_fp32_d64_32x32_w4", "flash2", "bwd", "flash2_bwd_dkdv", "fp32", 64, 32, 32, 4, 2),
    ("f2dq_fp32_d64_32x32_w4", "flash2", "bwd", "flash2_bwd_dq", "fp32", 64, 32, 32, 4, 2),
    ("f2fwd_fp16_d64_64x32_w2", "flash2", "fwd", "flash2_fwd", "fp16", 64, 64, 32, 2, 2),
    ("f2fwd_fp16_d128_32x64_w2", "flash2", "fwd", "flash2_fwd", "fp16", 128, 32, 64, 2, 2),
    ("f2fwd_fp16_d64_32x64_w4", "flash2", "fwd", "flash2_fwd", "fp16", 64, 32, 64, 4, 2),
)
TRIPS = (4, 12)
METRICS = ("gpu__time_duration.sum", "sm__cycles_elapsed.avg.per_second",
           "smsp__inst_executed_op_shared_ld.sum", "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
           "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
           "smsp__inst_executed_op_shared_st.sum", "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum",
           "smsp__inst_executed_op_ldsm.sum", "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ldsm.sum",
           "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum")
#: the bank models predicted side by side (kernels.smem_banks.BankModel): the H100's, quarter-warp phases that never
#: share a wavefront, and whole-warp sharing (only the most distinct words asked of one bank count)
MODELS = ("h100", "quarters", "warp")


def _use_variants() -> None:
    """tile_loop_gpu's worker and helpers, with this benchmark's variants and trips, one CTA per SM."""
    T.VARIANTS = T.VARIANTS + tuple(v for v in VARIANTS if v[0] not in {x[0] for x in T.VARIANTS})
    T.TRIPS = TRIPS
    T.CTAS_PER_SM = (1,)


def bank_models() -> dict:
    from kernels import smem_banks as B
    widths = tuple(w for w, _ in B.H100.phase_lanes)
    return {"h100": B.H100,
            "quarters": B.BankModel(name="quarters", group_lanes=B.H100.phase_lanes),
            "warp": B.BankModel(name="warp", phase_lanes=tuple((w, 32) for w in widths),
                                group_lanes=tuple((w, 32) for w in widths))}


def predict_one(v: dict) -> dict:
    """Per warp: the tile loop's shared loads / stores and their wavefronts per trip under each model, and the
    code outside every loop (once per CTA)."""
    import triton
    from triton.backends.compiler import GPUTarget

    from kernels import smem_banks as B
    from kernels.compiled_facts import _specialise, capture
    from kernels.sass import disassemble, instructions, tile_loop
    p, s, _ = T.problem_and_schedule(v, 1, TRIPS[-1])
    for jf, args, kwargs, grid in capture(p, s):
        src, opt = _specialise(jf, args, kwargs, GPUTarget("cuda", 90, 32))
        ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=opt.__dict__)
        if ck.name.lstrip("_") != v["launch"]:
            continue
        text = disassemble(ck.asm["cubin"])
        ins, loops = instructions(text)
        lb = tile_loop(text).label
        a, b = next((a, b) for l, a, b in loops if l == lb)
        inloop = {k for _, x, y in loops for k in range(x, y + 1)}
        rec = {"kernel": ck.name, "loop": lb, "num_warps": v["num_warps"]}
        for mn, m in bank_models().items():
            rep = B.wavefronts(text, num_warps=v["num_warps"], model=m)
            acc = rep.accesses

            def tot(sel, ops):
                ks = [k for k in rep.wavefronts if sel(k) and acc[k].op in ops]
                return len(ks), sum(rep.wavefronts[k] for k in ks)
            ld = tot(lambda k: a <= k <= b, ("LDS",))
            sm = tot(lambda k: a <= k <= b, ("LDSM",))
            st = tot(lambda k: a <= k <= b, ("STS",))
            rec[mn] = {"loop_lds": ld[0], "loop_lds_wavefronts": ld[1], "loop_ldsm": sm[0],
                       "loop_ldsm_wavefronts": sm[1], "loop_sts": st[0], "loop_sts_wavefronts": st[1],
                       "straight_lds_wavefronts": tot(lambda k: k not in inloop, ("LDS",))[1],
                       "unresolved": len(rep.unresolved)}
        import collections
        rec["loop_mix"] = dict(collections.Counter(acc[k].op + acc[k].mods for k in acc if a <= k <= b))
        return rec
    raise RuntimeError(f"{v['name']}: no launch {v['launch']}")


def predict(out: str, names: list[str]) -> int:
    import datetime

    import triton
    _use_variants()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    doc = {"format": "smem_banks_predictions/1",
           "provenance": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                          "commit": commit, "triton": triton.__version__, "target": "sm_90 (compiled on the CPU)",
                          "command": "python benchmarks/smem_banks_gpu.py --predict " + out,
                          "note": "per warp per tile-loop trip; h100 = kernels.smem_banks.H100, the model under test; "
                                  "quarters / warp = the two alternatives (see bank_models)"},
           "variants": {}}
    for n in names:
        t0 = time.time()
        doc["variants"][n] = predict_one(T.variant(n))
        h = doc["variants"][n]["h100"]
        print(f"{n:28s} {time.time() - t0:5.1f}s  LDS {h['loop_lds']:4d} {h['loop_lds_wavefronts']:7.1f} wf "
              f"({h['loop_lds_wavefronts'] / max(h['loop_lds'], 1):.3f}/LDS; quarters "
              f"{doc['variants'][n]['quarters']['loop_lds_wavefronts']:.0f}, warp "
              f"{doc['variants'][n]['warp']['loop_lds_wavefronts']:.0f})  LDSM {h['loop_ldsm']} "
              f"{h['loop_ldsm_wavefronts']:.0f}  STS {h['loop_sts']} {h['loop_sts_wavefronts']:.0f}", flush=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    return 0


def _compile_all(name: str) -> str:
    """Compile every launch the worker will make for variant `name` (into Triton's cache, so that the profiled
    process finds them compiled): run in parallel before ncu starts."""
    import triton
    from triton.backends.compiler import GPUTarget

    from kernels.compiled_facts import _specialise, capture
    from memsim.schedule import Schedule
    _use_variants()
    v = T.variant(name)
    t0 = time.time()
    p, s, _ = T.problem_and_schedule(v, 1, TRIPS[0])
    todo = [(p, s)]
    if s.phase == "bwd":  # the worker's forward for the saved tensors (tile_loop_gpu.worker)
        todo.append((p, Schedule(algorithm="flash2", phase="fwd", block_m=64, block_n=64, num_warps=4, num_stages=2)))
    for pp, ss in todo:
        for jf, args, kwargs, grid in capture(pp, ss):
            src, opt = _specialise(jf, args, kwargs, GPUTarget("cuda", 90, 32))
            triton.compile(src, target=GPUTarget("cuda", 90, 32), options=opt.__dict__)
    return f"{name} {time.time() - t0:.1f}s"


def precompile(names: list[str], timeout_s: float) -> None:
    from concurrent.futures import ProcessPoolExecutor, wait
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=min(len(names), os.cpu_count() or 4)) as ex:
        futs = [ex.submit(_compile_all, n) for n in names]
        done, _ = wait(futs, timeout=timeout_s)
        for f in done:
            try:
                print("compiled", f.result(), flush=True)
            except Exception as e:  # noqa: BLE001 -- the profiled process compiles what is missing
                print(f"precompile failed: {type(e).__name__}: {e}"[:300], flush=True)
    print(f"precompile {time.time() - t0:.0f} s", flush=True)


def drive(out: str, names: list[str], budget_s: float) -> int:
    from run_file import write_run

    from verification.ncu import available_metrics, filter_metrics, parse_csv
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    man = os.path.join(out, "smem_banks.manifest.json")
    metrics, dropped = filter_metrics(list(METRICS), available_metrics("gh100"))
    if dropped:
        print(f"ncu does not know {dropped}: left out", flush=True)
    args = ["ncu", "--clock-control", "none", "--profile-from-start", "off", "--csv", "--print-units", "base",
            "-k", "regex:^_flash2_(fwd|bwd_dkdv|bwd_dq)$", "--metrics", ",".join(metrics),
            sys.executable, os.path.abspath(__file__), "--worker", "--manifest", man, "--variants", ",".join(names)]
    precompile(names, min(45.0, budget_s / 3))
    text = T._ncu(args, os.path.join(out, "smem_banks.ncu.log"), budget_s - (time.time() - t0))
    rows = parse_csv(text)
    order = json.load(open(man)) if os.path.exists(man) else []
    points, i = [], 0
    for o in order:
        if "error" in o:
            points.append(o)
            continue
        own = [n for n in o["launches"] if n in ("flash2_fwd", "flash2_bwd_dkdv", "flash2_bwd_dq")]
        got = rows[i:i + len(own)]
        i += len(own)
        for name, row in zip(own, got):
            points.append({"variant": o["variant"], "trips": o["trips"], "repeat": o["repeat"], "launch": name,
                           "kernel": row.name, "grid": row.grid, "block": row.block, "metrics": row.metrics})
    ncu_v = subprocess.run(["ncu", "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1:]
    write_run(os.path.join(out, "smem_banks.json"), "smem_banks/1", points, script="smem_banks_gpu.py", argv=None,
              t0=t0, method=f"ncu ({' '.join(ncu_v)}) shared-memory instruction and wavefront counters per launch "
                            "(default cache control, --clock-control none); one wave of 132 CTAs, one head, "
                            f"{TRIPS} trips, 1 repeat")
    print(f"{len(points)} launches, {time.time() - t0:.0f} s", flush=True)
    return 0


def per_trip(run: dict) -> dict:
    """{(variant, launch): {counter: per warp per trip}}: (count at T=12 - count at T=4) / (8 trips x warps)."""
    by = {}
    for p in run["points"]:
        if "error" in p or "metrics" not in p:
            continue
        v = T.variant(p["variant"]) if p["variant"] in {x[0] for x in T.VARIANTS} else None
        if v is None or p["launch"] != v["launch"]:
            continue
        by.setdefault(p["variant"], {})[p["trips"]] = (p["metrics"], v["num_warps"])
    out = {}
    for name, ts in by.items():
        if not all(t in ts for t in TRIPS):
            continue
        (lo, w), (hi, _) = ts[TRIPS[0]], ts[TRIPS[-1]]
        warps = 132 * w * (TRIPS[-1] - TRIPS[0])
        out[name] = {k: (hi.get(k, 0) - lo.get(k, 0)) / warps for k in hi if k.startswith(("smsp__inst", "l1tex__"))}
    return out


def analyse(run_path: str, pred_path: str) -> int:
    _use_variants()
    run = json.load(open(run_path))
    pred = json.load(open(pred_path))["variants"]
    meas = per_trip(run)
    ld_i, ld_w = "smsp__inst_executed_op_shared_ld.sum", "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum"
    sm_i, sm_w = "smsp__inst_executed_op_ldsm.sum", "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ldsm.sum"
    st_i, st_w = "smsp__inst_executed_op_shared_st.sum", "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum"
    print(f"{'variant':26s} {'LDS meas/pred':>13s} {'LDS wf meas':>11s} {'h100':>7s} {'err':>6s} {'quarters':>8s} "
          f"{'warp':>7s} | {'LDSM wf m/p':>13s} | {'STS wf m/p':>11s}")
    for name in pred:
        if name not in meas:
            print(f"{name:26s} not measured")
            continue
        m, p = meas[name], pred[name]
        h = p["h100"]
        # LDSM: counted under op_ld too on some ncu versions; show both
        print(f"{name:26s} {m.get(ld_i, 0):6.1f}/{h['loop_lds'] + h['loop_ldsm']:<6d} {m.get(ld_w, 0):11.1f} "
              f"{h['loop_lds_wavefronts'] + h['loop_ldsm_wavefronts']:7.1f} "
              f"{(h['loop_lds_wavefronts'] + h['loop_ldsm_wavefronts']) / m[ld_w] - 1 if m.get(ld_w) else float('nan'):+6.1%} "
              f"{p['quarters']['loop_lds_wavefronts'] + p['quarters']['loop_ldsm_wavefronts']:8.1f} "
              f"{p['warp']['loop_lds_wavefronts'] + p['warp']['loop_ldsm_wavefronts']:7.1f} | "
              f"{m.get(sm_w, float('nan')):6.1f}/{h['loop_ldsm_wavefronts']:<6.1f} | "
              f"{m.get(st_w, float('nan')):5.1f}/{h['loop_sts_wavefronts']:<5.1f}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="folder for the run (on the GPU machine)")
    g.add_argument("--worker", action="store_true", help="(internal) the program ncu profiles")
    g.add_argument("--predict", metavar="JSON", help="compile here for sm_90 and write the predictions")
    g.add_argument("--analyse", metavar="RUN", help="compare a run with --predictions")
    ap.add_argument("--predictions", help="with --analyse: the predictions file")
    ap.add_argument("--manifest")
    ap.add_argument("--budget-s", type=float, default=100)
    ap.add_argument("--variants", default=",".join(v[0] for v in VARIANTS))
    a = ap.parse_args(argv)
    names = [n for n in a.variants.split(",") if n]
    _use_variants()
    for n in names:
        T.variant(n)
    if a.predict:
        return predict(a.predict, names)
    if a.analyse:
        return analyse(a.analyse, a.predictions)
    if a.worker:
        return T.worker(a.manifest, False, 1, names)
    return drive(a.out, names, a.budget_s)


if __name__ == "__main__":
    if "--worker" not in sys.argv:
        os.environ.pop("TRITON_INTERPRET", None)
    sys.exit(main())
