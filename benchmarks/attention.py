"""Attention speed benchmark: our naive / flash1 / flash2 Triton kernels beside torch SDPA's backends.

Forward and backward TFLOP/s (FLOPs as DESIGN.md counts them: 4*B*H*N^2*d forward, halved when
causal, 2.5x that backward) and peak extra device memory (bytes allocated beyond the inputs by one
pass, outputs included, as tests/fixtures/ncu/anchors_sdpa.json counts it), for bf16 and fp16,
d = 64 and 128, causal and not, N = 512 .. 16384 with B*N = 16384 tokens and H = 2048 / d; plus
the 2022 paper's GPT-2-medium shape (B=64, H=16, N=1024, d=64): naive vs flash2 forward+backward.

Every implementation passes a correctness gate before it is timed: on one batch element and two
heads of the benchmark's own inputs, its output (and gradients for the backward) must satisfy
DESIGN.md's rule against a float64 reference.  Times are triton.testing.do_bench medians.

Results: benchmarks/results/<gpu-slug>.json ({"provenance", "records", "summary"}; each record has
impl, pass, dtype, batch, heads, seq, head_dim, causal, ms, tflops, peak_extra_bytes, ...) and a
Markdown table beside it.  Existing files are never replaced: a new name is chosen unless --force.

Examples (GPU):
  PYTHONPATH=. python benchmarks/attention.py                          # the whole sweep (long)
  PYTHONPATH=. python benchmarks/attention.py --seqs 2048,4096 --head-dims 64 --dtypes bf16
  PYTHONPATH=. python benchmarks/attention.py --impls flash2,sdpa_flash --passes fwd --no-gpt2
  PYTHONPATH=. python benchmarks/attention.py --tune --seqs 4096     # flash2 schedule search
"""
from __future__ import annotations

# Split by job: attention_impls (what is timed), attention_timing (how), attention_gate (the
# correctness gate), attention_sweep (the sweep and the GPT-2 case), attention_tune (--tune),
# attention_gemm (--gemm-check), attention_report (the Markdown table).
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for _p in (ROOT, HERE):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from attention_impls import IMPLS  # noqa: E402


def _csv(kind):
    return lambda s: [kind(x) for x in s.split(",") if x]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impls", type=_csv(str), default=list(IMPLS), help=f"comma list from {','.join(IMPLS)}")
    ap.add_argument("--passes", type=_csv(str), default=["fwd", "bwd"], help="fwd,bwd")
    ap.add_argument("--dtypes", type=_csv(str), default=["bf16", "fp16"])
    ap.add_argument("--head-dims", type=_csv(int), default=[64, 128])
    ap.add_argument("--causal", choices=["both", "true", "false"], default="both")
    ap.add_argument("--seqs", type=_csv(int), default=[512, 1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--tokens", type=int, default=16384, help="B*N (default 16384)")
    ap.add_argument("--hidden", type=int, default=2048, help="H*d (default 2048)")
    ap.add_argument("--no-gpt2", action="store_true", help="skip the GPT-2-medium naive vs flash2 case")
    ap.add_argument("--gpt2-dtype", default="fp16")
    ap.add_argument("--max-materialized-gb", type=float, default=40.0,
                    help="skip naive/sdpa_math when S,P,dP would exceed this (GB)")
    ap.add_argument("--warmup-ms", type=float, default=10.0)
    ap.add_argument("--rep-ms", type=float, default=50.0)
    ap.add_argument("--time-budget-s", type=float, default=1e9,
                    help="stop starting new cases after this many seconds and write what was measured")
    ap.add_argument("--no-gate", action="store_true", help="skip the correctness gate (not recommended)")
    ap.add_argument("--fwd-schedule", default=None, help="flash2 fwd override: block_m,block_n,warps,stages")
    ap.add_argument("--bwd-schedule", default=None, help="flash2 bwd override: block_m,block_n,warps,stages")
    ap.add_argument("--tune", action="store_true", help="search flash2 fwd/bwd schedules instead of the sweep")
    ap.add_argument("--gemm-check", action="store_true",
                    help="also time naive's S=QK^T and O=PV launches against cuBLAS (torch.baddbmm / bmm)")
    ap.add_argument("--out", default=None, help="output JSON (default benchmarks/results/<gpu>.json)")
    ap.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    ap.add_argument("--log", default=None, help="also append each record as a JSON line here")
    ap.add_argument("--device", default="cuda",
                    help="cuda (default); 'cpu' with TRITON_INTERPRET=1 only smoke-tests this script (tiny sizes)")
    args = ap.parse_args(argv)
    bad = set(args.impls) - set(IMPLS)
    if bad:
        ap.error(f"unknown impl(s) {sorted(bad)}; choose from {IMPLS}")
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmarks/attention.py needs a CUDA GPU (or --device cpu with TRITON_INTERPRET=1 for a smoke test)")
    from attention_gemm import gemm_check
    from attention_gate import clear_cache
    from attention_report import markdown
    from attention_sweep import gpt2_case, sweep
    from attention_tune import tune
    from kernels.device_info import gpu_slug, provenance
    from memsim.io import unique_path, write_atomic, write_json
    command = "python benchmarks/attention.py " + " ".join(sys.argv[1:] if argv is None else argv)
    prov = provenance(command)
    log = open(args.log, "a") if args.log else None
    t0 = time.time()
    summary = {}
    if args.tune:
        records = tune(args, log)
    else:
        records = []
        if not args.no_gpt2:
            recs, s = gpt2_case(args, log)
            records += recs
            summary["gpt2_medium"] = s
        if args.gemm_check:
            records += gemm_check(args, log)
        records += sweep(args, log)
        clear_cache()
    prov["wall_s"] = round(time.time() - t0, 1)
    default = ROOT / "benchmarks" / "results" / (gpu_slug() + (".tune" if args.tune else "") + ".json")
    out = Path(args.out) if args.out else default
    if out.exists() and not args.force:
        out = unique_path(out)
    write_json(out, {"provenance": prov, "records": records, "summary": summary}, overwrite=args.force)
    md = out.with_suffix(".md")
    if md.exists() and not args.force:
        md = unique_path(md)
    if not args.tune:
        write_atomic(md, markdown(records, summary.get("gpt2_medium"), prov), overwrite=args.force)
    print(f"wrote {out}" + ("" if args.tune else f" and {md}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
