"""Predict every case of one or more random-set folders (verification/data/<gpu>/random/<set>), compare with the
median of the measured repeats: error = |pred - median| / max(median, 1 MB or 5 us). Writes <out>/fidelity.md
and fidelity.json (refuses to replace them without --force). --write-ceilings sets each level's CI ceiling in
verification/fidelity.toml to max(goal, max over cases of error + that case's measured spread) over the given
sets.
"""
from __future__ import annotations

import re
from pathlib import Path

from memsim.calibration import host_floor_for, host_pass_paths

from . import common as C

NAME = "fidelity"
SUMMARY = "headline errors on random sets (median over repeats, spread beside them); --write-ceilings"


def add_arguments(p):
    p.add_argument("--data", nargs="+", help="random-set folder(s) of <case>.json records")
    C.add_hw(p, "memsim preset to predict with (default h100-sxm)")
    C.add_out(p, "folder for fidelity.md / fidelity.json (default: print only)",
              "replace existing fidelity.md / fidelity.json (and the --freeze file)")
    p.add_argument("--write-ceilings", action="store_true", help="set the CI ceilings in verification/fidelity.toml")
    C.add_json(p, "print JSON instead of the markdown")
    p.add_argument("--launches", action="store_true",
                   help="also report every launch: the model's kernel time against ncu's, worst first (where in "
                        "a case the model misses)")
    p.add_argument("--predictions", help="compare with these stored predictions (written by --freeze before the "
                                         "set was measured) instead of predicting now")
    p.add_argument("--host-pass", metavar="CALIBRATION",
                   help="with --predictions: a calibration file with the host_pass fact measured on the machine that "
                        "measured the set (same call); each stored prediction's host floor is replaced by it and its "
                        "time recomputed by the model's own rule, time = max(GPU time, host floor). The host floor "
                        "differs between machines of one kind by up to 10x: it is a fact of the machine, not of the "
                        "model")
    p.add_argument("--freeze", metavar="FILE",
                   help="predict the cases of a random set BEFORE measuring them and write FILE (with the git "
                        "commit of the model); give the set as --random N --seed S [--set L]; needs no data")
    p.add_argument("--random", type=int, help="with --freeze: the number of cases of the set")
    p.add_argument("--seed", type=int, help="with --freeze: the seed of the set")
    p.add_argument("--set", dest="set_label", help="with --freeze: the set label (e.g. B)")
    p.add_argument("--decode", nargs="+", metavar="FILE[@FROZEN]",
                   help="decode_ncu.json files (verification.suite_decode measure) reported beside the random sets with "
                        "the same error definition and goals; FILE@FROZEN.json compares with frozen predictions "
                        "(verification.report_decode.fidelity_sets)")


def _set_name(dirpath: Path, recs: list[dict]) -> str:
    names = {r.get("set") for r in recs if r.get("set")}
    return names.pop() if len(names) == 1 else dirpath.name


def _git_commit() -> str | None:
    """The model's commit (randomsets.git_commit), marked when memsim/ has uncommitted changes."""
    import subprocess
    from ..randomsets import git_commit
    commit = git_commit()
    if commit is None:
        return None
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "memsim"], capture_output=True, text=True,
                               timeout=10, cwd=Path(__file__).resolve().parents[2]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return commit + (" (memsim/ modified)" if dirty else "")


