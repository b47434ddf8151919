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

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IMPLS = ("naive", "flash1", "flash2", "sdpa_flash", "sdpa_efficient", "sdpa_cudnn", "sdpa_math")
OURS = ("naive", "flash1", "flash2")
DEVICE = "cuda"


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


# --- implementations ---------------------------------------------------------------------------

def _sdpa_backend(impl):
    from torch.nn.attention import SDPBackend
    return {"sdpa_flash": SDPBackend.FLASH_ATTENTION, "sdpa_efficient": SDPBackend.EFFICIENT_ATTENTION,
            "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION, "sdpa_math": SDPBackend.MATH}[impl]


def _sched(s, problem, alg, phase):
    import kernels
    from memsim.schedule import Schedule
    if s is None or alg != "flash2":
        return kernels.default_schedule(problem, alg, phase, DEVICE)
    bm, bn, w, st = (int(x) for x in s.split(","))
    return Schedule(algorithm=alg, phase=phase, block_m=bm, block_n=bn, num_warps=w, num_stages=st)


class Impl:
    """fwd() and bwd() closures for one implementation on fixed inputs."""

    def __init__(self, name, problem, q, k, v, do, args):
        import torch
        import kernels
        self.name, self.problem = name, problem
        self.q, self.k, self.v, self.do = q, k, v, do
        self.causal = problem.causal
        self.schedules = {}
        if name in OURS:
            alg = name
            self.schedules["fwd"] = _sched(args.fwd_schedule, problem, alg, "fwd")
            bwd_alg = "naive" if alg == "naive" else "flash2"
            self.schedules["bwd"] = _sched(args.bwd_schedule, problem, bwd_alg, "bwd")
            self._kernels = kernels
        self._torch = torch
        self._saved = None

    def fwd(self):
        if self.name in OURS:
            return self._kernels.forward(self.problem, self.schedules["fwd"], self.q, self.k, self.v)
        from torch.nn.attention import sdpa_kernel
        with sdpa_kernel(_sdpa_backend(self.name)):
            return self._torch.nn.functional.scaled_dot_product_attention(self.q, self.k, self.v,
                                                                         is_causal=self.causal)

    def prepare_bwd(self):
        """Run the forward once, keeping what the backward needs."""
        if self.name in OURS:
            if self.name == "flash1":
                raise NotImplementedError("flash1 has no backward")
            self._saved = self.fwd()
        else:
            q, k, v = (t.detach().requires_grad_(True) for t in (self.q, self.k, self.v))
            from torch.nn.attention import sdpa_kernel
            with sdpa_kernel(_sdpa_backend(self.name)):
                o = self._torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
            self._saved = (q, k, v, o)

    def bwd(self):
        if self.name in OURS:
            f = self._saved
            return self._kernels.backward(self.problem, self.schedules["bwd"], self.q, self.k, self.v, f.o,
                                          self.do, f)
        q, k, v, o = self._saved
        return self._torch.autograd.grad(o, (q, k, v), self.do, retain_graph=True)

    def output(self, res):
        return res.o if self.name in OURS else res


# --- measurement ---------------------------------------------------------------------------------

def bench(fn, args):
    if DEVICE == "cpu":  # smoke test only
        fn()
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    import triton
    return triton.testing.do_bench(fn, warmup=args.warmup_ms, rep=args.rep_ms, return_mode="median")


def peak_extra(fn):
    """Bytes allocated at peak by fn() beyond what was allocated before it (outputs included)."""
    import torch
    if DEVICE == "cpu":
        fn()
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return int(peak)


_GATE_CACHE = {}


def _gate_refs(problem, qs, ks, vs, dos, want_bwd):
    """float64 reference and same-dtype naive results of the gate slice, computed once per case."""
    import kernels
    key = (qs.data_ptr(), problem, want_bwd)
    if key not in _GATE_CACHE:
        _GATE_CACHE.clear()
        ref = kernels.reference(qs, ks, vs, causal=problem.causal, do=dos if want_bwd else None)
        nv = kernels.naive_same_dtype(qs, ks, vs, causal=problem.causal, do=dos if want_bwd else None)
        _GATE_CACHE[key] = (ref, nv)
    return _GATE_CACHE[key]


def gate(impl_name, problem, q, k, v, do, args, passes):
    """DESIGN.md's rule on batch 0, heads 0..1 of the benchmark inputs.  Returns (ok, message)."""
    from kernels.testing import check_rule
    sl = (slice(0, 1), slice(0, min(2, q.shape[1])))
    qs, ks, vs, dos = (t[sl] for t in (q, k, v, do))
    sub = replace(problem, batch=1, heads_q=qs.shape[1], heads_kv=ks.shape[1])
    impl = Impl(impl_name, sub, qs, ks, vs, dos, args)
    want_bwd = "bwd" in passes
    try:
        ref, nv = _gate_refs(sub, qs, ks, vs, dos, want_bwd)
        o = impl.output(impl.fwd())
        check_rule("o", o, ref[0], nv[0], problem.dtype, verbose=False)
        if want_bwd and impl_name != "flash1":
            impl.prepare_bwd()
            grads = impl.bwd()
            for name, g, gr, gn in zip(("dq", "dk", "dv"), grads, ref[2:], nv[2:]):
                check_rule(name, g, gr, gn, problem.dtype, verbose=False)
        return True, "ok"
    except AssertionError as exc:
        return False, str(exc)[:300]


def materialized_bytes(problem):
    return 3 * problem.batch * problem.heads_q * problem.seq_q * problem.seq_kv * problem.element_bytes


def run_case(impl_name, problem, inputs, args, passes, log):
    """Gate, then time each pass; returns records."""
    import torch
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
    if DEVICE == "cuda":
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
                rec["peak_extra_bytes"] = peak_extra(impl.fwd)
                ms = bench(impl.fwd, args)
            else:
                impl.prepare_bwd()
                rec["peak_extra_bytes"] = peak_extra(impl.bwd)
                ms = bench(impl.bwd, args)
            rec["ms"] = ms
            rec["tflops"] = problem.nominal_flops(ps) / (ms * 1e-3) / 1e12
        except torch.cuda.OutOfMemoryError as exc:
            rec["skipped"] = f"out of memory: {str(exc).splitlines()[0][:160]}"
        except RuntimeError as exc:
            rec["skipped"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        del impl
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
        records.append(rec)
        if log:
            log.write(json.dumps(rec) + "\n")
            log.flush()
        t = f"{rec['tflops']:7.1f}" if rec["tflops"] else "   -   "
        print(f"{impl_name:15s} {ps} {problem.dtype} d={problem.head_dim:3d} N={problem.seq_q:5d} "
              f"causal={int(problem.causal)} {t} TFLOP/s  {rec.get('ms') or 0:8.3f} ms  "
              f"{(rec['peak_extra_bytes'] or 0) / 1e6:9.1f} MB  {rec.get('skipped', '')}", flush=True)
    return records


def make_inputs(problem, seed=0):
    import torch
    from kernels._common import TORCH_DTYPES
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    dt = TORCH_DTYPES[problem.dtype]
    shape_q = (problem.batch, problem.heads_q, problem.seq_q, problem.head_dim)
    shape_kv = (problem.batch, problem.heads_kv, problem.seq_kv, problem.head_dim)
    q = torch.randn(shape_q, generator=g, device=DEVICE, dtype=dt)
    k = torch.randn(shape_kv, generator=g, device=DEVICE, dtype=dt)
    v = torch.randn(shape_kv, generator=g, device=DEVICE, dtype=dt)
    do = torch.randn(shape_q, generator=g, device=DEVICE, dtype=dt)
    return q, k, v, do


def sweep(args, log):
    from memsim.schedule import AttentionProblem
    t0 = time.time()
    records = []
    causals = {"both": [False, True], "true": [True], "false": [False]}[args.causal]
    cases = [(dt, d, c, n) for dt in args.dtypes for d in args.head_dims for c in causals for n in args.seqs]
    for i, (dt, d, c, n) in enumerate(cases):
        if time.time() - t0 > args.time_budget_s:
            print(f"time budget reached: {len(cases) - i} cases not run", flush=True)
            records.append({"skipped_cases": [dict(dtype=x[0], head_dim=x[1], causal=x[2], seq=x[3])
                                              for x in cases[i:]]})
            break
        B, H = max(1, args.tokens // n), args.hidden // d
        p = AttentionProblem(B, H, H, n, n, d, dt, causal=c)
        inputs = make_inputs(p, seed=i)
        for impl in args.impls:
            records += run_case(impl, p, inputs, args, args.passes, log)
        del inputs
        _GATE_CACHE.clear()
    return records


def gpt2_case(args, log):
    from memsim.schedule import AttentionProblem
    p = AttentionProblem(64, 16, 16, 1024, 1024, 64, args.gpt2_dtype, causal=False)
    inputs = make_inputs(p, seed=1234)
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


# --- tuning ----------------------------------------------------------------------------------------

FWD_CANDIDATES = {64: [(128, 64, 4, 3), (128, 64, 4, 4), (128, 128, 8, 3), (128, 64, 8, 3), (128, 128, 4, 3),
                       (64, 64, 4, 3), (128, 32, 4, 3), (256, 64, 8, 3)],
                  128: [(128, 64, 8, 3), (128, 64, 4, 3), (128, 128, 8, 2), (128, 128, 8, 3), (128, 32, 4, 3),
                        (64, 64, 4, 3), (128, 64, 8, 4), (256, 64, 8, 2)]}
BWD_CANDIDATES = {64: [(64, 64, 4, 2), (64, 64, 4, 3), (64, 128, 8, 2), (128, 64, 8, 2), (128, 128, 8, 2),
                       (32, 64, 4, 3), (64, 64, 8, 3), (64, 128, 4, 2), (32, 128, 4, 3)],
                  128: [(64, 64, 4, 2), (64, 64, 8, 2), (64, 128, 8, 2), (128, 64, 8, 2), (128, 128, 8, 1),
                        (32, 64, 4, 3), (64, 64, 4, 3), (32, 128, 8, 2), (128, 128, 8, 2)]}


def tune(args, log):
    import torch
    from memsim.schedule import AttentionProblem, Schedule
    import kernels
    records = []
    causals = {"both": [False, True], "true": [True], "false": [False]}[args.causal]
    for dt in args.dtypes:
        for d in args.head_dims:
            for c in causals:
                for n in args.seqs:
                    B, H = max(1, args.tokens // n), args.hidden // d
                    p = AttentionProblem(B, H, H, n, n, d, dt, causal=c)
                    q, k, v, do = make_inputs(p)
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
                        fwd_default = kernels.default_schedule(p, "flash2", "fwd", DEVICE)
                        f = kernels.forward(p, fwd_default, q, k, v)
                        for cand in (FWD_CANDIDATES if ps == "fwd" else BWD_CANDIDATES)[d]:
                            bm, bn, w, st = cand
                            s = Schedule("flash2", ps, bm, bn, w, st)
                            rec = dict(tune=True, impl="flash2", **{"pass": ps}, dtype=dt, head_dim=d, causal=c,
                                       seq=n, batch=B, heads=H, schedule=s.to_dict(), sdpa_flash_tflops=ref_tf)
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
                                log.write(json.dumps(rec) + "\n")
                                log.flush()
                            print(f"   {cand}: {rec.get('tflops') or 0:7.1f} TFLOP/s {rec.get('error', '')}",
                                  flush=True)
                    del q, k, v, do
    return records


def gemm_check(args, log):
    """naive_qk and naive_pv alone vs cuBLAS on the same operands (is the naive baseline fair?)."""
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
            q, k, v, _ = make_inputs(p)
            s = kernels.default_schedule(p, "naive", "fwd", DEVICE)
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
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                print(f"gemm {name} {dt} d={d} N={n}: naive {rec['naive_ms']:.3f} ms ({rec['naive_GBps']:.0f} GB/s), "
                      f"cuBLAS {rec['cublas_ms']:.3f} ms ({rec['cublas_GBps']:.0f} GB/s), "
                      f"ratio {rec['cublas_ms'] / rec['naive_ms']:.2f}", flush=True)
            del q, k, v, S, P, q3, k3, v3
    return recs


# --- output --------------------------------------------------------------------------------------

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


def main(argv=None):
    global DEVICE
    args = parse_args(argv)
    DEVICE = args.device
    import torch
    if DEVICE == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmarks/attention.py needs a CUDA GPU (or --device cpu with TRITON_INTERPRET=1 for a smoke test)")
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
        _GATE_CACHE.clear()
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
