"""The decode cases (issue 12) in the verification flow: every committed decode set (the fixed decode suite and
the random draws, ncu-measured on the H100) against the model now and, for the held-out sets, against the
predictions frozen before they were measured. Prints one line per set; with --out writes report.md (the sets'
table), fidelity.md (the headline's format, per set and level), bandwidth_context.png (achieved DRAM bandwidth vs
context length, predicted and measured) and rows.json into that folder (refused if they exist, unless --force).
Needs no GPU. Measuring new decode cases: `python -m verification.suite_decode measure` on the GPU machine.

Example: python -m verification decode --out reports/h100-sxm/decode/verification
The headline with decode beside the attention random sets: python -m verification fidelity --data ... --decode committed
"""
from __future__ import annotations

from . import common as C

NAME = "decode"
SUMMARY = "no GPU: the committed decode sets (suite + random, frozen held-out predictions) vs the model; report + figure"


def add_arguments(p):
    p.add_argument("--sets", nargs="+", metavar="NAME", help="only these committed sets (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="list the committed decode sets and exit")
    C.add_hw(p, "memsim preset to predict with (default h100-sxm)")
    C.add_out(p, "folder for report.md, fidelity.md, bandwidth_context.png, rows.json (default: print only)",
              "replace an existing report")
    C.add_json(p, "print the per-set summary as JSON")


def run(a) -> int:
    from ..fidelity_decode import COMMITTED, DecodeSetError, build, headline, select, write_report
    from ..report_decode import DecodeReportError
    if a.list:
        for s in COMMITTED:
            print(f"{s.name:14s} {s.role:11s} {s.data}" + (f"  frozen: {s.frozen} ({s.frozen_note})" if s.frozen else ""))
        return 0
    C.check_preset(a.hw)
    try:
        select(a.sets)
        if a.out is not None:
            C.check_out(a.out, "--out", folder=True, example="reports/h100-sxm/decode/verification")
            js = write_report(a.out, a.sets, force=a.force, command=C.command_line(a.argv), hw=a.hw)
            summ = js["sets"]
        else:
            summ = build(a.sets, a.hw)[2]
    except (DecodeSetError, DecodeReportError) as e:
        raise C.UsageError(str(e)) from None
    if a.json:
        C.print_json({"sets": summ})
    else:
        for line in headline(summ):
            print(line)
        if a.out is not None:
            print(f"wrote {a.out}/report.md")
    return 0
