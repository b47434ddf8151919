"""Records from the work folder of a `measure` that was stopped before it wrote them.

`measure_cases` writes a case's record during its LAST ncu pass; a device call that ends first (its time limit, the
session's device budget) leaves only the temporary work folder (``vmeasure-*``: ``t<r>/timing.jsonl`` per timing
pass, ``r<r>g<g>/`` per ncu pass and group with ``specs_ncu.json``, ``ncu_done.jsonl`` and ncu's CSV log
``ncu.log``).  Carried back (``tar -czf $OUT/vmeasure.tgz /tmp/vmeasure-*``), it holds every pass that finished.
This module builds the records from those passes exactly as `measure_cases` would have (`_finish_group`), with
the repeats they have; a case short of repeats says so in "missing_repeats", and every record's provenance names
the folder it was recovered from.  Nothing is invented: a group whose ncu log has no rows gives its cases nothing.

    python -m verification.recover --workdir DIR --random 16 --seed S --set AA --model-commit SHA \\
        --provenance-from host_pass.calibration.json --ncu-version 2025.3.1.0 --data-dir OUT_DIR

(`--provenance-from`: a JSON file written by the same device call whose "provenance" has the GPU, driver and
versions -- e.g. the host-pass calibration beside it.)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from . import ncu as N
from . import records as R
from .measure import _finish_group, pass_rows_by_case, read_jsonl

PASS_DIR = re.compile(r"^r(\d+)g(\d+)$")
TIMING_DIR = re.compile(r"^t(\d+)$")


def _ordered(wd: Path, pattern) -> list[tuple[tuple[int, ...], Path]]:
    out = []
    for p in wd.iterdir():
        m = pattern.match(p.name)
        if m and p.is_dir():
            out.append((tuple(int(x) for x in m.groups()), p))
    return sorted(out)


def recover(workdir, cases, data_dir, *, prov: dict, extra=None, echo=print) -> dict:
    """Write the records `workdir`'s finished passes give for `cases` (suite.Case) into `data_dir`; the summary
    {"written", "failed", "repeats": {case: ncu repeats found}}.  ValueError when the folder has no timing or no
    ncu pass, or names a case that is not in `cases`."""
    wd = Path(workdir)
    if not wd.is_dir():
        raise ValueError(f"--workdir {wd} is not a folder")
    by_name = {c.name: c for c in cases}
    timings = []
    for _, t in _ordered(wd, TIMING_DIR):
        f = t / "timing.jsonl"
        timings.append({r["case"]: r for r in read_jsonl(f)} if f.exists() else {})
    passes = _ordered(wd, PASS_DIR)
    if not timings or not passes:
        raise ValueError(f"{wd} holds {len(timings)} timing pass(es) and {len(passes)} ncu pass folder(s): "
                         "a measure work folder has t0/ and r0g0/ at least")
    groups: dict[int, list[dict]] = {}  # group index -> the specs of its cases (as the first repeat ran them)
    got: dict[str, list] = {}
    compiled: dict[str, list] = {}
    last_err: dict[str, str] = {}
    for (r, g), p in passes:
        specs = json.loads((p / "specs_ncu.json").read_text())
        unknown = [s["name"] for s in specs if s["name"] not in by_name]
        if unknown:
            raise ValueError(f"{p} measured case(s) {unknown[:3]} that are not in the set given")
        groups.setdefault(g, specs)
        text = (p / "ncu.log").read_text(errors="replace") if (p / "ncu.log").exists() else ""
        try:
            rows = N.parse_csv(text)
        except Exception as e:  # a log cut before its CSV table
            rows, why = [], f"{type(e).__name__}: {e}"
        else:
            why = "its ncu log has no rows (the call ended during this pass)"
        by_case, done = pass_rows_by_case(rows, p / "ncu_done.jsonl")
        for s in specs:
            n = s["name"]
            got.setdefault(n, [])
            if n in by_case:
                got[n].append((by_case[n], r))
            else:
                last_err[n] = f"ncu repeat {r + 1}: " + (done.get(n, {}).get("error") or why)
        for n, d in done.items():
            if d.get("compiled") and n not in compiled:
                compiled[n] = d["compiled"]
    # like measure: a folder that already holds any of these records is refused before anything is written
    R.check_free(data_dir, sorted({s["name"] for specs in groups.values() for s in specs}))
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    written, failed = [], {}
    tags = {n: c.tags for n, c in by_name.items()}

    def extra_for(name):
        return extra(name) if callable(extra) else (dict(extra) if extra else None)

    for g in sorted(groups):
        _finish_group(groups[g], got, compiled, last_err, failed, written, data_dir, timings, prov, tags, extra_for,
                      echo)
    return {"written": written, "failed": failed, "repeats": {n: len(v) for n, v in got.items()},
            "timing_passes": len(timings)}


def main(argv=None) -> int:
    from .randomsets import record_extra, draw_set
    ap = argparse.ArgumentParser(prog="python -m verification.recover", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True, help="the measure's vmeasure-* folder, carried back")
    ap.add_argument("--random", type=int, required=True, metavar="N")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--set", dest="set_label", required=True)
    ap.add_argument("--model-commit", required=True, help="the frozen model commit the set was measured for")
    ap.add_argument("--provenance-from", required=True, help="a JSON file of the same device call with 'provenance'")
    ap.add_argument("--ncu-version", required=True)
    ap.add_argument("--command", default="", help="the device command that ran the measure (for the provenance)")
    ap.add_argument("--data-dir", required=True, help="where the records go (a new folder; nothing is overwritten)")
    a = ap.parse_args(argv)
    try:
        src = json.loads(Path(a.provenance_from).read_text())
        prov = dict(src.get("provenance") or {})
        if not prov.get("gpu"):
            raise ValueError(f"{a.provenance_from} has no provenance with a 'gpu'")
        name, rs = draw_set(a.random, a.seed, a.set_label)
        prov.update(command=a.command or prov.get("command", ""), ncu=a.ncu_version, repeats=3,
                    recovered_from=f"{Path(a.workdir).name}: the measure's work folder, its records built by "
                                   "python -m verification.recover from the passes that finished")
        out = recover(a.workdir, rs.cases, a.data_dir, prov=prov,
                      extra=record_extra(rs, a.model_commit))
    except (ValueError, OSError, json.JSONDecodeError, R.OutputExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for n, why in out["failed"].items():
        print(f"FAILED {n}: {why.splitlines()[0][:200]}")
    print(f"recovered {len(out['written'])} record(s) from {out['timing_passes']} timing pass(es); ncu repeats per "
          f"case: {sorted(set(out['repeats'].values()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
