"""Checks first, writes second: a restore bound to be refused costs no safety backup.

Every refusal that needs no writes happens before the safety backup is taken,
the orphan check of a replace included (it reads the current rows). The store
here cannot delete, as a store without delete permission cannot: a safety
backup taken for a refused request would stay behind in the list.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.backup.errors import StorageError
from app.backup.service import BackupService
from app.extensions import db
from app.models import EmailVerification
from support.archives import build_archive, sample_tables
from support.restoring import restore_upload


@pytest.fixture
def undeletable_store(monkeypatch):
    def refuse(self, filename):
        raise StorageError("This store cannot delete.")

    monkeypatch.setattr(BackupService, "delete", refuse)


@pytest.fixture
def backups_taken(monkeypatch):
    taken: list[str] = []
    create = BackupService.create

    def create_and_note(self, trigger, *args, **kwargs):
        taken.append(trigger)
        return create(self, trigger, *args, **kwargs)

    monkeypatch.setattr(BackupService, "create", create_and_note)
    return taken


def test_a_replace_refused_by_the_orphan_check_takes_no_safety_backup(app, client, env, tmp_path, admin_user,
                                                                      undeletable_store, backups_taken):
    with app.app_context():
        # Outside the archive, and pointing at users: replacing users would orphan it.
        db.session.add(EmailVerification(user_id=admin_user["id"], email="admin@example.com", token="e" * 64,
                                         expires_at=sa.func.now()))
        db.session.commit()
    tables = {"users": sample_tables()["users"], "contact_submissions": sample_tables()["contact_submissions"]}
    archive = build_archive(tmp_path / "users.zip", tables, key=env["key"], schema_revision=env["revision"])

    response = restore_upload(client, env["headers"], archive)

    assert response.status_code == 400
    assert "would leave rows of email_verifications pointing at deleted rows" in response.get_json()["error"]
    assert backups_taken == []
    with app.app_context():
        assert [b["filename"] for b in BackupService().list() if b["trigger"] == "pre-restore"] == []


def test_a_replace_that_passes_its_checks_still_takes_its_safety_backup(app, client, env, tmp_path, backups_taken):
    archive = build_archive(tmp_path / "all.zip", sample_tables(), key=env["key"], schema_revision=env["revision"])

    response = restore_upload(client, env["headers"], archive)

    assert response.status_code == 200, response.get_json()
    assert backups_taken == ["pre-restore"]
    assert response.get_json()["restore"]["safety_backup"]
