"""Measure suite cases on this machine's GPU: a timing pass (median of repeats, no profiler), then one ncu
process per group of 8 cases (flush before each kernel, --clock-control none, warm-up and autotuning outside
cudaProfilerStart/Stop). Each case's record is written to <data dir>/<case>.json in DESIGN.md's record shape
with full provenance.

Example (GPU machine): PYTHONPATH=. python3 -m verification measure --data-dir '/tmp/vdata/{gpu}' --bundle
$OUT/measurements.tar.gz
Errors say how to fix: ncu not on PATH, counters not permitted (ERR_NVGPUCTRPERM), no GPU.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from . import common as C

NAME = "measure"
SUMMARY = "GPU only, no simpy needed: time + ncu-profile suite cases -> verification/data/<gpu>/<case>.json"
DESCRIPTION = __doc__ + "\n" + C.EPILOG_NO_OVERWRITE


def add_arguments(p):
    C.add_measure_args(p)
    p.add_argument("--ncu-rep", action="store_true",
                   help="keep ncu's own report of each group as raw/ncu_<stamp>_r<repeat>g<group>.ncu-rep beside the "
                        "log (each record names its files under \"ncu_reports\"); open one with `ncu-ui <file>` or "
                        "print it with `ncu --import <file> --page details`")
    p.add_argument("--ncu-rep-reader", choices=("csv", "module"), default="csv",
                   help="with --ncu-rep, how the metrics are read back from the report: csv = `ncu --import ... "
                        "--csv` (default), module = Nsight Compute's ncu_report Python module (extras/python "
                        "beside ncu; NCU_REPORT_PYTHON=<folder> if elsewhere)")


def check_options(a) -> None:
    """Numbers and output paths, refused before any GPU work: repeats >= 1, finite positive timeouts, a
    --bundle file and a --data-dir folder that can be written."""
    import math
    if a.repeats is not None and a.repeats < 1:
        raise C.UsageError(f"--repeats must be a positive number of passes, got {a.repeats}")
    for opt, v in (("--ncu-timeout", a.ncu_timeout), ("--time-timeout", a.time_timeout)):
        if not math.isfinite(v) or v <= 0:
            raise C.UsageError(f"{opt} must be a positive number of seconds, got {v}")
    if a.bundle is not None:
        C.check_out(a.bundle, "--bundle", folder=False, example="$OUT/measurements.tar.gz")
    if a.resume and a.archive_old:
        raise C.UsageError("--resume keeps the records in the data dir and --archive-old moves them away; pass one")
    if a.data_dir is not None:  # '{gpu}' / '{set}' are filled in later; the rest of the path is checked now
        C.check_out(a.data_dir.replace("{gpu}", "gpu").replace("{set}", "set"), "--data-dir", folder=True,
                    example="'/tmp/vdata/{gpu}'")


def measure(a) -> dict:
    """Measure the selected cases; the summary of verification.measure.measure_cases.
    Bad input (unknown preset or case, no ncu, no GPU, existing records) is a UsageError."""
    from memsim.io import OutputExistsError
    from .. import measure as M
    from .. import ncu as N
    from .. import records as R
    C.check_preset(a.hw)
    check_options(a)
    if getattr(a, "random", None) is not None:
        return _measure_random(a)
    cases = [dataclasses.replace(c, hardware=a.hw) for c in C.select(a.cases)]
    try:
        N.ncu_path()
        if a.data_dir:
            data_dir = Path(a.data_dir.replace("{gpu}", R.gpu_slug(M.gpu_name())) if "{gpu}" in a.data_dir
                            else a.data_dir)
        else:
            data_dir = R.DATA_ROOT / R.gpu_slug(M.gpu_name())
        if a.resume:
            from ..randomsets import unmeasured
            cases = unmeasured(cases, data_dir, C.echo)
            if not cases:
                return {"data_dir": str(data_dir), "written": [], "failed": {}, "seconds": 0.0}
        C.echo(f"measure: {len(cases)} case(s) -> {data_dir}")
        return M.measure_cases(cases, data_dir, command=C.command_line(a.argv), archive_old=a.archive_old,
                               per_case=a.ncu_per_case, ncu_timeout_s=a.ncu_timeout, time_timeout_s=a.time_timeout,
                               skip_timing=a.no_timing, bundle_to=a.bundle, echo=C.echo,
                               repeats=a.repeats or 1, keep_report=getattr(a, "ncu_rep", False),
                               report_reader=getattr(a, "ncu_rep_reader", "csv"))
    except (N.NcuError, OutputExistsError) as e:
        raise C.UsageError(str(e)) from None


def _measure_random(a) -> dict:
    """--random N --seed S: a random set (verification/randomsets.py), every case measured --repeats times."""
    from memsim.io import OutputExistsError
    from .. import ncu as N
    from .. import randomsets as RS
    if a.seed is None:
        raise C.UsageError("--random needs --seed S (the draw is a pure function of N and S)")
    try:
        return RS.measure_set(a.random, a.seed, label=a.set_label, repeats=a.repeats or RS.MIN_REPEATS, hw=a.hw,
                              data_dir=a.data_dir, model_commit=a.model_commit, bundle_to=a.bundle,
                              command=C.command_line(a.argv), ncu_timeout_s=a.ncu_timeout,
                              time_timeout_s=a.time_timeout, archive_old=a.archive_old, echo=C.echo,
                              only=a.cases or None, resume=a.resume, keep_report=getattr(a, "ncu_rep", False),
                              report_reader=getattr(a, "ncu_rep_reader", "csv"))
    except (N.NcuError, OutputExistsError, ValueError) as e:
        raise C.UsageError(str(e)) from None


def run(a):
    if getattr(a, "ncu_rep_reader", "csv") != "csv" and not a.ncu_rep:
        raise C.UsageError("--ncu-rep-reader needs --ncu-rep (without a report there is only the CSV to read)")
    summary = measure(a)
    if a.json:
        C.print_json(summary)
    return 0 if not summary["failed"] else 1
