"""Decode timed over caches that do NOT stay in the L2 (issue 12, session 11): each timed call runs n decode steps over
n different caches (n copies of the shape's K/V, together >= --rotate-mb), so a step finds its cache in DRAM, as a
layer's cache is in serving (the other layers run between its steps).  `benchmarks/decode.py` replays ONE cache: a
cache of <= 34 MB then stays in the 50 MB L2 across CUDA-graph replays (session 11: 1 x 8k S = 32's split kernel ran
at 4.0 TB/s of KV, over the DRAM's 3.05; benchmarks/decode_graph_gpu.py).  Times = do_bench_cudagraph median of the
n-step graph / n.  Ours (contiguous: auto split + a split sweep; paged 16 / 64 at the auto split, page_prefetch on)
and SDPA cuDNN / flash (enable_gqa, their (B, H, N, d) copies rotated the same way) in the same run; every
implementation passes DESIGN.md's rule on sequence 0 of copy 0 first.  bf16, d = 128, 32 / 8 heads, one query token.

    PYTHONPATH=. python3 benchmarks/decode_cold.py --out /tmp/cold.json
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HQ, HKV, D = 32, 8, 128


def graph_time_s(fns, rep_ms: int) -> list:
    """Seconds per call of each of `fns`, run back to back in one CUDA graph (do_bench_cudagraph median), twice."""
    import torch
    from triton.testing import do_bench_cudagraph

    def all_():
        for f in fns:
            f()
    all_()
    torch.cuda.synchronize()
    return [do_bench_cudagraph(all_, rep=rep_ms, return_mode="median") * 1e-3 / len(fns) for _ in range(2)]


def rotated_caches(B: int, N: int, rotate_mb: float):
    """(problem, n input sets whose caches together hold >= rotate_mb, reference and naive outputs of sequence 0 of
    set 0 in (B, H, N, d)): the shape's caches copied so a step finds its cache in DRAM, and what the rule checks."""
    from kernels.decode_testing import make_problem_inputs
    from kernels.reference import naive_same_dtype, reference
    from memsim.inference import DecodeProblem
    n = max(1, math.ceil(rotate_mb * 1e6 / (2 * B * N * HKV * D * 2)))
    p = DecodeProblem.uniform(B, HQ, HKV, D, N, dtype="bf16")
    sets = [make_problem_inputs(p, "cuda", seed=B * 1000003 + N + i) for i in range(n)]
    q, kc, vc, _, _ = sets[0]
    qs = q[:1].transpose(1, 2).contiguous()
    ks0, vs0 = kc[:1].transpose(1, 2).contiguous(), vc[:1].transpose(1, 2).contiguous()
    return p, sets, reference(qs, ks0, vs0)[0], naive_same_dtype(qs, ks0, vs0)[0]


