"""A stand-in for Nsight Compute's `ncu` for the dry runs of `measure` and `calibrate` (no GPU).

`install(tmp_path, monkeypatch, module, ...)` writes an executable `ncu` script and points the module at it
(``NCU``, and ``module.RUNNER_EXTRA = ["--allow-cpu"]`` so the runner uses the Triton interpreter).  The script
checks the flags every measurement must use (``--clock-control none``, ``--profile-from-start off``, the default
cache control), runs the program, then prints one CSV block per launch the runner reported in its JSON lines
(`names_from`: the line's key that lists them; a runner line without it names one ``kernel``).  Each block has
the given (metric, unit, value) rows; ``{pass_ns}`` in a value is 1000 x (ncu pass + 1), the pass read from the
runner's output name (``...ncu<N>.jsonl``; 0 otherwise), so repeats differ.  Like the real ncu it exports to
``--export`` (and prints nothing then), writes to ``--log-file`` or stdout, and prints a saved report for
``--import FILE --csv --page details``.
"""
from __future__ import annotations

import stat
import sys

_SCRIPT = '''#!{python}
"""Stand-in for ncu (tests/fake_ncu.py): runs the program, prints one CSV block per launch it reported."""
import json, subprocess, sys
ROWS, NAMES_FROM, PREFIX, GRID, KERNEL_FILTER = {rows!r}, {names_from!r}, {prefix!r}, {grid!r}, {kernel_filter!r}
args = sys.argv[1:]
if args and args[0] == "--help":
    print("--metrics --print-units --log-file --profile-from-start --clock-control"); sys.exit(0)
if args and args[0] == "--version":
    print("NVIDIA (R) Nsight Compute Command Line Profiler\\nVersion 0.0-fake"); sys.exit(0)
if args and args[0] == "--import":  # a saved report printed as the details-page CSV (what we saved)
    assert "--csv" in args and args[args.index("--page") + 1] == "details", args
    sys.stdout.write(open(args[1]).read()); sys.exit(0)
takes = {{"--print-units", "--clock-control", "--metrics", "-k", "--profile-from-start", "--log-file", "--export"}}
opts, i = {{}}, 0
while i < len(args) and args[i].startswith("-"):
    if args[i] in takes:
        opts[args[i]] = args[i + 1]; i += 2
    else:
        opts[args[i]] = True; i += 1
prog = args[i:]
assert opts.get("--clock-control") == "none" and opts.get("--profile-from-start") == "off", opts
assert "--cache-control" not in opts, "must keep the default cache control (flush before each kernel)"
assert KERNEL_FILTER is None or opts["-k"] == KERNEL_FILTER, opts
rc = subprocess.call(prog)
out = prog[prog.index("--out") + 1]
tail = out.rsplit("ncu", 1)[-1].split(".")[0]
rep = int(tail) if tail.isdigit() else 0
lines = ['==PROF== Connected to process 1 (python)',
         '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size",'
         '"Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"']
kid = 0
for line in open(out):
    d = json.loads(line)
    if not d.get("ok"):
        continue
    for name in d.get(NAMES_FROM) or [d["kernel"]]:
        for metric, unit, val in ROWS:
            val = val.format(pass_ns=1000 * (rep + 1))
            lines.append(f'"{{kid}}","1","python","h","{{PREFIX}}{{name}}","1","7","(128, 1, 1)","{{GRID}}","0","9.0",'
                         f'"Command line profiler metrics","{{metric}}","{{unit}}","{{val}}"')
        kid += 1
lines.append('==PROF== Disconnected from process 1')
text = "\\n".join(lines) + "\\n"
if "--export" in opts:  # like the real ncu: the results go to the report, none are printed
    assert opts.get("--force-overwrite") and opts["--export"].endswith(".ncu-rep"), opts
    open(opts["--export"], "w").write(text)
    text = "==PROF== Report: " + opts["--export"] + "\\n"
if "--log-file" in opts:
    open(opts["--log-file"], "w").write(text)
else:
    sys.stdout.write(text)
sys.exit(rc)
'''


def install(tmp_path, monkeypatch, module, *, rows, names_from, prefix="", grid="(4, 1, 1)", kernel_filter=None):
    """Write the fake ncu to tmp_path/bin/ncu, point $NCU at it and let `module`'s runner use the CPU; its path."""
    exe = tmp_path / "bin" / "ncu"
    exe.parent.mkdir()
    exe.write_text(_SCRIPT.format(python=sys.executable, rows=[tuple(r) for r in rows], names_from=names_from,
                                  prefix=prefix, grid=grid, kernel_filter=kernel_filter))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("NCU", str(exe))
    monkeypatch.setattr(module, "RUNNER_EXTRA", ["--allow-cpu"])
    return exe
