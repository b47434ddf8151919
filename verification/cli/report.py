"""Compare stored measurements with memsim's predictions (memsim.simulate) and write report.md, fig2_left.png,
block_sweep.png, scatter.png, grid_order.png and comparison.json into --out (an existing report is replaced
only with --force; plots are written atomically and a plot not drawn is removed). Needs no GPU.

Example: python -m verification report --hw h100-sxm --data verification/data/nvidia-h100-80gb-hbm3 --out
reports/h100-sxm
Exit 1 when a level is over its CI ceiling.
"""
from __future__ import annotations

from pathlib import Path

from . import common as C

NAME = "report"
SUMMARY = "no GPU: stored measurements + memsim predictions -> report.md, PNG plots, comparison.json"


def add_arguments(p):
    C.add_hw(p, "memsim hardware preset to predict with (default h100-sxm)")
    p.add_argument("--data", help="measurement folder verification/data/<gpu> (default: the only one there)")
    p.add_argument("--cases", nargs="*", help="only these cases (names, patterns, tag:<tag>)")
    C.add_json(p, "print the summary as JSON on stdout")
    C.add_report_args(p)


def check_out(a) -> None:
    """--out (a folder, not empty, no file on the way, no report in it unless --force): UsageError before
    anything is measured or predicted."""
    from memsim.io import OutputExistsError
    from ..report import check_out_dir
    C.check_out(a.out, "--out", folder=True, example="reports/h100-sxm")
    try:
        check_out_dir(a.out, a.force)
    except (OutputExistsError, NotADirectoryError) as e:
        raise C.UsageError(str(e)) from None


def report(a, data_dir) -> int:
    """Build the report of the records in data_dir into a.out; exit 1 when a level is over its ceiling."""
    from .. import compare as CMP
    from .. import records as R
    from ..report import build_report, memsim_predictor
    C.check_preset(a.hw)
    check_out(a)
    try:
        recs = R.load_records(data_dir)
        levels = CMP.load_tolerances(a.tolerances)
    except (R.DataError, CMP.ToleranceError) as e:
        raise C.UsageError(str(e)) from None
    if a.cases:
        keep = {c.name for c in C.select(a.cases)}
        recs = [r for r in recs if r["case"] in keep]
        if not recs:
            raise C.UsageError(f"none of the cases {a.cases} has a measurement in {data_dir}")
    try:
        predict = memsim_predictor(a.hw)
    except ImportError as e:
        raise C.UsageError(f"the model cannot be imported ({e}); `report` needs memsim with simpy "
                           f"(pip install -e .)") from None
    doc = build_report(recs, predict, a.out, levels=levels, title_hw=a.hw, progress=None if a.json else C.echo,
                       command=C.command_line(a.argv), overwrite=a.force)
    if a.json:
        C.print_json({"out": str(a.out), "summary": doc["summary"], "errors": doc["errors"]})
    else:
        for s in doc["summary"].values():
            print(CMP.Summary(**s).line())
        C.echo(f"wrote {Path(a.out) / 'report.md'}")
    over = [k for k, s in doc["summary"].items() if s["within_ceiling"] is False]
    return 1 if over else 0


def run(a):
    if a.data is not None:
        C.check_data(a.data)
    else:
        from .. import records as R
        dirs = R.gpu_dirs()
        if len(dirs) != 1:
            raise C.UsageError("pass --data verification/data/<gpu> (found: "
                               f"{', '.join(str(d) for d in dirs) or 'no measured GPU'})")
        a.data = str(dirs[0])
    return report(a, Path(a.data))
