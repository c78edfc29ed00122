"""The one write rule (core/io/guard.py) and all-or-nothing writes (atomic.staged_writes)."""

from __future__ import annotations

import os

import pytest

from persam_studio.core.errors import OutputError
from persam_studio.core.io.atomic import atomic_write_bytes, staged_writes
from persam_studio.core.io.guard import check_destination, check_outputs


def test_destination_kinds(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    to_null = tmp_path / "null"
    to_null.symlink_to("/dev/null")
    (tmp_path / "dir").mkdir()
    for dest, words in ((fifo, "FIFO"), (to_null, "a device"), (tmp_path / "dir", "folder")):
        with pytest.raises(OutputError, match=words):
            check_destination(dest)
        with pytest.raises(OutputError, match=words):
            atomic_write_bytes(dest, b"x")  # the writer applies the rule itself
    assert to_null.is_symlink() and os.readlink(to_null) == "/dev/null"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_link_to_a_regular_file_is_replaced_not_written_through(tmp_path):
    target = tmp_path / "target.txt"
    target.write_bytes(b"keep me")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert target.read_bytes() == b"keep me"
    assert not link.is_symlink() and link.read_bytes() == b"new"


def test_outputs_against_inputs_and_each_other(tmp_path):
    src = tmp_path / "model.pth"
    src.write_bytes(b"weights")
    hard = tmp_path / "hard.pth"
    os.link(src, hard)
    with pytest.raises(OutputError, match="input"):
        check_outputs([hard], [src])
    with pytest.raises(OutputError, match="twice"):
        check_outputs([tmp_path / "a.png", tmp_path / "x" / ".." / "a.png"])
    check_outputs([tmp_path / "a.png", tmp_path / "b.png"], [src, tmp_path])  # a folder input is fine


def test_staged_writes_are_all_or_nothing(tmp_path):
    old = tmp_path / "old.png"
    old.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with staged_writes():
            atomic_write_bytes(old, b"new")
            atomic_write_bytes(tmp_path / "new.png", b"new")
            assert old.read_bytes() == b"old"  # nothing moved into place yet
            raise RuntimeError("second output failed")
    assert old.read_bytes() == b"old" and not (tmp_path / "new.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.png"]
    with staged_writes():
        atomic_write_bytes(old, b"new")
        atomic_write_bytes(tmp_path / "new.png", b"new")
    assert old.read_bytes() == b"new" and (tmp_path / "new.png").read_bytes() == b"new"
