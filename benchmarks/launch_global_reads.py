"""Per-launch global reads, model against ncu, over measured random-set records (CPU only, no GPU).

    python benchmarks/launch_global_reads.py --match flash2_bwd --out /tmp/flash2_bwd.json
    python benchmarks/launch_global_reads.py --match hopper_bwd --out /tmp/hopper_bwd.json --before /tmp/old.json

The fidelity report compares whole cases; a global-level mechanism (what L1's tag stage counts: split loads,
per-row statistics every warp loads, wide chunks) shows per launch.  For every record under
verification/data/<card>/random/*/ whose file name contains --match, the model's `global_read_bytes` of each
launch beside ncu's, signed error = (model - ncu) / max(ncu, 1 MB).  Writes a JSON list
[case, launch, model bytes, ncu bytes, signed] (never over an existing file unless --force) and prints the
launches off by more than --show; with --before (an earlier output) it prints each launch that moved and the
count closer / further.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR_BYTES = 1e6


def rows_for(match: str, card: str, hardware: str) -> list:
    from memsim.io import read_json
    from verification.report import memsim_predictor
    from verification.suite import case_from_record
    predict = memsim_predictor(hardware, max_seconds=None)
    out = []
    for f in sorted(glob.glob(str(ROOT / f"verification/data/{card}/random/*/r*.json*"))):
        if match not in Path(f).name:
            continue
        rec = read_json(f)
        pk = predict(case_from_record(rec))["kernels"]
        for k, p in zip(rec["kernels"], pk):
            m, g = k.get("global_read_bytes"), p.get("global_read_bytes")
            if m:
                out.append([rec["case"], k["name"], g, m, (g - m) / max(m, FLOOR_BYTES)])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--match", required=True, help="a part of the record file names (e.g. flash2_bwd)")
    ap.add_argument("--out", required=True, help="JSON output (refused if it exists, unless --force)")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--before", help="an earlier output to compare with")
    ap.add_argument("--show", type=float, default=0.005, help="print launches whose |signed| exceeds this")
    ap.add_argument("--card", default="nvidia-h100-80gb-hbm3")
    ap.add_argument("--hardware", default="h100-sxm")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if out.exists() and not a.force:
        print(f"launch_global_reads: error: {out} exists; pass --force to replace it", file=sys.stderr)
        return 2
    rows = rows_for(a.match, a.card, a.hardware)
    if not rows:
        print(f"launch_global_reads: error: no record under verification/data/{a.card}/random/ matches "
              f"{a.match!r}", file=sys.stderr)
        return 2
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(rows))
    tmp.replace(out)
    before = {(c, n): e for c, n, _, _, e in json.loads(Path(a.before).read_text())} if a.before else None
    closer = further = 0
    for c, n, g, m, e in rows:
        old = before.get((c, n)) if before else None
        if old is not None and abs(old - e) > 1e-4:
            closer += abs(e) < abs(old)
            further += abs(e) > abs(old)
            print(f"{c:60s} {n:24s} {old:+.3f} -> {e:+.3f}")
        elif old is None and abs(e) > a.show:
            print(f"{c:60s} {n:24s} model {g:14.0f} ncu {m:14.0f} {e:+.3f}")
    if before is not None:
        print(f"{closer} launches closer, {further} further")
    print(f"{len(rows)} launches -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
