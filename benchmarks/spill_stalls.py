"""Where a launch's warps wait, from ncu's per-instruction stall samples (issue 8, session 16; CPU, no GPU).

    python benchmarks/spill_stalls.py reports/h100-sxm/spills-session16/r26112704_003.source.csv.gz [...]

Reads the CSV of ``ncu --import R.ncu-rep --csv --page source --print-source sass`` (SourceCounters section:
`stall_<reason>` sample columns per SASS instruction; benchmarks/spill_chain_gpu.sh writes them) and prints the
share of all samples per stall reason, per opcode of the waiting instruction, and for the scoreboard waits the
producer: the nearest earlier load-type instruction (LDL, LDG, LDGSTS, LDS, LDSM, MUFU, SHFL, S2R) whose first
register operand (its destination) the waiting instruction reads -- a heuristic over the listing order (a branch
back to the loop head is not followed), good enough to tell spill reloads (LDL) from the rest.
"""
from __future__ import annotations

import collections
import csv
import gzip
import re
import sys

PRODUCERS = ("LDL", "LDG", "LDGSTS", "LDS", "LDSM", "MUFU", "SHFL", "S2R")


def _opcode(src: str) -> str:
    parts = src.split()
    if not parts:
        return "?"
    op = parts[1] if parts[0].startswith("@") and len(parts) > 1 else parts[0]
    return op.split(".")[0]


def read(path: str) -> tuple[list, list]:
    """(header, rows) of the source page (the first line names the kernel)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        rows = list(csv.reader(fh))
    header = rows[1]
    return header, [r for r in rows[2:] if len(r) == len(header)]


def producer_of(src: list, i: int, window: int = 600) -> str:
    """The opcode of the nearest earlier PRODUCERS instruction whose destination instruction i reads."""
    body = src[i].split(" ", 1)[1] if " " in src[i] else ""
    regs = set(re.findall(r"\bR\d+\b", body))
    for j in range(i - 1, max(-1, i - window), -1):
        op = _opcode(src[j])
        if op in PRODUCERS:
            dst = re.findall(r"\bR\d+\b", src[j])
            if dst and dst[0] in regs:
                return op
    return "?"


def summary(path: str) -> dict:
    header, rows = read(path)
    ix = {n: i for i, n in enumerate(header)}
    reasons = [n for n in header if n.startswith("stall_") and "(Not Issued)" not in n]
    src = [r[ix["Source"]].strip() for r in rows]
    total = collections.Counter()
    by_op = collections.defaultdict(float)
    by_prod = {"stall_long_sb": collections.Counter(), "stall_short_sb": collections.Counter()}
    for i, r in enumerate(rows):
        for n in reasons:
            v = float(r[ix[n]] or 0)
            if not v:
                continue
            total[n] += v
            by_op[_opcode(src[i])] += v
            if n in by_prod:
                by_prod[n][producer_of(src, i)] += v
    s = sum(total.values()) or 1.0
    return {"samples": s, "reasons": {n[6:]: v / s for n, v in total.most_common()},
            "opcodes": {o: v / s for o, v in sorted(by_op.items(), key=lambda x: -x[1])[:10]},
            "long_sb_producers": {p: v / s for p, v in by_prod["stall_long_sb"].most_common()},
            "short_sb_producers": {p: v / s for p, v in by_prod["stall_short_sb"].most_common()}}


def main(argv=None) -> int:
    for path in (argv if argv is not None else sys.argv[1:]):
        d = summary(path)
        print(f"== {path}: {d['samples']:.0f} samples (shares of all samples)")
        for key in ("reasons", "opcodes", "long_sb_producers", "short_sb_producers"):
            print(f"  {key}: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in list(d[key].items())[:8]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
