"""Random validation sets (issue 8 item 3): list, measure and unpack them.

    python -m verification.randomsets cases   --random 24 --seed 1 [--json]
    python -m verification.randomsets measure --random 24 --seed 1 --set A --repeats 3 \\
        --data-dir '/tmp/vdata/{gpu}/random/{set}' --bundle $OUT/random.tar.gz          (GPU machine)
    python -m verification.randomsets unpack  <bundle>                                   (here)

(the same as ``python -m verification cases/measure/validate --random N --seed S`` once wired.)

Records of a set live in ``verification/data/<gpu>/random/<set>/<case>.json``, set = ``<label>-seed<S>``
(e.g. ``A-seed1``); each record holds "set", "seed", "random_index" and, for a set measured to test a
frozen model, "model_commit" (the commit that predicted it: --model-commit, else `git rev-parse HEAD`
where git is available).  Every case is measured `--repeats` (>= 3) times in separate ncu and
timing processes: "repeats" keeps each, "total" the per-level median, "spread" (max-min)/median.
Stdlib only here (torch runs in the case runner).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

from . import records as R
from . import sampling as S

RANDOM_DIR = "random"
MIN_REPEATS = 3
#: the most cases one set may draw: a draw costs a few ms per case (1000 cases: about 4 s here) and the
#: sets measured so far hold 24 to 200; a larger N is a typo, refused before drawing
MAX_CASES = 5000


def draw_set(n, seed, label: str | None, hw: str = "h100-sxm") -> tuple[str, S.RandomSet]:
    """(set name, the drawn set) of --random N --seed S [--set LABEL]; ValueError (one line, naming the
    option) for N outside 1..MAX_CASES, a bad seed, an empty or odd label, or unknown hardware."""
    if isinstance(n, int) and not isinstance(n, bool) and n > MAX_CASES:
        raise ValueError(f"--random {n} is more than {MAX_CASES} cases (a draw costs a few ms per case; "
                         f"sets so far hold 24 to 200); give 1..{MAX_CASES}")
    if label is not None and not label.strip():
        raise ValueError("--set is empty; give a label such as A or B, or leave --set out (the set is then "
                         "seed<S>)")
    name = S.set_name_for(label, seed)
    return name, S.draw(n, seed, hardware=hw, set_name=name)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def set_dir(gpu_slug: str, set_name: str, root=R.DATA_ROOT) -> Path:
    return Path(root) / gpu_slug / RANDOM_DIR / set_name


def record_extra(rs: S.RandomSet, model_commit: str | None = None):
    """extra(case name) -> the fields every record of the set carries."""
    index = {c.name: i for i, c in enumerate(rs.cases)}

    def extra(name):
        d = {"set": rs.name, "seed": rs.seed, "random_index": index[name],
             "draw": {"n": len(rs.cases), "seed": rs.seed, "hardware": rs.hardware,
                      "sampler": "verification/sampling.py draw()"}}
        if model_commit:
            d["model_commit"] = model_commit
        return d
    return extra


def unmeasured(cases, data_dir, echo) -> list:
    """--resume (suite or random set): the cases with no record in data_dir yet, said with `echo`."""
    todo = [c for c in cases if not R.case_path(data_dir, c.name).exists()]
    echo(f"--resume: {len(cases) - len(todo)} of {len(cases)} case(s) already measured in {data_dir}; "
         f"{len(todo)} to measure")
    return todo


def measure_set(n: int, seed: int, *, label: str | None, repeats: int = MIN_REPEATS, hw: str = "h100-sxm",
                data_dir: str | None = None, model_commit: str | None = None, bundle_to=None, command: str = "",
                ncu_timeout_s: float = 200, time_timeout_s: float = 200, archive_old=False, echo=None,
                check_gpu=True, only=None, resume=False, keep_report=False, report_reader="csv") -> dict:
    """Draw the set and measure it (GPU machine); the summary of `measure.measure_cases`.  `only`: names or
    fnmatch patterns of the set's cases to measure (e.g. to complete a set whose run missed some); `resume`:
    only the cases with no record in the set's folder yet (an interrupted run goes on)."""
    from . import measure as M
    if repeats < MIN_REPEATS:
        raise ValueError(f"--repeats must be >= {MIN_REPEATS} for a random set (got {repeats}): the report "
                         f"compares with the median and shows the spread")
    _, rs = draw_set(n, seed, label, hw)
    if data_dir is None:
        d = set_dir(R.gpu_slug(M.gpu_name()), rs.name)
    else:
        d = Path(data_dir.replace("{set}", rs.name).replace("{gpu}", R.gpu_slug(M.gpu_name()))
                 if "{gpu}" in data_dir else data_dir.replace("{set}", rs.name))
    echo = echo or M._progress
    cases = list(rs.cases)
    if only:
        from fnmatch import fnmatchcase
        cases = [c for c in cases if any(fnmatchcase(c.name, pat) for pat in only)]
        if not cases:
            raise ValueError(f"--cases {' '.join(only)} matches none of set {rs.name}'s cases: "
                             f"{', '.join(c.name for c in rs.cases)}")
    if resume:
        cases = unmeasured(cases, d, echo)
        if not cases:
            return {"data_dir": str(d), "written": [], "failed": {}, "seconds": 0.0}
    echo(f"random set {rs.name}: {len(cases)} of {len(rs.cases)} case(s), {repeats} repeats, estimated kernel time "
         f"{rs.estimate_s * 1e3:.1f} ms per repeat (whole set) -> {d}")
    return M.measure_cases(cases, d, command=command, repeats=repeats, extra=record_extra(rs, model_commit),
                           bundle_to=bundle_to, ncu_timeout_s=ncu_timeout_s, time_timeout_s=time_timeout_s,
                           archive_old=archive_old, echo=echo, check_gpu=check_gpu, keep_report=keep_report,
                           report_reader=report_reader)


