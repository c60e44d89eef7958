"""LocalStorage's replacing writer: the new file beside the old one, one atomic rename, nothing left behind."""
from __future__ import annotations

import os

import pytest

from app.backup.errors import BackupNotFoundError
from app.backup.storage.local import PARTIAL_MARKER, LocalStorage


def test_a_replacing_writer_renames_the_new_file_over_the_old_one(tmp_path):
    storage = LocalStorage(tmp_path)
    (tmp_path / "a.zip").write_bytes(b"old bytes")
    old_inode = (tmp_path / "a.zip").stat().st_ino
    with storage.replacing_writer("a.zip") as pending:
        pending.file.write(b"new bytes")
        partials = [name for name in os.listdir(tmp_path) if PARTIAL_MARKER in name]
        assert len(partials) == 1 and partials[0].startswith(".a.zip")  # beside the old one, hidden
        assert (tmp_path / "a.zip").read_bytes() == b"old bytes"
        pending.file.seek(0)
        assert pending.file.read() == b"new bytes"  # readable: the caller may hash what it wrote
    assert pending.name == "a.zip"
    assert (tmp_path / "a.zip").read_bytes() == b"new bytes" and (tmp_path / "a.zip").stat().st_ino != old_inode
    assert os.listdir(tmp_path) == ["a.zip"]


def test_a_failing_replacing_writer_leaves_the_old_file_and_no_partial(tmp_path):
    storage = LocalStorage(tmp_path)
    (tmp_path / "a.zip").write_bytes(b"old bytes")
    with pytest.raises(RuntimeError, match="boom"):
        with storage.replacing_writer("a.zip") as pending:
            pending.file.write(b"half of the new")
            raise RuntimeError("boom")
    assert (tmp_path / "a.zip").read_bytes() == b"old bytes" and os.listdir(tmp_path) == ["a.zip"]
    with pytest.raises(BackupNotFoundError):
        with storage.replacing_writer("missing.zip"):
            pass
    assert os.listdir(tmp_path) == ["a.zip"]
