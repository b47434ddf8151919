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
