"""The decode split rule and time model against the committed split sweeps (no GPU): for every contiguous shape of a
decode benchmark file, the split count the closed-form rule (memsim.inference.auto_num_splits, what kernels.decode
uses) and memsim's SimPy ranking pick, the measured time of that pick against the best measured split count, and the
predicted time of every measured split count against its measurement.

    python benchmarks/decode_split_check.py benchmarks/results/decode-h100-run2.json --out F.json [--md F.md]

Writes JSON (provenance, per shape rows, summary).  The benchmark times are CUDA-graph medians without an L2 flush,
so the SimPy ranking runs with flush_l2=False.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from dataclasses import replace


def check(bench: dict, hardware: str = "h100-sxm", block_n: int = 64, num_stages: int = 3,
          context: str = "ncu", pdl: bool | None = None) -> dict:
    """pdl: keep only the rows with that combine_pdl (a `decode_cold.py --pdl 0,1` file has both; S = 1 rows, which
    have no combine, are kept either way); None: every row."""
    from memsim.hardware import load_hardware
    from memsim.inference import DecodeProblem, DecodeSchedule, DeviceFacts, auto_num_splits
    from memsim.inference import estimate_time_graph_s as estimate_time_s  # the rule's own form (session 12)
    from memsim.workloads_decode import simulate_decode
    facts = DeviceFacts.from_hardware(load_hardware(hardware))
    shapes = defaultdict(dict)
    # benchmarks/decode.py writes "records"; benchmarks/decode_cold.py "rows" (bf16, 32 / 8 heads, d128, one token)
    records = bench.get("records") or bench.get("rows") or []
    for r in records:
        if pdl is not None and r.get("num_splits", 1) > 1 and bool(r.get("combine_pdl")) != pdl:
            continue
        if r.get("impl") == "decode" and r.get("layout") == "contiguous" and not r.get("auto") and r.get("ms"):
            key = (r["batch"], r["context"], r.get("heads_q", 32), r.get("heads_kv", 8), r.get("head_dim", 128),
                   r.get("dtype", "bf16"), r.get("seq_q", 1))
            shapes[key][r["num_splits"]] = r["ms"] * 1e-3
    rows = []
    for (b, n, hq, hkv, d, dt, nq), meas in sorted(shapes.items()):
        p = DecodeProblem.uniform(b, hq, hkv, d, n, seq_q=nq, dtype=dt)
        s = DecodeSchedule(block_n=block_n, num_stages=num_stages, num_warps=4)
        rule, why = auto_num_splits(p, s, facts)
        best = min(meas, key=meas.get)
        per = {}
        for c, t in sorted(meas.items()):
            cf = estimate_time_s(p, replace(s, num_splits=c), facts)["time_s"]
            sim = simulate_decode(p, replace(s, num_splits=c), hardware, flush_l2=False,
                                  context=context)["total"]["gpu_time_s"]
            per[c] = {"measured_s": t, "closed_form_s": cf, "simpy_s": sim, "closed_form_err": cf / t - 1,
                      "simpy_err": sim / t - 1}
        simpy_pick = min(per, key=lambda c: per[c]["simpy_s"])
        rows.append({"batch": b, "context": n, "best_measured": best, "rule_pick": rule,
                     "rule_pick_measured": rule in meas,
                     "rule_loss": (meas[rule] / meas[best] - 1) if rule in meas else None,
                     "simpy_pick_of_measured": simpy_pick, "simpy_loss": meas[simpy_pick] / meas[best] - 1,
                     "why": why, "splits": per})
    tune = []
    for r in records:
        if r.get("tune") and r.get("ms") and r.get("schedule"):
            p = DecodeProblem.uniform(r["batch"], r["heads_q"], r["heads_kv"], r["head_dim"], r["context"],
                                      seq_q=r["seq_q"], dtype=r["dtype"])
            sd = {k: v for k, v in r["schedule"].items() if k in DecodeSchedule.__dataclass_fields__}
            s = DecodeSchedule(**sd)
            sim = simulate_decode(p, s, hardware, flush_l2=False, context=context)["total"]["gpu_time_s"]
            cf = estimate_time_s(p, s, facts)["time_s"]
            tune.append({"batch": r["batch"], "context": r["context"], "schedule": sd, "measured_s": r["ms"] * 1e-3,
                         "simpy_s": sim, "closed_form_s": cf, "simpy_err": sim / (r["ms"] * 1e-3) - 1})
    errs = [abs(v["simpy_err"]) for r in rows for v in r["splits"].values()]
    cf = [abs(v["closed_form_err"]) for r in rows for v in r["splits"].values()]
    losses = [r["rule_loss"] for r in rows if r["rule_loss"] is not None]
    summary = {"shapes": len(rows), "rule_within_5pct": sum(x <= 0.05 for x in losses), "rule_measured": len(losses),
               "rule_worst_loss": max(losses) if losses else None,
               "simpy_within_5pct": sum(r["simpy_loss"] <= 0.05 for r in rows), "context": context,
               "simpy_time_err_median": statistics.median(errs), "simpy_time_err_worst": max(errs),
               "closed_form_time_err_median": statistics.median(cf), "closed_form_time_err_worst": max(cf),
               "points": len(errs), "memory_source": facts.source}
    return {"rows": rows, "tune": tune, "summary": summary}


def to_md(res: dict, title: str) -> str:
    out = [f"### {title}", "", "| B x context | best measured S | rule S (loss) | SimPy S (loss) | SimPy time err per S |",
           "| --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        loss = f"{r['rule_loss'] * 100:+.0f} %" if r["rule_loss"] is not None else "not measured"
        errs = ", ".join(f"{c}: {v['simpy_err'] * 100:+.0f}" for c, v in r["splits"].items())
        out.append(f"| {r['batch']} x {r['context']} | {r['best_measured']} | {r['rule_pick']} ({loss}) | "
                   f"{r['simpy_pick_of_measured']} ({r['simpy_loss'] * 100:+.0f} %) | {errs} |")
    if res.get("tune"):
        out += ["", "| tune row | block_n, stages, warps, S | measured us | SimPy us (err) |", "| --- | --- | --- | --- |"]
        for t in res["tune"]:
            sd = t["schedule"]
            out.append(f"| {t['batch']} x {t['context']} | {sd.get('block_n')}, {sd.get('num_stages')}, "
                       f"{sd.get('num_warps')}, {sd.get('num_splits')} | {t['measured_s'] * 1e6:.1f} | "
                       f"{t['simpy_s'] * 1e6:.1f} ({t['simpy_err'] * 100:+.0f} %) |")
    s = res["summary"]
    out += ["", f"Rule within 5 % of the best: {s['rule_within_5pct']} of {s['rule_measured']} (worst "
            f"{(s['rule_worst_loss'] or 0) * 100:+.0f} %); SimPy pick within 5 %: {s['simpy_within_5pct']} of "
            f"{s['shapes']}; SimPy time error median {s['simpy_time_err_median'] * 100:.1f} %, worst "
            f"{s['simpy_time_err_worst'] * 100:.1f} % over {s['points']} (shape, S) points; closed form median "
            f"{s['closed_form_time_err_median'] * 100:.1f} %, worst {s['closed_form_time_err_worst'] * 100:.1f} %."]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", help="a decode benchmark JSON (benchmarks/decode.py output)")
    ap.add_argument("--out", required=True, help="JSON result (refuses to overwrite)")
    ap.add_argument("--md", help="also write a markdown table here")
    ap.add_argument("--hw", default="h100-sxm")
    ap.add_argument("--block-n", type=int, default=64)
    ap.add_argument("--num-stages", type=int, default=3)
    ap.add_argument("--context", choices=("ncu", "graph"), default="ncu",
                    help="the model's context: ncu (each kernel alone) or graph (CUDA-graph replay, as benchmarked)")
    ap.add_argument("--pdl", choices=("0", "1"), default=None,
                    help="only the rows with combine_pdl off (0) or on (1); default: every row")
    a = ap.parse_args(argv)
    from memsim.io import base_provenance, write_atomic, write_json
    with open(a.bench) as f:
        bench = json.load(f)
    res = check(bench, a.hw, a.block_n, a.num_stages, a.context, None if a.pdl is None else a.pdl == "1")
    res["provenance"] = base_provenance("python benchmarks/decode_split_check.py " + " ".join(argv or sys.argv[1:]))
    res["provenance"]["bench"] = a.bench
    res["provenance"]["bench_card"] = bench.get("provenance", {}).get("gpu")
    write_json(a.out, res)
    if a.md:
        write_atomic(a.md, to_md(res, f"{a.bench} vs memsim ({res['summary']['memory_source'][:60]})") + "\n")
    print(to_md(res, a.bench))
    return 0


if __name__ == "__main__":
    sys.exit(main())
