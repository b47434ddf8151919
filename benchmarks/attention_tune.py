"""`--tune`: time flash2 schedule candidates beside sdpa_flash on each (dtype, d, mask, N)."""
from __future__ import annotations

from attention_impls import Impl, make_inputs
from attention_sweep import causals
from attention_timing import bench
from memsim.io import append_jsonl

FWD_CANDIDATES = {64: [(128, 64, 4, 3), (128, 64, 4, 4), (128, 128, 8, 3), (128, 64, 8, 3), (128, 128, 4, 3),
                       (64, 64, 4, 3), (128, 32, 4, 3), (256, 64, 8, 3)],
                  128: [(128, 64, 8, 3), (128, 64, 4, 3), (128, 128, 8, 2), (128, 128, 8, 3), (128, 32, 4, 3),
                        (64, 64, 4, 3), (128, 64, 8, 4), (256, 64, 8, 2)]}
BWD_CANDIDATES = {64: [(64, 64, 4, 2), (64, 64, 4, 3), (64, 128, 8, 2), (128, 64, 8, 2), (128, 128, 8, 2),
                       (32, 64, 4, 3), (64, 64, 8, 3), (64, 128, 4, 2), (32, 128, 4, 3)],
                  128: [(64, 64, 4, 2), (64, 64, 8, 2), (64, 128, 8, 2), (128, 64, 8, 2), (128, 128, 8, 1),
                        (32, 64, 4, 3), (64, 64, 4, 3), (32, 128, 8, 2), (128, 128, 8, 2)]}


def _time_candidates(args, log, p, q, k, v, do, ps, ref_tf):
    import kernels
    from memsim.schedule import Schedule
    records = []
    f = kernels.forward(p, kernels.default_schedule(p, "flash2", "fwd", args.device), q, k, v)
    for cand in (FWD_CANDIDATES if ps == "fwd" else BWD_CANDIDATES)[p.head_dim]:
        bm, bn, w, st = cand
        s = Schedule("flash2", ps, bm, bn, w, st)
        rec = dict(tune=True, impl="flash2", **{"pass": ps}, dtype=p.dtype, head_dim=p.head_dim, causal=p.causal,
                   seq=p.seq_q, batch=p.batch, heads=p.heads_q, schedule=s.to_dict(), sdpa_flash_tflops=ref_tf)
        try:
            if ps == "fwd":
                ms = bench(lambda: kernels.forward(p, s, q, k, v), args)
            else:
                ms = bench(lambda: kernels.backward(p, s, q, k, v, f.o, do, f), args)
            rec["ms"] = ms
            rec["tflops"] = p.nominal_flops(ps) / (ms * 1e-3) / 1e12
        except Exception as exc:  # noqa: BLE001 -- a candidate that does not compile
            rec["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        records.append(rec)
        if log:
            append_jsonl(log, rec)
        print(f"   {cand}: {rec.get('tflops') or 0:7.1f} TFLOP/s {rec.get('error', '')}", flush=True)
    return records


def tune(args, log):
    from memsim.schedule import AttentionProblem
    records = []
    for dt in args.dtypes:
        for d in args.head_dims:
            for c in causals(args):
                for n in args.seqs:
                    B, H = max(1, args.tokens // n), args.hidden // d
                    p = AttentionProblem(B, H, H, n, n, d, dt, causal=c)
                    q, k, v, do = make_inputs(p, args.device)
                    sd = Impl("sdpa_flash", p, q, k, v, do, args)
                    base = {}
                    if "fwd" in args.passes:
                        base["fwd"] = bench(sd.fwd, args)
                    if "bwd" in args.passes:
                        sd.prepare_bwd()
                        base["bwd"] = bench(sd.bwd, args)
                    del sd
                    for ps in args.passes:
                        ref_tf = p.nominal_flops(ps) / (base[ps] * 1e-3) / 1e12
                        print(f"-- {dt} d={d} causal={int(c)} N={n} {ps}: sdpa_flash {ref_tf:.1f} TFLOP/s", flush=True)
                        records += _time_candidates(args, log, p, q, k, v, do, ps, ref_tf)
                    del q, k, v, do
    return records
