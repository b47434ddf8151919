"""``python -m memsim sweep``: vary one parameter for one or more algorithms; PREFIX.csv/.json/.png.

Kept thin on purpose: `plan` checks the arguments and lists the points, `simulate_point` runs one,
`write_outputs` publishes the set.  A sweep engine (streaming, resume) can replace the loop in `run`
without touching the argument handling.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from ..schedule import ALGORITHMS, ScheduleError
from . import common as C

NAME = "sweep"
#: options whose value may start with '-' (so `--values -64,0,64` reaches the check below)
DASH_VALUE_OPTIONS = ("--values",)
PARAMS = ("seq", "head_dim", "block_m", "block_n")
FIELDS = ["param", "value", "algorithm", "phase", "status", "global_read_bytes", "global_write_bytes",
          "l2_read_bytes", "l2_write_bytes", "dram_read_bytes", "dram_write_bytes", "flops", "exp_count",
          "time_s", "tflops_nominal", "closed_form_global_bytes", "peak_sram_per_cta_bytes",
          "extra_device_bytes", "error"]
EXTS = ("csv", "json", "png")


def add_parser(sub) -> None:
    wp = sub.add_parser(NAME, help="sweep seq, head_dim, block_m or block_n; write CSV, JSON and PNG",
                        description="Sweep one parameter for one or more algorithms; writes PREFIX.csv, PREFIX.json "
                                    "and PREFIX.png atomically (never over existing files unless --force). Points "
                                    "whose tiles do not fit the SRAM are recorded as refused.",
                        epilog="examples:\n  python -m memsim sweep --param seq --values 1024,2048,4096,8192 --out sweeps/seq\n"
                               "  python -m memsim sweep --param block_n --values 16,32,64,128,256 --algorithms flash1 "
                               "--out sweeps/flash1_bn   # paper Fig. 2 middle",
                        formatter_class=C.RAW)
    wp.add_argument("--param", required=True, choices=PARAMS, help="what to vary")
    wp.add_argument("--values", required=True, help="comma-separated integers, e.g. 1024,2048,4096")
    wp.add_argument("--algorithms", default="naive,flash1,flash2", help="comma-separated (default all three)")
    wp.add_argument("--out", required=True, help="output prefix: writes PREFIX.csv, PREFIX.json, PREFIX.png")
    wp.add_argument("--force", action="store_true", help="replace existing output files")
    C.add_all_args(wp, algorithm=False)
    wp.set_defaults(fn=run)


def parse_values(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ScheduleError(f"--values must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ScheduleError("--values is empty")
    bad = [v for v in values if v <= 0]
    if bad:
        raise ScheduleError(f"--values must be positive integers; {', '.join(map(str, bad))} "
                            f"{'is' if len(bad) == 1 else 'are'} not")
    return values


def parse_algorithms(text: str) -> list[str]:
    algs = [x.strip() for x in text.split(",") if x.strip()]
    for x in algs:
        if x not in ALGORITHMS:
            raise ScheduleError(f"unknown algorithm {x!r} in --algorithms; choose from {', '.join(ALGORITHMS)}")
    if not algs:
        raise ScheduleError(f"--algorithms is empty; choose from {', '.join(ALGORITHMS)}")
    return algs


def output_paths(prefix: str) -> dict[str, Path]:
    """PREFIX.csv/.json/.png; a prefix with no file name ('' or 'dir/') is refused, never hidden files."""
    name = Path(prefix).name if prefix.strip() else ""
    if not name or prefix.endswith(("/", "\\")) or name in (".", ".."):
        raise ScheduleError(f"--out must be a file prefix such as sweeps/seq (writes sweeps/seq.csv, .json, .png), "
                            f"got {prefix!r}")
    return {ext: Path(f"{prefix}.{ext}") for ext in EXTS}


def plan(a):
    """(output paths, [(value, algorithm)]) after checking every argument; nothing is simulated."""
    values, algs = parse_values(a.values), parse_algorithms(a.algorithms)
    outs = output_paths(a.out)
    if not a.force:
        from ..io import OutputExistsError
        for path in outs.values():
            if path.exists():
                raise OutputExistsError(f"{path} already exists; pass --force to replace it, or choose another --out")
    return outs, [(v, alg) for v in values for alg in algs]


def simulate_point(a, hw, value: int, alg: str) -> dict:
    """One CSV row: the model's totals, or status 'refused' with the reason (e.g. tiles too big)."""
    from .. import analytic
    args = argparse.Namespace(**vars(a))
    if a.param == "seq":
        args.seq, args.seq_kv = value, None
    else:
        setattr(args, a.param, value)
    row = {"param": a.param, "value": value, "algorithm": alg, "phase": a.phase}
    try:
        p, s = C.problem(args), C.schedule(args, alg)
        r = C.simulate(args, p, s, hw)
        cf = analytic.global_bytes(p, s)
        row.update({k: r.total[k] for k in FIELDS if k in r.total}, status="ok",
                   tflops_nominal=r.nominal_flops / r.time_s / 1e12,
                   closed_form_global_bytes=cf["global_read_bytes"] + cf["global_write_bytes"],
                   peak_sram_per_cta_bytes=r.peak_sram_per_cta_bytes, extra_device_bytes=r.extra_device_bytes)
    except ScheduleError as e:  # a point that cannot run is recorded, not fatal
        row.update(status="refused", error=str(e))
    return row


def progress(i, n, label, stream=None):
    stream = stream or sys.stderr
    width = 30
    done = int(width * i / n) if n else width
    stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n} {label:<40.40}")
    if i == n:
        stream.write("\n")
    stream.flush()


def csv_text(rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: row.get(k, "") for k in FIELDS})
    return buf.getvalue()


def write_outputs(outs, rows, a, hw) -> None:
    from ..io import base_provenance, write_atomic, write_json
    from .sweep_plot import sweep_png
    write_atomic(outs["csv"], csv_text(rows), overwrite=a.force)
    write_json(outs["json"], {"hardware": hw.name, "param": a.param, "rows": rows,
                              "provenance": base_provenance()}, overwrite=a.force)
    write_atomic(outs["png"], sweep_png(rows, a, hw), overwrite=a.force)


def run(a) -> int:
    from ..hardware import load_hardware
    hw = load_hardware(a.hw)
    outs, jobs = plan(a)
    rows = []
    for n, (v, alg) in enumerate(jobs):
        progress(n, len(jobs), f"{a.param}={v} {alg}")
        rows.append(simulate_point(a, hw, v, alg))
    progress(len(jobs), len(jobs), "done")
    write_outputs(outs, rows, a, hw)
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"{ok}/{len(rows)} points simulated ({len(rows) - ok} refused); wrote {outs['csv']}, {outs['json']}, {outs['png']}")
    for row in rows:
        if row["status"] != "ok":
            print(f"  refused {a.param}={row['value']} {row['algorithm']}: {row['error']}")
    return 0
