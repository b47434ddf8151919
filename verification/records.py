"""Measurements as data: one JSON record per case in verification/data/<gpu-slug>/<case>.json.

Record shape (DESIGN.md "One record shape"): the model's keys per launch ("kernels") and
summed ("total"), plus "case", "problem", "schedule" (AttentionProblem(**d) rebuilds them),
"hardware" (preset name), "tags", "timing" and "provenance" (gpu, driver, cuda, torch,
triton, ncu versions, date, exact command).

No-overwrite policy: a record is written atomically (memsim.io.write_json) and never
replaces an existing file.  `measure`/`unpack` check *before* measuring and refuse when a
case's file exists, naming the files; with --archive-old the old files are first moved (not
deleted) to <data dir>/archive/<UTC stamp>/, so the newest run is always <case>.json and
every older one is kept.  Only files directly in the data dir are loaded.

Stdlib only.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import math
import shutil
import tarfile
from pathlib import Path

from memsim.io import OutputExistsError, gpu_slug, write_atomic, write_json  # noqa: F401  (gpu_slug: the one slug rule)

FORMAT = "verification.measurement/1"
DATA_ROOT = Path(__file__).resolve().parent / "data"
RAW_DIR = "raw"
ARCHIVE_DIR = "archive"


class DataError(ValueError):
    """A data dir or record that cannot be used; the message says which and why."""


def utc_stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def case_path(data_dir, case: str) -> Path:
    return Path(data_dir) / f"{case}.json"


def existing(data_dir, cases) -> list[Path]:
    return [p for p in (case_path(data_dir, c) for c in cases) if p.exists()]


def check_free(data_dir, cases, *, archive_old: bool = False) -> Path | None:
    """Refuse (OutputExistsError) if any case already has a record, unless archive_old:
    then move those records to <data_dir>/archive/<stamp>/ and return that folder."""
    old = existing(data_dir, cases)
    if not old:
        return None
    if not archive_old:
        names = ", ".join(p.name for p in old[:5]) + (f" and {len(old) - 5} more" if len(old) > 5 else "")
        raise OutputExistsError(
            f"{data_dir} already holds measurements of {len(old)} of these cases ({names}); nothing was measured. "
            f"Pass --archive-old to move them to {Path(data_dir) / ARCHIVE_DIR}/<date>/ first, or --data-dir "
            f"to write elsewhere")
    dest = Path(data_dir) / ARCHIVE_DIR / utc_stamp()
    dest.mkdir(parents=True, exist_ok=False)
    for p in old:
        shutil.move(str(p), dest / p.name)
    return dest


def save_record(data_dir, rec: dict) -> Path:
    """Write one record atomically; never replaces an existing file."""
    validate_record(rec)
    return write_json(case_path(data_dir, rec["case"]), rec, overwrite=False)


_REQUIRED = ("case", "problem", "schedule", "hardware", "kernels", "total", "provenance")
#: the measured quantities of the record shape; present ones must be finite and positive
MEASURED_KEYS = ("global_read_bytes", "global_write_bytes", "l2_read_bytes", "l2_write_bytes", "dram_read_bytes",
                 "dram_write_bytes", "time_s")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_record(rec, where: str = "record") -> dict:
    """The record, or DataError naming `where` and what is wrong: not an object, missing keys, a
    problem/schedule that does not rebuild, launches that are not objects, a measured total that is
    not a finite positive number (NaN, zero, negative or a string is bad data, never a model miss)."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: a measurement must be a JSON object, got {type(rec).__name__}")
    missing = [k for k in _REQUIRED if k not in rec]
    if missing:
        raise DataError(f"{where}: missing key(s) {missing}; a measurement needs {list(_REQUIRED)}")
    if not isinstance(rec["case"], str) or not rec["case"].strip():
        raise DataError(f"{where}: 'case' must be a non-empty string, got {rec['case']!r}")
    from memsim.schedule import ScheduleError, problem_from_dict, schedule_from_dict
    for key, build in (("problem", problem_from_dict), ("schedule", schedule_from_dict)):
        if not isinstance(rec[key], dict):
            raise DataError(f"{where}: '{key}' must be an object of fields, got {type(rec[key]).__name__}")
        try:
            build(rec[key])
        except (ScheduleError, TypeError, ValueError) as e:
            raise DataError(f"{where}: bad '{key}': {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(rec["kernels"], list) or not rec["kernels"]:
        raise DataError(f"{where}: 'kernels' must be a non-empty list of launches")
    if not all(isinstance(k, dict) for k in rec["kernels"]):
        raise DataError(f"{where}: every entry of 'kernels' must be an object (a launch)")
    total = rec["total"]
    if not isinstance(total, dict):
        raise DataError(f"{where}: 'total' must be an object of measured sums, got {type(total).__name__}")
    for k in MEASURED_KEYS:
        v = total.get(k)
        if v is None:
            continue  # not counted: the comparison reports it as missing
        # zero bytes is a real count (outputs that stay dirty in L2 write 0 B to DRAM inside the kernel)
        if not _is_number(v) or not math.isfinite(v) or v < 0 or (v == 0 and k == "time_s"):
            raise DataError(f"{where}: total.{k} = {v!r} is not a measurement (a finite number, >= 0 for bytes, "
                            f"> 0 for time); fix or remove the record")
    return rec


def read_record(path) -> dict:
    """One record file, validated; DataError (naming the file) when it is unreadable or bad."""
    f = Path(path)
    try:
        rec = json.loads(f.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{f}: not UTF-8 text (byte {e.start}); a measurement is a JSON file") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{f}: not valid JSON ({e})") from None
    except OSError as e:
        raise DataError(f"{f}: cannot be read ({e.strerror or e})") from None
    return validate_record(rec, str(f))


def load_records(data_dir) -> list[dict]:
    """All records directly in `data_dir` (sorted by case name)."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"data dir {d} does not exist; measure first (python -m verification measure) or pass "
                        f"--data verification/data/<gpu>")
    files = sorted(d.glob("*.json"))
    if not files:
        raise DataError(f"data dir {d} holds no <case>.json measurements")
    return [read_record(f) for f in files]


def gpu_dirs(root=DATA_ROOT, contains: str = "") -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and contains in p.name and any(p.glob("*.json")))


# --- provenance ------------------------------------------------------------------------
def gpu_provenance(command: str, ncu_version: str | None) -> dict:
    """GPU, driver, CUDA, torch, triton (kernels.device_info.provenance, shared with the
    benchmarks) + the ncu version; without the kernels package, the stdlib facts and a note."""
    try:
        from kernels.device_info import provenance
        prov = provenance(command)
    except Exception as e:  # pragma: no cover - no torch/triton in this process
        from memsim.io import base_provenance, nvidia_smi
        prov = base_provenance(command)
        prov["provenance_note"] = f"kernels.device_info unavailable ({type(e).__name__}: {e})"
        prov.update(gpu=nvidia_smi("name"), driver=nvidia_smi("driver_version"))
    prov["ncu"] = ncu_version
    return prov


# --- bundles (one file to carry back from the GPU machine) ------------------------------
def bundle(data_dir, dest, cases=None) -> Path:
    """Write <data_dir>'s records (and raw/ logs) into one .tar.gz at `dest` (atomically,
    replacing an older bundle of this run).  Members are <slug>/<file>."""
    d = Path(data_dir)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(d.glob("*.json")):
            if cases is None or f.stem in cases:
                tar.add(f, arcname=f"{d.name}/{f.name}")
        raw = d / RAW_DIR
        if raw.is_dir():
            for f in sorted(raw.iterdir()):
                if f.is_file():
                    tar.add(f, arcname=f"{d.name}/{RAW_DIR}/{f.name}")
    return write_atomic(dest, buf.getvalue(), overwrite=True)


def _read_bundle(bp: Path) -> list[tuple[str, bytes]]:
    """(member name, bytes) of every file in the bundle; DataError for anything unreadable."""
    import zlib
    try:
        with tarfile.open(bp, "r:gz") as tar:
            out = []
            for m in tar.getmembers():
                if m.isfile():
                    out.append((m.name, tar.extractfile(m).read()))
                elif not m.isdir():
                    raise DataError(f"{bp}: member {m.name!r} is not a plain file (links are refused)")
            return out
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{bp}: not a readable .tar.gz bundle ({type(e).__name__}: {e}); "
                        f"make it with `measure --bundle`") from None


def unpack(bundle_path, root=DATA_ROOT, *, archive_old: bool = False) -> tuple[Path, list[str]]:
    """Extract a bundle into root/<slug>/.  Everything is checked before anything is written: the
    archive reads, members are <slug>/<case>.json or <slug>/raw/<file> under one slug, no name twice,
    every record is valid JSON and a valid measurement, and no case file exists there (unless
    archive_old).  Returns (the gpu dir, the case names)."""
    bp = Path(bundle_path)
    if not bp.is_file():
        raise DataError(f"bundle {bp} does not exist")
    members = _read_bundle(bp)
    if not members:
        raise DataError(f"{bp}: the bundle holds no files")
    seen = set()
    for name, _ in members:
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or any(not x for x in parts):
            raise DataError(f"{bp}: refusing odd member path {name!r}")
        if len(parts) == 1:
            raise DataError(f"{bp}: member {name!r} is not inside a <gpu>/ folder")
        if len(parts) > 3 or (len(parts) == 3 and parts[1] != RAW_DIR):
            raise DataError(f"{bp}: refusing odd member path {name!r}; expected <gpu>/<case>.json or "
                            f"<gpu>/{RAW_DIR}/<file>")
        if name in seen:
            raise DataError(f"{bp}: member {name!r} appears twice; nothing was written")
        seen.add(name)
    slugs = {name.split("/", 1)[0] for name, _ in members}
    if len(slugs) != 1:
        raise DataError(f"{bp}: expected one <gpu>/ folder, found {sorted(slugs)}")
    slug = slugs.pop()
    cases = []
    for name, data in members:
        parts = name.split("/")
        if len(parts) == 2 and name.endswith(".json"):
            case = parts[1][:-5]
            if not case.strip():
                raise DataError(f"{bp}: member {name!r} has an empty case name")
            where = f"{bp}:{name}"
            try:
                rec = json.loads(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise DataError(f"{where}: not UTF-8 text") from None
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e})") from None
            validate_record(rec, where)
            if rec["case"] != case:
                raise DataError(f"{where}: the record says case {rec['case']!r}, the file name {case!r}")
            cases.append(case)
    dest = Path(root) / slug
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{dest} exists and is not a folder")
    check_free(dest, cases, archive_old=archive_old)
    for name, data in members:
        target = Path(root) / name
        if target.exists() and RAW_DIR in target.parts:
            target = target.with_name(f"{target.stem}.{utc_stamp()}{target.suffix}")
        write_atomic(target, data, overwrite=False)
    return dest, sorted(cases)
