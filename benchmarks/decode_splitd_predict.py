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



def goals(run: str) -> str:
    """Issue 12's goals on a run of benchmarks/decode.py that timed kernels.decode's pick and the session-13 default's
    (s13_default rows), taking for each shape and layout the row of TODAY's default (`picks`: SPLIT_D_TILE only on
    contiguous caches whose default-tile pick is S = 2) -- a markdown table."""
    d = json.load(open(run))
    read = d["provenance"]["card_read_Bps"]
    recs = [r for r in d["records"] if r.get("ms") and r.get("timing") != "eager" and not r.get("tune")]
    out = ["| B x context (KV MB) | ours (default): us, TB/s, % of read, S, tile | paged16: us (vs contiguous) | "
           "paged64 | SDPA cuDNN | SDPA flash | ours / best SDPA |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for B, N in shapes():
        row = {}
        for page in PAGES:
            lay = "contiguous" if page is None else f"paged{page}"
            _, new, _ = picks(B, N, page)
            cands = [r for r in recs if r["impl"] == "decode" and (r["batch"], r["context"], r["layout"]) == (B, N, lay)
                     and (r.get("auto") or r.get("s13_default")) and (page is None or r.get("page_prefetch"))]
            hit = [r for r in cands if (r["num_splits"], r.get("split_d", 1), r.get("block_n", 64)) ==
                   (new.num_splits, new.split_d, new.block_n)]
            row[lay] = min(hit, key=lambda r: r["ms"]) if hit else None
        sd = {k: min((r["ms"] for r in recs if r["impl"] == k and (r["batch"], r["context"]) == (B, N)), default=None)
              for k in ("sdpa_cudnn", "sdpa_flash")}
        c = row["contiguous"]
        if c is None:
            continue
        kv = c["kv_bytes"]
        us = c["ms"] * 1e3
        best = min(v for v in sd.values() if v)
        tile = f"bn{c.get('block_n', 64)} split_d {c['split_d']}" if c.get("split_d", 1) > 1 else "bn64"
        pg = [f"{row[k]['ms'] * 1e3:.2f} ({row[k]['ms'] / c['ms'] - 1:+.1%})" if row[k] else "-"
              for k in ("paged16", "paged64")]
        out.append(f"| {B} x {N // 1024}k ({kv / 1e6:.0f}) | {us:.2f}, {kv / (c['ms'] * 1e-3) / 1e12:.2f}, "
                   f"{kv / (c['ms'] * 1e-3) / read:.1%}, S={c['num_splits']}, {tile} | {pg[0]} | {pg[1]} | "
                   f"{sd['sdpa_cudnn'] * 1e3:.2f} | {sd['sdpa_flash'] * 1e3:.2f} | {best / c['ms']:.3f}x |")
    return "\n".join(out)


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--goals":
    print(goals(sys.argv[2]))
    sys.exit(0)


if __name__ == "__main__":
    sys.exit(main())