def freeze(a) -> int:
    """Predict a random set before it is measured; write the predictions with the model's commit."""
    from memsim.io import OutputExistsError, write_json
    from ..report import memsim_predictor
    if a.random is None or a.seed is None:
        raise C.UsageError("--freeze needs --random N and --seed S (the set to predict)")
    C.check_out(a.freeze, "--freeze", folder=False, example="reports/h100-sxm/random/B-frozen.json")
    if Path(a.freeze).exists() and not a.force:
        raise C.UsageError(f"{a.freeze} already exists; pass --force to replace it, or choose another --freeze file")
    name, rs = C.draw_set(a.random, a.seed, a.set_label, a.hw)
    predict = memsim_predictor(a.hw, max_seconds=None)  # a held-out case is predicted however long it takes
    out = {"set": name, "seed": a.seed, "hardware": a.hw, "model_commit": _git_commit(),
           "command": C.command_line(a.argv), "predictions": {}}
    for c in rs.cases:
        C.echo(f"predicting {c.name}")
        out["predictions"][c.name] = predict(c)
    try:
        write_json(a.freeze, out, overwrite=a.force)
    except OutputExistsError as e:
        raise C.UsageError(str(e)) from None
    print(f"{len(rs.cases)} predictions of set {name} by model commit {out['model_commit']} -> {a.freeze}")
    return 0


#: where a random set keeps the host_pass calibration measured on its machine, in the same device call
HOST_PASS_FILE = "raw/host_pass.calibration.json"


def rehost(predictions: dict, calibration_file) -> dict:
    """Stored predictions with each pass's host floor replaced by `calibration_file`'s host_pass fact (the
    machine that measured the set), time = max(gpu_time_s, host floor) as `memsim.sim` computes it."""
    import copy
    import json
    try:
        facts = json.loads(Path(calibration_file).read_text(encoding="utf-8"))["facts"]["host_pass"]
        floor = {(r["algorithm"], r["phase"]): float(r["time_s_median"]) for r in facts}
        paths = host_pass_paths(facts)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise C.UsageError(f"--host-pass {calibration_file}: not a calibration file with the host_pass fact "
                           f"({type(e).__name__}: {e}); write one with `python -m verification calibrate --facts "
                           f"host_pass --out FILE` on the measuring machine") from None
    out = {}
    for name, pred in predictions.items():
        # the floor of the pass's launch path (memsim.calibration.host_floor_for); not measured for this algorithm:
        # the model's own fallback (launches x host cost)
        t = host_floor_for(floor, paths, pred["schedule"]["algorithm"], pred["schedule"]["phase"], _names(pred))
        out[name] = with_host_floor(pred, t) if t is not None else copy.deepcopy(pred)
    return out


def _names(pred: dict) -> list | None:
    """The launch names of a prediction (None: it lists none)."""
    names = [k.get("name") for k in pred.get("kernels", [])]
    return names if names and all(names) else None


def beside_applies(rec: dict, pred: dict) -> bool:
    """Whether the host floor timed beside a record's case (total.host_pass_s) is of the case's launch path: the
    record names the point it timed (host_pass_id), or -- records before it did -- the point of its (algorithm,
    phase), and that point makes the launches the case makes."""
    from memsim.calibration import host_pass_params
    from verification.calibrate import host_pass_point
    sch = rec.get("schedule") or {}
    pid = rec.get("host_pass_id")
    if pid is None:
        pt = host_pass_point(sch.get("algorithm"), sch.get("phase"))
        pid = pt["id"] if pt else None
    if pid is None:
        return False
    paths = host_pass_paths([dict(host_pass_params({"id": pid}), id=pid)])
    names = _names(pred)
    return names is None or not paths or tuple(names) in paths.values()


def with_host_floor(pred: dict, floor_s: float) -> dict:
    """A copy of `pred` with the pass's host floor set to `floor_s`: time = max(gpu_time_s, host floor), as
    `memsim.sim` computes it, and the binding limit again."""
    import copy

    from memsim.limits import pass_binding
    p = copy.deepcopy(pred)
    t = p["total"]
    t["host_time_s"] = float(floor_s)
    t["time_s"] = max(t["gpu_time_s"], t["host_time_s"])
    if "binding_limit" in t:
        t["binding_limit"] = pass_binding(p.get("kernels", []), t["gpu_time_s"], t["host_time_s"])
    return p


