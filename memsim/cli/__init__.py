"""The memsim command line, one module per subcommand (``python -m memsim``).

Adding a subcommand is one new module here whose docstring is its --help text, with ``NAME``,
``SUMMARY`` (its line in the top-level help), optionally ``EPILOG`` (examples), ``add_arguments(parser)``
and ``run(args) -> exit status``, plus its name in COMMANDS (`errors.add_commands` builds the parser; a
module may instead build it itself with ``add_parser(subparsers)``, setting ``fn=run``).
`errors` holds the one error style the three command lines share.
"""
from __future__ import annotations

import argparse
import sys

from . import compare, decode, presets, simulate, sweep
from . import tune  # model-steered tuning: python -m memsim tune (memsim/cli/tune.py)
from .errors import add_commands, dispatch, make_parser

#: the subcommands, in --help order
COMMANDS = (simulate, compare, sweep, presets, decode, tune)

EPILOG_MAIN = """\
examples:
  python -m memsim compare                      # naive vs flash1 vs flash2, B=4 H=16 N=4096 d=64 fp16, H100 SXM
  python -m memsim simulate --seq 16384 --batch 1 --heads 32 --grid-order heads_fastest
  python -m memsim simulate --algorithm naive --phase bwd --json
  python -m memsim sweep --param block_n --values 16,32,64,128 --algorithms flash1 --out results/flash1_bn
  python -m memsim presets
  python -m memsim decode --batches 1,8 --contexts 8192,131072   # decode: split choice, paged vs contiguous

Levels: "global" = requests SMs send to memory (the FlashAttention paper's "HBM accesses", ncu
l1tex__t_bytes); "l2" = requests that reach L2 (ncu lts__t_sectors_srcunit_tex x 32); "dram" = bytes
between L2 and DRAM (ncu dram__bytes).  Hardware: --hw takes a preset name or a path to a .toml file
(a file may say extends = "h100-sxm" and override a few keys).
"""


def build_parser() -> argparse.ArgumentParser:
    ap = make_parser(
        "memsim", prog="python -m memsim",
        description="memsim: a SimPy model of GPU memory traffic and time for attention schedules "
                    "(naive, FlashAttention-1 loop order, FlashAttention-2) on presets like h100-sxm.",
        epilog=EPILOG_MAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_commands(ap, COMMANDS)
    return ap


def main(argv=None) -> int:
    from ..hardware import HardwareError
    from ..io import OutputExistsError
    from ..schedule import ScheduleError
    return dispatch("memsim", build_parser(), sys.argv[1:] if argv is None else argv,
                    errors=(ScheduleError, HardwareError, OutputExistsError, ValueError, OSError),
                    dash_options=tuple(o for m in COMMANDS for o in getattr(m, "DASH_VALUE_OPTIONS", ())))
