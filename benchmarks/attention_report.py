"""The attention benchmark's Markdown table (beside the JSON records)."""
from __future__ import annotations

from attention_impls import IMPLS


def markdown(records, summary, prov):
    lines = [f"# Attention benchmark on {prov.get('gpu')}", "",
             f"torch {prov.get('torch')}, triton {prov.get('triton')}, CUDA {prov.get('cuda')}, "
             f"driver {prov.get('driver')}, {prov.get('date')}. TFLOP/s (do_bench median); FLOPs = "
             f"4·B·H·N²·d fwd (½ causal), 2.5× bwd; B·N = 16384, H·d = 2048.", ""]
    rows = [r for r in records if "impl" in r and not r.get("case") and not r.get("tune")]
    gemms = [r for r in records if r.get("gemm_check")]
    impls = [i for i in IMPLS if any(r["impl"] == i for r in rows)]
    keys = sorted({(r["dtype"], r["head_dim"], r["causal"], r["pass"]) for r in rows},
                  key=lambda x: (x[0], x[1], x[2], x[3] != "fwd"))
    for dt, d, c, ps in keys:
        lines.append(f"## {dt}, d={d}, {'causal' if c else 'no mask'}, {ps}")
        lines.append("")
        lines.append("| N | " + " | ".join(impls) + " |")
        lines.append("|---|" + "---|" * len(impls))
        for n in sorted({r["seq"] for r in rows}):
            cells = []
            for i in impls:
                r = next((r for r in rows if (r["impl"], r["dtype"], r["head_dim"], r["causal"], r["pass"], r["seq"])
                          == (i, dt, d, c, ps, n)), None)
                cells.append("" if r is None else (f"{r['tflops']:.0f}" if r.get("tflops") else "–"))
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    if summary:
        s = summary
        lines += ["## GPT-2 medium (B=64, H=16, N=1024, d=64), forward + backward", "",
                  f"naive {s['naive_fwd_bwd_ms']:.3f} ms, flash2 {s['flash2_fwd_bwd_ms']:.3f} ms: "
                  f"flash2 is {s['speedup']:.2f}× faster.", ""]
    if gemms:
        lines += [f"## naive's matmul launches vs cuBLAS (same operands, N={gemms[0]['seq']})", "",
                  "| launch | dtype | d | naive ms | cuBLAS ms | naive / cuBLAS speed |", "|---|---|---|---|---|---|"]
        for r in gemms:
            lines.append(f"| {r['gemm_check']} | {r['dtype']} | {r['head_dim']} | {r['naive_ms']:.3f} | "
                         f"{r['cublas_ms']:.3f} | {r['cublas_ms'] / r['naive_ms']:.2f} |")
        lines.append("")
    mem = [r for r in rows if r["pass"] == "fwd" and r.get("peak_extra_bytes") and r["dtype"] == rows[0]["dtype"]
           and r["head_dim"] == rows[0]["head_dim"] and not r["causal"]]
    if mem:
        lines += [f"## Peak extra memory, forward ({rows[0]['dtype']}, d={rows[0]['head_dim']}, no mask), MB", "",
                  "| N | " + " | ".join(impls) + " |", "|---|" + "---|" * len(impls)]
        for n in sorted({r["seq"] for r in mem}):
            cells = []
            for i in impls:
                r = next((r for r in mem if r["impl"] == i and r["seq"] == n), None)
                cells.append("" if r is None else f"{r['peak_extra_bytes'] / 1e6:.0f}")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"