def evaluate(data_dirs, hw: str, goals=None, predictions: dict | None = None, keep: list | None = None):
    """[(set name, folder, rows, summary, model commits, {case: binding limit})] for each folder (stored
    predictions if given).  `keep`: a list that receives (folder, record, prediction) of every case."""
    from .. import fidelity as F
    from .. import records as R
    from ..report import memsim_predictor
    from ..suite import case_from_record
    goals = goals or F.load_goals()
    live = memsim_predictor(hw, max_seconds=None)  # every committed case, however long it takes

    def predict(case):
        if predictions is not None:
            if case.name not in predictions:
                raise C.UsageError(f"the stored predictions have no case {case.name}")
            return predictions[case.name]
        return live(case)
    out = []
    for d in data_dirs:
        d = Path(d)
        try:
            recs = R.load_records(d)
        except R.DataError as e:
            raise C.UsageError(str(e)) from None
        # the host floor is a fact of the machine that measured the set: where the set keeps the host_pass
        # measured in the same device call (raw/host_pass.calibration.json), live predictions use it
        host = d / HOST_PASS_FILE
        rows = []
        bindings = {}
        for rec in recs:
            pred = predict(case_from_record(rec))
            if predictions is None and host.is_file():
                pred = rehost({rec["case"]: pred}, host)[rec["case"]]
            tot = rec.get("total") or {}
            # the host's time to issue the launches: back to back where measured so (since 2026-11-27)
            beside = tot.get("host_pass_b2b_s", tot.get("host_pass_s"))
            if beside is not None and "gpu_time_s" in (pred.get("total") or {}) and beside_applies(rec, pred):
                # the floor timed beside the case in its own timing processes wins over the set's calibrate run
                pred = with_host_floor(pred, beside)
            bindings[rec["case"]] = (pred.get("total") or {}).get("binding_limit", "?")
            if keep is not None:
                keep.append((d, rec, pred))
            rows += F.case_levels(rec["case"], rec, pred, goals)
        commits = sorted({r.get("model_commit") for r in recs if r.get("model_commit")})
        out.append((_set_name(d, recs), d, rows, F.summarise(rows, goals), commits, bindings))
    return out


def _write_ceilings(path: Path, ceilings: dict) -> list[str]:
    """Set (or replace) the ceiling_worst line of each [levels.<name>] table of the goals file, atomically."""
    from memsim.io import write_atomic
    lines = path.read_text(encoding="utf-8").splitlines()
    out, changed, level = [], [], None

    def close(level):
        if level in ceilings:
            out.append(f"ceiling_worst = {ceilings[level]}")
            changed.append(f"{level}: ceiling_worst = {ceilings[level]}")

    for ln in lines:
        m = re.match(r"^\[levels\.([A-Za-z0-9_]+)\]\s*$", ln)
        if m or (ln.startswith("[") and level is not None):
            if level is not None:
                while out and not out[-1].strip():
                    out.pop()
                close(level)
                out.append("")
            level = m.group(1) if m else None
            out.append(ln)
            continue
        if level in ceilings and re.match(r"^ceiling_worst\s*=", ln):
            continue  # replaced at the end of the table
        out.append(ln)
    if level is not None:
        while out and not out[-1].strip():
            out.pop()
        close(level)
    write_atomic(path, "\n".join(out) + "\n", overwrite=True)
    return changed


