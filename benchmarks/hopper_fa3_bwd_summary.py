"""Summaries of benchmarks/hopper_fa3_bwd_diag.py logs (its JSON record lines) for the hopper_fa3 backward device
scripts (`fa3_bwd_summary`, `fa3_bwd_rounds` in benchmarks/hopper_fa3_bwd_common.sh).

    python benchmarks/hopper_fa3_bwd_summary.py table NAMES COLUMNS RATIOS LOG...
    python benchmarks/hopper_fa3_bwd_summary.py rounds [--with-dtype] LOG...
    python benchmarks/hopper_fa3_bwd_summary.py paired RATIOS LOG...

table: every (dtype, causal, N, impl)'s median TFLOP/s and its rounds, then a markdown table of the switches NAMES
(the whole-backward rows `bwd:hopper_fa3[NAME]`; "registered" = `bwd:hopper_fa3`), the COLUMNS of the same call
(default = the default's path, cuDNN, flash) and RATIOS of medians, each "a/b" over those names (+ best: the fastest
of NAMES and default); lists comma-separated.  rounds: per (d, causal, N, impl) in log order, the rounds' TFLOP/s (or
ms / GB/s where a record has `gbps`: the --pieces rows); --with-dtype: keyed by (dtype, d, causal, N, impl).
paired (session 21): per (dtype, causal, N) and ratio "a/b" (names as in table), the median of the per-round ratios
of a's and b's TFLOP/s (the rounds alternate: a and b of one round ran back to back), how many rounds a was faster,
and the range.
"""
from __future__ import annotations

import collections
import json
import statistics
import sys


def records(paths):
    """The diag's timed records (those with `tflops`) of the logs, in order."""
    for fn in paths:
        for line in open(fn):
            if line.startswith("{"):
                r = json.loads(line)
                if "tflops" in r:
                    yield r


def rounds(paths, with_dtype: bool = False) -> None:
    t = collections.defaultdict(list)
    for r in records(paths):
        t[((r["dtype"],) if with_dtype else ()) + (r["d"], r["causal"], r["seq"], r["impl"])].append(
            f"{r['ms']:.3f}ms/{r['gbps']:.0f}GB/s" if "gbps" in r else str(round(r["tflops"])))
    for k, v in t.items():
        print(*k, "/".join(v))


def table(names, cols, ratios, paths) -> None:
    t = collections.defaultdict(list)
    for r in records(paths):
        t[(r["dtype"], r["causal"], r["seq"], r["impl"])].append(r["tflops"])
    med = {k: statistics.median(v) for k, v in t.items()}
    for k, v in sorted(t.items()):
        print(*k, round(med[k]), "/".join(str(round(x)) for x in v))
    print("\n| dtype | causal | N | " + " | ".join(names + cols + ratios) + " |")
    for dt, c, n in sorted({k[:3] for k in t}):
        m = {x: med.get((dt, c, n, "bwd:hopper_fa3" if x == "registered" else f"bwd:hopper_fa3[{x}]"), float("nan"))
             for x in names}
        dflt = [v for k, v in med.items() if k[:3] == (dt, c, n) and k[3].startswith("bwd:default")]
        m["default"] = dflt[0] if dflt else float("nan")
        m["cuDNN"], m["flash"] = (med.get((dt, c, n, i), float("nan")) for i in ("bwd:sdpa_cudnn", "bwd:sdpa_flash"))
        m["best"] = max(m[x] for x in names + ["default"])
        print(f"| {dt} | {c} | {n} | " + " | ".join(f"{m[x]:.0f}" for x in names + cols) + "".join(
            f" | {m[a] / m[b]:.3f}" for a, b in (x.split("/") for x in ratios)) + " |")


def _impl(name: str) -> str:
    return {"registered": "bwd:hopper_fa3", "cuDNN": "bwd:sdpa_cudnn", "flash": "bwd:sdpa_flash"}.get(
        name, f"bwd:hopper_fa3[{name}]")


def paired(ratios, paths) -> None:
    t = {}
    for r in records(paths):
        if "round" in r:
            impl = "default" if r["impl"].startswith("bwd:default") else r["impl"]
            t[(r["dtype"], r["causal"], r["seq"], impl, r["round"])] = r["tflops"]
    print("\n| dtype | causal | N | " + " | ".join(f"{x} (paired)" for x in ratios) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in ratios) + " |")
    for dt, c, n in sorted({k[:3] for k in t}):
        cells = []
        for x in ratios:
            a, b = (y if y == "default" else _impl(y) for y in x.split("/"))
            rs = [t[(dt, c, n, a, i)] / t[(dt, c, n, b, i)] for i in sorted({k[4] for k in t if k[:3] == (dt, c, n)})
                  if (dt, c, n, a, i) in t and (dt, c, n, b, i) in t]
            cells.append(f"{statistics.median(rs):.3f} ({sum(v > 1 for v in rs)}/{len(rs)}) [{min(rs):.3f}-"
                         f"{max(rs):.3f}]" if rs else "-")
        print(f"| {dt} | {c} | {n} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    a = sys.argv[1:] if argv is None else argv
    if a and a[0] == "rounds":
        dt = a[1:2] == ["--with-dtype"]
        rounds(a[1 + dt:], dt)
    elif a and a[0] == "table" and len(a) >= 4:
        names, cols, ratios = (x.split(",") if x else [] for x in a[1:4])
        table(names, cols, ratios, a[4:])
    elif a and a[0] == "paired" and len(a) >= 2:
        paired(a[1].split(","), a[2:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
