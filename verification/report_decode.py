"""``python -m verification.report_decode``: the decode report -- model vs ncu for decode cases (issue 12 item 4).

    python -m verification.report_decode FILE [FILE ...] --out reports/h100-sxm/decode [--force]
    python -m verification.report_decode FILE --predictions FROZEN.json --out DIR   # a held-out set

With ``--predictions`` (written by ``python -m verification.suite_decode predict`` BEFORE the measurement and
committed) the predicted side is the frozen file's, not the model now: the held-out test of the model as it was.

    python -m verification.report_decode --fidelity FILE[@FROZEN.json] ... --out DIR   # the headline's tables

``--fidelity`` writes ``fidelity.md`` / ``fidelity.json`` in the format of ``python -m verification fidelity``
(verification/fidelity.py: its levels, floors, goals and CI ceilings from verification/fidelity.toml, one section
per decode set); ``FILE@FROZEN.json`` compares that set with frozen predictions.  `fidelity_sets` is the hook the
headline command can call to include decode sets.  Decode records have one ncu pass per case (no repeats: spread
0), and their time is ncu's kernel time (gpu__time_duration summed over the launches), predicted as
simulate_decode's GPU time.

Each FILE is a ``decode_ncu.json`` written by ``python -m verification.suite_decode measure`` on the GPU (the
fixed decode suite or a random draw, ``--random N --seed S``).  Every case is predicted now with
``memsim.workloads_decode.simulate_decode`` (L2 flushed before each kernel, as ncu does) and compared level by
level with the same error as the attention random sets: |predicted - measured| / max(measured, 1 MB or 5 us).
Writes ``report.md`` (per level: median and worst error; per case: signed errors) and ``bandwidth.png`` (KV
bytes read per second of kernel time, predicted and measured, against the KV cache size), atomically; existing
files are replaced only with ``--force``.  Every level is shown, with a note where the model's account of it is
partial (DRAM writes); ``dram_bytes`` is read + write, issue 12's "DRAM bytes".
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from memsim.io import OutputExistsError, write_atomic

from . import suite_decode as SD

FLOORS = {"time_s": 5e-6}
MB = 1 << 20
NOT_MODELLED = {"dram_write_bytes": "the partials' write-back and the ~2.4 MB ncu leaves dirty in the L2 (written once "
                                    "reads exceed the L2); partial write-back at 25-35 MB of reads not modelled",
                "dram_bytes": "read + write (issue 12: DRAM bytes within 5 %)"}


class DecodeReportError(ValueError):
    """Bad input to the decode report; the message says what and what is allowed."""


def error(pred: float, meas: float, level: str) -> float:
    return abs(pred - meas) / max(meas, FLOORS.get(level, MB))


def load_predictions(path) -> dict:
    from memsim.io import read_json  # plain or gzipped (committed evidence may be .json.gz)
    p = Path(path)
    try:
        data = read_json(p)
        data["predictions"]
    except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
        raise DecodeReportError(f"{p}: not a frozen-predictions file written by `python -m verification.suite_decode "
                                f"predict` ({type(e).__name__}: {e})") from None
    return data


def rows_for(files, predictions: dict | None = None) -> list[dict]:
    """Comparison rows of every case of every file (suite_decode.compare; frozen `predictions` if given),
    tagged with the file."""
    out = []
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise DecodeReportError(f"{p}: no such file (give decode_ncu.json files written by "
                                    f"`python -m verification.suite_decode measure`)")
        try:
            rows = SD.compare(str(p), predictions)
        except SD.FrozenMismatch as e:
            raise DecodeReportError(f"{p}: {e}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise DecodeReportError(f"{p}: not a decode_ncu.json ({type(e).__name__}: {e})") from None
        for r in rows:
            r["file"] = str(p)
        out += rows
    if not out:
        raise DecodeReportError("the files hold no decode cases")
    return out


def summary(rows) -> dict:
    """{level: {median, worst, worst_case, n}} over the cases that measured the level."""
    out = {}
    for lv in SD.LEVELS:
        errs = [(error(r[lv][0], r[lv][1], lv), r["case"]) for r in rows if r[lv][1] is not None]
        if not errs:
            continue
        worst = max(errs)
        out[lv] = {"median": statistics.median(e for e, _ in errs), "worst": worst[0], "worst_case": worst[1],
                   "n": len(errs)}
    return out


def bandwidth_figure(rows):
    """KV bytes read per second of kernel time against the KV cache size, measured and predicted."""
    from memsim.plots import _new_figure
    fig, (ax,) = _new_figure(1, 6.4, 4.0)
    xs = [r["kv_bytes"] / MB for r in rows]
    meas = [r["kv_bytes"] / r["time_s"][1] / 1e12 if r["time_s"][1] else None for r in rows]
    pred = [r["kv_bytes"] / r["time_s"][0] / 1e12 if r["time_s"][0] else None for r in rows]
    ax.scatter(xs, meas, marker="o", label="measured (ncu gpu__time_duration)", color="tab:blue")
    ax.scatter(xs, pred, marker="x", label="predicted (memsim)", color="tab:orange")
    for x, m, p in zip(xs, meas, pred):
        if m is not None and p is not None:
            ax.plot([x, x], [m, p], color="0.75", lw=0.8, zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel("KV cache read (MB)")
    ax.set_ylabel("KV bytes / kernel time (TB/s)")
    ax.set_title("decode: achieved KV read bandwidth, predicted vs measured")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def markdown(rows, summ, files, command: str, frozen: str | None = None) -> str:
    model = ("`memsim.workloads_decode.simulate_decode` now" if frozen is None else f"frozen predictions {frozen}")
    lines = ["# Decode: model vs ncu", "",
             f"Data: {', '.join(f'`{f}`' for f in files)}. Model: {model}, L2 "
             f"flushed before each kernel. Error = |predicted - measured| / max(measured, 1 MB or 5 us). "
             f"Command: `{command}`.", "",
             "| level | cases | median error | worst error (case) | note |", "| --- | --- | --- | --- | --- |"]
    for lv, s in summ.items():
        lines.append(f"| {lv} | {s['n']} | {100 * s['median']:.1f} % | {100 * s['worst']:.1f} % ({s['worst_case']}) | "
                     f"{NOT_MODELLED.get(lv, '')} |")
    lines += ["", "![bandwidth](bandwidth.png)", "", "Per case, signed error (predicted / measured - 1):", "",
              "| case | splits | KV MB | " + " | ".join(SD.LEVELS) + " |",
              "| --- | --- | --- | " + " | ".join("---" for _ in SD.LEVELS) + " |"]
    for r in rows:
        cells = [("n/a" if r[lv][2] is None else f"{100 * r[lv][2]:+.1f} %") for lv in SD.LEVELS]
        lines.append(f"| {r['case']} | {r['num_splits']} | {r['kv_bytes'] / MB:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fidelity_sets(specs, goals=None) -> list:
    """[(set name, file, rows, summary, frozen-predictions file or None)] for decode sets, with the headline's error
    definition, levels and goals (verification.fidelity: `case_levels`, `summarise`).  `specs`: decode_ncu.json
    paths, each optionally ``path@frozen_predictions.json``; ``committed`` stands for every committed decode set
    (verification.fidelity_decode.COMMITTED: frozen and now for the held-out ones)."""
    from . import fidelity as F
    from memsim.workloads_decode import simulate_decode
    goals = goals or F.load_goals()
    if "committed" in specs:
        from .fidelity_decode import committed_specs
        specs = [x for spec in specs for x in (committed_specs() if spec == "committed" else [spec])]
    out = []
    for spec in specs:
        path, _, frozen_path = str(spec).partition("@")
        p = Path(path)
        if not p.is_file():
            raise DecodeReportError(f"{p}: no such file (give decode_ncu.json files written by "
                                    f"`python -m verification.suite_decode measure`, optionally FILE@FROZEN.json)")
        frozen = load_predictions(frozen_path) if frozen_path else None
        try:
            data = json.loads(p.read_text())
            recs = data["records"]
            if not isinstance(recs, list) or not all(isinstance(r, dict) for r in recs):
                raise TypeError("'records' must be a list of objects (one per case)")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DecodeReportError(f"{p}: not a decode_ncu.json ({type(e).__name__}: {e})") from None
        rows, tags = [], set()
        for i, rec in enumerate(recs):
            try:
                c = SD.case_from_record(rec)
                tags.update(t for t in c.tags if t.startswith("seed"))
                pred = (SD._frozen(frozen, c) if frozen is not None
                        else simulate_decode(c.problem, c.schedule, c.hardware, flush_l2=True))
                total = dict(pred["total"], time_s=pred["total"]["gpu_time_s"])  # ncu kernel time: no host floor
                rows += F.case_levels(rec["case"], rec, {"total": total}, goals)
            except SD.FrozenMismatch as e:
                raise DecodeReportError(f"{p}: {e}") from None
            except (KeyError, TypeError, ValueError, AttributeError) as e:  # a record that is not a measured case
                raise DecodeReportError(f"{p}: record {i} ({rec.get('case', 'no case name')!r}) is not a measured "
                                        f"decode case ({type(e).__name__}: {e})") from None
        where = p.parent.name if p.name == "decode_ncu.json" else p.stem
        name = "decode " + (f"random {tags.pop()}" if len(tags) == 1 else where) + (" frozen" if frozen else "")
        out.append((name, str(p), rows, F.summarise(rows, goals), frozen_path or None))
    return out


def fidelity_markdown(sets, command: str) -> str:
    """The decode sets' sections, in the headline's table format (verification.fidelity.markdown)."""
    from . import fidelity as F
    md = ["# Model fidelity on decode case sets (issue 12)", "",
          "memsim `simulate_decode` on the h100-sxm preset; error = |predicted - measured| / max(measured, 1 MB or "
          "5 us), the headline's definition, levels and goals (verification/fidelity.toml; the CI ceilings shown are "
          "the attention sets'). One ncu pass per case (no repeats: spread 0); time = ncu kernel time. "
          f"Command: `{command}`.", ""]
    for name, path, rows, summ, frozen in sets:
        note = f"Data `{path}`. " + (f"Predictions: `{frozen}` (frozen before the set was measured)."
                                      if frozen else "Predicted by the model now (the set was used while developing it).")
        md.append(F.markdown(f"Set {name}", summ, rows, note=note))
    return "\n".join(md) + "\n"


def main(argv=None) -> int:
    from memsim.cli.errors import UsageError, check_out, make_parser
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = make_parser("verification.report_decode", prog="python -m verification.report_decode",
                     description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="decode_ncu.json files (suite_decode measure)")
    ap.add_argument("--out", required=True, help="folder for report.md and bandwidth.png")
    ap.add_argument("--force", action="store_true", help="replace an existing report")
    ap.add_argument("--predictions", default=None, help="frozen predictions (suite_decode predict) to compare")
    ap.add_argument("--fidelity", action="store_true",
                    help="write fidelity.md / fidelity.json in the headline's format (FILE@FROZEN.json per set)")
    a = ap.parse_args(argv)
    try:
        out = check_out(a.out, "--out", folder=True, example="reports/h100-sxm/decode/<set>")
        if a.fidelity:
            return _fidelity_main(a, out, argv)
        for n in ("report.md", "bandwidth.png"):
            if (out / n).exists() and not a.force:
                raise DecodeReportError(f"{out / n} already exists; pass --force to replace it")
        frozen = load_predictions(a.predictions) if a.predictions else None
        rows = rows_for(a.files, frozen)
        what = None
        if frozen is not None:
            prov = frozen.get("provenance", {})
            what = (f"`{a.predictions}` (model commit {prov.get('git_commit', '?')}, frozen "
                    f"{prov.get('date', '?')})")
        summ = summary(rows)
        from memsim.plots import png_bytes
        out.mkdir(parents=True, exist_ok=True)
        cmd = "python -m verification.report_decode " + " ".join(argv)
        write_atomic(out / "report.md", markdown(rows, summ, a.files, cmd, what), overwrite=a.force)
        write_atomic(out / "bandwidth.png", png_bytes(bandwidth_figure(rows)), overwrite=a.force)
        write_atomic(out / "rows.json", json.dumps({"command": cmd, "summary": summ, "rows": rows}, indent=1),
                     overwrite=a.force)
    except (DecodeReportError, OutputExistsError, UsageError) as e:
        print(f"verification.report_decode: error: {e}", file=sys.stderr)
        return 2
    for lv, s in summ.items():
        print(f"{lv:18s} median {100 * s['median']:6.1f} %  worst {100 * s['worst']:7.1f} %  ({s['worst_case']})")
    print(f"wrote {out / 'report.md'}")
    return 0


def _fidelity_main(a, out: Path, argv) -> int:
    from . import fidelity as F
    if a.predictions:
        raise DecodeReportError("with --fidelity give frozen predictions per set as FILE@FROZEN.json")
    for n in ("fidelity.md", "fidelity.json"):
        if (out / n).exists() and not a.force:
            raise DecodeReportError(f"{out / n} already exists; pass --force to replace it")
    sets = fidelity_sets(a.files)
    cmd = "python -m verification.report_decode " + " ".join(argv)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "fidelity.md", fidelity_markdown(sets, cmd), overwrite=a.force)
    js = {"command": cmd, "sets": {name: {"file": path, "frozen_predictions": frozen, **F.to_json(summ, rows)}
                                   for name, path, rows, summ, frozen in sets}}
    write_atomic(out / "fidelity.json", json.dumps(js, indent=1), overwrite=a.force)
    for name, _, _, summ, _ in sets:
        print(name + ": " + "; ".join(f"{k} {100 * v.median_error:.1f} / {100 * v.worst_error:.1f} %"
                                      for k, v in summ.items()))
    print(f"wrote {out / 'fidelity.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
