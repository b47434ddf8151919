"""split_d A/B over caches not in the L2 (issue 12, session 14): kernels.decode's default against schedules whose CTAs
divide the head dim of V and O (DecodeSchedule.split_d), SDPA cuDNN in the same process, each gated by DESIGN.md's rule
on sequence 0 first.  n cache copies per CUDA graph (>= --rotate-mb, as benchmarks/decode_cold.py), do_bench_cudagraph
medians twice; paged rows read the same values through shuffled pages (page_prefetch on, as the benchmark's).

A variant is S/block_n/num_stages/split_d/combine[/num_warps] (combine: none, pdl or fused; num_warps 4 unless named); "default" is kernels.decode without a
schedule; a contiguous variant ending in "+e" / "-e" is that schedule with / without DecodeSchedule.early_tile
(session 19); "s14" / "s14pf" the session-14 default's pick with page_prefetch off / on on paged caches
(`benchmarks.decode_ab_predict.session14_pick`).  bf16, d = 128, 32 / 8 heads, one query token.

    PYTHONPATH=. python3 benchmarks/decode_splitd_ab.py --out /tmp/sd.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HKV, D = 8, 128

#: shape -> variants (session 14's first call: where a combine-free launch or a smaller combine can fill the SMs)
PLAN = {
    "8x1024": ["default", "1/64/3/2/none", "1/128/3/2/none", "1/64/4/2/none", "2/64/3/2/fused", "1/128/2/2/none",
               "1/64/3/4/none"],
    "1x8192": ["default", "8/64/3/2/pdl", "8/64/3/2/fused", "8/128/3/2/pdl", "16/64/3/2/pdl", "4/64/3/4/fused",
               "4/128/3/4/pdl"],
    "1x1024": ["default", "8/64/3/2/pdl", "8/64/3/2/fused", "4/64/3/4/pdl", "4/64/3/4/fused", "16/64/3/2/pdl"],
    "8x8192": ["default", "1/128/3/2/none", "1/64/3/2/none"],
    "1x32768": ["default", "8/128/3/2/pdl", "16/64/3/2/pdl"],
    "64x1024": ["default", "1/64/3/2/none"],
}
PAGED = {"8x1024": ["default", "1/128/3/2/none", "1/64/3/2/none"], "1x8192": ["default", "8/64/3/2/pdl"]}


def schedule_of(v: str):
    """S/block_n/num_stages/split_d/combine[/num_warps] (num_warps 4 when left out; session 20 added the field)."""
    from memsim.inference import DecodeSchedule
    S, bn, st, sd, comb, *w = v.split("/")
    return DecodeSchedule(num_splits=int(S), block_n=int(bn), num_stages=int(st), split_d=int(sd),
                          combine_pdl=comb == "pdl", combine_fused=comb == "fused", num_warps=int(w[0]) if w else 4)


def paged_sets(B: int, N: int, ps: int, order: str, sets: list) -> list:
    """The input sets' caches as pages of `ps` rows: "shuffled" (the rows copied into the pages a random block table
    names, as make_problem_inputs hands them out) or "ordered" (the contiguous cache itself, sequence b's page j =
    page b x pages + j of the identity table)."""
    import torch

    from kernels.decode_testing import make_problem_inputs
    from memsim.inference import DecodeProblem
    pp = DecodeProblem.uniform(B, 32, HKV, D, N, dtype="bf16", page_size=ps)
    npg = N // ps
    out = []
    for i, st in enumerate(sets):
        if order == "ordered":
            bt = torch.arange(B * npg, dtype=torch.int32, device="cuda").reshape(B, npg)
            out.append((st[0], st[1].reshape(B * npg, ps, HKV, D), st[2].reshape(B * npg, ps, HKV, D), st[3], bt))
            continue
        _, pk, pv, _, bt = make_problem_inputs(pp, "cuda", seed=B * 1000003 + N + i)
        flat = bt[:, :npg].reshape(-1).long()
        pk[flat] = st[1].reshape(B * npg, ps, HKV, D)
        pv[flat] = st[2].reshape(B * npg, ps, HKV, D)
        out.append((st[0], pk, pv, st[3], bt))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", default=",".join(PLAN))
    ap.add_argument("--pages", default="16,64")
    ap.add_argument("--rotate-mb", type=float, default=400.0)
    ap.add_argument("--rep-ms", type=int, default=20)
    ap.add_argument("--budget-s", type=float, default=90)
    ap.add_argument("--variants", default="",
                    help="replace PLAN: 'BxN=v1;v2,BxN=...' (variants as S/block_n/num_stages/split_d/combine)")
    ap.add_argument("--no-paged", action="store_true", help="skip the paged rows")
    ap.add_argument("--paged-variants", default="",
                    help="replace PAGED: 'BxN=v1;v2,...' (paged rows run each with page_prefetch on)")
    ap.add_argument("--page-order", default="shuffled",
                    help="shuffled (pages in a random order, as make_problem_inputs hands them out) and / or ordered "
                         "(the contiguous cache itself read through the identity table): is a paged row's cost the "
                         "page order (DRAM / address translation locality) or the loop?")
    ap.add_argument("--head-major-variants", default="",
                    help="'BxN=v1;v2,...': those variants also on a head-major cache (layout contiguous-hm: the same "
                         "values stored (B, Hkv, N, d), as SDPA's copy, handed to kernels.decode as a (B, N, Hkv, d) "
                         "view) -- does the memory order of the cache, not the kernel, set the gap to cuDNN? (session 20)")
    ap.add_argument("--sdpa", default="cudnn",
                    help="SDPA backends timed after each shape's rows, in the same process: cudnn and / or flash "
                         "(enable_gqa, one query token; on the (B, H, N, d) contiguous copy); cudnn_view: cuDNN on the "
                         "(B, N, H, d) cache itself through a transposed view (no copy; session 20)")
    a = ap.parse_args(argv)
    plan = ({k: v.split(";") for k, v in (x.split("=") for x in a.variants.split(",") if x)} if a.variants
            else PLAN)
    hm_plan = {k: v.split(";") for k, v in (x.split("=") for x in a.head_major_variants.split(",") if x)}
    paged_plan = ({k: v.split(";") for k, v in (x.split("=") for x in a.paged_variants.split(",") if x)}
                  if a.paged_variants else PAGED)
    import torch
    import triton
    from dataclasses import replace
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from triton.testing import do_bench

    from benchmarks.decode_ab_predict import resolve
    from benchmarks.decode_cold import graph_time_s, rotated_caches
    from kernels.decode_kv import decode, decode_plan
    from kernels.testing import check_rule
    from memsim.io import base_provenance, write_json

    t0 = time.time()
    F = torch.nn.functional
    rows, notes = [], []
    x = torch.empty(2 ** 31, dtype=torch.bfloat16, device="cuda").normal_()
    read_Bps = x.numel() * 2 / (do_bench(lambda: x.sum(), rep=50, return_mode="median") * 1e-3)
    del x
    torch.cuda.empty_cache()
    for shape in a.shapes.split(","):
        if time.time() - t0 > a.budget_s:
            notes.append(f"budget reached before {shape}")
            break
        B, N = (int(v) for v in shape.split("x"))
        p, sets, ref, naive = rotated_caches(B, N, a.rotate_mb)
        q, kc, vc, lens, _ = sets[0]
        kv = p.kv_bytes()

        def rec(impl, layout, variant, t, **kw):
            rows.append(dict(batch=B, context=N, kv_bytes=kv, copies=len(sets), impl=impl, layout=layout,
                             variant=variant, s=t, us=t[0] * 1e6, frac_of_read_bw=kv / t[0] / read_Bps, **kw))
            print(f"{B}x{N} {impl} {layout} {variant} {kw}: {t[0] * 1e6:.2f} / {t[1] * 1e6:.2f} us "
                  f"({kv / t[0] / 1e12:.2f} TB/s, {kv / t[0] / read_Bps:.1%})", flush=True)

        def run(layout, variant0, xsets, bt_of):
            variant, early = ((variant0[:-2], variant0.endswith("+e")) if variant0[-2:] in ("+e", "-e")
                              else (variant0, None))
            try:
                if variant == "default":
                    sch, kw = None, {}
                    _, s, _ = decode_plan(q, xsets[0][1], xsets[0][2], lens, block_table=bt_of(xsets[0]))
                elif variant in ("s14", "s14pf"):
                    s = resolve(B, N, None, variant)[1]
                    kw = {"schedule": s}
                else:
                    sch = schedule_of(variant)
                    s, kw = sch, {"schedule": sch}
                if early is not None:  # "+e" / "-e": the same schedule with / without early_tile (session 19)
                    s = replace(s, early_tile=early)
                    kw = {"schedule": s}
                o = decode(q, xsets[0][1], xsets[0][2], lens, block_table=bt_of(xsets[0]), **kw)
                check_rule(f"{layout} {variant0}", o.transpose(1, 2)[:1], ref, naive, "bf16", verbose=False)
                t = graph_time_s([lambda st=st: decode(st[0], st[1], st[2], st[3], block_table=bt_of(st), **kw)
                                  for st in xsets], a.rep_ms)
                rec("decode", layout, variant0, t, schedule=s.to_dict())
            except Exception as exc:
                notes.append(f"{shape} {layout} {variant0}: {type(exc).__name__}: {str(exc)[:300]}")
                print(notes[-1], flush=True)

        for v in plan.get(shape, ["default"]):
            run("contiguous", v, sets, lambda st: None)
        if shape in hm_plan:  # the same values, stored head-major, as a (B, N, Hkv, d) view (session 20)
            hsets = [(st[0], st[1].transpose(1, 2).contiguous().transpose(1, 2),
                      st[2].transpose(1, 2).contiguous().transpose(1, 2)) + tuple(st[3:]) for st in sets]
            for v in hm_plan[shape]:
                run("contiguous-hm", v, hsets, lambda st: None)
            del hsets
        for ps in (int(v) for v in a.pages.split(",") if v):
            for order in a.page_order.split(","):
                if a.no_paged or shape not in paged_plan or time.time() - t0 > a.budget_s:
                    continue
                psets = paged_sets(B, N, ps, order, sets)
                layout = f"paged{ps}" + ("" if order == "shuffled" else "-ordered")
                for v in paged_plan[shape]:
                    try:  # (the variant with page_prefetch on, as the benchmark's paged rows)
                        if v == "default":
                            _, s, _ = decode_plan(q, psets[0][1], psets[0][2], lens, block_table=psets[0][4])
                            kw = {}
                        elif v in ("s14", "s14pf"):
                            s = resolve(B, N, ps, v)[1]
                            kw = {"schedule": s}
                        else:
                            s = replace(schedule_of(v), page_prefetch=True)
                            kw = {"schedule": s}
                        o = decode(q, psets[0][1], psets[0][2], lens, block_table=psets[0][4], **kw)
                        check_rule(f"{layout} {v}", o.transpose(1, 2)[:1], ref, naive, "bf16", verbose=False)
                        t = graph_time_s([lambda st=st: decode(st[0], st[1], st[2], st[3], block_table=st[4], **kw)
                                          for st in psets], a.rep_ms)
                        rec("decode", layout, v, t, schedule=s.to_dict())
                    except Exception as exc:
                        notes.append(f"{shape} {layout} {v}: {type(exc).__name__}: {str(exc)[:300]}")
                        print(notes[-1], flush=True)
                del psets
        ssets = [(st[0].transpose(1, 2).contiguous(), st[1].transpose(1, 2).contiguous(),
                  st[2].transpose(1, 2).contiguous()) for st in sets]

        backends = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                    "cudnn_view": SDPBackend.CUDNN_ATTENTION}
        vsets = [(st[0].transpose(1, 2), st[1].transpose(1, 2), st[2].transpose(1, 2)) for st in sets]
        for name in a.sdpa.split(","):
            def sdpa(st, be=backends[name]):
                with sdpa_kernel(be):
                    return F.scaled_dot_product_attention(st[0], st[1], st[2], enable_gqa=True)
            xs = vsets if name.endswith("_view") else ssets
            try:
                check_rule(f"sdpa_{name}", sdpa(xs[0])[:1], ref, naive, "bf16", verbose=False)
                rec(f"sdpa_{name}", "contiguous", "-", graph_time_s([lambda st=st: sdpa(st) for st in xs], a.rep_ms))
            except Exception as exc:
                notes.append(f"{shape} sdpa_{name}: {exc!r}"[:300])
        del sets, ssets, vsets, q, kc, vc
        torch.cuda.empty_cache()
    prov = base_provenance("python3 benchmarks/decode_splitd_ab.py " + " ".join(argv or sys.argv[1:]))
    prov.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                cuda=torch.version.cuda, card_read_Bps=read_Bps,
                card_read_method="torch.sum of a 2^31-element bf16 tensor, do_bench median")
    write_json(a.out, dict(provenance=prov, rows=rows, notes=notes))
    print(f"\ncard read {read_Bps / 1e12:.2f} TB/s;  | shape | layout | variant | us | % of read | vs default | "
          f"vs best SDPA |")
    for shape in a.shapes.split(","):
        B, N = (int(v) for v in shape.split("x"))
        rs = [r for r in rows if r["batch"] == B and r["context"] == N]
        cu = min((r["us"] for r in rs if r["impl"].startswith("sdpa_")), default=float("nan"))  # the best SDPA
        for r in rs:
            dflt = next((x["us"] for x in rs if x["layout"] == r["layout"] and x["variant"] == "default"), float("nan"))
            name = r["impl"] if r["variant"] == "-" else r["variant"]
            print(f"| {shape} | {r['layout']} | {name} | {r['us']:.2f} | {r['frac_of_read_bw']:.1%} | "
                  f"{r['us'] / dflt:.3f} | {cu / r['us']:.3f}x |")
    for n in notes:
        print("NOTE", n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
