"""python -m verification: exactness, Nsight Compute measurements, model-vs-hardware reports.

Subcommands (each has its own --help):
  cases      list the validation suite (names, shapes, schedules, launches)
  numerics   exactness of every kernel against the float64 reference (GPU, else Triton interpreter)
  measure    GPU only, no simpy needed: time + ncu-profile suite cases -> verification/data/<gpu>/<case>.json
  report     no GPU: stored measurements + memsim predictions -> report.md, PNG plots, comparison.json
  validate   measure, then report (needs the GPU and simpy)
  ceilings   today's worst model error per level; --write lowers the CI ceilings in tolerances.toml
  anchors    no GPU: memsim against the real H100 ncu fixtures of the probe kernel (a preliminary check)
  unpack     a bundle from the GPU machine -> verification/data/<gpu>/ (see verification/DEVICE.md)

Typical flow: on the GPU machine `measure --bundle $OUT/measurements.tar.gz`, here
`unpack`, then `report --hw h100-sxm --data verification/data/<gpu> --out reports/h100-sxm`.
Exit status: 0 ok, 1 failures (a numerics case fails, a case could not be measured),
2 bad input (unknown case or preset, missing data dir, existing output).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

EPILOG_NO_OVERWRITE = (
    "Existing measurements are never overwritten: if a case already has <data dir>/<case>.json the command "
    "refuses before measuring anything and names the files; --archive-old first moves them (never deletes) to "
    "<data dir>/archive/<UTC stamp>/, so the newest run is always <case>.json.")


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


def _echo(msg):
    print(msg, file=sys.stderr, flush=True)


def _command_line(argv) -> str:
    return "python -m verification " + " ".join(shlex.quote(a) for a in argv)


def _check_preset(name: str) -> str:
    try:
        import memsim
        memsim.load_hardware(name)
        return name
    except (ImportError, AttributeError, ModuleNotFoundError):
        pass
    except Exception as e:
        raise UsageError(str(e)) from None
    presets = Path(__file__).resolve().parent.parent / "memsim" / "presets"
    if not (presets / f"{name}.toml").is_file():
        names = sorted(p.stem for p in presets.glob("*.toml"))
        raise UsageError(f"unknown hardware preset {name!r}; presets: {', '.join(names) or '(none yet)'}")
    return name


def _select(patterns):
    from .suite import UnknownCaseError, select
    try:
        return select(patterns)
    except UnknownCaseError as e:
        raise UsageError(str(e)) from None


def _print_json(obj):
    print(json.dumps(obj, indent=1, default=str))


# --- cases ------------------------------------------------------------------------------
def cmd_cases(a, argv):
    cases = _select(a.cases)
    if a.json:
        _print_json([{**c.to_spec(), "tags": list(c.tags), "io_bytes": c.io_bytes()} for c in cases])
        return 0
    for c in cases:
        p, s = c.problem, c.schedule
        print(f"{c.name:40s} B={p.batch:<3d} H={p.heads_q}/{p.heads_kv} N={p.seq_q:<5d} d={p.head_dim:<3d} "
              f"{p.dtype} {'causal' if p.causal else 'full  '} {s.algorithm}/{s.phase} {s.block_m}x{s.block_n} "
              f"w{s.num_warps} st{s.num_stages} {s.grid_order:13s} [{','.join(c.tags)}]")
    print(f"{len(cases)} case(s)", file=sys.stderr)
    return 0


# --- numerics -----------------------------------------------------------------------------
def cmd_numerics(a, argv):
    from . import numerics as NU
    device, mode = NU.setup_backend()  # before triton is imported
    from memsim.io import base_provenance
    cases = NU.build_cases(mode == "gpu")
    if a.filter:
        cases = [c for c in cases if all(f in c.id for f in a.filter.split(","))]
        if not cases:
            raise UsageError(f"--filter {a.filter!r} matches no numerics case (ids look like "
                             f"'flash2-bwd-fp16-d64-q113k113-h2-causal-tl-b32x16')")
    if a.limit:
        cases = cases[:a.limit]
    if a.list:
        for c in cases:
            print(c.id)
        return 0
    _echo(f"numerics: {len(cases)} case(s) on {mode} ({device})")
    import torch
    import triton
    prov = base_provenance(_command_line(argv))
    prov.update(torch=torch.__version__, triton=triton.__version__, device=str(device),
                gpu=torch.cuda.get_device_name(0) if mode == "gpu" else None)
    out = Path(a.out) if a.out else None
    if out is not None and not a.force:
        for f in (out / f"numerics_{mode}.json", out / f"numerics_{mode}.md"):
            if f.exists():
                raise UsageError(f"{f} already exists; pass --force to replace it, or another --out")

    def save(results):
        from memsim.io import write_atomic, write_json
        d = NU.to_json(results, mode, prov)
        d["complete"] = len(results) == len(cases)
        write_json(out / f"numerics_{mode}.json", d, overwrite=True)
        write_atomic(out / f"numerics_{mode}.md", NU.to_markdown(d), overwrite=True)

    def on_result(results):  # partial tables survive an interrupted run
        if out is not None and (len(results) % 10 == 0):
            save(results)
    results = NU.run_suite(cases, device, progress=None if a.json else _echo, on_result=on_result)
    doc = NU.to_json(results, mode, prov)
    if out is not None:
        save(results)
        _echo(f"wrote {out / f'numerics_{mode}.md'} and .json")
    if a.json:
        _print_json(doc)
    _echo(f"numerics ({mode}): {doc['passed']}/{doc['cases']} cases pass, {doc['failed']} fail"
          + (f", {doc['artefacts']} interpreter artefact(s)" if doc["artefacts"] else ""))
    return 0 if doc["failed"] == 0 else 1


# --- measure -------------------------------------------------------------------------------
def _measure(a, argv):
    from . import measure as M
    from . import ncu as N
    from . import records as R
    _check_preset(a.hw)
    cases = _select(a.cases)
    if a.hw != "h100-sxm" or True:
        import dataclasses
        cases = [dataclasses.replace(c, hardware=a.hw) for c in cases]
    try:
        N.ncu_path()
        if a.data_dir:
            data_dir = Path(a.data_dir.replace("{gpu}", R.gpu_slug(M.gpu_name())) if "{gpu}" in a.data_dir
                            else a.data_dir)
        else:
            data_dir = R.DATA_ROOT / R.gpu_slug(M.gpu_name())
    except N.NcuError as e:
        raise UsageError(str(e)) from None
    _echo(f"measure: {len(cases)} case(s) -> {data_dir}")
    try:
        return M.measure_cases(cases, data_dir, command=_command_line(argv), archive_old=a.archive_old,
                               per_case=a.ncu_per_case, ncu_timeout_s=a.ncu_timeout, time_timeout_s=a.time_timeout,
                               skip_timing=a.no_timing, bundle_to=a.bundle, echo=_echo)
    except N.NcuError as e:
        raise UsageError(str(e)) from None


def cmd_measure(a, argv):
    from memsim.io import OutputExistsError
    try:
        summary = _measure(a, argv)
    except OutputExistsError as e:
        raise UsageError(str(e)) from None
    if a.json:
        _print_json(summary)
    return 0 if not summary["failed"] else 1


# --- report --------------------------------------------------------------------------------
def _report(a, argv, data_dir):
    from . import compare as C
    from . import records as R
    from .report import build_report, memsim_predictor
    _check_preset(a.hw)
    try:
        recs = R.load_records(data_dir)
        levels = C.load_tolerances(a.tolerances)
    except (R.DataError, C.ToleranceError) as e:
        raise UsageError(str(e)) from None
    if a.cases:
        keep = {c.name for c in _select(a.cases)}
        recs = [r for r in recs if r["case"] in keep]
        if not recs:
            raise UsageError(f"none of the cases {a.cases} has a measurement in {data_dir}")
    try:
        predict = memsim_predictor(a.hw)
    except ImportError as e:
        raise UsageError(f"the model cannot be imported ({e}); `report` needs memsim with simpy "
                         f"(pip install -e .)") from None
    doc = build_report(recs, predict, a.out, levels=levels, title_hw=a.hw, progress=None if a.json else _echo,
                       command=_command_line(argv))
    if a.json:
        _print_json({"out": str(a.out), "summary": doc["summary"], "errors": doc["errors"]})
    else:
        for s in doc["summary"].values():
            print(C.Summary(**s).line())
        _echo(f"wrote {Path(a.out) / 'report.md'}")
    over = [k for k, s in doc["summary"].items() if s["within_ceiling"] is False]
    return 1 if over else 0


def cmd_report(a, argv):
    if not a.data:
        from . import records as R
        dirs = R.gpu_dirs()
        if len(dirs) != 1:
            raise UsageError("pass --data verification/data/<gpu> (found: "
                             f"{', '.join(str(d) for d in dirs) or 'no measured GPU'})")
        a.data = str(dirs[0])
    return _report(a, argv, Path(a.data))


def cmd_validate(a, argv):
    from memsim.io import OutputExistsError
    try:
        summary = _measure(a, argv)
    except OutputExistsError as e:
        raise UsageError(str(e)) from None
    if not summary["written"]:
        raise UsageError("nothing was measured; no report")
    rc = _report(a, argv, Path(summary["data_dir"]))
    return rc or (1 if summary["failed"] else 0)


# --- ceilings --------------------------------------------------------------------------------
def cmd_ceilings(a, argv):
    from . import compare as C
    from . import records as R
    from .report import memsim_predictor
    from .suite import case_from_record
    try:
        recs = R.load_records(a.data)
        levels = C.load_tolerances(a.tolerances)
    except (R.DataError, C.ToleranceError) as e:
        raise UsageError(str(e)) from None
    predict = memsim_predictor(a.hw)
    pairs = [(r["case"], r, predict(case_from_record(r))) for r in recs]
    summ = C.summarise(C.compare_records(pairs, levels), levels)
    out = {k: {"worst_abs_error": s.worst_abs_error, "worst_case": s.worst_case, "target": s.target,
               "ceiling": s.ceiling, "proposed": None if s.worst_abs_error is None else
               C.proposed_ceiling(s.worst_abs_error, s.target)} for k, s in summ.items()}
    changes = {}
    if a.write:
        try:
            changes = C.update_ceilings(a.tolerances, summ, allow_raise=a.allow_raise)
        except C.ToleranceError as e:
            raise UsageError(str(e)) from None
    if a.json:
        _print_json({"levels": out, "changed": changes})
    else:
        for s in summ.values():
            print(s.line())
        for k, (o, n) in changes.items():
            print(f"{k}: ceiling {o} -> {n}")
        if a.write and not changes:
            print("no ceiling changed")
    return 0


# --- anchors -------------------------------------------------------------------------------------
def cmd_anchors(a, argv):
    from . import anchors as A
    try:
        import memsim
        hw = memsim.load_hardware(a.hw)
    except Exception as e:
        raise UsageError(str(e)) from None
    rows = A.compare_anchors(lambda p, s: memsim.simulate(p, s, hw).to_dict())
    md = A.to_markdown(rows)
    if a.out:
        from memsim.io import write_atomic
        write_atomic(a.out, md, overwrite=True)
        _echo(f"wrote {a.out}")
    if a.json:
        _print_json(rows)
    elif not a.out:
        print(md)
    return 0


# --- unpack ------------------------------------------------------------------------------------
def cmd_unpack(a, argv):
    from memsim.io import OutputExistsError
    from . import records as R
    try:
        dest, cases = R.unpack(a.bundle, a.root, archive_old=a.archive_old)
    except (R.DataError, OutputExistsError) as e:
        raise UsageError(str(e)) from None
    if a.json:
        _print_json({"data_dir": str(dest), "cases": cases})
    else:
        print(f"unpacked {len(cases)} measurement(s) into {dest}")
        print(f"next: python -m verification report --hw h100-sxm --data {dest} --out reports/h100-sxm")
    return 0


# --- parser --------------------------------------------------------------------------------------
def build_parser():
    from . import records as R
    F = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="python -m verification", description=__doc__, formatter_class=F)
    sub = ap.add_subparsers(dest="cmd", metavar="{cases,numerics,measure,report,validate,ceilings,anchors,unpack}")

    p = sub.add_parser("cases", help="list the validation suite", formatter_class=F,
                       description="List the suite's named cases: problem, schedule, launches, report tags.\n"
                                   "CASES may be names, shell patterns ('flash2_fwd_*') or tags ('tag:grid_order').\n"
                                   "Tags: fig2_left (GPT-2 medium naive vs flash), block_sweep (flash1 block sizes), "
                                   "grid_order (Q-fastest vs heads-fastest), scaling (the rest).\n\nExamples:\n"
                                   "  python -m verification cases\n  python -m verification cases 'naive_*' --json")
    p.add_argument("cases", nargs="*", metavar="CASES")
    p.add_argument("--json", action="store_true", help="print JSON (with each case's launch names)")
    p.set_defaults(fn=cmd_cases)

    from . import numerics as NU
    p = sub.add_parser("numerics", help="exactness against the float64 reference", formatter_class=F,
                       description=NU.__doc__ + "\nExamples:\n  python -m verification numerics --out reports/numerics\n"
                       "  python -m verification numerics --filter flash2,bwd --limit 5")
    p.add_argument("--out", help="folder for numerics_<gpu|interpreter>.md and .json (atomic writes)")
    p.add_argument("--force", action="store_true", help="replace existing numerics files in --out")
    p.add_argument("--filter", help="comma-separated substrings a case id must all contain (e.g. flash2,bwd,fp16)")
    p.add_argument("--limit", type=int, help="run only the first N selected cases")
    p.add_argument("--list", action="store_true", help="list the case ids and exit")
    p.add_argument("--json", action="store_true", help="print the full result table as JSON on stdout")
    p.set_defaults(fn=cmd_numerics)

    def measure_args(p):
        p.add_argument("--hw", default="h100-sxm", help="memsim hardware preset the cases are compared with "
                                                        "(default h100-sxm); stored in each record")
        p.add_argument("--cases", nargs="*", help="names, patterns or tag:<tag> (default: the whole suite)")
        p.add_argument("--data-dir", help="where the <case>.json records go (default verification/data/<gpu slug>, "
                                          "e.g. nvidia-h100-80gb-hbm3); '{gpu}' in it is replaced by the slug")
        p.add_argument("--archive-old", action="store_true",
                       help="move existing records of these cases to <data dir>/archive/<stamp>/ first")
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
        p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")

    p = sub.add_parser("measure", help="GPU: time and ncu-profile suite cases (no simpy needed)", formatter_class=F,
                       description="Measure suite cases on this machine's GPU: a timing pass (median of repeats, "
                                   "no profiler), then one ncu process per group of 8 cases (flush before each kernel, "
                                   "--clock-control none, warm-up and autotuning outside "
                                   "cudaProfilerStart/Stop). Each case's record is written to "
                                   "<data dir>/<case>.json in DESIGN.md's record shape with full provenance.\n\n"
                                   + EPILOG_NO_OVERWRITE + "\n\nExample (GPU machine): PYTHONPATH=. python3 -m "
                                   "verification measure --data-dir '/tmp/vdata/{gpu}' --bundle "
                                   "$OUT/measurements.tar.gz\nErrors say how to fix: ncu not on PATH, counters not "
                                   "permitted (ERR_NVGPUCTRPERM), no GPU.")
    measure_args(p)
    p.set_defaults(fn=cmd_measure)

    def report_args(p, data_required):
        p.add_argument("--out", required=True, help="report folder (report.md, *.png, comparison.json; replaced)")
        p.add_argument("--tolerances", default=str(Path(__file__).resolve().parent / "tolerances.toml"),
                       help="tolerances file (default verification/tolerances.toml)")

    p = sub.add_parser("report", help="no GPU: rebuild the report from stored measurements", formatter_class=F,
                       description="Compare stored measurements with memsim's predictions (memsim.simulate) and "
                                   "write report.md, fig2_left.png, block_sweep.png, scatter.png, grid_order.png "
                                   "and comparison.json into --out. Needs no GPU.\n\nExample: python -m verification "
                                   "report --hw h100-sxm --data verification/data/nvidia-h100-80gb-hbm3 --out "
                                   "reports/h100-sxm\nExit 1 when a level is over its CI ceiling.")
    p.add_argument("--hw", default="h100-sxm", help="memsim hardware preset to predict with (default h100-sxm)")
    p.add_argument("--data", help="measurement folder verification/data/<gpu> (default: the only one there)")
    p.add_argument("--cases", nargs="*", help="only these cases (names, patterns, tag:<tag>)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    report_args(p, False)
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("validate", help="GPU: measure, then report", formatter_class=F,
                       description="measure (see `measure --help`) then report (see `report --help`).\n\n"
                                   + EPILOG_NO_OVERWRITE + "\n\nExample: python -m verification validate --hw "
                                   "h100-sxm --out reports/h100-sxm")
    measure_args(p)
    report_args(p, True)
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("ceilings", help="today's worst error per level; --write lowers CI ceilings",
                       formatter_class=F,
                       description="Predict every stored case, print each level's worst |error|, and with --write "
                                   "set each ceiling in tolerances.toml to today's worst (rounded up, never below "
                                   "the target). A ceiling only goes down; --allow-raise overrides (say why in the "
                                   "commit).")
    p.add_argument("--data", required=True, help="measurement folder verification/data/<gpu>")
    p.add_argument("--hw", default="h100-sxm")
    p.add_argument("--tolerances", default=str(Path(__file__).resolve().parent / "tolerances.toml"))
    p.add_argument("--write", action="store_true", help="rewrite the ceilings in the tolerances file")
    p.add_argument("--allow-raise", action="store_true", help="allow a ceiling to go up")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_ceilings)

    from . import anchors as A
    p = sub.add_parser("anchors", help="memsim vs the H100 ncu fixtures (no GPU)", formatter_class=F,
                       description=A.__doc__ + "\nExample: python -m verification anchors --out "
                                               "reports/h100-sxm/anchors.md")
    p.add_argument("--hw", default="h100-sxm")
    p.add_argument("--out", help="write the Markdown table here (replaced)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_anchors)

    p = sub.add_parser("unpack", help="bundle from the GPU machine -> verification/data/<gpu>/", formatter_class=F,
                       description="Extract measurements.tar.gz (from `measure --bundle`) into "
                                   "<root>/<gpu slug>/.\n\n" + EPILOG_NO_OVERWRITE)
    p.add_argument("bundle", help="the .tar.gz written by measure --bundle")
    p.add_argument("--root", default=str(R.DATA_ROOT), help="data root (default verification/data)")
    p.add_argument("--archive-old", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_unpack)
    return ap


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    a = ap.parse_args(argv)
    if not getattr(a, "fn", None):
        ap.print_help()
        return 2
    try:
        return a.fn(a, argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: measurements already written are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
