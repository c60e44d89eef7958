"""Files the local store writes are private: archives and partials 0600, a directory it creates 0700 (issue 15)."""
from __future__ import annotations

import os
import stat

import pytest

from app.backup.storage.local import LocalStorage
from support.restoring import create_backup


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