def unpack(bundle_path, root=R.DATA_ROOT, *, gpu_slug: str | None = None, archive_old=False) -> tuple[Path, list]:
    """A random set's bundle (members <set>/<case>.json, <set>/raw/*) -> root/<gpu>/random/<set>/.
    The GPU comes from the records' provenance unless given; existing records are never replaced."""
    bp = Path(bundle_path)
    if not bp.is_file():
        raise R.DataError(f"bundle {bp} does not exist")
    slug = gpu_slug
    if slug is None:
        try:
            with tarfile.open(bp, "r:gz") as tar:
                for m in tar.getmembers():
                    if m.isfile() and m.name.count("/") == 1 and m.name.endswith(".json"):
                        rec = json.loads(tar.extractfile(m).read())
                        slug = R.gpu_slug(rec["provenance"]["gpu"])
                        break
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise R.DataError(f"{bp}: not a readable .tar.gz bundle ({type(e).__name__}: {e}); make it with "
                              f"`measure --random ... --bundle`") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # a bad record: R.unpack names it; without a GPU name the folder is unknown (below)
    if slug is None:
        raise R.DataError(f"{bp}: no record with a provenance.gpu to name the GPU folder; pass gpu_slug")
    return R.unpack(bp, Path(root) / slug / RANDOM_DIR, archive_old=archive_old)


def print_set(rs: S.RandomSet, as_json: bool = False) -> None:
    """The cases of a drawn set: one line each (a summary on stderr), or JSON."""
    if as_json:
        print(json.dumps({"set": rs.name, "seed": rs.seed, "hardware": rs.hardware, "rejected": rs.rejected,
                          "estimate_s": rs.estimate_s,
                          "cases": [{**c.to_spec(), "tags": list(c.tags), "io_bytes": c.io_bytes()}
                                    for c in rs.cases]}, indent=1))
        return
    for c in rs.cases:
        print(S.describe(c))
    print(f"{len(rs.cases)} case(s) in set {rs.name}; rejected draws: {rs.rejected}; estimated kernel "
          f"time {rs.estimate_s * 1e3:.1f} ms", file=sys.stderr)


