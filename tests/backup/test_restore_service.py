"""Where an archive to restore comes from: an upload waits in a private file in a private directory (issue 15)."""
from __future__ import annotations

import io
import os
import stat

from app.backup.restore_service import upload_source


def test_an_upload_is_spooled_0600_in_an_upload_directory_created_0700(app, tmp_path):
    uploads = tmp_path / "uploads"
    app.config["BACKUP_UPLOAD_DIRECTORY"] = str(uploads)
    previous = os.umask(0o022)
    try:
        source = upload_source(io.BytesIO(b"PK not really a zip"), "a.zip", app)
    finally:
        os.umask(previous)
    try:
        assert stat.S_IMODE(os.stat(uploads).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(source.path).st_mode) == 0o600
    finally:
        source.discard()