def cs_tags(s) -> dict:
    """The combine flags of schedule `s` a row records (combine_pdl as in session 12; combine_fused when on)."""
    return dict(combine_pdl=s.combine_pdl, **({"combine_fused": True} if s.combine_fused else {}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", default="1x1024,1x8192,1x16384,8x1024,8x8192,64x1024")
    ap.add_argument("--splits", default="1,2,4,8,16,32")
    ap.add_argument("--pages", default="16,64")
    ap.add_argument("--rotate-mb", type=float, default=400.0)
    ap.add_argument("--rep-ms", type=int, default=20)
    ap.add_argument("--budget-s", type=float, default=100)
    ap.add_argument("--pdl", default="0",
                    help="combine_pdl values to time ours with (0,1: the A/B of the combine as a programmatic "
                         "dependent launch; session 12)")
    ap.add_argument("--combine", default=None,
                    help="combine launches to time ours with, of plain, pdl, fused (the combine folded into the "
                         "split launch, DecodeSchedule.combine_fused; session 13); overrides --pdl")
    ap.add_argument("--paged-stages", default="3", help="num_stages of the paged rows (each at its own auto split)")
    ap.add_argument("--page-order", default="shuffled",
                    help="shuffled (pages in a random order, as make_problem_inputs hands them out) and / or ordered "
                         "(the contiguous cache itself as pages: sequence b's page j is page b x pages + j; session 13)")
    ap.add_argument("--paged-splits", default="", help="split counts to time the paged rows at besides the rule's")
    a = ap.parse_args(argv)
    modes = (a.combine.split(",") if a.combine else ["pdl" if v == "1" else "plain" for v in a.pdl.split(",")])
    flags = {"plain": {}, "pdl": {"combine_pdl": True}, "fused": {"combine_fused": True},
             "default": {"combine_pdl": True}}  # default: kernels.decode's (fused at S <= 2, session 13)
    import torch
    import triton
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from kernels.decode_kv import _default_combine, decode, decode_plan
    from kernels.decode_testing import make_problem_inputs
    from kernels.testing import check_rule
    from memsim.inference import DecodeProblem, DecodeSchedule
    from memsim.io import base_provenance, write_json

    t0 = time.time()
    F = torch.nn.functional
    rows, notes = [], []
    x = torch.empty(2 ** 31, dtype=torch.bfloat16, device="cuda").normal_()
    from triton.testing import do_bench
    read_Bps = x.numel() * 2 / (do_bench(lambda: x.sum(), rep=50, return_mode="median") * 1e-3)
    del x
    torch.cuda.empty_cache()

    def timed(fns):
        return graph_time_s(fns, a.rep_ms)

    for shape in a.shapes.split(","):
        if time.time() - t0 > a.budget_s:
            notes.append(f"budget reached before {shape}")
            break
        B, N = (int(v) for v in shape.split("x"))
        p, sets, ref, naive = rotated_caches(B, N, a.rotate_mb)
        q, kc, vc, lens, _ = sets[0]
        kv, n = p.kv_bytes(), len(sets)

        def gate(name, out_bhnd):
            check_rule(name, out_bhnd[:1], ref, naive, "bf16", verbose=False)

        base = dict(batch=B, context=N, kv_bytes=kv, copies=n)

        def rec(impl, layout, t, **kw):
            rows.append(dict(base, impl=impl, layout=layout, s=t, ms=t[0] * 1e3, kv_read_TBps=kv / t[0] / 1e12,
                             frac_of_read_bw=kv / t[0] / read_Bps, **kw))
            print(f"{B}x{N} {impl} {layout} {kw}: {t[0] * 1e6:.2f} / {t[1] * 1e6:.2f} us "
                  f"({kv / t[0] / 1e12:.2f} TB/s)", flush=True)

        # ours, contiguous: auto + sweep (each combine_pdl value of --pdl)
        def ours(mode):
            if mode == "default":
                return ours_default()
            cs = DecodeSchedule(**flags[mode])
            pdl = mode != "plain"  # (the rows' tag, as in session 12: S = 1 timed once)
            _, s_auto, _ = decode_plan(q, kc, vc, lens, schedule=cs, num_splits="auto")
            gate(f"decode {mode}", decode(q, kc, vc, lens, schedule=cs, num_splits="auto").transpose(1, 2))
            rec("decode", "contiguous", timed([lambda st=st: decode(st[0], st[1], st[2], st[3], schedule=cs,
                                                                    num_splits="auto") for st in sets]),
                num_splits=s_auto.num_splits, auto=True, **cs_tags(cs))
            for S in (int(v) for v in a.splits.split(",")):
                if S > -(-N // 64) or (pdl and S == 1):  # (S = 1 has no combine: the same launch either way)
                    continue
                if pdl:
                    gate(f"decode S={S} {mode}", decode(q, kc, vc, lens, schedule=cs, num_splits=S).transpose(1, 2))
                rec("decode", "contiguous", timed([lambda st=st, S=S: decode(st[0], st[1], st[2], st[3], schedule=cs,
                                                                             num_splits=S) for st in sets]),
                    num_splits=S, auto=False, **cs_tags(cs))

        def ours_default():  # kernels.decode without a schedule: its rule, its combine
            _, s_auto, _ = decode_plan(q, kc, vc, lens)
            gate("decode default", decode(q, kc, vc, lens).transpose(1, 2))
            rec("decode", "contiguous", timed([lambda st=st: decode(st[0], st[1], st[2], st[3]) for st in sets]),
                num_splits=s_auto.num_splits, auto=True, default=True, **cs_tags(s_auto))
            for S in (int(v) for v in a.splits.split(",")):
                if S > -(-N // 64):
                    continue
                sS = decode_plan(q, kc, vc, lens, num_splits=S)[1]
                rec("decode", "contiguous", timed([lambda st=st, S=S: decode(st[0], st[1], st[2], st[3], num_splits=S)
                                                   for st in sets]), num_splits=S, auto=False, default=True,
                    **cs_tags(sS))

        for mode in modes:
            try:
                ours(mode)
            except Exception as exc:  # e.g. a graph capture refused: say so, keep the other rows
                notes.append(f"decode {mode} {shape}: {exc!r}"[:300])
                print(notes[-1], flush=True)
        # ours, paged (the contiguous rows copied into shuffled pages), auto split, page_prefetch
        for ps in (int(v) for v in a.pages.split(",") if v):
            pp = DecodeProblem.uniform(B, HQ, HKV, D, N, dtype="bf16", page_size=ps)
            for order in a.page_order.split(","):
                psets = []
                for i, st in enumerate(sets):
                    if order == "ordered":  # the contiguous cache itself, read through the identity table
                        npg = N // ps
                        bt = (torch.arange(B * npg, dtype=torch.int32, device="cuda").reshape(B, npg))
                        psets.append((st[0], st[1].reshape(B * npg, ps, HKV, D), st[2].reshape(B * npg, ps, HKV, D),
                                      st[3], bt))
                        continue
                    _, pk, pv, _, bt = make_problem_inputs(pp, "cuda", seed=B * 1000003 + N + i)
                    flat = bt[:, :N // ps].reshape(-1).long()
                    pk[flat] = st[1].reshape(B * (N // ps), ps, HKV, D)
                    pv[flat] = st[2].reshape(B * (N // ps), ps, HKV, D)
                    psets.append((st[0], pk, pv, st[3], bt))
                p0 = psets[0]
                for mode in modes:
                    for stg in (int(v) for v in a.paged_stages.split(",")):
                        sch = DecodeSchedule(page_prefetch=True, num_stages=stg, **flags[mode])
                        try:
                            _, sp, _ = decode_plan(q, p0[1], p0[2], lens, block_table=p0[4], schedule=sch,
                                                   num_splits="auto")
                            todo = [(sp, True)] + [(replace(sp, num_splits=int(v)), False)
                                                   for v in a.paged_splits.split(",") if v and int(v) != sp.num_splits]
                            for sS, auto in todo:
                                if mode == "default":
                                    sS = _default_combine(sS, sS.num_splits, "cuda")
                                o = decode(q, p0[1], p0[2], lens, block_table=p0[4], schedule=sS)
                                gate(f"decode paged{ps} {order} {mode} st{stg} S{sS.num_splits}", o.transpose(1, 2))
                                rec("decode", f"paged{ps}", timed([lambda st=st, sS=sS: decode(
                                    st[0], st[1], st[2], st[3], block_table=st[4], schedule=sS) for st in psets]),
                                    num_splits=sS.num_splits, auto=auto, page_prefetch=True, num_stages=stg,
                                    page_order=order, **({"default": True} if mode == "default" else {}),
                                    **cs_tags(sS))
                        except Exception as exc:
                            notes.append(f"decode paged{ps} {order} {mode} st{stg} {shape}: {exc!r}"[:300])
                            print(notes[-1], flush=True)
                del psets
        # SDPA on (B, H, N, d) copies
        ssets = [(st[0].transpose(1, 2).contiguous(), st[1].transpose(1, 2).contiguous(),
                  st[2].transpose(1, 2).contiguous()) for st in sets]
        for name, be in (("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION), ("sdpa_flash", SDPBackend.FLASH_ATTENTION)):
            def one(st, be=be):
                with sdpa_kernel(be):
                    return F.scaled_dot_product_attention(st[0], st[1], st[2], enable_gqa=True)
            try:
                gate(name, one(ssets[0]))
                rec(name, "contiguous", timed([lambda st=st: one(st) for st in ssets]))
            except Exception as exc:
                notes.append(f"{name} {shape}: {exc!r}"[:300])
        del sets, ssets, q, kc, vc
        torch.cuda.empty_cache()
    prov = base_provenance("python3 benchmarks/decode_cold.py " + " ".join(argv or sys.argv[1:]))
    prov.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                cuda=torch.version.cuda, card_read_Bps=read_Bps,
                card_read_method="torch.sum of a 2^31-element bf16 tensor, do_bench median")
    write_json(a.out, dict(provenance=prov, rows=rows, notes=notes))
    print("\n| B x N (copies) | ours auto | ours best (S) | paged16 | paged64 | cuDNN | flash | ours best / best SDPA |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for shape in a.shapes.split(","):
        B, N = (int(v) for v in shape.split("x"))
        rs = [r for r in rows if r["batch"] == B and r["context"] == N]
        if not rs:
            continue
        def us(f):
            r = [x for x in rs if f(x)]
            return min(r, key=lambda x: x["ms"]) if r else None
        auto = us(lambda r: r["impl"] == "decode" and r["layout"] == "contiguous" and r.get("auto")
                  and not r.get("combine_pdl"))
        auto_pdl = us(lambda r: r["impl"] == "decode" and r["layout"] == "contiguous" and r.get("auto")
                      and r.get("combine_pdl"))
        best = us(lambda r: r["impl"] == "decode" and r["layout"] == "contiguous")
        p16, p64 = us(lambda r: r["layout"] == "paged16"), us(lambda r: r["layout"] == "paged64")
        cu, fl = us(lambda r: r["impl"] == "sdpa_cudnn"), us(lambda r: r["impl"] == "sdpa_flash")
        sd = min([r["ms"] for r in (cu, fl) if r] or [float("nan")])
        f = lambda r: f"{r['ms'] * 1e3:.2f}" if r else "-"  # noqa: E731
        print(f"| {B} x {N} ({rs[0]['copies']}) | {f(auto)} (S={auto['num_splits'] if auto else '-'}; pdl {f(auto_pdl)}) | {f(best)} "
              f"(S={best['num_splits'] if best else '-'}) | {f(p16)} | {f(p64)} | {f(cu)} | {f(fl)} | "
              f"{sd / best['ms'] if best else float('nan'):.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
