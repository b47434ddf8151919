"""Held-out check of the per-GPC DRAM share (memsim/MODEL.md decode, "the last partial wave"): a seeded draw of
multi-wave decode launches unlike the sweep it was read from, predicted by the model with and without the GPC
share BEFORE the device call, then timed on the card (benchmarks/decode_tail_gpu.py --cases, CUDA-graph medians).

    python benchmarks/decode_tail_heldout.py draw --seed S --out CASES.json     # draw + predict (both models)
    python benchmarks/decode_tail_heldout.py compare CASES.json MEASURED.json   # after the call

Draw: d in {64, 128}, KV heads in {4, 8}, group in {4, 8}, bf16 / fp16, contiguous or 16- / 64-row pages (prefetch),
S in {1, 2, 3, 4}, context 4k-32k keys (uniform), tile 32 / 64 keys; the batch puts 1.05-2.4 waves of the model's
slots (CTAs per SM x 132) into the split launch; caches <= 6 GB.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def draw(seed: int, n: int = 16) -> list:
    from memsim.hardware import load_hardware
    from memsim.inference import (DecodeProblem, DecodeSchedule, DeviceFacts, split_regs_per_thread,
                                  split_shared_bytes)
    hw = load_hardware("h100-sxm")
    facts = DeviceFacts.from_hardware(hw)
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        d, hkv, grp = rng.choice((64, 128)), rng.choice((4, 8)), rng.choice((4, 8))
        dtype, page = rng.choice(("bf16", "fp16")), rng.choice((None, 16, 64))
        S, N, bn = rng.choice((1, 2, 3, 4)), rng.randint(4096, 32768), rng.choice((32, 64))
        p1 = DecodeProblem.uniform(1, hkv * grp, hkv, d, N, dtype=dtype, page_size=page)
        s = DecodeSchedule(num_splits=S, block_n=bn, num_stages=3, num_warps=4, page_prefetch=page is not None)
        per_sm = facts.ctas_per_sm(split_shared_bytes(p1, s), s.num_warps, split_regs_per_thread(p1, s))
        slots = per_sm * hw.num_sms
        B = max(1, round(rng.uniform(1.05, 2.4) * slots / (hkv * S)))
        if 2 * B * N * hkv * d * 2 > 6e9:
            continue
        out.append(dict(name=f"tail{seed}_{len(out):02d}", batch=B, context=N, heads_q=hkv * grp, heads_kv=hkv,
                        head_dim=d, dtype=dtype, page_size=page, num_splits=S, block_n=bn, num_stages=3,
                        num_warps=4, page_prefetch=page is not None, ctas=B * hkv * S, slots=slots))
    return out


def predict(cases: list) -> None:
    import memsim.workloads_decode as wd
    from memsim.inference import DecodeProblem, DecodeSchedule
    for c in cases:
        p = DecodeProblem.uniform(c["batch"], c["heads_q"], c["heads_kv"], c["head_dim"], c["context"],
                                  dtype=c["dtype"], page_size=c["page_size"])
        s = DecodeSchedule(num_splits=c["num_splits"], block_n=c["block_n"], num_stages=c["num_stages"],
                           num_warps=c["num_warps"], page_prefetch=c["page_prefetch"])
        for key, on in (("predicted_gpc_s", True), ("predicted_mean_field_s", False)):
            old = wd.GPC_MODEL
            wd.GPC_MODEL = on
            try:
                c[key] = wd.simulate_decode(p, s, "h100-sxm", flush_l2=False)["total"]["gpu_time_s"]
            finally:
                wd.GPC_MODEL = old
        print(c["name"], c["ctas"], c["slots"], f"{c['predicted_gpc_s'] * 1e6:.1f}",
              f"{c['predicted_mean_field_s'] * 1e6:.1f}", flush=True)


def compare(cases_path: str, measured_path: str) -> dict:
    cases = {c["name"]: c for c in json.load(open(cases_path))["cases"]}
    rows = []
    for r in json.load(open(measured_path))["rows"]:
        c = cases[r["name"]]
        m = r["ms"] * 1e-3
        rows.append(dict(name=r["name"], ctas=c["ctas"], slots=c["slots"], measured_s=m,
                         gpc_err=c["predicted_gpc_s"] / m - 1, mean_field_err=c["predicted_mean_field_s"] / m - 1))
    summ = {}
    for k in ("gpc_err", "mean_field_err"):
        e = [abs(r[k]) for r in rows]
        summ[k] = dict(median=statistics.median(e), worst=max(e), within_10pct=sum(x <= 0.10 for x in e), n=len(e),
                       too_fast=sum(r[k] < 0 for r in rows))
    return dict(rows=rows, summary=summ)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("draw")
    d.add_argument("--seed", type=int, required=True)
    d.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("cases")
    c.add_argument("measured")
    c.add_argument("--out")
    a = ap.parse_args(argv)
    if a.cmd == "draw":
        cases = draw(a.seed)
        predict(cases)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()
        with open(a.out, "w") as f:
            json.dump(dict(seed=a.seed, predicted_at_commit=commit,
                           command="python benchmarks/decode_tail_heldout.py " + " ".join(argv or sys.argv[1:]),
                           cases=cases), f, indent=1)
        return 0
    res = compare(a.cases, a.measured)
    for r in res["rows"]:
        print(f"{r['name']:12s} {r['ctas']:5d}/{r['slots']:4d} {r['measured_s'] * 1e6:8.1f} us  GPC "
              f"{r['gpc_err'] * 100:+6.1f} %  mean field {r['mean_field_err'] * 100:+6.1f} %")
    for k, v in res["summary"].items():
        print(k, f"median {v['median'] * 100:.1f} % worst {v['worst'] * 100:.1f} % within 10 %: "
                 f"{v['within_10pct']}/{v['n']} too fast {v['too_fast']}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
