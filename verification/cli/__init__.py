"""The verification command line, one module per subcommand (``python -m verification``).

Adding a subcommand is a one-file change: a module here whose docstring is its --help text, with NAME,
SUMMARY (its line in the top-level --help), ``add_arguments(parser)`` and ``run(args) -> exit status``
(memsim.cli.errors.add_commands builds the parser), and its name in COMMANDS below.  ``args.argv`` holds
the raw argument list (for provenance); raise ``common.UsageError`` for bad input (one line, exit 2).
"""
from __future__ import annotations

import sys

from . import anchors, calibrate, cases, ceilings, decode, fidelity, measure, numerics, report, unpack, validate
from .common import RAW
from memsim.cli.errors import add_commands, dispatch, make_parser

#: the subcommands, in --help order
COMMANDS = (cases, numerics, measure, report, validate, fidelity, decode, ceilings, anchors, unpack, calibrate)

DESCRIPTION = """\
python -m verification: exactness, Nsight Compute measurements, model-vs-hardware reports.
The subcommands are listed below; each has its own --help.

Typical flow: on the GPU machine `measure --bundle $OUT/measurements.tar.gz`, here
`unpack`, then `report --hw h100-sxm --data verification/data/<gpu> --out reports/h100-sxm`.
Exit status: 0 ok, 1 failures (a numerics case fails, a case could not be measured),
2 bad input (unknown case or preset, missing data dir, existing output).
"""


def build_parser():
    ap = make_parser("verification", prog="python -m verification", description=DESCRIPTION, formatter_class=RAW)
    add_commands(ap, COMMANDS)
    return ap


def main(argv=None) -> int:
    return dispatch("verification", build_parser(), sys.argv[1:] if argv is None else argv,
                    interrupted="interrupted: measurements already written are kept")
