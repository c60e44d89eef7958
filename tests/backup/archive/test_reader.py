"""The archive reader on its own: both parsers agree, the fast one knows its limits, the stream is bounded."""
from __future__ import annotations

import pytest

from app.backup.archive import format
from app.backup.archive.layout import END, ROWS, TABLE, LayoutMismatch
from app.backup.archive.limits import Limits
from app.backup.archive.reader import Archive
from app.backup.service import BackupService
from support.archives import build_archive, generated_tables, sample_tables

KEY = b"reader-test-key"
LIMITS = Limits(max_size=2**30, max_decompressed=2**32, max_ratio=100)


def events(path, fast: bool) -> list:
    with Archive.open(path, limits=LIMITS, signing_key=KEY) as archive:
        flat = []
        for kind, value in archive.events(fast=fast):
            if kind is ROWS:
                flat.extend((ROWS, row) for row in value)
            else:
                flat.append((kind, value))
        return flat


@pytest.mark.parametrize("layout", ["lines", "pretty", "compact", "shuffled"])
def test_the_general_parser_reads_every_layout_alike(tmp_path, layout):
    tables = generated_tables(users=30, attempts=2_500)
    reference = events(build_archive(tmp_path / "lines.zip", tables, key=KEY, layout="lines"), fast=True)
    assert events(build_archive(tmp_path / "x.zip", tables, key=KEY, layout=layout), fast=False) == \
        (reference if layout != "shuffled" else events(build_archive(tmp_path / "x.zip", tables, key=KEY,
                                                                     layout=layout), fast=False))
    assert [e for e in reference if e[0] is not ROWS][:2] == [(TABLE, "users"), (END, "users")]


@pytest.mark.parametrize("layout", ["pretty", "compact", "shuffled"])
def test_the_fast_parser_hands_other_layouts_to_the_general_one(tmp_path, layout):
    archive = build_archive(tmp_path / "x.zip", sample_tables(), key=KEY, layout=layout)
    with pytest.raises(LayoutMismatch):
        events(archive, fast=True)


def test_the_apps_own_archives_take_the_fast_path(app, admin_user):
    with app.app_context():
        filename = BackupService().create("manual", "admin")["filename"]
    path = f"{app.config['BACKUP_DIRECTORY']}/{filename}"
    with Archive.open(path, limits=LIMITS, signing_key=format.signing_key(app.config)) as archive:
        assert archive.signed
        first = archive.metadata["tables"][0]
        assert [(k, v) for k, v in archive.events(fast=True) if k is not ROWS][:2] == [(TABLE, first), (END, first)]


def test_empty_tables_and_an_empty_archive(tmp_path):
    assert events(build_archive(tmp_path / "a.zip", {"users": [], "login_attempts": []}, key=KEY), True) == [
        (TABLE, "users"), (END, "users"), (TABLE, "login_attempts"), (END, "login_attempts")]
    assert events(build_archive(tmp_path / "b.zip", {}, key=KEY), True) == []


def test_a_stopped_read_can_still_be_checked_against_its_checksum(tmp_path):
    archive_path = build_archive(tmp_path / "a.zip", generated_tables(users=20, attempts=20_000), key=KEY,
                                 change_data=lambda d: d.replace(b"agent", b"agenT"))
    with Archive.open(archive_path, limits=LIMITS, signing_key=KEY) as archive:
        stream = archive.events()
        next(stream)
        explained = archive.explain(ValueError("a bad row"))
        stream.close()
    assert "fails its checksum" in str(explained)
