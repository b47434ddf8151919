"""The attention benchmark's sweep: gate then time each implementation on each (dtype, d, mask, N),
plus the 2022 paper's GPT-2-medium case."""
from __future__ import annotations

import time

from attention_gate import clear_cache, gate
from attention_impls import Impl, make_inputs
from attention_timing import bench, peak_extra
from memsim.io import append_jsonl


def materialized_bytes(problem):
    return 3 * problem.batch * problem.heads_q * problem.seq_q * problem.seq_kv * problem.element_bytes


def run_case(impl_name, problem, inputs, args, passes, log):
    """Gate, then time each pass; returns records."""
    import torch
    cuda = args.device == "cuda"
    q, k, v, do = inputs
    base = dict(impl=impl_name, dtype=problem.dtype, batch=problem.batch, heads=problem.heads_q,
                seq=problem.seq_q, head_dim=problem.head_dim, causal=problem.causal)
    records = []
    if impl_name in ("naive", "sdpa_math") and materialized_bytes(problem) > args.max_materialized_gb * 1e9:
        for ps in passes:
            records.append({**base, "pass": ps, "ms": None, "tflops": None, "peak_extra_bytes": None,
                            "skipped": f"S/P/dP would need {materialized_bytes(problem) / 1e9:.1f} GB "
                                       f"> --max-materialized-gb {args.max_materialized_gb}"})
        return records
    try:
        ok, msg = (True, "not run (--no-gate)") if args.no_gate else gate(impl_name, problem, q, k, v, do, args,
                                                                          passes)
    except (RuntimeError, NotImplementedError) as exc:  # backend unavailable for this case
        ok, msg = None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    if cuda:
        torch.cuda.empty_cache()
    for ps in passes:
        rec = {**base, "pass": ps, "ms": None, "tflops": None, "peak_extra_bytes": None, "gate": msg}
        if ps == "bwd" and impl_name == "flash1":
            continue
        if ok is not True:
            rec["skipped"] = "unavailable: " + msg if ok is None else "failed the correctness gate"
            records.append(rec)
            continue
        impl = Impl(impl_name, problem, q, k, v, do, args)
        if impl.schedules:
            rec["schedule"] = impl.schedules[ps].to_dict()
        try:
            if ps == "fwd":
                rec["peak_extra_bytes"] = peak_extra(impl.fwd, args.device)
                ms = bench(impl.fwd, args)
            else:
                impl.prepare_bwd()
                rec["peak_extra_bytes"] = peak_extra(impl.bwd, args.device)
                ms = bench(impl.bwd, args)
            rec["ms"] = ms
            rec["tflops"] = problem.nominal_flops(ps) / (ms * 1e-3) / 1e12
        except torch.cuda.OutOfMemoryError as exc:
            rec["skipped"] = f"out of memory: {str(exc).splitlines()[0][:160]}"
        except RuntimeError as exc:
            rec["skipped"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        del impl
        if cuda:
            torch.cuda.empty_cache()
        records.append(rec)
        if log:
            append_jsonl(log, rec)
        t = f"{rec['tflops']:7.1f}" if rec["tflops"] else "   -   "
        print(f"{impl_name:15s} {ps} {problem.dtype} d={problem.head_dim:3d} N={problem.seq_q:5d} "
              f"causal={int(problem.causal)} {t} TFLOP/s  {rec.get('ms') or 0:8.3f} ms  "
              f"{(rec['peak_extra_bytes'] or 0) / 1e6:9.1f} MB  {rec.get('skipped', '')}", flush=True)
    return records


def causals(args):
    return {"both": [False, True], "true": [True], "false": [False]}[args.causal]


def sweep(args, log):
    from memsim.schedule import AttentionProblem
    t0 = time.time()
    records = []
    cases = [(dt, d, c, n) for dt in args.dtypes for d in args.head_dims for c in causals(args) for n in args.seqs]
    for i, (dt, d, c, n) in enumerate(cases):
        if time.time() - t0 > args.time_budget_s:
            print(f"time budget reached: {len(cases) - i} cases not run", flush=True)
            records.append({"skipped_cases": [dict(dtype=x[0], head_dim=x[1], causal=x[2], seq=x[3])
                                              for x in cases[i:]]})
            break
        B, H = max(1, args.tokens // n), args.hidden // d
        p = AttentionProblem(B, H, H, n, n, d, dt, causal=c)
        inputs = make_inputs(p, args.device, seed=i)
        for impl in args.impls:
            records += run_case(impl, p, inputs, args, args.passes, log)
        del inputs
        clear_cache()
    return records


def gpt2_case(args, log):
    from memsim.schedule import AttentionProblem
    p = AttentionProblem(64, 16, 16, 1024, 1024, 64, args.gpt2_dtype, causal=False)
    inputs = make_inputs(p, args.device, seed=1234)
    recs = []
    for impl in ("naive", "flash2"):
        recs += run_case(impl, p, inputs, args, ["fwd", "bwd"], log)
    for r in recs:
        r["case"] = "gpt2_medium"
    t = {(r["impl"], r["pass"]): r["ms"] for r in recs}
    summary = None
    if all(t.get((i, ps)) for i in ("naive", "flash2") for ps in ("fwd", "bwd")):
        naive = t[("naive", "fwd")] + t[("naive", "bwd")]
        flash = t[("flash2", "fwd")] + t[("flash2", "bwd")]
        summary = {"shape": dict(batch=64, heads=16, seq=1024, head_dim=64, dtype=args.gpt2_dtype, causal=False),
                   "naive_fwd_bwd_ms": naive, "flash2_fwd_bwd_ms": flash, "speedup": naive / flash}
        print(f"GPT-2 medium fwd+bwd: naive {naive:.3f} ms, flash2 {flash:.3f} ms, speedup {naive / flash:.2f}x")
    return recs, summary
