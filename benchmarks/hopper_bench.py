"""Hopper forward and backward (issue 9): exactness on the card, then TFLOP/s of every hopper schedule candidate
beside our flash2 and SDPA's flash and cuDNN backends, in one run (the issue's table: bf16, B*N = 16k tokens,
H*d = 2048, d in {64, 128}, causal or not, N in {4096, 16384}).

    PYTHONPATH=. python benchmarks/hopper_bench.py --out DIR [--budget-s 200] [--bwd] [--dtype bf16|fp16]

Each case also records `kernels.default_choice` (what kernels.attention runs by default, and where it came from:
tuned table, cache or registry); a default forward not among the candidates is timed too.  Backward (--bwd):
our candidates pass kernels.autotune's gate (dQ, dK, dV of batch 0 / two heads vs float64) before timing.

Per case, before any timing, every implementation's output is checked on two (batch, head) slices of
rows (the first 128 and the last 256 query rows of the first and last head) against a float64
reference of those rows, by the project's rule (kernels.testing.rule_tolerance: at most 2x the error of
the same math in bf16, plus the rounding floor).  A candidate that fails is recorded as failing and not
timed.  Timing: triton.testing.do_bench medians (events), FLOPs as the benchmarks count them (4*B*H*N^2*d,
half when causal; 2.5x backward).  Writes DIR/hopper_bench.json (records + provenance + command) and
prints a compact table.  Data only: no assertion on speed.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

#: hopper candidates per head dim: (block_m, block_n, num_warps, num_stages); num_warps 4 with >= 2 stages
#: is the warp-specialised loop (12 warps), 8 warps the software-pipelined two-loop variant
CANDIDATES = {
    64: [(128, 128, 4, 2), (128, 64, 4, 2), (128, 64, 8, 3)],
    128: [(128, 128, 4, 2), (128, 64, 4, 2), (128, 128, 8, 2)],
}


def _rows_check(name, o, q, k, v, causal, scale, lse=None):
    """(ok, kernel err, yardstick err, tol) on row slices of the first and last (batch, head); with `lse`
    (our kernels) the logsumexp of those rows must also be within 1e-4 * max(1, |lse|) (kernels.testing)."""
    import torch

    from kernels.testing import rule_tolerance
    B, H, N, d = q.shape
    res = []
    for b, h in ((0, 0), (B - 1, H - 1)):
        rows = torch.cat([torch.arange(0, 128), torch.arange(N - 256, N)]).to(q.device)
        qs, ks, vs = q[b, h, rows], k[b, h], v[b, h]
        s64 = (qs.double() @ ks.double().T) * scale
        sdt = (qs @ ks.T).float() * scale
        if causal:
            m = torch.arange(N, device=q.device)[None, :] > rows[:, None]
            s64 = s64.masked_fill(m, float("-inf"))
            sdt = sdt.masked_fill(m, float("-inf"))
        ref = torch.softmax(s64, -1) @ vs.double()
        naive = torch.softmax(sdt, -1).to(q.dtype) @ vs  # the same math in the input dtype
        kerr = (o[b, h, rows].double() - ref).abs().max().item()
        nerr = (naive.double() - ref).abs().max().item()
        _, tol = rule_tolerance(ref, nerr, q.dtype)
        ok = kerr <= tol and math.isfinite(kerr)
        if lse is not None:
            lse_ref = torch.logsumexp(s64, -1)
            lerr = (lse[b, h, rows].double() - lse_ref).abs().max().item()
            ok = ok and lerr <= 1e-4 * max(1.0, lse_ref.abs().max().item())
        res.append((ok, kerr, nerr, tol))
    worst = max(res, key=lambda r: r[1] / r[3] if r[3] > 0 else float("inf"))
    return all(r[0] for r in res), worst[1], worst[2], worst[3]


#: hopper bwd candidates (fused dQ by atomics): (block_m = Q rows per step, block_n = K/V rows resident, warps, stages);
#: checked for spills by benchmarks/hopper_bwd_compile.py on the CPU first (d=128 64x128 w8: 255 registers, 64 B)
BWD_CANDIDATES = {
    64: [(64, 128, 8, 2), (64, 128, 8, 3), (64, 64, 4, 2)],
    128: [(64, 128, 8, 2), (64, 128, 8, 3), (64, 64, 4, 2)],
}


def bwd_variant(text: str) -> tuple[str, str, str]:
    """"loads/dq_reduce[/loop]" -> (LOADS, DQ_REDUCE, LOOP) of kernels.hopper_bwd (loop "split" when left out)."""
    parts = text.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"a backward variant is LOADS/DQ_REDUCE[/LOOP], e.g. pointer/atomic/ws; got {text!r}")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else "split"


def _switches(mod, **values):
    """Set module switches (kernels.hopper_bwd.LOADS / DQ_REDUCE, kernels.hopper.LONGEST_FIRST) for one record;
    returns the old values to restore."""
    old = {k: getattr(mod, k) for k in values}
    for k, v in values.items():
        setattr(mod, k, v)
    return old


def _bwd_case(p, q, k, v, do, cands, sdpa, variants=("tma/tma",)):
    """Backward of one case: our flash2 (the tuned table's schedule for the class, else the registry's) and the
    hopper candidates, each through kernels.autotune's exactness gate (dQ, dK, dV on batch 0 / two heads vs
    float64, DESIGN.md's rule) before timing; SDPA flash and cuDNN (autograd.grad of one forward)."""
    import torch
    import triton

    import kernels
    from kernels.autotune import default_lookup, gate_check, gate_reference, gate_slice
    from memsim.schedule import Schedule
    dev = q.device
    B, H, N, d = q.shape
    base = dict(dtype=p.dtype, batch=B, heads=H, seq=N, head_dim=d, causal=p.causal, **{"pass": "bwd"})
    runs = {}
    hit = default_lookup(p, "bwd", ("flash2",), gpu=torch.cuda.get_device_name(dev),
                         versions=(torch.__version__, triton.__version__))
    runs["flash2"] = ("flash2", hit.schedule if hit else kernels.default_schedule(p, "flash2", "bwd", dev),
                      hit.source if hit else "registry")
    for c in cands:  # (bm, bn, warps, stages[, variant]): a fifth element times that variant only
        bm, bn, w, st = c[:4]
        for var in (c[4:] or variants):
            runs[f"hopper {bm}x{bn} w{w} s{st} [{var}]"] = ("hopper", Schedule("hopper", "bwd", bm, bn, w, st), var)
    sub, qs, ks, vs, dos = gate_slice(p, q, k, v, do)
    ref, ys = gate_reference(sub, qs, ks, vs, dos)
    f = kernels.forward(p, kernels.default_schedule(p, "flash2", "fwd", dev), q, k, v)
    out = []
    import kernels.hopper_bwd as hb
    for name, (alg, s, src) in runs.items():
        rec = dict(impl=alg, variant=name, schedule=s.to_dict(), source=src, **base)
        old = None
        if alg == "hopper":  # src = "loads/dq_reduce[/loop]" (kernels.hopper_bwd.LOADS, DQ_REDUCE, LOOP)
            loads, red, loop = bwd_variant(src)
            old = _switches(hb, LOADS=loads, DQ_REDUCE=red, LOOP=loop)
            rec.update(loads=loads, dq_reduce=red, loop=loop, loads_used_tma=hb.loads_by_tma(q, do),
                       dq_reduce_used_tma=hb.dq_reduce_by_tma(q.device), loop_ws=hb.loop_ws(p, q, do))
        try:
            t0 = time.time()
            ok, msg = gate_check(sub, s, qs, ks, vs, dos, ref, ys)
            rec.update(exact=ok, gate=msg[:300], first_call_s=round(time.time() - t0, 2))
            if ok:
                fn = lambda s=s: kernels.backward(p, s, q, k, v, f.o, do, f)  # noqa: E731
                ms = triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")
                rec.update(ms=ms, tflops=p.nominal_flops("bwd") / ms / 1e9)
        except Exception as e:  # a candidate that does not compile or fit: recorded, not fatal
            rec.update(error=f"{type(e).__name__}: {str(e)[:300]}")
        finally:
            if old is not None:
                _switches(hb, **old)
        out.append(rec)
        print(json.dumps(rec), flush=True)
    for name in ("sdpa_flash", "sdpa_cudnn"):
        rec = dict(impl=name, variant=name, **base)
        try:
            qq, kk, vv = (t.detach().requires_grad_(True) for t in (q, k, v))
            with sdpa_kernel_ctx(sdpa[name]):
                oo = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=p.causal)
            fn = lambda oo=oo, qq=qq, kk=kk, vv=vv: torch.autograd.grad(  # noqa: E731
                oo, (qq, kk, vv), do, retain_graph=True)
            ms = triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")
            rec.update(ms=ms, tflops=p.nominal_flops("bwd") / ms / 1e9)
        except Exception as e:
            rec.update(error=f"{type(e).__name__}: {str(e)[:300]}")
        out.append(rec)
        print(json.dumps(rec), flush=True)
    del f
    return out


