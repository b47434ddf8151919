"""The one error style of the three command lines (memsim, kernels, verification); stdlib only.

Bad input is one line on stderr, ``<prog>: error: <what was wrong and what is allowed>``, and exit
status 2; an interrupt is one line and exit status 130.  Argument-parser errors follow the same
style (no usage block), so every refusal reads alike:

    ap = OneLineParser(prog="python -m memsim", ...)
    sys.exit(run_cli("memsim", lambda: a.fn(a), errors=(ValueError, OSError)))
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


class UsageError(Exception):
    """Bad input found by a command: printed as one line, exit status 2."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def fail(prog: str, message: str) -> int:
    """Print the one-line error and return exit status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return 2


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors (``<prog>: error: ...``, exit 2); subparsers inherit it."""

    #: the short program name the errors start with (set by the top-level parser's owner)
    error_prog = None

    def error(self, message):
        prog = self.error_prog or self.prog
        fail(prog, f"{message} (see {self.prog} --help)")
        sys.exit(2)


def make_parser(error_prog: str, **kw) -> OneLineParser:
    """A top-level OneLineParser whose errors (and its subparsers' errors) start with `error_prog`."""
    cls = type("Parser", (OneLineParser,), {"error_prog": error_prog})
    return cls(**kw)


def check_out(value, option: str, *, folder: bool, example: str) -> Path:
    """An output path checked before any work: not empty (an empty value would write into the current
    folder), not the other kind (a file where a folder is wanted or the reverse), and no file on the way
    (a parent that is a file).  The Path, or UsageError naming the option, what was wrong and an example."""
    kind = "folder" if folder else "file"
    if value is None or not str(value).strip():
        raise UsageError(f"{option} is empty; give a {kind}, e.g. {option} {example}")
    path = Path(value)
    if path.exists() and path.is_dir() != folder:
        raise UsageError(f"{option} {path} is a {'file' if folder else 'folder'}; give a {kind}, "
                         f"e.g. {option} {example}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option} {path} cannot be created: {parent} is a file, not a folder")
            break
    return path


def run_cli(prog: str, fn, *, errors=(UsageError,), interrupted: str = "interrupted") -> int:
    """Run fn() -> exit status; the exception types in `errors` (UsageError always) become one
    line and exit 2, KeyboardInterrupt one line and exit 130."""
    try:
        return fn()
    except (UsageError, *errors) as e:
        return fail(prog, one_line(e))
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr, flush=True)
        return 130


def join_dash_values(argv, options) -> list[str]:
    """['--values', '-64,0,64'] -> ['--values=-64,0,64'] for the named options, so a value that
    starts with '-' reaches the command's own check instead of argparse's 'expected one argument'."""
    argv = list(argv)
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        if tok in options and i + 1 < len(argv) and re.match(r"-\d", argv[i + 1]):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def dispatch(prog: str, ap: argparse.ArgumentParser, argv, *, errors=(), interrupted: str = "interrupted",
             dash_options=()) -> int:
    """Parse argv with `ap` (subparsers set ``fn``), keep the raw list as ``args.argv`` (for
    provenance) and run ``args.fn(args)`` under run_cli; no subcommand prints the help, exit 2."""
    argv = list(argv)
    a = ap.parse_args(join_dash_values(argv, dash_options))
    if not getattr(a, "fn", None):
        ap.print_help()
        return 2
    a.argv = argv
    return run_cli(prog, lambda: a.fn(a), errors=errors, interrupted=interrupted)


def add_commands(ap: argparse.ArgumentParser, commands) -> None:
    """One subparser per command module, in order.  A module declares its parser -- NAME, SUMMARY (its
    line in the parent's help), its docstring as the --help text (shown as written; or DESCRIPTION: a
    text, or a function returning one), optionally EPILOG (examples after the options),
    add_arguments(parser) and run(args) -- or builds the parser itself with add_parser(subparsers),
    which sets fn=run."""
    sub = ap.add_subparsers(dest="cmd", metavar="{" + ",".join(m.NAME for m in commands) + "}")
    for m in commands:
        if not hasattr(m, "add_arguments"):
            m.add_parser(sub)
            continue
        text = getattr(m, "DESCRIPTION", m.__doc__)
        p = sub.add_parser(m.NAME, help=m.SUMMARY, description=text() if callable(text) else text,
                           epilog=getattr(m, "EPILOG", None), formatter_class=argparse.RawDescriptionHelpFormatter)
        m.add_arguments(p)
        p.set_defaults(fn=m.run)
