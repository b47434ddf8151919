"""Where a sweep's results live on disk: a streamed journal, then a published set (stdlib only).

- ``PREFIX.partial.jsonl``: line 1 is a header naming the sweep (its spec and fingerprint); each
  further line is one finished point, appended and flushed as it arrives by the one process that
  runs the sweep, which holds an exclusive lock on the file (a second run on the same prefix is
  refused, never mixed in).  A line cut short by a crash is dropped on resume.
- The set: ``PREFIX.csv``, ``PREFIX.json`` and, when pandas and a Parquet engine are installed,
  ``PREFIX.parquet``, plus the caller's extra files (the CLI's ``PREFIX.png``).  Publishing stages
  every file completely (written and synced) before any is renamed into place, and records the
  renames in ``PREFIX.publish.json`` first: a run that dies during the renames is completed by the
  next one (`recover_publish`), so readers see the old set or the new set, never a mix.  Nothing
  is replaced unless asked (`overwrite`).
- Every file is created with mode 0666 less the umask, like any file a user creates.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import secrets
from pathlib import Path

JOURNAL_KIND = "memsim-sweep-journal"
SET_SUFFIXES = ("csv", "json", "parquet")


def set_paths(prefix) -> dict[str, Path]:
    """The files of a sweep named `prefix` (refused: '', a folder, '.', '..')."""
    from .sweep import SweepError
    text = str(prefix)
    name = Path(text).name if text.strip() else ""
    if not name or text.endswith(("/", "\\")) or name in (".", ".."):
        raise SweepError(f"the output must be a file prefix such as sweeps/l2 (writes sweeps/l2.csv, .json, ...), "
                         f"got {text!r}")
    p = Path(text)
    paths = {s: p.with_name(f"{p.name}.{s}") for s in SET_SUFFIXES}
    paths["journal"] = p.with_name(f"{p.name}.partial.jsonl")
    paths["intent"] = p.with_name(f"{p.name}.publish.json")
    return paths


def _create(path: Path, flags: int) -> int:
    """os.open with mode 0666: the process umask decides the permissions, as for any user file."""
    return os.open(path, flags, 0o666)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Journal:
    """The append-only, locked stream of finished points of one sweep."""

    def __init__(self, path: Path, f, rows: dict):
        self.path, self._f, self.rows = path, f, rows

    @classmethod
    def open(cls, path, spec, *, resume: bool, force: bool, outputs: dict) -> "Journal":
        import fcntl

        from .sweep import SweepError
        path = Path(path)
        if not force:
            for s in SET_SUFFIXES:
                if outputs[s].exists():
                    raise SweepError(f"{outputs[s]} already exists; pass --force to replace the set, or choose "
                                     f"another output prefix")
        path.parent.mkdir(parents=True, exist_ok=True)
        busy = SweepError(f"another sweep is writing {path} right now; wait for it, or choose another output prefix")
        try:
            fd = _create(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL)
            exists = False
        except FileExistsError:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
            exists = True
        f = os.fdopen(fd, "r+b")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise busy from None
            raise
        try:
            if exists and not (resume or force):
                raise SweepError(f"{path} holds an unfinished sweep; pass --resume (resume=True) to continue it, "
                                 f"or --force to start over")
            if exists and resume:
                rows = cls._load(f, path, spec)
            else:
                rows = {}
                f.truncate(0)
                header = {"kind": JOURNAL_KIND, "fingerprint": spec.fingerprint(), "spec": spec.to_dict(),
                          "n_points": spec.n_points}
                f.write((json.dumps(header) + "\n").encode())
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            f.close()
            raise
        return cls(path, f, rows)

    @staticmethod
    def _load(f, path, spec) -> dict:
        from .sweep import SweepError
        f.seek(0)
        data = f.read()
        end = data.rfind(b"\n") + 1  # a last line with no newline was cut short: drop it
        lines = data[:end].splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = None
        if not isinstance(header, dict) or header.get("kind") != JOURNAL_KIND:
            raise SweepError(f"{path} is not a memsim sweep journal; move it away or pass --force")
        if header.get("fingerprint") != spec.fingerprint():
            raise SweepError(f"{path} belongs to another sweep (its spec: {json.dumps(header.get('spec'))}); "
                             f"resume it with the same arguments, or pass --force to start over")
        rows = {}
        for n, line in enumerate(lines[1:], start=2):
            try:
                row = json.loads(line)
                rows[int(row["point"])] = row
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
                raise SweepError(f"{path}: line {n} is not a point record; the journal is damaged "
                                 f"(move it away or pass --force to start over)") from None
        if end != len(data):
            f.truncate(end)
        return rows

    def append(self, rows) -> None:
        self._f.write("".join(json.dumps(r) + "\n" for r in rows).encode())
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            try:
                os.fsync(self._f.fileno())
            finally:
                self._f.close()  # releases the lock

    def remove(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# --- the set ------------------------------------------------------------------------------------
def csv_text(rows, columns) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k, "")) for k in columns})
    return buf.getvalue()


def parquet_bytes(rows, columns) -> bytes | None:
    """The rows as Parquet, or None when pandas or a Parquet engine (pyarrow, fastparquet) is missing."""
    try:
        import pandas as pd
    except ImportError:
        return None
    buf = io.BytesIO()
    try:
        pd.DataFrame(list(rows), columns=columns).to_parquet(buf, index=False)
    except ImportError:
        return None
    return buf.getvalue()


def _stage(target: Path, data) -> Path:
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.staged")
    fd = _create(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def publish_files(prefix, files: dict, *, overwrite: bool = False, journal: Journal | None = None) -> dict[str, Path]:
    """Publish {suffix: bytes or str} as PREFIX.<suffix>, as a whole or not at all (module doc); a
    `journal` given is closed and removed as part of the publication (its intent lists it)."""
    from .schedule import require_bool
    from .sweep import SweepError
    require_bool("overwrite", overwrite)
    paths = set_paths(prefix)
    base = Path(str(prefix))
    targets = {s: base.with_name(f"{base.name}.{s}") for s in files}
    if not overwrite:
        for t in targets.values():
            if t.exists():
                raise SweepError(f"{t} already exists; pass --force to replace the set, or choose another prefix")
    base.parent.mkdir(parents=True, exist_ok=True)
    staged = {}
    try:
        for s, data in files.items():
            staged[s] = _stage(targets[s], data)
        intent = {"renames": [[str(staged[s]), str(targets[s])] for s in files],
                  "journal": str(journal.path) if journal is not None else None}
        tmp = _stage(paths["intent"], json.dumps(intent))
        os.replace(tmp, paths["intent"])
    except BaseException:
        for t in staged.values():
            t.unlink(missing_ok=True)
        raise
    _fsync_dir(base.parent)
    if journal is not None:
        journal.close()
    _roll_forward(paths["intent"])
    return targets


def _roll_forward(intent_path: Path) -> None:
    intent = json.loads(intent_path.read_text())
    for src, dst in intent["renames"]:
        if os.path.exists(src):
            os.replace(src, dst)
    _fsync_dir(intent_path.parent)
    journal = intent.get("journal")
    if journal:
        Path(journal).unlink(missing_ok=True)
    intent_path.unlink()


def recover_publish(prefix) -> bool:
    """Finish a publication that a crash interrupted (see module doc); True if there was one."""
    intent = set_paths(prefix)["intent"]
    if not intent.exists():
        return False
    _roll_forward(intent)
    return True


def publish_set(prefix, spec, result, *, extra: dict, overwrite: bool, journal: Journal,
                provenance: dict | None = None) -> dict[str, Path]:
    """CSV + JSON (+ Parquet) + extra files of a finished sweep; the journal goes with the last rename."""
    from .io import base_provenance
    from .sweep import columns
    cols = columns(spec)
    files = {"csv": csv_text(result.rows, cols),
             "json": json.dumps({"kind": "memsim-sweep", "spec": spec.to_dict(), "fingerprint": spec.fingerprint(),
                                 "n_points": spec.n_points, "counts": result.counts(), "columns": cols,
                                 "rows": list(result.rows), "provenance": provenance or base_provenance()},
                                indent=1) + "\n"}
    pq = parquet_bytes(result.rows, cols)
    if pq is not None:
        files["parquet"] = pq
    files.update(extra)
    return publish_files(prefix, files, overwrite=overwrite, journal=journal)
