"""What the verification subcommands share: one-line usage errors, echo, the command line for
provenance, preset and case checks, and the measure/report option groups."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from memsim.cli.errors import UsageError, check_out  # noqa: F401  (shared by the three CLIs)

RAW = argparse.RawDescriptionHelpFormatter
TOLERANCES = str(Path(__file__).resolve().parent.parent / "tolerances.toml")

EPILOG_NO_OVERWRITE = (
    "Existing measurements are never overwritten: if a case already has <data dir>/<case>.json the command "
    "refuses before measuring anything and names the files; --archive-old first moves them (never deletes) to "
    "<data dir>/archive/<UTC stamp>/, so the newest run is always <case>.json.")


def echo(msg):
    print(msg, file=sys.stderr, flush=True)


def command_line(argv) -> str:
    return "python -m verification " + " ".join(shlex.quote(a) for a in argv)


def check_preset(name: str) -> str:
    """The preset name if memsim can load it (or, without simpy, if its file exists); else UsageError."""
    try:
        import memsim
        memsim.load_hardware(name)
        return name
    except (ImportError, AttributeError, ModuleNotFoundError):
        pass
    except Exception as e:
        raise UsageError(str(e)) from None
    presets = Path(__file__).resolve().parents[2] / "memsim" / "presets"
    if not (presets / f"{name}.toml").is_file():
        names = sorted(p.stem for p in presets.glob("*.toml"))
        raise UsageError(f"unknown hardware preset {name!r}; presets: {', '.join(names) or '(none yet)'}")
    return name


def check_data(value, option: str = "--data") -> Path:
    """A measurement folder given on the command line: not empty (never "the default"), not a file."""
    if not str(value).strip():
        raise UsageError(f"{option} is empty; give a measurement folder, e.g. {option} verification/data/<gpu>")
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file; give the folder that holds the <case>.json records")
    return path


def select(patterns):
    from ..suite import UnknownCaseError, select as _select
    try:
        return _select(patterns)
    except UnknownCaseError as e:
        raise UsageError(str(e)) from None


def draw_set(n, seed, label, hw):
    """(set name, RandomSet) of --random N --seed S [--set LABEL] (verification/randomsets.py), or UsageError."""
    from .. import randomsets as RS
    if seed is None:
        raise UsageError("--random needs --seed S (the draw is a pure function of N and S)")
    try:
        return RS.draw_set(n, seed, label, hw)
    except ValueError as e:
        raise UsageError(str(e)) from None


def print_json(obj):
    print(json.dumps(obj, indent=1, default=str))


def add_hw(p, help=None):
    p.add_argument("--hw", default="h100-sxm", help=help)


def add_json(p, help=None):
    p.add_argument("--json", action="store_true", help=help)


def add_out(p, help, force_help, required=False):
    """--out and the --force that lets it replace what is there."""
    p.add_argument("--out", required=required, help=help)
    p.add_argument("--force", action="store_true", help=force_help)


def add_measure_args(p):
    add_hw(p, "memsim hardware preset the cases are compared with (default h100-sxm); stored in each record")
    p.add_argument("--cases", nargs="*", help="names, patterns or tag:<tag> (default: the whole suite)")
    p.add_argument("--data-dir", help="where the <case>.json records go (default verification/data/<gpu slug>, "
                                      "e.g. nvidia-h100-80gb-hbm3); '{gpu}' in it is replaced by the slug")
    p.add_argument("--archive-old", action="store_true",
                   help="move existing records of these cases to <data dir>/archive/<stamp>/ first")
    p.add_argument("--resume", action="store_true",
                   help="measure only the selected cases that have no record in the data dir yet (an interrupted "
                        "run goes on where it stopped; the records there are kept)")
    p.add_argument("--ncu-per-case", action="store_true",
                   help="one ncu process per case (slower; a crash loses one case) instead of one per group of 8")
    p.add_argument("--ncu-timeout", type=float, default=330,
                   help="seconds for the ncu pass (default 330: with the timing pass, inside a 10-minute call)")
    p.add_argument("--time-timeout", type=float, default=240,
                   help="seconds for the timing pass (default 240; cases it did not reach get ncu's time)")
    p.add_argument("--no-timing", action="store_true",
                   help="skip the timing pass (total.time_s is then the sum of ncu's kernel durations)")
    p.add_argument("--bundle", help="also write all records + raw logs to this .tar.gz (refreshed after each "
                                    "ncu pass): the one file to carry back from the GPU machine")
    add_json(p, "print a JSON summary on stdout")
    add_random_args(p, measuring=True)


def add_random_args(p, measuring=False):
    """--random N --seed S [--set LABEL] (verification/sampling.py; verification/randomsets.py)."""
    p.add_argument("--random", type=int, metavar="N", help="N seeded random cases over the whole space instead of "
                                                          "the suite (records in <gpu>/random/<label>-seed<S>/)")
    p.add_argument("--seed", type=int, default=None, help="seed of --random (required with it)")
    p.add_argument("--set", dest="set_label", help="label of the random set, e.g. A or B (default: none)")
    if measuring:
        p.add_argument("--repeats", type=int, default=None, help="ncu + timing passes per case (random sets: "
                                                                  ">= 3, default 3; the suite: default 1)")
        p.add_argument("--model-commit", help="random set B: the commit whose model predicted it (recorded)")


def add_report_args(p):
    add_out(p, "report folder (report.md, *.png, comparison.json)", "replace an existing report in --out", required=True)
    p.add_argument("--tolerances", default=TOLERANCES, help="tolerances file (default verification/tolerances.toml)")
