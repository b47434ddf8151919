"""Writing results without losing anything the user had, and reading committed data back (stdlib only).

Every report, measurement and benchmark file goes through `write_atomic`:
the data lands in a temporary file in the same folder and is renamed over the
target in one step, so an interrupted run never leaves half a file, and an
existing file is never replaced unless the caller says so.

Committed data files may be stored gzipped (`x.json.gz`: the device tool copies
at most 64 MiB of tree, notes/housekeeping.md); `read_bytes` / `read_text` /
`read_json` open either form, so a reader that names `x.json` keeps working.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


class OutputExistsError(FileExistsError):
    """The target exists and overwriting was not asked for."""


def write_atomic(path, data: str | bytes, *, overwrite: bool = False) -> Path:
    """Write `data` to `path` atomically; refuse to replace an existing file unless `overwrite`."""
    from .schedule import require_bool
    require_bool("overwrite", overwrite)  # "no" is truthy: it would replace the file
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} already exists; pass overwrite=True (or --force on the command line) to replace it, "
            f"or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    # mkstemp creates the file 0600; give it the mode a plain open() would (the umask's), or keep the
    # mode of the file it replaces
    try:
        perm = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        perm = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), perm)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _umask() -> int:
    """The process umask (read without changing it where /proc says it; else set and restored)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def data_path(path) -> Path:
    """`path`, or `path`.gz where only that one exists (a committed file compressed after its readers named it)."""
    p = Path(path)
    if p.suffix != ".gz" and not p.exists():
        gz = p.with_name(p.name + ".gz")
        if gz.exists():
            return gz
    return p


def read_bytes(path) -> bytes:
    """The content of a data file, decompressed when it is (or falls back to) a .gz file: the one reader of
    committed data that may be gzipped (`gzip -9 -n x.json` keeps the readers of `x.json` working)."""
    p = data_path(path)
    raw = p.read_bytes()
    if p.suffix == ".gz":
        import gzip
        raw = gzip.decompress(raw)
    return raw


def read_text(path, encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


def read_json(path):
    return json.loads(read_bytes(path))


def append_jsonl(target, record) -> None:
    """Append one record as a JSON line and flush (the one JSON-lines writer): `target` is an open
    text stream or a path (opened in append mode), so a crash keeps every finished line."""
    line = json.dumps(record) + "\n"
    if hasattr(target, "write"):
        target.write(line)
        target.flush()
        return
    with open(target, "a") as f:
        f.write(line)
        f.flush()


def write_json(path, obj, *, overwrite: bool = False) -> Path:
    return write_atomic(path, json.dumps(obj, indent=1, sort_keys=False) + "\n", overwrite=overwrite)


def unique_path(path) -> Path:
    """`path` if free, else `stem.2.suffix`, `stem.3.suffix`, ...: new runs never replace old ones."""
    path = Path(path)
    if not path.exists():
        return path
    for i in range(2, 100000):
        cand = path.with_name(f"{path.stem}.{i}{path.suffix}")
        if not cand.exists():
            return cand
    raise OutputExistsError(f"no free name next to {path}")


def gpu_slug(name: str) -> str:
    """File-name form of a GPU name: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (the one slug rule)."""
    s = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")
    if not s:
        raise ValueError(f"cannot make a directory name from GPU name {name!r}")
    return s


def nvidia_smi(field: str, *, timeout_s: float = 30) -> str | None:
    """GPU 0's `nvidia-smi --query-gpu=<field>` (e.g. name, driver_version, compute_cap), or None when
    there is no nvidia-smi or no GPU.  The one way the project asks nvidia-smi (stdlib, so processes
    that must not import torch can use it; kernels.device_info builds on it)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
    return lines[0].strip() or None if lines else None


def base_provenance(command: str | None = None) -> dict:
    """Date, host, python and git commit of this run, plus the command that made it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "git_commit": commit,
        "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