def add_atomic_bytes(path: Path) -> bool:
    """Re-derive a stored record's global write bytes with the global reductions / atomics its launches made
    (`verification.ncu.atomic_bytes`, from the ncu counters the record keeps), as `launch_record` now counts
    them.  Rewrites the record atomically; False when it already has them or none of its launches has any.
    Every repeat's counters give the same bytes (byte counts have no spread), so the totals add the same sum."""
    from memsim.io import write_json

    from .ncu import atomic_bytes
    rec = json.loads(Path(path).read_text())
    if any("global_atomic_bytes" in k for k in rec.get("kernels", [])):
        return False
    adds = [atomic_bytes(k.get("metrics", {})) or 0.0 for k in rec.get("kernels", [])]
    if not any(adds):
        return False
    for k, a in zip(rec["kernels"], adds):
        k["global_atomic_bytes"] = a
        k["global_write_bytes"] = (k.get("global_write_bytes") or 0.0) + a
    for rep in rec.get("repeats", []):
        for k, a in zip(rep.get("kernels", []), adds):
            k["global_write_bytes"] = (k.get("global_write_bytes") or 0.0) + a
        if rep.get("total", {}).get("global_write_bytes") is not None:
            rep["total"]["global_write_bytes"] += sum(adds)
    rec["total"]["global_write_bytes"] = (rec["total"].get("global_write_bytes") or 0.0) + sum(adds)
    rec.setdefault("provenance", {})["rederived"] = (
        "global_write_bytes += global reductions/atomics (verification.ncu.atomic_bytes: l1tex__t_bytes minus "
        "global and local LSU ld/st), python -m verification.randomsets atomics, 2026-11-26")
    write_json(path, rec, overwrite=True)
    return True


def main(argv=None) -> int:
    from memsim.cli.errors import make_parser, run_cli
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = make_parser("verification.randomsets", prog="python -m verification.randomsets", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("cases", "measure"):
        p = sub.add_parser(name)
        p.add_argument("--random", type=int, required=True, metavar="N", help="number of cases")
        p.add_argument("--seed", type=int, required=True)
        p.add_argument("--hw", default="h100-sxm")
        p.add_argument("--set", dest="label", help="set label, e.g. A or B (the set is <label>-seed<S>)")
        if name == "cases":
            p.add_argument("--json", action="store_true")
        else:
            p.add_argument("--repeats", type=int, default=MIN_REPEATS)
            p.add_argument("--data-dir", help="default verification/data/<gpu>/random/<set>; {gpu} and {set} "
                                              "are filled in")
            p.add_argument("--model-commit", help="the commit whose model predicted this set (set B); default: "
                                                  "none recorded")
            p.add_argument("--bundle", help="also write the records into this .tar.gz (to carry back)")
            p.add_argument("--ncu-timeout", type=float, default=200, help="seconds per ncu pass over the set")
            p.add_argument("--time-timeout", type=float, default=200, help="seconds per timing pass")
            p.add_argument("--archive-old", action="store_true")
            p.add_argument("--resume", action="store_true", help="measure only the cases with no record yet")
    p = sub.add_parser("unpack")
    p.add_argument("bundle")
    p.add_argument("--archive-old", action="store_true")
    p = sub.add_parser("atomics", help="add the global reductions/atomics of stored records to their global "
                                      "write bytes (records measured before ncu.launch_record counted them)")
    p.add_argument("folders", nargs="+", help="random-set folders of <case>.json records")
    a = ap.parse_args(argv)

    def run() -> int:
        if a.cmd == "cases":
            print_set(draw_set(a.random, a.seed, a.label, a.hw)[1], a.json)
            return 0
        if a.cmd == "measure":
            cmd = "python -m verification.randomsets " + " ".join(shlex.quote(x) for x in argv)
            summ = measure_set(a.random, a.seed, label=a.label, repeats=a.repeats, hw=a.hw, data_dir=a.data_dir,
                               model_commit=a.model_commit, bundle_to=a.bundle, command=cmd,
                               ncu_timeout_s=a.ncu_timeout, time_timeout_s=a.time_timeout,
                               archive_old=a.archive_old, resume=a.resume)
            return 0 if not summ["failed"] else 1
        if a.cmd == "atomics":
            files = [f for d in a.folders for f in sorted(Path(d).glob("*.json"))]
            if not files:
                raise ValueError(f"no <case>.json records in {', '.join(a.folders)}")
            changed = [f.name for f in files if add_atomic_bytes(f)]
            print(f"{len(changed)} of {len(files)} record(s) re-derived: {', '.join(changed) or '-'}", file=sys.stderr)
            return 0
        d, cases = unpack(a.bundle, archive_old=a.archive_old)
        print(f"unpacked {len(cases)} record(s) into {d}", file=sys.stderr)
        return 0
    return run_cli("verification.randomsets", run, errors=(ValueError, FileExistsError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
