"""The run file every microbenchmark script of benchmarks/ writes: points plus provenance, written atomically."""
from __future__ import annotations

import datetime
import json
import os
import sys
import time


def ncu_rows(script: str, child_args: list, *, metrics: list, kernel_regex: str, expected: int,
             timeout_s: float) -> tuple:
    """Run `script` (a path) with `child_args` under ncu (verification.ncu's command: default cache control, clocks
    unlocked, only between cudaProfilerStart/Stop) -> (the profiled launches' rows, the command, the child's
    stdout).  SystemExit, with the ends of its output, unless exactly `expected` launches were profiled."""
    import subprocess

    from verification import ncu as N
    cmd = N.build_command([sys.executable, script, *child_args], metrics=metrics, kernel_regex=kernel_regex)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    rows = N.parse_csv(p.stdout)
    if len(rows) != expected:
        print(p.stdout[-3000:], p.stderr[-3000:])
        raise SystemExit(f"{os.path.basename(script)} {' '.join(child_args)}: expected {expected} profiled launches, "
                         f"got {len(rows)}")
    return rows, cmd, p.stdout


def event_times_s(launch, repeats: int, before=None, *, wait_each: bool = True) -> list:
    """Seconds of `launch()` between two CUDA events, `repeats` times (`before()` first each time, outside the
    events: e.g. a memset that empties the L2).  `wait_each` False: the host does not wait for a launch before
    issuing the next (back to back; the events are read at the end)."""
    import torch
    pairs = []
    for _ in range(repeats):
        if before is not None:
            before()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        launch()
        b.record()
        if wait_each:
            b.synchronize()
        pairs.append((a, b))
    torch.cuda.synchronize()
    return [a.elapsed_time(b) * 1e-3 for a, b in pairs]


def write_run(path: str, fmt: str, points: list, *, script: str, argv, method: str, t0: float,
              extra: dict | None = None) -> None:
    """{format, provenance (date, card, versions, command, method, + extra), points, seconds} -> `path` (tmp +
    rename)."""
    import torch
    import triton
    props = torch.cuda.get_device_properties(0)
    doc = {"format": fmt, "provenance": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": props.name, "sm_count": props.multi_processor_count, "torch": torch.__version__,
        "triton": triton.__version__, "cuda": torch.version.cuda,
        "command": f"python3 benchmarks/{script} " + " ".join(sys.argv[1:] if argv is None else argv),
        "method": method, **(extra or {})},
        "points": points, "seconds": round(time.time() - t0, 1)}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def load_runs(paths: list, fmt: str) -> list:
    """The run files at `paths` (each of format `fmt`/N), all from one card -- what a merge may combine (SystemExit
    otherwise)."""
    from memsim.io import read_json  # plain or gzipped (committed runs may be .json.gz)
    runs = []
    for rp in paths:
        run = read_json(rp)
        if run.get("format", "").split("/")[0] != fmt:
            raise SystemExit(f"--merge: {rp} is not a {fmt} run (format {run.get('format')!r})")
        runs.append(run)
    cards = {r["provenance"]["gpu"] for r in runs}
    if len(cards) != 1:
        raise SystemExit(f"--merge: the runs come from different cards {sorted(cards)}; merge one card's runs")
    return runs


def merge_fact(into: str, fact: str, points: list, *, run: dict, run_path: str, note: str,
               replace: bool = False, also: list = ()) -> None:
    """Add `points` to calibration file `into` as fact `fact`, recording the run in `merged_runs` (atomically: tmp
    + rename; `also`: further run files the points come from, named in the note).  An existing fact is kept
    (SystemExit) unless `replace`."""
    if also:
        note += "; with " + ", ".join(also)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cal = json.load(open(into, encoding="utf-8"))
    if cal["facts"].get(fact) and not replace:
        raise SystemExit(f"--merge: {into} already has a {fact} fact (pass --replace to overwrite it)")
    cal["facts"][fact] = points
    cal.setdefault("merged_runs", []).append({"facts": [fact], "provenance": run["provenance"],
                                              "file": os.path.relpath(run_path, root), "note": note})
    tmp = into + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(cal, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, into)
