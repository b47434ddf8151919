"""measure (see `measure --help`) then report (see `report --help`).

Example: python -m verification validate --hw h100-sxm --out reports/h100-sxm
"""
from __future__ import annotations

from pathlib import Path

from . import common as C
from .measure import measure
from .report import check_out, report

NAME = "validate"
SUMMARY = "measure, then report (needs the GPU and simpy)"
DESCRIPTION = __doc__ + "\n" + C.EPILOG_NO_OVERWRITE


def add_arguments(p):
    C.add_measure_args(p)
    C.add_report_args(p)


def run(a):
    check_out(a)  # before measuring: a report that could not be written must not cost a GPU run
    summary = measure(a)
    if not summary["written"] and not a.resume:
        raise C.UsageError("nothing was measured; no report")
    rc = report(a, Path(summary["data_dir"]))
    return rc or (1 if summary["failed"] else 0)
