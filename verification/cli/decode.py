"""The decode cases (issue 12) in the verification flow: the fixed decode suite and seeded random draws of decode
problems (batch, ragged cache lengths, GQA, head dim, pages, splits, tiles), measured with ncu like the attention
cases, and every committed decode set against the model.

  decode [report] [--sets NAME ...] [--out DIR [--force]] [--json]
      (no GPU) every committed set (`decode list`) against the model now and, for the held-out sets, against the
      predictions frozen before they were measured; one line per set; with --out: report.md, fidelity.md (the
      headline's format), bandwidth_context.png (achieved DRAM bandwidth vs context length, predicted and measured)
      and rows.json (refused if they exist, unless --force)
  decode list                                     the committed decode sets (card, role, data, frozen predictions)
  decode cases [--random N --seed S] [--specs F]  the decode suite, or a random draw; --specs writes the case specs
  decode measure --out DIR [--random N --seed S | --cases-json F] [--timeout S]
      (GPU + ncu) measure the suite, a draw or exactly the given specs (e.g. a frozen held-out draw); writes
      DIR/decode_ncu.json (and DIR/decode_cases.json for a draw): verification.suite_decode.measure

Example: python -m verification decode --out reports/h100-sxm/decode/verification
The headline with decode beside the attention random sets: python -m verification fidelity --data ... --decode committed
"""
from __future__ import annotations

from . import common as C

NAME = "decode"
SUMMARY = "decode suite + random decode sets: list, measure (GPU), report vs the model (frozen held-out predictions)"
ACTIONS = ("report", "list", "cases", "measure")


def add_arguments(p):
    p.add_argument("action", nargs="?", default="report", choices=ACTIONS, help="default: report")
    p.add_argument("--sets", nargs="+", metavar="NAME", help="report: only these committed sets (default: all)")
    C.add_hw(p, "memsim preset to predict with (default h100-sxm)")
    C.add_out(p, "report: folder for report.md, fidelity.md, bandwidth_context.png, rows.json (default: print only); "
                 "measure: folder for decode_ncu.json", "report: replace an existing report")
    C.add_json(p, "report: print the per-set summary as JSON")
    p.add_argument("--random", type=int, metavar="N", help="cases / measure: N random decode cases (with --seed)")
    p.add_argument("--seed", type=int, help="the seed of --random")
    p.add_argument("--specs", metavar="FILE", help="cases: also write the case specs here (for kernels.decode_compiled "
                                                   "--specs and suite_decode predict)")
    p.add_argument("--cases-json", metavar="FILE", help="measure: exactly these case specs (a frozen draw's)")
    p.add_argument("--timeout", type=float, default=240.0, help="measure: ncu's limit in seconds (default 240)")


def _draw(a):
    from ..suite_decode import DECODE_SUITE, draw_random
    if a.random is None:
        if a.seed is not None:
            raise C.UsageError("--seed goes with --random N")
        return None if a.action == "measure" else DECODE_SUITE
    if a.seed is None:
        raise C.UsageError("--random N needs --seed S (a draw is named by its seed)")
    if a.random < 1:
        raise C.UsageError(f"--random must be a positive number of cases, got {a.random}")
    return draw_random(a.random, a.seed, a.hw)


def _only(a, allowed):
    """Refuse options that the action does not read (a silently ignored option is a wrong result waiting)."""
    given = {"--sets": a.sets, "--out": a.out, "--force": a.force or None, "--json": a.json or None,
             "--random": a.random, "--seed": a.seed, "--specs": a.specs, "--cases-json": a.cases_json}
    bad = [k for k, v in given.items() if v is not None and k not in allowed]
    if bad:
        raise C.UsageError(f"decode {a.action} does not take {', '.join(bad)}")


def run(a) -> int:
    from ..fidelity_decode import COMMITTED, DecodeSetError, build, headline, select, write_report
    from ..report_decode import DecodeReportError
    if a.action == "list":
        _only(a, ())
        for s in COMMITTED:
            print(f"{s.name:14s} {s.role:11s} {s.data}" + (f"  frozen: {s.frozen} ({s.frozen_note})" if s.frozen else ""))
        return 0
    C.check_preset(a.hw)
    if a.action == "cases":
        _only(a, ("--random", "--seed", "--specs"))
        listed = _draw(a)
        for c in listed:
            print(f"{c.name:44s} S={c.schedule.num_splits:<3d} kv={c.problem.kv_bytes() / 1e6:9.1f} MB  {c.note}")
        if a.specs:
            from memsim.io import OutputExistsError, write_json
            try:
                write_json(a.specs, [c.to_spec() | {"note": c.note} for c in listed])
            except OutputExistsError as e:
                raise C.UsageError(str(e)) from None
        return 0
    if a.action == "measure":
        _only(a, ("--out", "--random", "--seed", "--cases-json"))
        if a.out is None:
            raise C.UsageError("decode measure needs --out DIR (where decode_ncu.json goes)")
        if a.cases_json is not None and a.random is not None:
            raise C.UsageError("give --random N --seed S or --cases-json FILE, not both")
        if a.timeout <= 0:
            raise C.UsageError(f"--timeout must be positive, got {a.timeout}")
        from ..suite_decode import load_specs, measure
        cases = _draw(a)
        if a.cases_json is not None:
            try:
                cases = load_specs(a.cases_json)
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise C.UsageError(f"--cases-json {a.cases_json}: not a decode case-specs file ({e})") from None
        print(measure(a.out, None, a.timeout, command=C.command_line(a.argv), cases=cases))
        return 0
    _only(a, ("--sets", "--out", "--force", "--json"))
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
