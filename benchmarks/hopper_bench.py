"""Hopper forward and backward (issue 9): exactness on the card, then TFLOP/s of every hopper schedule candidate
beside our flash2 and SDPA's flash and cuDNN backends, in one run (the issue's table: bf16, B*N = 16k tokens,
H*d = 2048, d in {64, 128}, causal or not, N in {4096, 16384}).

    PYTHONPATH=. python benchmarks/hopper_bench.py --out DIR [--budget-s 200] [--bwd] [--dtype bf16,fp16]
        [--seqs 1024,4096,16384] [--repeats 3] [--no-fwd] [--ws-on-gpu] [--fwd-persistent] [--gluon]
        [--candidates JSON] [--bwd-candidates JSON (a fifth element "hopper_ws" times that algorithm)]

Each case also records `kernels.default_choice` (what kernels.attention runs by default, and where it came from:
tuned table, cache, registry or rule); a default forward or backward not among the candidates is timed too.  Backward (--bwd):
our candidates pass kernels.autotune's gate (dQ, dK, dV of batch 0 / two heads vs float64) before timing.

Per case, before any timing, every implementation's output is checked on two (batch, head) slices of
rows (the first 128 and the last 256 query rows of the first and last head) against a float64
reference of those rows, by the project's rule (kernels.testing.rule_tolerance: at most 2x the error of
the same math in bf16, plus the rounding floor).  A candidate that fails is recorded as failing and not
timed.  Timing: triton.testing.do_bench medians (events), FLOPs as the benchmarks count them (4*B*H*N^2*d,
half when causal; 2.5x backward).  With --repeats R every exact implementation of a case is timed R times,
round-robin (one do_bench median each, rep 50 ms), after all of them passed the gate: `ms` is the median of the
R medians, `ms_runs` all of them, `spread` = (max - min) / median, the run-to-run spread inside this call.  Writes DIR/hopper_bench.json (records + provenance + command) and
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


def _time_rounds(timed, repeats, flops):
    """Time every (record, fn, switches) of one case `repeats` times round-robin (do_bench median each, with the
    record's module switches set); fills ms (median of the medians), ms_runs, spread, tflops."""
    import triton
    runs = [[] for _ in timed]
    for _ in range(repeats):
        for i, (rec, fn, sw) in enumerate(timed):
            old = [(mod, _switches(mod, **vals)) for mod, vals in sw]
            try:
                runs[i].append(triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median"))
            except Exception as e:  # noqa: BLE001 -- recorded, not fatal
                rec.update(error=f"{type(e).__name__}: {str(e)[:300]}")
            finally:
                for mod, o in old:
                    _switches(mod, **o)
    for (rec, _, _), ms_runs in zip(timed, runs):
        if ms_runs:
            ms = sorted(ms_runs)[len(ms_runs) // 2]
            rec.update(ms=ms, tflops=flops / ms / 1e9, ms_runs=ms_runs,
                       spread=(max(ms_runs) - min(ms_runs)) / ms)


def _bwd_case(p, q, k, v, do, cands, sdpa, variants=("tma/tma",), repeats=1):
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
            if var in ("hopper_ws", "hopper_fa3"):  # registry algorithms (sessions 5, 11): own launches, no switches
                runs[f"{var} {bm}x{bn} w{w} s{st}"] = (var, Schedule(var, "bwd", bm, bn, w, st), "given")
                continue
            runs[f"hopper {bm}x{bn} w{w} s{st} [{var}]"] = ("hopper", Schedule("hopper", "bwd", bm, bn, w, st), var)
    ch = kernels.default_choice(p, q, k, v)  # what kernels.attention's backward runs by default (issue 9 item 6)
    if ch.backward not in [x[1] for x in runs.values()]:
        var = "pointer/atomic" if ch.backward.algorithm == "hopper" else ch.backward_source
        runs[f"default ({ch.backward_source})"] = (ch.backward.algorithm, ch.backward, var)
    sub, qs, ks, vs, dos = gate_slice(p, q, k, v, do)
    ref, ys = gate_reference(sub, qs, ks, vs, dos)
    f = kernels.forward(p, kernels.default_schedule(p, "flash2", "fwd", dev), q, k, v)
    out, timed = [], []  # timed: (record, fn, module switches) of the exact ones, timed round-robin below
    import kernels.hopper_bwd as hb
    for name, (alg, s, src) in runs.items():
        rec = dict(impl=alg, variant=name, schedule=s.to_dict(), source=src, **base)
        if ch.backward == s:
            rec.update(default_choice=True, default_source=ch.backward_source, default_key=ch.backward_key)
        old, sw = None, ()
        if alg == "hopper":  # src = "loads/dq_reduce[/loop]" (kernels.hopper_bwd.LOADS, DQ_REDUCE, LOOP)
            loads, red, loop = bwd_variant(src)
            sw = ((hb, dict(LOADS=loads, DQ_REDUCE=red, LOOP=loop)),)
            old = _switches(hb, LOADS=loads, DQ_REDUCE=red, LOOP=loop)
            rec.update(loads=loads, dq_reduce=red, loop=loop, loads_used_tma=hb.loads_by_tma(q, do),
                       dq_reduce_used_tma=hb.dq_reduce_by_tma(q.device), loop_ws=hb.loop_ws(p, q, do))
        try:
            t0 = time.time()
            ok, msg = gate_check(sub, s, qs, ks, vs, dos, ref, ys)
            rec.update(exact=ok, gate=msg[:300], first_call_s=round(time.time() - t0, 2))
            if ok:
                timed.append((rec, lambda s=s: kernels.backward(p, s, q, k, v, f.o, do, f), sw))
        except Exception as e:  # a candidate that does not compile or fit: recorded, not fatal
            rec.update(error=f"{type(e).__name__}: {str(e)[:300]}")
        finally:
            if old is not None:
                _switches(hb, **old)
        out.append(rec)
    for name in ("sdpa_flash", "sdpa_cudnn"):
        rec = dict(impl=name, variant=name, **base)
        try:
            qq, kk, vv = (t.detach().requires_grad_(True) for t in (q, k, v))
            with sdpa_kernel_ctx(sdpa[name]):
                oo = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=p.causal)
            timed.append((rec, lambda oo=oo, qq=qq, kk=kk, vv=vv: torch.autograd.grad(
                oo, (qq, kk, vv), do, retain_graph=True), ()))
        except Exception as e:
            rec.update(error=f"{type(e).__name__}: {str(e)[:300]}")
        out.append(rec)
    _time_rounds(timed, repeats, p.nominal_flops("bwd"))
    for rec in out:
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
                                                           "override (a variant: timed with that one only; the "
                                                           "variant 'hopper_ws' or 'hopper_fa3': that algorithm's "
                                                           "schedule)")
    ap.add_argument("--dtype", "--dtypes", dest="dtype", default="bf16",
                    help="comma-separated element types, timed in this order (bf16, fp16)")
    ap.add_argument("--repeats", type=int, default=1, help="time each exact implementation this many times per case, "
                                                           "round-robin (median and spread recorded)")
    ap.add_argument("--no-fwd", action="store_true", help="backward only (with --bwd): no forward records")
    ap.add_argument("--ws-on-gpu", action="store_true",
                    help="allow kernels.hopper_bwd.LOOP 'ws' on the GPU in this process (WS_ON_GPU; it hung in run3: "
                         "a re-test -- run it in its own process with a timeout)")
    ap.add_argument("--bwd-variants", default="tma/tma", help="comma-separated LOADS/DQ_REDUCE[/LOOP] of "
                                                              "kernels.hopper_bwd to time per candidate (e.g. "
                                                              "tma/tma,pointer/atomic,pointer/atomic/ws)")
    ap.add_argument("--fwd-order", default="longest", choices=("longest", "grid", "both"),
                    help="causal hopper forward: longest-first Q blocks (kernels.hopper.LONGEST_FIRST), the grid's "
                         "order, or both (timed side by side)")
    ap.add_argument("--fwd-persistent", action="store_true",
                    help="also time each warp-specialised hopper candidate's tiles as hopper_ws (the persistent "
                         "forward, a registry algorithm since session 5)")
    ap.add_argument("--gluon", action="store_true",
                    help="also time the Gluon forward experiment (kernels.hopper.gluon_forward, 128x128 w8)")
    ap.add_argument("--fa3", default=None,
                    help="also time hopper_fa3's Gluon launch (kernels.hopper_gluon.fa3_forward, FA3's structure) at "
                         "these block_n/stages, comma-separated; suffixes: p = the persistent walk, f = the wait "
                         "fence on (F: off; neither: kernels.hopper_gluon.WAIT_FENCE), u / U = causal block 0 without / "
                         "with the mask where the rows see it whole (kernels.hopper_gluon.BLOCK0_UNMASKED), @S = the causal walk's "
                         "sections of S batch*heads (@all: one section; causal cases only): e.g. 128/2,128/2pf,128/2p@1")
    ap.add_argument("--seqs", default="4096,16384")
    ap.add_argument("--causal", default="both", choices=("both", "yes", "no"), help="which masks to time")
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--candidates", default=None, help="JSON {d: [[bm, bn, warps, stages], ...]} override")
    ap.add_argument("--json-name", default="hopper_bench.json", help="the results file's name in --out")
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # a CPU smoke run of the script itself
    args = ap.parse_args(argv)
    dtypes = args.dtype.split(",")
    if any(dt not in ("bf16", "fp16") for dt in dtypes):
        ap.error(f"--dtype: bf16 and/or fp16, got {args.dtype!r}")
    import torch
    from torch.nn.attention import SDPBackend

    import kernels
    from kernels.device_info import provenance
    from kernels.testing import make_inputs
    from memsim.io import write_json

    t_start = time.time()
    bwd_cands = BWD_CANDIDATES if args.bwd_candidates is None else {
        int(k): [tuple(x) for x in v] for k, v in json.loads(args.bwd_candidates).items()}
    cands = CANDIDATES if args.candidates is None else {int(k): [tuple(x) for x in v]
                                                          for k, v in json.loads(args.candidates).items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    dev = args.device
    sdpa = {"sdpa_flash": SDPBackend.FLASH_ATTENTION, "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION}
    if args.ws_on_gpu:
        import kernels.hopper_bwd as hb
        hb.WS_ON_GPU = True
    cmd = "PYTHONPATH=. python benchmarks/hopper_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)

    def save():  # after every case (atomic): a run cut short by its timeout keeps what it measured
        write_json(out / args.json_name, {
            "provenance": provenance(cmd), "flops": "4*B*H*N^2*d fwd (half when causal), 2.5x bwd",
            "exactness": "row slices vs float64, kernels.testing.rule_tolerance", "repeats": args.repeats,
            "records": records}, overwrite=True)

    for dtype in dtypes:
        for d in [int(x) for x in args.head_dims.split(",")]:
            for causal in {"both": (False, True), "yes": (True,), "no": (False,)}[args.causal]:
                for N in [int(x) for x in args.seqs.split(",")]:
                    if time.time() - t_start > args.budget_s:
                        print(f"budget spent: skipping {dtype} d={d} causal={causal} N={N}", flush=True)
                        continue
                    B, H = 16384 // N, 2048 // d
                    q, k, v, do = make_inputs(B, H, H, N, N, d, dtype, dev, seed=1000 + d + N + causal)
                    p = kernels.problem_for(q, k, v, causal=causal)
                    base = dict(dtype=dtype, batch=B, heads=H, seq=N, head_dim=d, causal=causal)
                    if dev != "cuda":  # the smoke run: its tiny problem's cases come from make_inputs
                        B, H = q.shape[:2]
                        base.update(batch=B, heads=H)
                    if not args.no_fwd:
                        records.extend(_fwd_case(p, q, k, v, cands.get(d, []), sdpa, args, base))
                    if args.bwd:
                        records.extend(_bwd_case(p, q, k, v, do, bwd_cands.get(d, []), sdpa,
                                                 tuple(args.bwd_variants.split(",")), args.repeats))
                    del q, k, v, do
                    torch.cuda.empty_cache()
                    save()
    save()
    print_table(records)


def _fwd_case(p, q, k, v, cands, sdpa, args, base):
    """Forward of one case: the hopper candidates (and the persistent experiment), our flash2, the default choice's
    schedule if it is none of them, SDPA flash and cuDNN; each through the row-slice gate, then timed round-robin."""
    import torch
    from torch.nn.attention import sdpa_kernel

    import kernels
    import kernels.hopper as khopper
    from memsim.schedule import Schedule
    causal, dev, records, timed = p.causal, q.device, [], []
    runs = {}
    orders = {"longest": (True,), "grid": (False,), "both": (True, False)}[args.fwd_order] if causal else (True,)
    for bm, bn, w, st in cands:
        for lf in orders:
            tag = "" if not causal else (" [longest first]" if lf else " [grid order]")
            runs[f"hopper {bm}x{bn} w{w} s{st}{tag}"] = ("hopper", Schedule("hopper", "fwd", bm, bn, w, st))
        if args.fwd_persistent and (w, st) == (4, 2):  # the persistent forward: the registry algorithm hopper_ws
            runs[f"hopper_ws {bm}x{bn} w{w} s{st} [persistent]"] = ("hopper_ws",
                                                                   Schedule("hopper_ws", "fwd", bm, bn, w, st))
    if getattr(args, "gluon", False) and p.head_dim in (64, 128):  # explicit wgmma pipelining (not a registry entry)
        runs["gluon 128x128 w8"] = ("gluon", Schedule("hopper", "fwd", 128, 128, 8, 2))
    for cfg in (getattr(args, "fa3", None) or "").split(",") if getattr(args, "fa3", None) else ():
        var = fa3_variant(cfg, p)
        if var is None:  # a causal-walk section variant on a non-causal case
            continue
        bn, st, walk, fence, sec, label, b0 = var
        runs[f"hopper_fa3 128x{bn} s{st}{label}"] = (
            "fa3p" if walk else "fa3", Schedule("hopper_fa3", "fwd", 128, bn, 4, st), dict(
                persistent=walk, wait_fence=fence, section_heads=sec, block0_unmasked=b0))
    runs["flash2"] = ("flash2", kernels.default_schedule(p, "flash2", "fwd", dev))
    ch = kernels.default_choice(p, q, k, v)  # what kernels.attention runs by default (issue 9 item 6)
    records.append(dict(impl="default_choice", variant="default_choice", forward=ch.forward.to_dict(),
                        backward=ch.backward.to_dict(), forward_source=ch.forward_source,
                        backward_source=ch.backward_source, forward_key=ch.forward_key,
                        backward_key=ch.backward_key, **base, **{"pass": "choice"}))
    print(json.dumps(records[-1]), flush=True)
    if ch.forward not in [x[1] for x in runs.values()]:
        runs[f"default ({ch.forward_source})"] = (ch.forward.algorithm, ch.forward)
    for name, (alg, s, *fa3kw) in list(runs.items()) + [(n, (n, None)) for n in sdpa]:
        rec = dict(impl=alg, variant=name, schedule=s.to_dict() if s else None, **base, **{"pass": "fwd"})
        sw = dict(LONGEST_FIRST="[grid order]" not in name)
        old = _switches(khopper, **sw)
        if alg == "hopper":
            rec.update(longest_first=khopper.longest_first(p))
        if alg == "hopper_ws":
            from memsim.algorithms_hopper import persistent
            rec.update(persistent=persistent(p, s))
        try:
            lse = None
            if alg == "gluon":
                fn = lambda s=s: khopper.gluon_forward(p, s, q, k, v).o  # noqa: E731
                lse = khopper.gluon_forward(p, s, q, k, v).lse
            elif alg in ("fa3", "fa3p"):  # the Gluon launch itself, per-tile or persistent, whatever the registry picks
                import kernels.hopper_gluon as kg
                kw = fa3kw[0]
                rec.update(kw)
                fn = lambda s=s, kw=kw: kg.fa3_forward(p, s, q, k, v, **kw).o  # noqa: E731
                lse = kg.fa3_forward(p, s, q, k, v, **kw).lse
            elif s is not None:
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
                timed.append((rec, fn, ((khopper, sw),)))
        except Exception as e:  # a candidate that does not compile or fit: recorded, not fatal
            rec.update(error=f"{type(e).__name__}: {str(e)[:300]}")
        finally:
            _switches(khopper, **old)
        records.append(rec)
    _time_rounds(timed, args.repeats, p.nominal_flops("fwd"))
    for rec in records[1:]:
        print(json.dumps(rec), flush=True)
    return records


OURS = ("hopper", "flash2", "hopper_ws", "gluon", "fa3", "fa3p", "hopper_fa3")


def fa3_variant(cfg: str, p):
    """--fa3's "BN/S[p][f|F][u|U][@S|@all]" -> (block_n, stages, persistent, wait_fence, section_heads, label,
    block0_unmasked); None for a section variant on a non-causal problem (its walk has no sections)."""
    import re
    m = re.fullmatch(r"(\d+)/(\d+)(p?)([fF]?)([uU]?)(?:@(\d+|all))?", cfg)
    if m is None:
        raise SystemExit(f"--fa3: {cfg!r} is not BN/S[p][f|F][u|U][@S|@all] (e.g. 128/2, 128/2pf, 128/2p@1)")
    bn, st, walk, fence, sec = int(m[1]), int(m[2]), bool(m[3]), {"f": True, "F": False}.get(m[4]), m[6]
    b0 = {"u": True, "U": False}.get(m[5])
    if sec is not None and not (p.causal and walk):
        return None
    if sec is not None:
        sec = p.batch * p.heads_q if sec == "all" else int(sec)
    label = (" [persistent]" if walk else "") + {True: " [fence]", False: " [no fence]", None: ""}[fence] + (
        {True: " [block0 unmasked]", False: " [block0 masked]", None: ""}[b0]) + (
        f" [sections {m[6]}]" if sec is not None else "")
    return bn, st, walk, fence, sec, label, b0


def print_table(records):
    """Compact table: our best exact implementation per case (any hopper variant or flash2) beside SDPA flash and
    cuDNN, the ratios, and the largest run-to-run spread among the timed implementations of the case."""
    print("\n| pass | dtype | d | causal | N | best ours (variant) | sdpa_flash | sdpa_cudnn | ours/cuDNN | ours/flash |"
          " spread |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    key = lambda r: (r["pass"], r["dtype"], r["head_dim"], r["causal"], r["seq"])  # noqa: E731
    for ps, dt, d, c, n in sorted({key(r) for r in records if r["pass"] != "choice"}):
        rs = [r for r in records if key(r) == (ps, dt, d, c, n) and r.get("tflops")]
        get = lambda impl: max((r["tflops"] for r in rs if r["impl"] == impl), default=0)  # noqa: E731
        ours = [r for r in rs if r["impl"] in OURS]
        best = max(ours, key=lambda r: r["tflops"]) if ours else None
        fl, cu = get("sdpa_flash"), get("sdpa_cudnn")
        sp = max((r.get("spread", 0) for r in rs), default=0)
        b = best["tflops"] if best else float("nan")
        print(f"| {ps} | {dt} | {d} | {c} | {n} | {b:.0f} ({best['variant'] if best else '-'}) | {fl:.0f} | {cu:.0f} | "
              f"{(b / cu if cu else float('nan')):.2f} | {(b / fl if fl else float('nan')):.2f} | {100 * sp:.1f} % |")
    bad = [r["variant"] + f" {r['dtype']} d={r['head_dim']} c={r['causal']} N={r['seq']}" for r in records
           if r.get("exact") is False or r.get("error")]
    print("not exact / errors:", bad if bad else "none")


if __name__ == "__main__":
    main()
