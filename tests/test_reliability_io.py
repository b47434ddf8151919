"""memsim.io: created files follow the umask (mkstemp alone gives 0600), replaced files keep their mode,
and the one JSON-lines writer appends whole, flushed lines."""
from __future__ import annotations

import json
import os
import stat

import pytest

from memsim.io import append_jsonl, write_atomic, write_json


@pytest.fixture
def umask():
    def set_(mask):
        old = os.umask(mask)
        restore.append(old)
    restore = []
    yield set_
    for old in reversed(restore):
        os.umask(old)


@pytest.mark.parametrize("mask, want", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
@pytest.mark.parametrize("writer", ["text", "bytes", "json"])
def test_new_files_follow_the_umask(tmp_path, umask, mask, want, writer):
    umask(mask)
    p = tmp_path / f"out.{writer}"
    {"text": lambda: write_atomic(p, "x"), "bytes": lambda: write_atomic(p, b"x"),
     "json": lambda: write_json(p, {"a": 1})}[writer]()
    assert oct(stat.S_IMODE(p.stat().st_mode)) == oct(want)


def test_replacing_keeps_the_old_mode(tmp_path, umask):
    umask(0o022)
    p = tmp_path / "r.txt"
    p.write_text("old")
    p.chmod(0o640)
    write_atomic(p, "new", overwrite=True)
    assert p.read_text() == "new" and oct(stat.S_IMODE(p.stat().st_mode)) == oct(0o640)


def test_append_jsonl_to_a_path_and_a_stream(tmp_path):
    p = tmp_path / "log.jsonl"
    append_jsonl(p, {"a": 1})
    with open(p, "a") as f:
        append_jsonl(f, {"b": [2]})
        # flushed: another reader sees the line before the stream is closed
        assert [json.loads(x) for x in p.read_text().splitlines()] == [{"a": 1}, {"b": [2]}]


@pytest.mark.parametrize("value", ["no", "False", 0, 1, None], ids=repr)
@pytest.mark.parametrize("writer", [write_atomic, write_json])
def test_overwrite_must_be_a_real_bool(tmp_path, writer, value):
    """Issue 11 item 1 (audit 2026-11-26): write_atomic(p, d, overwrite="no") replaced the file ("no" is
    truthy). Now a TypeError naming overwrite, and the old file is untouched."""
    p = tmp_path / "keep.json"
    p.write_text("old")
    with pytest.raises(TypeError, match=r"^overwrite must be True or False, got "):
        writer(p, {"new": 1} if writer is write_json else "new", overwrite=value)
    assert p.read_text() == "old" and [x.name for x in tmp_path.iterdir()] == ["keep.json"]


@pytest.mark.parametrize("stored", ["plain", "gz"])
@pytest.mark.parametrize("asked", ["x.json", "x.json.gz"])
def test_committed_data_reads_plain_or_gzipped(tmp_path, stored, asked):
    """memsim.io.read_json: a file compressed with gzip -9 -n reads the same under its old name or its .gz name."""
    import gzip
    from memsim.io import data_path, read_json, read_text
    doc = {"a": [1, 2.5, "é"]}
    raw = json.dumps(doc).encode()
    if stored == "plain":
        (tmp_path / "x.json").write_bytes(raw)
        if asked.endswith(".gz"):
            with pytest.raises(FileNotFoundError):
                read_json(tmp_path / asked)
            return
    else:
        (tmp_path / "x.json.gz").write_bytes(gzip.compress(raw, mtime=0))
    assert read_json(tmp_path / asked) == doc
    assert read_text(str(tmp_path / asked)) == raw.decode()
    assert data_path(tmp_path / asked).name == ("x.json" if stored == "plain" else "x.json.gz")


def test_read_of_a_missing_file_names_the_asked_path(tmp_path):
    from memsim.io import read_bytes
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        read_bytes(tmp_path / "nothing.json")
