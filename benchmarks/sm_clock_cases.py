"""Cases and summary of the SM-clock probe (benchmarks/sm_clock_gpu.sh): which measured random cases to re-run
under ncu with the clock counters, and the clock each launch ran at.

    python benchmarks/sm_clock_cases.py --out specs.json [--per-launch 3] [--max-case-ms 20]
    python benchmarks/sm_clock_cases.py --summarise <dir with full.csv, clock.csv, specs.json, *.runner.jsonl>
    python benchmarks/sm_clock_cases.py --compare <unpacked sm_clock dir>   (host: beside the live report's
        per-launch errors, the model's clock vs the measured one)

Stdlib only on the device side (no simpy): selection reads the committed records, the summary parses ncu's CSV
with verification.ncu.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import random
import statistics
import sys

RANDOM_DIR = "verification/data/nvidia-h100-80gb-hbm3/random"
CLOCK = "sm__cycles_elapsed.avg.per_second"


def _records() -> list[dict]:
    out = []
    for f in sorted(glob.glob(f"{RANDOM_DIR}/*/r*.json")):
        r = json.load(open(f))
        if "kernels" in r and "problem" in r and "schedule" in r:
            out.append(r)
    return out


def select(per_launch: int, max_case_ms: float, seed: int = 26112619) -> list[dict]:
    """Up to `per_launch` records per launch kind (round-robin over kinds so every kind is covered), each case's
    ncu kernel time under max_case_ms and no local memory in any launch (the spill class is a separate study)."""
    from memsim.schedule import kernel_launches, problem_from_dict, schedule_from_dict
    rng = random.Random(seed)
    recs = [r for r in _records()
            if sum(k.get("time_s") or 0 for k in r["kernels"]) * 1e3 < max_case_ms
            and all(not (k.get("compiled") or {}).get("local_bytes_per_thread") for k in r["kernels"])]
    rng.shuffle(recs)
    by_kind: dict[str, list[dict]] = {}
    for r in recs:
        for k in r["kernels"]:
            by_kind.setdefault(k["name"], []).append(r)
    chosen: dict[str, dict] = {}
    count = {kind: 0 for kind in by_kind}
    for kind in sorted(by_kind):
        for r in by_kind[kind]:
            if count[kind] >= per_launch:
                break
            if r["case"] in chosen:
                continue
            chosen[r["case"]] = r
            for k in r["kernels"]:
                count[k["name"]] = count.get(k["name"], 0) + 1
    specs = []
    for name, r in sorted(chosen.items()):
        p, s = problem_from_dict(r["problem"]), schedule_from_dict(r["schedule"])
        launches = [L.name for L in kernel_launches(p, s)]
        if launches != [k["name"] for k in r["kernels"]]:
            continue  # the registry's launches changed since the record: not the measured program
        specs.append({"name": name, "problem": p.to_dict(), "schedule": s.to_dict(), "hardware": "h100-sxm",
                      "launches": launches})
    return specs


def _rows(d: str, label: str) -> dict[str, list[dict]]:
    """case -> its launches of pass `label`: kernel name, time_s, clock_Hz, sm cycles (max)."""
    from verification.ncu import assign_rows_by_launches, parse_csv
    rows = parse_csv(open(os.path.join(d, f"{label}.csv")).read())
    done = [json.loads(x) for x in open(os.path.join(d, f"{label}.runner.jsonl")) if x.strip()]
    by_case, _ = assign_rows_by_launches(rows, done)
    out = {}
    for case, rs in by_case.items():
        out[case] = [{"kernel": r.name, "time_s": r.metrics.get("gpu__time_duration.sum"),
                      "clock_Hz": r.metrics.get(CLOCK), "sm_cycles_max": r.metrics.get("sm__cycles_elapsed.max"),
                      "sm_active_avg": r.metrics.get("sm__cycles_active.avg")} for r in rs]
    return out


def summarise(d: str) -> dict:
    passes = {lab: _rows(d, lab) for lab in ("full", "clock") if os.path.exists(os.path.join(d, f"{lab}.csv"))}
    table = []
    for case in sorted(set().union(*[set(v) for v in passes.values()])):
        for lab, per in passes.items():
            for i, r in enumerate(per.get(case, [])):
                table.append({"case": case, "pass": lab, "index": i, **r})
    json.dump({"launches": table}, open(os.path.join(d, "summary.json"), "w"), indent=1)
    print(f"{'kernel':28s} {'pass':6s} {'n':>3s} {'clock GHz med':>13s} {'min':>6s} {'max':>6s}")
    kinds = sorted({(t["kernel"], t["pass"]) for t in table})
    for kernel, lab in kinds:
        c = [t["clock_Hz"] / 1e9 for t in table if t["kernel"] == kernel and t["pass"] == lab and t["clock_Hz"]]
        if c:
            print(f"{kernel:28s} {lab:6s} {len(c):3d} {statistics.median(c):13.3f} {min(c):6.3f} {max(c):6.3f}")
    return {"launches": table}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--per-launch", type=int, default=3)
    ap.add_argument("--max-case-ms", type=float, default=20.0)
    ap.add_argument("--summarise")
    a = ap.parse_args(argv)
    if a.summarise:
        summarise(a.summarise)
        return 0
    if not a.out:
        ap.error("--out or --summarise is required")
    specs = select(a.per_launch, a.max_case_ms)
    json.dump(specs, open(a.out, "w"))
    for s in specs:
        print(s["name"], " ".join(s["launches"]))
    print(f"{len(specs)} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