def sdpa_kernel_ctx(backend):
    from torch.nn.attention import sdpa_kernel
    return sdpa_kernel(backend)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=200.0, help="stop timing new cases after this long")
    ap.add_argument("--bwd", action="store_true", help="also the backward: flash2 (tuned table), hopper bwd candidates, "
                                                       "SDPA flash / cuDNN")
    ap.add_argument("--bwd-candidates", default=None, help="JSON {d: [[bm, bn, warps, stages(, variant)], ...]} "
                                                           "override (a variant: timed with that one only)")
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"))
    ap.add_argument("--bwd-variants", default="tma/tma", help="comma-separated LOADS/DQ_REDUCE[/LOOP] of "
                                                              "kernels.hopper_bwd to time per candidate (e.g. "
                                                              "tma/tma,pointer/atomic,pointer/atomic/ws)")
    ap.add_argument("--fwd-order", default="longest", choices=("longest", "grid", "both"),
                    help="causal hopper forward: longest-first Q blocks (kernels.hopper.LONGEST_FIRST), the grid's "
                         "order, or both (timed side by side)")
    ap.add_argument("--fwd-persistent", action="store_true",
                    help="also time each warp-specialised hopper candidate as the persistent forward "
                         "(kernels.hopper.PERSISTENT, the experiment)")
    ap.add_argument("--seqs", default="4096,16384")
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--candidates", default=None, help="JSON {d: [[bm, bn, warps, stages], ...]} override")
    args = ap.parse_args(argv)
    import torch
    import triton
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import kernels
    import kernels.hopper as khopper
    from kernels.device_info import provenance
    from kernels.testing import make_inputs
    from memsim.io import write_json
    from memsim.schedule import Schedule

    t_start = time.time()
    bwd_cands = BWD_CANDIDATES if args.bwd_candidates is None else {
        int(k): [tuple(x) for x in v] for k, v in json.loads(args.bwd_candidates).items()}
    cands = CANDIDATES if args.candidates is None else {int(k): [tuple(x) for x in v]
                                                          for k, v in json.loads(args.candidates).items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    dev = "cuda"
    sdpa = {"sdpa_flash": SDPBackend.FLASH_ATTENTION, "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION}
    for d in [int(x) for x in args.head_dims.split(",")]:
        for causal in (False, True):
            for N in [int(x) for x in args.seqs.split(",")]:
                if time.time() - t_start > args.budget_s:
                    print(f"budget spent: skipping d={d} causal={causal} N={N}", flush=True)
                    continue
                B, H = 16384 // N, 2048 // d
                q, k, v, do = make_inputs(B, H, H, N, N, d, args.dtype, dev, seed=1000 + d + N + causal)
                p = kernels.problem_for(q, k, v, causal=causal)
                flops = p.nominal_flops("fwd")
                runs = {}
                orders = {"longest": (True,), "grid": (False,), "both": (True, False)}[args.fwd_order] if causal else (True,)
                for bm, bn, w, st in cands.get(d, []):
                    for lf in orders:
                        tag = "" if not causal else (" [longest first]" if lf else " [grid order]")
                        runs[f"hopper {bm}x{bn} w{w} s{st}{tag}"] = ("hopper", Schedule("hopper", "fwd", bm, bn, w, st))
                    if args.fwd_persistent and (w, st) == (4, 2):  # kernels.hopper.PERSISTENT (the experiment)
                        runs[f"hopper {bm}x{bn} w{w} s{st} [persistent]"] = ("hopper",
                                                                             Schedule("hopper", "fwd", bm, bn, w, st))
                runs["flash2"] = ("flash2", kernels.default_schedule(p, "flash2", "fwd", dev))
                ch = kernels.default_choice(p, q, k, v)  # what kernels.attention runs by default (issue 9 item 6)
                records.append(dict(impl="default_choice", variant="default_choice", dtype=args.dtype, batch=B,
                                    heads=H, seq=N, head_dim=d, causal=causal, forward=ch.forward.to_dict(),
                                    backward=ch.backward.to_dict(), forward_source=ch.forward_source,
                                    backward_source=ch.backward_source, forward_key=ch.forward_key,
                                    backward_key=ch.backward_key, **{"pass": "choice"}))
                print(json.dumps(records[-1]), flush=True)
                if ch.forward not in [x[1] for x in runs.values()]:
                    runs[f"default ({ch.forward_source})"] = (ch.forward.algorithm, ch.forward)
                for name, (alg, s) in list(runs.items()) + [(n, (n, None)) for n in sdpa]:
                    rec = dict(impl=alg, variant=name, schedule=s.to_dict() if s else None, dtype=args.dtype, batch=B,
                               heads=H, seq=N, head_dim=d, causal=causal, **{"pass": "fwd"})
                    old = _switches(khopper, LONGEST_FIRST="[grid order]" not in name,
                                    PERSISTENT="[persistent]" in name)
                    if alg == "hopper":
                        rec.update(longest_first=khopper.longest_first(p), persistent=khopper.persistent(p, s, q, k, v))
                    try:
                        lse = None
                        if s is not None:
                            fn = lambda s=s: kernels.forward(p, s, q, k, v).o  # noqa: E731
                            lse = kernels.forward(p, s, q, k, v).lse
                        else:
                            def fn(be=sdpa[name]):
                                with sdpa_kernel(be):
                                    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
                        t0 = time.time()
                        o = fn()
                        torch.cuda.synchronize()
                        rec["first_call_s"] = round(time.time() - t0, 2)
                        ok, kerr, nerr, tol = _rows_check(name, o, q, k, v, causal, p.scale, lse)
                        rec.update(exact=ok, max_err=kerr, same_dtype_err=nerr, tol=tol)
                        if ok:
                            ms = triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")
                            rec.update(ms=ms, tflops=flops / ms / 1e9)
                    except Exception as e:  # a candidate that does not compile or fit: recorded, not fatal
                        rec.update(error=f"{type(e).__name__}: {str(e)[:300]}")
                    finally:
                        _switches(khopper, **old)
                    records.append(rec)
                    print(json.dumps(rec), flush=True)
                if args.bwd:
                    records += _bwd_case(p, q, k, v, do, bwd_cands.get(d, []), sdpa,
                                         tuple(args.bwd_variants.split(",")))
                del q, k, v, do
                torch.cuda.empty_cache()
    cmd = "PYTHONPATH=. python benchmarks/hopper_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    doc = {"provenance": provenance(cmd), "flops": "4*B*H*N^2*d fwd (half when causal), 2.5x bwd",
           "exactness": "row slices vs float64, kernels.testing.rule_tolerance", "records": records}
    write_json(out / "hopper_bench.json", doc)
    # compact table: best exact hopper candidate per case beside flash2 and SDPA
    print("\n| pass | d | causal | N | best hopper (schedule) | flash2 | sdpa_flash | sdpa_cudnn | hopper/cuDNN |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    cases = sorted({(r["pass"], r["head_dim"], r["causal"], r["seq"]) for r in records if r["pass"] != "choice"})
    for ps, d, c, n in cases:
        rs = [r for r in records if (r["pass"], r["head_dim"], r["causal"], r["seq"]) == (ps, d, c, n)]
        get = lambda impl: max((r.get("tflops") or 0 for r in rs if r["impl"] == impl), default=0)  # noqa: E731
        hop = [r for r in rs if r["impl"] == "hopper" and r.get("tflops")]
        best = max(hop, key=lambda r: r["tflops"]) if hop else None
        cu = get("sdpa_cudnn")
        print(f"| {ps} | {d} | {c} | {n} | {best['tflops']:.0f} ({best['variant'][7:]}) | " if best else
              f"| {ps} | {d} | {c} | {n} | - | ", end="")
        print(f"{get('flash2'):.0f} | {get('sdpa_flash'):.0f} | {cu:.0f} | "
              f"{(best['tflops'] / cu if best and cu else float('nan')):.2f} |")
    bad = [r["variant"] + f" d={r['head_dim']} c={r['causal']} N={r['seq']}" for r in records
           if r.get("exact") is False or r.get("error")]
    print("not exact / errors:", bad if bad else "none")


if __name__ == "__main__":
    main()
