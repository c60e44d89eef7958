"""Key rotation (``rekey_archives``): every listed archive re-encrypted to the current key, crash-safe, audited."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import orjson
import pytest
import pyzipper
from sqlalchemy import select

from app.backup.archive import format
from app.backup.archive.limits import Limits
from app.backup.archive.reader import Archive
from app.backup.audit import CLI
from app.backup.errors import BadRequestError, ConflictError, StorageError
from app.backup.jobs.lock import acquire_exclusive, release_exclusive
from app.backup.rekey import CURRENT, ENCRYPTED, FAILED, REKEYED, rekey_archives
from app.backup.service import BackupService
from app.backup.verify import verify_listed_backup
from app.extensions import db
from app.models import AuditLog, BackupRecord
from support.app import build_app
from support.backup import archive_members, seed_sample_rows

OLD, NEW = "the passphrase of last year", "the passphrase of this year"


def made_with(tmp_path, **settings) -> str:
    """A backup of the shared database made by an app with ``settings``; its filename."""
    app = build_app(tmp_path, **settings)
    with app.app_context():
        return BackupService().create("manual", "ann")["filename"]


def path_of(app, filename) -> Path:
    return Path(app.config["BACKUP_DIRECTORY"]) / filename


def rekey(app, **options):
    with app.app_context():
        return [(o.filename, o.action) for o in rekey_archives(app, **options)]


def listed(app) -> dict[str, dict]:
    with app.app_context():
        return {b["filename"]: b for b in BackupService().list()}


def members_with(path, passphrase: str) -> dict[str, bytes]:
    with pyzipper.AESZipFile(path) as zf:
        zf.setpassword(passphrase.encode())
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.fixture
def rotated(tmp_path):
    """A clear archive and one made with OLD, and the app whose key is now NEW (OLD kept for reading)."""
    seed_sample_rows(build_app(tmp_path))
    clear = made_with(tmp_path)
    old = made_with(tmp_path, BACKUP_ENCRYPTION_KEY=OLD)
    app = build_app(tmp_path, BACKUP_ENCRYPTION_KEY=NEW, BACKUP_ENCRYPTION_OLD_KEYS=(OLD,))
    yield app, clear, old
    with app.app_context():
        db.engine.dispose()


def test_every_listed_archive_ends_under_the_current_key_with_the_same_content(rotated):
    app, clear, old = rotated
    clear_members = archive_members(path_of(app, clear))
    old_members = members_with(path_of(app, old), OLD)

    assert rekey(app) == [(clear, ENCRYPTED), (old, REKEYED)]  # oldest first

    assert members_with(path_of(app, clear), NEW) == clear_members  # byte for byte
    assert members_with(path_of(app, old), NEW) == old_members
    with pytest.raises(RuntimeError, match="Bad password"):
        members_with(path_of(app, old), OLD)
    backups = listed(app)
    assert set(backups) == {clear, old}
    assert all(b["encrypted"] and b["signed"] and b["total_records"] == 9 for b in backups.values())
    with app.app_context():
        entries = db.session.execute(select(AuditLog).where(AuditLog.action == "backup.rekey")
                                     .order_by(AuditLog.id)).scalars().all()
    assert [(e.actor, e.target) for e in entries] == [("cli", clear), ("cli", old)]
    for entry in entries:  # the recorded hash is the file's as it now is
        details = orjson.loads(entry.details)
        assert details["sha256"] == hashlib.sha256(path_of(app, entry.target).read_bytes()).hexdigest()
    assert rekey(app) == [(clear, CURRENT), (old, CURRENT)]  # nothing left to do
    with app.app_context(), Archive.open(path_of(app, old), limits=Limits.from_config(app.config),
                                         signing_key=format.signing_key(app.config),
                                         keyring=BackupService().keyring) as archive:
        assert sum(1 for _ in archive.events()) > 0  # and it reads through to its checksum


def test_a_dry_run_says_what_it_would_do_and_changes_nothing(rotated):
    app, clear, old = rotated
    before = {name: path_of(app, name).read_bytes() for name in (clear, old)}
    with app.app_context():
        outcomes = list(rekey_archives(app, dry_run=True))
    assert [(o.filename, o.action, o.dry_run) for o in outcomes] == [(clear, ENCRYPTED, True), (old, REKEYED, True)]
    assert {name: path_of(app, name).read_bytes() for name in (clear, old)} == before
    with app.app_context():
        assert db.session.execute(select(AuditLog).where(AuditLog.action == "backup.rekey")).first() is None


def test_an_archive_of_an_unknown_key_is_reported_and_left_as_it_is(rotated, tmp_path):
    app, clear, old = rotated
    forgotten = build_app(tmp_path, BACKUP_ENCRYPTION_KEY=NEW)  # OLD is no longer configured
    before = path_of(app, old).read_bytes()
    with forgotten.app_context():
        outcomes = list(rekey_archives(forgotten))
    assert [(o.filename, o.action) for o in outcomes] == [(clear, ENCRYPTED), (old, FAILED)]
    assert "neither BACKUP_ENCRYPTION_KEY nor one of BACKUP_ENCRYPTION_OLD_KEYS" in outcomes[1].detail
    assert path_of(app, old).read_bytes() == before


def test_rekey_needs_a_current_key(tmp_path):
    app = build_app(tmp_path)
    with app.app_context(), pytest.raises(BadRequestError, match="BACKUP_ENCRYPTION_KEY is not set"):
        list(rekey_archives(app))


def test_rekey_waits_for_no_one_while_a_backup_or_restore_holds_the_lock(rotated):
    app, clear, old = rotated
    with app.app_context():
        acquire_exclusive("another-job")
        try:
            with pytest.raises(ConflictError):
                list(rekey_archives(app))
        finally:
            release_exclusive("another-job")
    assert rekey(app) == [(clear, ENCRYPTED), (old, REKEYED)]


def test_an_exception_mid_rewrite_leaves_the_old_file_whole_listed_and_no_partial(rotated, monkeypatch):
    app, clear, old = rotated
    before = {name: path_of(app, name).read_bytes() for name in (clear, old)}
    real = Archive.member_chunks

    def failing_after_the_first_chunk(self, name):
        chunks = real(self, name)
        yield next(chunks)
        raise RuntimeError("the process is going down")

    monkeypatch.setattr(Archive, "member_chunks", failing_after_the_first_chunk)
    with pytest.raises(RuntimeError, match="going down"):
        rekey(app)
    assert {name: path_of(app, name).read_bytes() for name in (clear, old)} == before
    assert sorted(os.listdir(app.config["BACKUP_DIRECTORY"])) == sorted((clear, old))
    assert set(listed(app)) == {clear, old}

    def failing_storage(self, name):
        raise StorageError("The backup directory is full.")

    monkeypatch.setattr(Archive, "member_chunks", real)
    monkeypatch.setattr(type(BackupService(app).storage), "replacing_writer", failing_storage)
    assert rekey(app) == [(clear, FAILED), (old, FAILED)]  # one line each, and the lock was released each time
    assert {name: path_of(app, name).read_bytes() for name in (clear, old)} == before


def test_the_rekeyed_file_s_sha256_is_recorded_so_it_still_verifies(rotated):
    app, clear, old = rotated
    rekey(app)
    with app.app_context():
        for name in (clear, old):
            assert db.session.get(BackupRecord, name).sha256 == \
                hashlib.sha256(path_of(app, name).read_bytes()).hexdigest()
            verification = verify_listed_backup(name, actor=CLI)
            assert verification["ok"] is True and verification["sha256"] == "ok", verification


def test_a_file_changed_in_the_store_is_refused_not_rekeyed(rotated):
    app, clear, old = rotated
    path = path_of(app, clear)
    before = path.read_bytes()
    with app.app_context():
        db.session.get(BackupRecord, clear).sha256 = "0" * 64  # the file in the store is no longer the one recorded
        db.session.commit()
        outcomes = {o.filename: o for o in rekey_archives(app)}
    assert outcomes[clear].action == FAILED and "not the file that was recorded" in outcomes[clear].detail
    assert path.read_bytes() == before and outcomes[old].action == REKEYED
