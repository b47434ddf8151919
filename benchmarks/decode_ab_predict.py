"""Predictions for a `benchmarks/decode_splitd_ab.py` call (issue 12, session 15), written and committed BEFORE the call:
every row the A/B will time (the same --shapes / --variants / --paged-variants / --pages / --page-order arguments),
each with the rule's graph form (`memsim.inference.estimate_time_graph_s`) and the SimPy model (`simulate_decode`,
graph context).  --check compares the A/B's json with them.  No GPU.

Pages "ordered" (the contiguous cache read through the identity block table) are predicted as the same paged launch
with `PAGE_SCATTER_READ`'s factor at 1: the model's hypothesis that a page order only scales the launch's DRAM rate
(session 13).  The SimPy model has no page order (the same figure for both orders).  "default" is what kernels.decode
picks on the GPU (`kernels.decode_kv.choose_schedule`; on a paged cache without page_prefetch, as decode_plan ran it
in session 15's first call; with it since `PAGED_PREFETCH_DEFAULT`); "s14" / "s14pf" the session-14 default's pick
(`session14_pick`).

    python benchmarks/decode_ab_predict.py --write reports/h100-sxm/decode/ab-predictions-s15.json \\
        --shapes 8x1024,8x32768 --variants ... --paged-variants ... --page-order shuffled,ordered
    python benchmarks/decode_ab_predict.py --check RUN/paged-order.json --pred reports/h100-sxm/decode/ab-predictions-s15.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HQ, HKV, D = 32, 8, 128


@contextlib.contextmanager
def pages_in_order(preset: str):
    """The graph form with `PAGE_SCATTER_READ` at 1 for `preset` (pages in sequence order)."""
    from memsim import inference
    old = inference.PAGE_SCATTER_READ.get(preset)
    if old is not None:
        inference.PAGE_SCATTER_READ[preset] = tuple((ps, 1.0) for ps, _ in old)
    try:
        yield
    finally:
        if old is not None:
            inference.PAGE_SCATTER_READ[preset] = old


def session14_pick(p, prefetch: bool):
    """kernels.decode's default of session 14 (before TILE_CANDIDATES and PAGED_PREFETCH_DEFAULT): the rule's split
    count on the 64-key tile with the default combine, or SPLIT_D_TILE where `_split_d_candidate` applies and the
    graph form predicts it faster; paged caches with page_prefetch = `prefetch` (off was that default's; on is what
    the benchmark's goal rows ran)."""
    from kernels.decode_kv import FUSED_DEFAULT_MAX_SPLITS, _auto, _split_d_candidate, device_facts
    from memsim.inference import DecodeSchedule, estimate_time_graph_s
    base = DecodeSchedule(block_n=64, num_warps=4, num_stages=3, combine_pdl=True, page_prefetch=prefetch and p.paged)
    c, _ = _auto(p, base, None)
    sc = replace(base, num_splits=c, combine_fused=1 < c <= FUSED_DEFAULT_MAX_SPLITS)
    alt = _split_d_candidate(p, base, c)
    f = device_facts(None)
    if alt is not None and estimate_time_graph_s(p, alt, f)["time_s"] < estimate_time_graph_s(p, sc, f)["time_s"]:
        return alt
    return sc


def resolve(B: int, N: int, page, variant: str):
    """(problem, schedule) of one A/B row as decode_splitd_ab.py launches it: "default" kernels.decode's default
    now (paged: page_prefetch on, `kernels.decode_kv.PAGED_PREFETCH_DEFAULT`), "s14" / "s14pf" `session14_pick`
    with page_prefetch off / on, else S/block_n/num_stages/split_d/combine (paged: page_prefetch on)."""
    from benchmarks.decode_splitd_ab import schedule_of
    from kernels.decode_kv import PAGED_PREFETCH_DEFAULT, _auto_tile
    from memsim.inference import DecodeProblem, DecodeSchedule
    if variant[-2:] in ("+e", "-e"):  # the schedule with / without the first tile beside the length (session 19)
        p, s = resolve(B, N, page, variant[:-2])
        return p, replace(s, early_tile=variant.endswith("+e"))
    p = DecodeProblem.uniform(B, HQ, HKV, D, N, dtype="bf16", page_size=page)
    if variant == "default":
        base = DecodeSchedule(block_n=64, num_warps=4, num_stages=3, combine_pdl=True,
                              page_prefetch=page is not None and PAGED_PREFETCH_DEFAULT)
        return p, _auto_tile(p, base, None, True)[0]
    if variant in ("s14", "s14pf"):
        return p, session14_pick(p, variant == "s14pf")
    s = schedule_of(variant)
    return p, (replace(s, page_prefetch=True) if page else s)


def predict(p, s, ordered: bool) -> dict:
    from kernels.decode_kv import device_facts
    from memsim.inference import estimate_time_graph_s
    from memsim.workloads_decode import simulate_decode
    f = device_facts(None)
    with pages_in_order(f.name) if ordered else contextlib.nullcontext():
        g = estimate_time_graph_s(p, s, f)["time_s"]
    sim = simulate_decode(p, s, "h100-sxm", flush_l2=False, context="graph")["total"]["gpu_time_s"]
    return {"schedule": s.to_dict(), "graph_us": g * 1e6, "simpy_us": sim * 1e6}


def rows_of(a) -> list:
    plan = {k: v.split(";") for k, v in (x.split("=") for x in a.variants.split(",") if x)}
    paged = {k: v.split(";") for k, v in (x.split("=") for x in a.paged_variants.split(",") if x)}
    hm = {k: v.split(";") for k, v in (x.split("=") for x in a.head_major_variants.split(",") if x)}
    out = []
    for shape in a.shapes.split(","):
        B, N = (int(v) for v in shape.split("x"))
        for v in plan.get(shape, ["default"]):
            out.append((B, N, "contiguous", v))
        for v in hm.get(shape, []):  # a head-major cache: the model has no memory-order term (its hypothesis: none)
            out.append((B, N, "contiguous-hm", v))
        if a.no_paged or shape not in paged:
            continue
        for ps in (int(x) for x in a.pages.split(",") if x):
            for order in a.page_order.split(","):
                for v in paged[shape]:
                    out.append((B, N, f"paged{ps}" + ("" if order == "shuffled" else "-ordered"), v))
    return out


def write(a) -> int:
    from memsim.io import base_provenance, write_json
    rows = []
    for B, N, layout, v in rows_of(a):
        page = None if layout.startswith("contiguous") else int(layout[5:].split("-")[0])
        p, s = resolve(B, N, page, v)
        try:
            r = dict(batch=B, context=N, layout=layout, variant=v, **predict(p, s, layout.endswith("-ordered")))
        except Exception as exc:  # (a schedule the preset refuses: the card should refuse it too)
            rows.append(dict(batch=B, context=N, layout=layout, variant=v, error=f"{type(exc).__name__}: {exc}"))
            print(f"{B}x{N} {layout} {v}: {rows[-1]['error']}", flush=True)
            continue
        rows.append(r)
        print(f"{B}x{N} {layout} {v}: graph {r['graph_us']:.2f} us, SimPy {r['simpy_us']:.2f} us", flush=True)
    write_json(a.write, {"provenance": base_provenance("python benchmarks/decode_ab_predict.py " + " ".join(sys.argv[1:])),
                         "rows": rows}, overwrite=True)
    return 0


def check(run: str, pred: str) -> int:
    d = json.load(open(run))
    P = {(r["batch"], r["context"], r["layout"], r["variant"]): r for r in json.load(open(pred))["rows"]}
    errs = {"graph": [], "simpy": []}
    print("| shape | layout | variant | measured us | graph us (err) | SimPy us (err) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in d["rows"]:
        if r["impl"] != "decode":
            continue
        pr = P.get((r["batch"], r["context"], r["layout"], r["variant"]))
        if pr is None or "error" in pr:
            continue
        eg, es = pr["graph_us"] / r["us"] - 1, pr["simpy_us"] / r["us"] - 1
        errs["graph"].append(abs(eg))
        errs["simpy"].append(abs(es))
        print(f"| {r['batch']}x{r['context']} | {r['layout']} | {r['variant']} | {r['us']:.2f} | "
              f"{pr['graph_us']:.2f} ({eg:+.1%}) | {pr['simpy_us']:.2f} ({es:+.1%}) |")
    for k, v in errs.items():
        if v:
            print(f"{k}: median {statistics.median(v):.1%}, worst {max(v):.1%}, {sum(x <= 0.1 for x in v)}/{len(v)} "
                  f"within 10 %")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write")
    ap.add_argument("--check")
    ap.add_argument("--pred", default="reports/h100-sxm/decode/ab-predictions-s15.json")
    ap.add_argument("--shapes", default="")
    ap.add_argument("--variants", default="")
    ap.add_argument("--paged-variants", default="")
    ap.add_argument("--pages", default="16,64")
    ap.add_argument("--page-order", default="shuffled")
    ap.add_argument("--no-paged", action="store_true")
    ap.add_argument("--head-major-variants", default="")
    a = ap.parse_args(argv)
    if a.check:
        return check(a.check, a.pred)
    if a.write:
        return write(a)
    ap.error("--write or --check")
    return 2


if __name__ == "__main__":
    sys.exit(main())
