"""Predictions of the fused combine's launches (DecodeSchedule.combine_fused, session 13) for a benchmark run, written
BEFORE the run: every shape of benchmarks/decode.py at split counts 2 (what kernels.decode fuses), with the rule's
form (`memsim.inference.estimate_time_graph_s`), and the unfused launch's for comparison.  Compare with
`--check RUN.json` (a decode.py output): the rows tagged combine_fused.

    PYTHONPATH=. python3 benchmarks/decode_fused_predict.py --out reports/h100-sxm/decode/fused-predictions-s13.json
    PYTHONPATH=. python3 benchmarks/decode_fused_predict.py --check RUN.json --pred reports/h100-sxm/decode/fused-predictions-s13.json
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

SHAPES = ((1, 1024), (1, 8192), (1, 16384), (1, 32768), (1, 131072), (8, 1024), (8, 8192), (8, 16384), (8, 32768),
          (8, 131072), (64, 1024), (64, 8192), (64, 16384), (64, 32768))


def predict() -> list:
    from memsim.hardware import load_hardware
    from memsim.inference import DecodeProblem, DecodeSchedule, DeviceFacts, estimate_time_graph_s
    f = DeviceFacts.from_hardware(load_hardware("h100-sxm"))
    out = []
    for B, N in SHAPES:
        for page in (None, 16, 64):
            p = DecodeProblem.uniform(B, 32, 8, 128, N, dtype="bf16", page_size=page)
            s = DecodeSchedule(num_splits=2, page_prefetch=page is not None, combine_pdl=True)
            out.append(dict(batch=B, context=N, layout="contiguous" if page is None else f"paged{page}", num_splits=2,
                            fused_s=estimate_time_graph_s(p, replace(s, combine_fused=True), f)["time_s"],
                            unfused_s=estimate_time_graph_s(p, s, f)["time_s"]))
    return out


def check(run: dict, pred: list) -> list:
    rows = []
    for r in run["records"]:
        if r.get("impl") != "decode" or not r.get("combine_fused") or r.get("ms") is None or r.get("tune"):
            continue
        m = [x for x in pred if (x["batch"], x["context"], x["layout"], x["num_splits"]) ==
             (r["batch"], r["context"], r["layout"], r["num_splits"])]
        if m:
            rows.append(dict(batch=r["batch"], context=r["context"], layout=r["layout"], auto=r.get("auto"),
                             measured_s=r["ms"] * 1e-3, predicted_s=m[0]["fused_s"],
                             err=m[0]["fused_s"] / (r["ms"] * 1e-3) - 1))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--check")
    ap.add_argument("--pred")
    a = ap.parse_args(argv)
    if a.out:
        from memsim.io import base_provenance, write_json
        write_json(a.out, dict(provenance=base_provenance("python3 benchmarks/decode_fused_predict.py " +
                                                          " ".join(argv or sys.argv[1:])), predictions=predict()))
    if a.check:
        rows = check(json.loads(Path(a.check).read_text()), json.loads(Path(a.pred).read_text())["predictions"])
        for r in rows:
            print(f"{r['batch']} x {r['context']} {r['layout']}{' (auto)' if r['auto'] else ''}: measured "
                  f"{r['measured_s'] * 1e6:.2f} us, predicted {r['predicted_s'] * 1e6:.2f} ({r['err'] * 100:+.1f} %)")
        if rows:
            e = [abs(r["err"]) for r in rows]
            print(f"{len(rows)} fused rows: median {statistics.median(e) * 100:.1f} %, worst {max(e) * 100:.1f} %, "
                  f"{sum(x <= 0.10 for x in e)} within 10 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
