"""LocalStorage: the replacing writer (the new file beside the old one, one atomic rename, nothing left behind);
files it writes are private: archives and partials 0600, a directory it creates 0700 (issue 15)."""
from __future__ import annotations

import os
import stat

import pytest

from app.backup.errors import BackupNotFoundError
from app.backup.storage.local import PARTIAL_MARKER, LocalStorage
from support.restoring import create_backup


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


@pytest.fixture
def open_umask():
    """A umask that lets anything through that the code asks for, as a careless service manager sets."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_store_directory_the_app_creates_is_0700_and_its_files_0600(tmp_path, open_umask):
    store = LocalStorage(tmp_path / "new" / "backups")
    assert mode(store.directory) == 0o700
    with store.atomic_writer(["cyberquest_backup_20250101_000000.zip"]) as pending:
        pending.file.write(b"archive bytes")
        partials = [p for p in store.directory.iterdir() if p.name.startswith(".")]
        assert [mode(p) for p in partials] == [0o600]
    assert mode(store.directory / pending.name) == 0o600


def test_a_backup_the_app_makes_is_readable_by_its_user_only(app, open_umask):
    filename = create_backup(app)
    assert mode(os.path.join(app.config["BACKUP_DIRECTORY"], filename)) == 0o600
