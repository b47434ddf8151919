"""Predictions for benchmark run 8 (issue 12, session 14), written and committed BEFORE the run: for every shape and
layout of benchmarks/decode.py, kernels.decode's pick (`kernels.decode_kv.choose_schedule`: the default tile or
SPLIT_D_TILE, the rule's split count, the default combine) and the session-13 default's pick, each with the graph
form's time (`memsim.inference.estimate_time_graph_s`, the rule's) and the SimPy model's (`simulate_decode`, graph
context).  --check compares a run's rows (auto and s13_default) with them.  No GPU.

    python benchmarks/decode_splitd_predict.py --write reports/h100-sxm/decode/splitd-predictions-s14.json
    python benchmarks/decode_splitd_predict.py --check RUN/decode-bench.json --pred reports/h100-sxm/decode/splitd-predictions-s14.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BATCHES, CONTEXTS, PAGES = (1, 8, 64), (1024, 8192, 16384, 32768, 131072), (None, 16, 64)


def shapes():
    return [(b, n) for b in BATCHES for n in CONTEXTS if 2 * b * n * 8 * 128 * 2 <= 8.6e9]


def picks(B: int, N: int, page):
    """(new pick, session-13 pick) as benchmarks/decode.py runs them (paged: page_prefetch on)."""
    from kernels.decode_kv import FUSED_DEFAULT_MAX_SPLITS, _auto, _auto_tile
    from memsim.inference import DecodeProblem, DecodeSchedule
    p = DecodeProblem.uniform(B, 32, 8, 128, N, dtype="bf16", page_size=page)
    base = DecodeSchedule(block_n=64, num_warps=4, num_stages=3, combine_pdl=True, page_prefetch=page is not None)
    new = _auto_tile(p, base, None, True)[0]
    c = _auto(p, base, None)[0]
    old = replace(base, num_splits=c, combine_fused=1 < c <= FUSED_DEFAULT_MAX_SPLITS)
    return p, new, old


def predict(p, s) -> dict:
    from kernels.decode_kv import device_facts
    from memsim.inference import estimate_time_graph_s
    from memsim.workloads_decode import simulate_decode
    g = estimate_time_graph_s(p, s, device_facts(None))["time_s"]
    sim = simulate_decode(p, s, "h100-sxm", flush_l2=False, context="graph")["total"]["gpu_time_s"]
    return {"schedule": s.to_dict(), "graph_us": g * 1e6, "simpy_us": sim * 1e6}


def write(out: str) -> int:
    from memsim.io import base_provenance, write_json
    rows = []
    for B, N in shapes():
        for page in PAGES:
            p, new, old = picks(B, N, page)
            r = {"batch": B, "context": N, "layout": "contiguous" if page is None else f"paged{page}",
                 "new": predict(p, new), "old": None if old == new else predict(p, old)}
            rows.append(r)
            o = r["old"]
            print(f"{B}x{N} {r['layout']}: new S={new.num_splits} bn{new.block_n} sd{new.split_d} "
                  f"{r['new']['graph_us']:.1f} / {r['new']['simpy_us']:.1f} us"
                  + (f"; old S={old.num_splits} {o['graph_us']:.1f} / {o['simpy_us']:.1f} us" if o else "; = old"),
                  flush=True)
    write_json(out, {"provenance": base_provenance("python benchmarks/decode_splitd_predict.py --write " + out),
                     "rows": rows}, overwrite=True)
    return 0


def check(run: str, pred: str) -> int:
    recs = json.load(open(run))["records"]
    P = {(r["batch"], r["context"], r["layout"]): r for r in json.load(open(pred))["rows"]}
    errs = {"graph": [], "simpy": []}
    print("| shape | layout | which | S, tile | measured us | graph err | SimPy err | new / old measured |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, pr in sorted(P.items()):
        B, N, layout = key
        rows = [r for r in recs if r["impl"] == "decode" and r["batch"] == B and r["context"] == N
                and r["layout"] == layout and r.get("ms") and r.get("timing") != "eager" and not r.get("tune")
                and (layout == "contiguous" or r.get("page_prefetch"))]
        new = next((r for r in rows if r.get("auto")), None)
        old = next((r for r in rows if r.get("s13_default")), None)
        for which, r, pp in (("new", new, pr["new"]), ("old", old, pr["old"])):
            if r is None or pp is None:
                continue
            us = r["ms"] * 1e3
            eg, es = pp["graph_us"] / us - 1, pp["simpy_us"] / us - 1
            errs["graph"].append(abs(eg))
            errs["simpy"].append(abs(es))
            sd = pp["schedule"]
            ratio = f"{new['ms'] / old['ms']:.3f}" if (which == "new" and new and old) else ""
            print(f"| {B}x{N} | {layout} | {which} | S={sd['num_splits']} bn{sd['block_n']} sd{sd.get('split_d', 1)} | "
                  f"{us:.2f} | {eg:+.1%} | {es:+.1%} | {ratio} |")
    for k, v in errs.items():
        if v:
            print(f"{k}: median {statistics.median(v):.1%}, worst {max(v):.1%}, {sum(x <= 0.1 for x in v)}/{len(v)} "
                  f"within 10 %")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write")
    ap.add_argument("--check")
    ap.add_argument("--pred", default="reports/h100-sxm/decode/splitd-predictions-s14.json")
    a = ap.parse_args(argv)
    if a.write:
        return write(a.write)
    if a.check:
        return check(a.check, a.pred)
    ap.error("--write or --check")
    return 2


if __name__ == "__main__":
    sys.exit(main())