def run(a):
    from .. import fidelity as F
    from memsim.io import OutputExistsError, write_atomic, write_json
    C.check_preset(a.hw)
    if a.freeze is not None:
        return freeze(a)
    if not a.data:
        raise C.UsageError("give --data <random-set folder> ... (or --freeze FILE --random N --seed S)")
    for d in a.data:
        C.check_data(d)
    stored = None
    if a.predictions:
        from memsim.io import read_json
        try:  # plain or gzipped (the committed ones are reports/h100-sxm/random/*.predictions*.json.gz)
            stored = read_json(a.predictions)["predictions"]
        except (OSError, EOFError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise C.UsageError(f"{a.predictions}: not a predictions file written by --freeze ({e})") from None
        if a.host_pass:
            stored = rehost(stored, a.host_pass)
    elif a.host_pass:
        raise C.UsageError("--host-pass applies to stored predictions: give --predictions FILE too")
    try:
        goals = F.load_goals()
    except F.FidelityError as e:
        raise C.UsageError(str(e)) from None
    out_dir = None if a.out is None else C.check_out(a.out, "--out", folder=True, example="reports/h100-sxm/random")
    if out_dir is not None:
        for n in ("fidelity.md", "fidelity.json"):
            if (out_dir / n).exists() and not a.force:
                raise C.UsageError(f"{out_dir / n} already exists; pass --force to replace it")
    dsets = []
    if a.decode:  # read (and refused) before the random sets are predicted, which may take minutes
        from ..report_decode import DecodeReportError, fidelity_sets
        if not all(str(x).strip() for x in a.decode):
            raise C.UsageError("--decode has an empty file name; give decode_ncu.json files (FILE or FILE@FROZEN)")
        try:
            dsets = fidelity_sets(a.decode, goals)
        except DecodeReportError as e:
            raise C.UsageError(str(e)) from None
    kept = [] if a.launches else None
    sets = evaluate(a.data, a.hw, goals, stored, keep=kept)
    md = ["# Model fidelity on random case sets", "",
          f"memsim preset `{a.hw}`; error = |predicted - median measured| / max(median measured, 1 MB or 5 us); "
          "a prediction between the smallest and largest measured repeat is *inside the spread*. "
          f"Command: `{C.command_line(a.argv)}`.", ""]
    js = {"hardware": a.hw, "command": C.command_line(a.argv), "sets": {}}
    for name, d, rows, summ, commits, bindings in sets:
        note = f"Folder `{d}`."
        if commits:
            note += f" Measured with model commit(s) {', '.join(commits)} recorded before measuring."
        if stored is not None:
            note += f" Predictions: `{a.predictions}` (written before the set was measured)."
        if a.host_pass:
            note += (f" Host floors replaced by the measuring machine's `host_pass` from `{a.host_pass}` "
                     f"(time = max(GPU time, host floor), the model's rule; GPU predictions unchanged).")
        md.append(F.markdown(f"Set {name}", summ, rows, note=note, bindings=bindings))
        js["sets"][name] = {"folder": str(d), "model_commits": commits, **F.to_json(summ, rows)}
        if kept is not None:
            lrows = [r for dd, rec, pred in kept if dd == d for r in F.launch_rows(rec["case"], rec, pred)]
            md.append(F.launches_markdown(f"Set {name}", lrows))
            js["sets"][name]["launches"] = [r.__dict__ for r in lrows]
    for name, path, rows, summ, frozen in dsets:
        note = (f"Decode data `{path}`; " + (f"predictions `{frozen}` (frozen before it was measured)" if frozen
                                             else "predicted now") + "; one ncu pass per case, time = ncu kernel time.")
        md.append(F.markdown(f"Set {name}", summ, rows, note=note))
        js["sets"][name] = {"folder": path, "model_commits": [], **F.to_json(summ, rows)}
    text = "\n".join(md) + "\n"
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            write_atomic(out_dir / "fidelity.md", text, overwrite=a.force)
            write_json(out_dir / "fidelity.json", js, overwrite=a.force)
        except OutputExistsError as e:
            raise C.UsageError(str(e)) from None
    if a.write_ceilings:
        worst = {}
        for _, _, _, summ, _, _ in sets:
            for k, s in summ.items():
                worst[k] = max(worst.get(k, 0.0), s.proposed_ceiling)
        for line in _write_ceilings(F.GOALS_FILE, worst):
            print(line)
    if a.json:
        C.print_json(js)
    else:
        print(text)
    bad = [b for _, _, _, summ, _, _ in sets for b in F.check_ceilings(summ)]
    for b in bad:
        C.echo(b)
    return 1 if bad else 0
