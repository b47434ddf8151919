"""`--gemm-check`: naive's S=QK^T and O=PV launches alone vs cuBLAS on the same operands
(is the naive baseline fair?)."""
from __future__ import annotations

from attention_impls import make_inputs
from attention_timing import bench
from memsim.io import append_jsonl


def gemm_check(args, log):
    import torch
    import kernels
    from kernels.naive import naive_pv_only, naive_qk_only
    from memsim.schedule import AttentionProblem
    recs = []
    for dt in args.dtypes:
        for d in args.head_dims:
            n = min(4096, max(args.seqs))
            B, H = max(1, args.tokens // n), args.hidden // d
            p = AttentionProblem(B, H, H, n, n, d, dt)
            q, k, v, _ = make_inputs(p, args.device)
            s = kernels.default_schedule(p, "naive", "fwd", args.device)
            q3, k3, v3 = (t.reshape(B * H, n, d) for t in (q, k, v))
            S = torch.empty((B * H, n, n), dtype=q.dtype, device=q.device)
            P = torch.softmax(naive_qk_only(p, s, q, k).float(), -1).to(q.dtype)
            cases = {
                "qk": (lambda: naive_qk_only(p, s, q, k),
                       lambda: torch.baddbmm(S, q3, k3.transpose(1, 2), beta=0.0, alpha=p.scale),
                       2 * B * H * n * n * d, (2 * B * H * n * d + B * H * n * n) * p.element_bytes),
                "pv": (lambda: naive_pv_only(p, s, P, v),
                       lambda: torch.bmm(P, v3),
                       2 * B * H * n * n * d, (B * H * n * n + 2 * B * H * n * d) * p.element_bytes),
            }
            for name, (ours, cublas, flops, nbytes) in cases.items():
                rec = dict(gemm_check=name, dtype=dt, head_dim=d, seq=n, batch=B, heads=H, schedule=s.to_dict())
                for who, fn in (("naive", ours), ("cublas", cublas)):
                    ms = bench(fn, args)
                    rec[f"{who}_ms"] = ms
                    rec[f"{who}_tflops"] = flops / (ms * 1e-3) / 1e12
                    rec[f"{who}_GBps"] = nbytes / (ms * 1e-3) / 1e9
                recs.append(rec)
                if log:
                    append_jsonl(log, rec)
                print(f"gemm {name} {dt} d={d} N={n}: naive {rec['naive_ms']:.3f} ms ({rec['naive_GBps']:.0f} GB/s), "
                      f"cuBLAS {rec['cublas_ms']:.3f} ms ({rec['cublas_GBps']:.0f} GB/s), "
                      f"ratio {rec['cublas_ms'] / rec['naive_ms']:.2f}", flush=True)
            del q, k, v, S, P, q3, k3, v3
    return recs
