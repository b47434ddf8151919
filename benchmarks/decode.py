"""Decode benchmark (issue 12): kernels.decode beside torch SDPA's backends and FlexAttention, one-token query.

Grid: bf16, d=128, 32 query heads, 8 KV heads; batch x context from --batches / --contexts (caches
above --max-kv-gb skipped); our kernel on a contiguous cache and on paged caches of 16 and 64 tokens,
at the automatic split count and at every split count of --splits (the split sweep the model's
choice is judged against); SDPA (flash, efficient, cuDNN; enable_gqa) on (B, H, N, d) copies of the
same cache; FlexAttention compiled (contiguous, and paged through torch's experimental
PagedAttention where it runs).  Achieved KV read bandwidth = K+V bytes / time.

Every implementation passes a correctness gate before it is timed: on sequence 0 of the benchmark's
own inputs its output must satisfy DESIGN.md's rule against a float64 reference (kernels.testing.check_rule).
Times: triton.testing.do_bench_cudagraph medians (CUDA-graph replay, no host launch cost, as serving
stacks run decode); a few shapes are also timed eagerly (do_bench) to show the host cost.  Each timed graph runs n
steps over n copies of the shape's cache, together >= --rotate-mb (time = graph / n), so a step finds its cache in
DRAM as a layer's cache is in serving: one replayed cache of <= 34 MB stays in the 50 MB L2 (session 11,
reports/h100-sxm/decode/cold-session11/).  --rotate-mb 0 replays one cache (runs 1-4).

Results: JSON with provenance (card, versions, date, command) into --out (never overwritten).
  PYTHONPATH=. python benchmarks/decode.py --out benchmarks/results/decode-h100.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HQ, HKV, D = 32, 8, 128


def _csv(kind):
    return lambda s: [kind(x) for x in s.split(",") if x]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=_csv(int), default=[1, 8, 64])
    ap.add_argument("--contexts", type=_csv(int), default=[1024, 8192, 16384, 32768, 131072])
    ap.add_argument("--max-kv-gb", type=float, default=8.6, help="skip shapes whose K+V exceed this")
    ap.add_argument("--pages", type=_csv(int), default=[16, 64])
    ap.add_argument("--splits", type=_csv(int), default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--flex-shapes", default="1x8192,1x131072,8x8192,8x32768,64x16384",
                    help="BxN list where FlexAttention is compiled and timed (compiles are slow)")
    ap.add_argument("--paged-flex-shapes", default="8x8192")
    ap.add_argument("--eager-shapes", default="1x8192,8x32768")
    ap.add_argument("--tune-shapes", default="1x8192,8x32768",
                    help="BxN list where a few (block_n, warps, stages) schedules are timed at the auto split")
    ap.add_argument("--sdpa", type=_csv(str), default=["sdpa_cudnn", "sdpa_flash", "sdpa_efficient"])
    ap.add_argument("--paged-prefetch", type=_csv(int), default=[0, 1],
                    help="page_prefetch values timed on the paged caches (auto split count each)")
    ap.add_argument("--paged-sweep-shapes", default="1x8192,8x32768",
                    help="BxN list where the paged caches also get the split sweep")
    ap.add_argument("--rep-ms", type=float, default=30.0)
    ap.add_argument("--rotate-mb", type=float, default=400.0,
                    help="each timed graph runs n steps over n cache copies of together >= this many MB (0: one cache)")
    ap.add_argument("--budget-s", type=float, default=200.0, help="stop starting new work after this many seconds")
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def fused_tag(s) -> dict:
    """A row's tag of the fused combine (session 13): {"combine_fused": True} where the schedule run folds it in; and
    of the split_d tile (session 14): {"split_d": 2, "block_n": 128} where the schedule divides the head dim."""
    return ({"combine_fused": True} if (s.combine_fused and s.num_splits > 1) else {}) | \
        ({"split_d": s.split_d, "block_n": s.block_n} if s.split_d > 1 else {})


def _shape_set(s):
    return {tuple(int(x) for x in t.split("x")) for t in s.split(",") if t}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import triton
    from triton.testing import do_bench, do_bench_cudagraph

    from kernels.decode_kv import _default_combine, choose_schedule, decode, decode_plan, default_decode_schedule
    from kernels.decode_testing import make_problem_inputs
    from kernels.reference import naive_same_dtype, reference
    from kernels.testing import check_rule
    from memsim.inference import DecodeProblem, DecodeSchedule
    from memsim.io import base_provenance, write_json

    t_start = time.time()
    left = lambda: args.budget_s - (time.time() - t_start)  # noqa: E731
    dev = "cuda"
    records, notes = [], []

    def log(msg):
        print(f"[{time.time() - t_start:6.1f}s] {msg}", flush=True)

    def timed(fn, rot=None):
        """(median ms of one step, how); rot: one closure per cache copy, run back to back in the graph."""
        if rot:
            fn, k = (lambda: [g() for g in rot]), len(rot)
        else:
            k = 1
        try:
            return do_bench_cudagraph(fn, rep=args.rep_ms, return_mode="median") / k, "cudagraph"
        except Exception as exc:  # some callables cannot be captured: time them eagerly and say so
            notes.append(f"cudagraph capture failed ({type(exc).__name__}: {str(exc)[:120]}); eager timing")
            return do_bench(fn, rep=args.rep_ms, return_mode="median"), "eager"

    # the card's read rate, measured here (a full-tensor reduction), for the % of bandwidth
    x = torch.empty(2 << 30, dtype=torch.bfloat16, device=dev).normal_()
    ms = do_bench(lambda: x.sum(), rep=50, return_mode="median")
    read_Bps = x.numel() * 2 / (ms * 1e-3)
    del x
    torch.cuda.empty_cache()
    log(f"card read bandwidth (bf16 sum of 4.3 GB): {read_Bps / 1e12:.3f} TB/s")

    flex_shapes, pflex_shapes = _shape_set(args.flex_shapes), _shape_set(args.paged_flex_shapes)
    eager_shapes, tune_shapes = _shape_set(args.eager_shapes), _shape_set(args.tune_shapes)
    psweep_shapes = _shape_set(args.paged_sweep_shapes)
    flex = None
    try:
        from torch.nn.attention.flex_attention import flex_attention
        flex = torch.compile(flex_attention, dynamic=False)
    except Exception as exc:
        notes.append(f"FlexAttention unavailable: {exc!r}")

    try:
        import torch._dynamo
        torch._dynamo.config.cache_size_limit = 64  # one flex compile per shape, no eager fallback
    except Exception:
        pass
    shapes = [(b, n) for b in args.batches for n in args.contexts
              if 2 * b * n * HKV * D * 2 <= args.max_kv_gb * 1e9]
    # pass "main": our kernel and SDPA on every shape; pass "flex": the (slow to compile) FlexAttention runs
    plan = [("main", b, n) for b, n in shapes] + [("flex", b, n) for b, n in shapes
                                                 if (b, n) in flex_shapes or (b, n) in pflex_shapes]
    for phase, B, N in plan:
        main_pass = phase == "main"
        if left() < 0:
            notes.append(f"budget reached before {B}x{N}: not run")
            log(notes[-1])
            continue
        kv_bytes = 2 * B * N * HKV * D * 2
        base = dict(batch=B, context=N, heads_q=HQ, heads_kv=HKV, head_dim=D, dtype="bf16", seq_q=1,
                    kv_bytes=kv_bytes)

        def rec(impl, layout, t_ms, timing, **kw):
            r = dict(base, impl=impl, layout=layout, ms=t_ms, timing=timing,
                     kv_read_TBps=kv_bytes / (t_ms * 1e-3) / 1e12 if t_ms else None,
                     frac_of_read_bw=kv_bytes / (t_ms * 1e-3) / read_Bps if t_ms else None, **kw)
            records.append(r)
            with open(args.out + ".partial.jsonl", "a") as f:  # survives a kill at the time limit
                f.write(json.dumps(r) + "\n")
            return r

        prob = DecodeProblem.uniform(B, HQ, HKV, D, N, dtype="bf16")
        q, kc, vc, lens, _ = make_problem_inputs(prob, dev, seed=B * 1000003 + N)
        # the copies each timed graph rotates over (copy 0 = these inputs, the gate's)
        copies = max(1, math.ceil(args.rotate_mb * 1e6 / kv_bytes)) if (main_pass and args.rotate_mb > 0) else 1
        base["copies"] = copies
        csets = [(q, kc, vc, lens)] + [make_problem_inputs(prob, dev, seed=B * 1000003 + N + i)[:4]
                                       for i in range(1, copies)]
        # float64 reference on sequence 0 (the gate)
        qs = q.transpose(1, 2).contiguous()                       # (B, Hq, 1, d) for SDPA / flex
        ks, vs = kc.transpose(1, 2).contiguous(), vc.transpose(1, 2).contiguous()  # (B, Hkv, N, d)
        ref, _ = reference(qs[:1], ks[:1], vs[:1])
        naive, _ = naive_same_dtype(qs[:1], ks[:1], vs[:1])

        def gate(name, out_bhnd):
            try:
                check_rule(name, out_bhnd[:1], ref, naive, "bf16", verbose=False)
                return True, None
            except AssertionError as exc:
                return False, str(exc)[:300]

        def ours(layout, kcache, vcache, bt, rot_sets=None, **kw):
            fn = lambda: decode(q, kcache, vcache, lens, block_table=bt, **kw)  # noqa: E731
            ok, why = gate(f"decode {layout}", fn().transpose(1, 2))
            if not ok:
                return rec("decode", layout, None, None, gate=why, **{k: v for k, v in kw.items() if k != "schedule"},
                           **({"schedule": kw["schedule"].to_dict()} if "schedule" in kw else {}))
            sets = rot_sets if rot_sets is not None else [c + (None,) for c in csets]
            rot = [lambda c=c: decode(c[0], c[1], c[2], c[3], block_table=c[4], **kw) for c in sets] \
                if len(sets) > 1 else None
            t, how = timed(fn, rot)
            return t, how

        # our kernel, contiguous: auto and the split sweep
        _, s_auto, why = decode_plan(q, kc, vc, lens)
        res = ours("contiguous", kc, vc, None) if main_pass else None
        if isinstance(res, tuple):
            rec("decode", "contiguous", res[0], res[1], num_splits=s_auto.num_splits, auto=True, why=why,
                **fused_tag(s_auto))
            log(f"{B}x{N} decode auto S={s_auto.num_splits}: {res[0] * 1e3:.1f} us "
                f"({kv_bytes / res[0] / 1e9:.2f} TB/s)")
        # the session-13 default (block_n 64, no split_d, the rule's split count, fused at S <= 2) beside the
        # default's own pick (session 14: the default weighs split_d; kept only where it is measured faster)
        s13 = decode_plan(q, kc, vc, lens, schedule=default_decode_schedule(dev), num_splits="auto")[1]
        s13 = _default_combine(s13, s13.num_splits, dev)
        if main_pass and s13 != s_auto:
            res = ours("contiguous", kc, vc, None, schedule=s13)
            if isinstance(res, tuple):
                rec("decode", "contiguous", res[0], res[1], num_splits=s13.num_splits, auto=False, s13_default=True,
                    **fused_tag(s13))
                log(f"{B}x{N} decode session-13 default S={s13.num_splits}: {res[0] * 1e3:.1f} us")
        for S in args.splits:
            if not main_pass or S > math.ceil(N / 64) or left() < 0:
                continue
            res = ours("contiguous", kc, vc, None, num_splits=S)
            if isinstance(res, tuple):
                rec("decode", "contiguous", res[0], res[1], num_splits=S, auto=False,
                    **fused_tag(decode_plan(q, kc, vc, lens, num_splits=S)[1]))
        if main_pass and (B, N) in eager_shapes:
            ms = do_bench(lambda: decode(q, kc, vc, lens), rep=args.rep_ms, return_mode="median")
            rec("decode", "contiguous", ms, "eager", num_splits=s_auto.num_splits, auto=True)
        if main_pass and (B, N) in tune_shapes:
            for bn, w, st in ((64, 4, 2), (64, 4, 4), (128, 4, 3), (128, 8, 3), (32, 4, 4), (32, 4, 3), (64, 8, 3)):
                s = DecodeSchedule(block_n=bn, num_warps=w, num_stages=st, num_splits=s_auto.num_splits, combine_pdl=True)
                try:
                    res = ours("contiguous", kc, vc, None, schedule=s)
                    if isinstance(res, tuple):
                        rec("decode", "contiguous", res[0], res[1], num_splits=s.num_splits, auto=False,
                            schedule=s.to_dict(), tune=True)
                except Exception as exc:
                    notes.append(f"tune {B}x{N} {s}: {exc!r}"[:300])
        # paged: the same values scattered into shuffled pages
        for ps in args.pages:
            if left() < 0 or (not main_pass and (B, N) not in pflex_shapes):
                break
            pp = replace(prob, page_size=ps)
            _, pk, pv, _, bt = make_problem_inputs(pp, dev, seed=B * 1000003 + N)
            # put the contiguous cache's rows into the pages the table names, so the gate's reference applies
            npg = N // ps if N % ps == 0 else None
            if npg is None:
                continue
            flat = bt[:, :npg].reshape(-1).long()
            pk[flat] = kc.reshape(B * npg, ps, HKV, D)
            pv[flat] = vc.reshape(B * npg, ps, HKV, D)
            psets = [(q, pk, pv, lens, bt)]
            for i, c in enumerate(csets[1:], 1):  # the other copies, paged the same way
                _, pki, pvi, _, bti = make_problem_inputs(pp, dev, seed=B * 1000003 + N + i)
                fi = bti[:, :npg].reshape(-1).long()
                pki[fi] = c[1].reshape(B * npg, ps, HKV, D)
                pvi[fi] = c[2].reshape(B * npg, ps, HKV, D)
                psets.append((c[0], pki, pvi, c[3], bti))
            for pf in (args.paged_prefetch if main_pass else []):
                sch = DecodeSchedule(page_prefetch=bool(pf), combine_pdl=True)  # as kernels.decode's default
                # the rule's split count, and the default's combine at it (fused at S <= 2, session 13)
                _, s13p, _ = decode_plan(q, pk, pv, lens, block_table=bt, schedule=sch, num_splits="auto")
                s13p = _default_combine(s13p, s13p.num_splits, dev)
                # kernels.decode's choice from this base (session 14: its tile or split_d's, `choose_schedule`)
                sp = choose_schedule(pp, sch, dev)[0]
                for spx, auto in ((sp, True), (s13p, False)):
                    if not auto and spx == sp:
                        continue
                    res = ours(f"paged{ps}", pk, pv, bt, rot_sets=psets, schedule=spx)
                    if isinstance(res, tuple):
                        rec("decode", f"paged{ps}", res[0], res[1], num_splits=spx.num_splits, auto=auto,
                            page_prefetch=bool(pf), **({} if auto else {"s13_default": True}), **fused_tag(spx))
                if (B, N) in psweep_shapes:
                    for S in args.splits:
                        if S > math.ceil(N / 64) or left() < 0:
                            continue
                        sS = _default_combine(replace(sch, num_splits=S), S, dev)
                        res = ours(f"paged{ps}", pk, pv, bt, rot_sets=psets, schedule=sS)
                        if isinstance(res, tuple):
                            rec("decode", f"paged{ps}", res[0], res[1], num_splits=S, auto=False,
                                page_prefetch=bool(pf), **fused_tag(sS))
            # paged FlexAttention (torch's experimental PagedAttention), where asked
            if not main_pass and flex is not None and (B, N) in pflex_shapes and left() > 0:
                try:
                    t0 = time.time()
                    r = _paged_flex(torch, flex, qs, pk, pv, bt, B, N, ps)
                    ok, gwhy = gate(f"flex paged{ps}", r[1]())
                    if ok:
                        t, how = timed(r[1])
                        rec("flex", f"paged{ps}", t, how, compile_s=time.time() - t0)
                    else:
                        rec("flex", f"paged{ps}", None, None, gate=gwhy)
                except Exception as exc:
                    rec("flex", f"paged{ps}", None, None, error=f"{type(exc).__name__}: {str(exc)[:300]}")
                    log(f"paged flex {ps}: {type(exc).__name__}: {str(exc)[:200]}")
            del pk, pv, bt, psets
        # SDPA backends, one-token query, enable_gqa (their (B, H, N, d) copies rotated the same way)
        from torch.nn.attention import SDPBackend, sdpa_kernel
        F = torch.nn.functional
        ssets = [(qs, ks, vs)] + [(c[0].transpose(1, 2).contiguous(), c[1].transpose(1, 2).contiguous(),
                                   c[2].transpose(1, 2).contiguous()) for c in csets[1:]]
        for name, be in (("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION), ("sdpa_flash", SDPBackend.FLASH_ATTENTION),
                         ("sdpa_efficient", SDPBackend.EFFICIENT_ATTENTION)):
            if left() < 0 or not main_pass or name not in args.sdpa:
                continue

            def fn(be=be, st=(qs, ks, vs)):
                with sdpa_kernel(be):
                    return F.scaled_dot_product_attention(st[0], st[1], st[2], enable_gqa=True)
            try:
                ok, gwhy = gate(name, fn())
                if not ok:
                    rec(name, "contiguous", None, None, gate=gwhy)
                    continue
                t, how = timed(fn, [lambda st=st, fn=fn: fn(st=st) for st in ssets] if len(ssets) > 1 else None)
                rec(name, "contiguous", t, how)
                if (B, N) in eager_shapes:
                    rec(name, "contiguous", do_bench(fn, rep=args.rep_ms, return_mode="median"), "eager")
            except Exception as exc:
                rec(name, "contiguous", None, None, error=f"{type(exc).__name__}: {str(exc)[:200]}")
        if not main_pass and flex is not None and (B, N) in flex_shapes and left() > 0:
            try:
                t0 = time.time()
                fn = lambda: flex(qs, ks, vs, enable_gqa=True)  # noqa: E731
                ok, gwhy = gate("flex", fn())
                if ok:
                    t, how = timed(fn)
                    rec("flex", "contiguous", t, how, compile_s=time.time() - t0)
                else:
                    rec("flex", "contiguous", None, None, gate=gwhy)
            except Exception as exc:
                rec("flex", "contiguous", None, None, error=f"{type(exc).__name__}: {str(exc)[:300]}")
        best = {}
        for r in records:
            if r["batch"] == B and r["context"] == N and r.get("ms") and r["timing"] != "eager":
                k = r["impl"] + ("" if r["layout"] == "contiguous" else "_" + r["layout"])
                best[k] = min(best.get(k, 1e9), r["ms"])
        log(f"{B}x{N}: " + ", ".join(f"{k} {kv_bytes / (v * 1e-3) / 1e12:.2f}" for k, v in sorted(best.items())) + " TB/s")
        del q, kc, vc, qs, ks, vs, ref, naive, csets, ssets
        torch.cuda.empty_cache()

    prov = base_provenance(" ".join(["benchmarks/decode.py", *(argv if argv is not None else sys.argv[1:])]))
    prov.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                cuda=torch.version.cuda, card_read_Bps=read_Bps,
                card_read_method="torch.sum of a 2^31-element bf16 tensor, do_bench median")
    try:
        import subprocess
        prov["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        pass
    write_json(args.out, {"provenance": prov, "records": records, "notes": notes}, overwrite=False)
    log(f"wrote {args.out} ({len(records)} records)")
    return 0


def _paged_flex(torch, flex, qs, pk, pv, bt, B, N, ps):
    """FlexAttention over a paged cache with torch's experimental PagedAttention (its physical layout
    (1, Hkv, pages*page_size, d)); returns (paged attention object, callable giving (B, Hq, 1, d))."""
    from torch.nn.attention.experimental._paged_attention import PagedAttention
    from torch.nn.attention.flex_attention import create_block_mask
    n_pages = pk.shape[0]
    pa = PagedAttention(n_pages, ps, B, device="cuda")
    # our block table becomes its page table: logical page j of sequence b is physical page bt[b, j]
    npg = N // ps
    pa.page_table[:B, :npg] = bt[:, :npg].long()
    pa.capacity[:B] = npg * ps
    for b in range(B):
        pa.physical_to_logical[b, bt[b, :npg].long()] = torch.arange(npg, device="cuda")
    kc = pk.permute(2, 0, 1, 3).reshape(1, HKV, n_pages * ps, D)
    vc = pv.permute(2, 0, 1, 3).reshape(1, HKV, n_pages * ps, D)

    def noop(b, h, q_idx, kv_idx):
        return kv_idx >= 0

    logical = create_block_mask(noop, B, None, 1, N, device="cuda", BLOCK_SIZE=ps)
    physical = pa.convert_logical_block_mask(logical)  # also maps its mask_mod to physical positions
    return pa, (lambda: flex(qs, kc, vc, block_mask=physical, enable_gqa=True))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(1)
