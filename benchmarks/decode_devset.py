"""The decode model against every measured decode case (development data), one line per set and per case.

    python benchmarks/decode_devset.py [--json OUT] [--sets suite,seed1,...]

Sets (H100 80GB HBM3, ncu kernel time, committed data): suite run 2 (18 cases), random seeds 1, 1126, 112602
(16 each: the 66 development cases), seed 261126 (16: held out until 2026-11-26 06:25 UTC, development data since)
seed 11260807 (16: held out until 2026-11-26 08:40 UTC, frozen at d4e0544; development data since), seed 11260935
(16: held out until 2026-11-26 09:54 UTC, frozen at 07f2528; development data since) and seed 11261138 (16: held out
until 2026-11-26 11:42 UTC, frozen at c79ddb4; development data since) and seed 11261455 (16: held out until
2026-11-26 15:00 UTC, frozen at 5eff7ad, the first set measured on the session-10 kernel; development data since).
The sets before seed 11261455 were measured on the earlier kernel (before session 10's address change).
Error = |predicted - measured| / max(measured, 5 us) (time) or max(measured, 1 MB) (DRAM read + write): the decode
report's definition (verification.report_decode.error).  No GPU.  `--json` writes every case's signed errors
(atomically), so two model versions can be compared case by case (`--against OLD.json`).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "verification", "data", "nvidia-h100-80gb-hbm3", "decode")
SETS = {
    "suite": os.path.join(ROOT, "benchmarks", "results", "decode-h100-run2-ncu.json"),
    "seed1": os.path.join(DATA, "random-seed1-2026-11-25", "decode_ncu.json"),
    "seed1126": os.path.join(DATA, "random-seed1126-2026-11-26", "decode_ncu.json"),
    "seed112602": os.path.join(DATA, "random-seed112602-2026-11-26", "decode_ncu.json"),
    "seed261126": os.path.join(ROOT, "reports", "h100-sxm", "decode", "seed261126", "measured", "decode_ncu.json"),
    "seed11260807": os.path.join(DATA, "random-seed11260807-2026-11-26", "decode_ncu.json"),
    "seed11260935": os.path.join(DATA, "random-seed11260935-2026-11-26", "decode_ncu.json"),
    "seed11261138": os.path.join(DATA, "random-seed11261138-2026-11-26", "decode_ncu.json"),
    "seed11261455": os.path.join(DATA, "random-seed11261455-2026-11-26", "decode_ncu.json"),
}
DEV66 = ("suite", "seed1", "seed1126", "seed112602")


def rows_of(name: str) -> list:
    """[{set, case, time: (pred, meas, err signed), dram: (...)}] of one set, the model as it is now."""
    sys.path.insert(0, ROOT)
    from verification.report_decode import error as rel_error
    from verification.suite_decode import compare
    out = []
    for r in compare(SETS[name]):
        if r.get("calibration"):
            continue
        pt, mt, _ = r["time_s"]
        row = {"set": name, "case": r["case"], "num_splits": r["num_splits"],
               "time": (pt, mt, None if mt is None else rel_error(pt, mt, "time_s") * (1 if pt >= mt else -1))}
        if "dram_bytes" in r:
            pd, md, _ = r["dram_bytes"]
            row["dram"] = (pd, md, None if md is None else rel_error(pd, md, "dram_bytes") * (1 if pd >= md else -1))
        out.append(row)
    return out


def summary(rows: list) -> str:
    e = [abs(r["time"][2]) for r in rows if r["time"][2] is not None]
    if not e:
        return "no measured cases"
    fast = sum(1 for r in rows if r["time"][2] is not None and r["time"][2] < 0)
    return (f"time {statistics.median(e) * 100:5.1f} / {max(e) * 100:5.1f} %  within 10 %: "
            f"{sum(x <= 0.10 for x in e)}/{len(e)}  too fast: {fast}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    ap.add_argument("--json", help="write every case's errors here (atomically)")
    ap.add_argument("--against", help="an earlier --json file: print the cases whose |error| moved by > 2 points")
    ap.add_argument("--cases", action="store_true", help="print every case")
    a = ap.parse_args(argv)
    names = [x for x in a.sets.split(",") if x]
    bad = [x for x in names if x not in SETS]
    if bad:
        ap.error(f"unknown sets {bad}; known: {', '.join(SETS)}")
    rows = []
    for n in names:
        rs = rows_of(n)
        rows += rs
        print(f"{n:12s} {summary(rs)}")
    dev = [r for r in rows if r["set"] in DEV66]
    if dev:
        print(f"{'dev66':12s} {summary(dev)}")
    print(f"{'all':12s} {summary(rows)}")
    if a.cases:
        for r in rows:
            print(f"{r['set']:12s} {r['case']:44s} S={r['num_splits']:3d} time {r['time'][2] * 100:+6.1f} % "
                  f"(meas {r['time'][1] * 1e6:8.2f} us)")
    if a.against:
        with open(a.against) as f:
            old = {(r["set"], r["case"]): r for r in json.load(f)["rows"]}
        for r in rows:
            o = old.get((r["set"], r["case"]))
            if o and abs(abs(r["time"][2]) - abs(o["time"][2])) > 0.02:
                print(f"moved {r['set']:12s} {r['case']:44s} {o['time'][2] * 100:+6.1f} -> {r['time'][2] * 100:+6.1f} %")
    if a.json:
        from memsim.io import write_json
        write_json(a.json, {"sets": names, "rows": rows}, overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
