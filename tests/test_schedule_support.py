"""Helpers shared by the schedule, retention, health, notify and exactly-once tests (no tests here).

Backups "from the past" are real signed archives whose metadata says when they were
made, written through the app's own store: time is driven, never waited for.
"""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import update

from app.backup.archive import writer as archive
from app.backup.schedule.settings import ScheduleSettings, load_settings, update_settings
from app.backup.dialects import dialect_for
from app.backup.service import BackupService, backup_name_candidates
from app.extensions import db
from app.models import BackupSchedule, data_tables, utcnow
from tests.conftest import build_app


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Each test using it runs on SQLite and on PostgreSQL (a throwaway database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'schedule.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sched_app(tmp_path, database_url):
    """A migrated app on the parametrised database, with GFS layers off unless a test turns them on."""
    app = build_app(tmp_path, database_url, BACKUP_KEEP_DAILY=0, BACKUP_KEEP_WEEKLY=0, BACKUP_KEEP_MONTHLY=0)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def send_mail_to(app, smtp_server) -> list:
    """Point ``app``'s mail at the real SMTP server (as the ``mailbox`` fixture does); returns its messages."""
    smtp_server.messages.clear()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, MAIL_SUPPRESS_SEND=False)
    state = app.extensions["mail"]
    state.server, state.port, state.suppress = "127.0.0.1", smtp_server.port, False
    return smtp_server.messages


def backup_at(app, created_at: datetime, *, trigger: str = "scheduled", verified: bool | None = True,
              pinned: bool = False) -> str:
    """A real, signed backup whose metadata says it was made at ``created_at``; returns its filename."""
    with app.app_context():
        service = BackupService()
        with service.storage.atomic_writer(backup_name_candidates(created_at)) as pending:
            with dialect_for(db.engine).snapshot() as snapshot:
                archive.write_archive(pending.file, snapshot, data_tables(), created_at=created_at, created_by=None,
                                      trigger=trigger, schema_revision=None, app_info={"app_name": "CyberQuest"},
                                      signing_key=service.signing_key)
        name = pending.name
        if verified is not None:
            service.record_verification(name, verified, {"ok": verified})
        if pinned:
            service.toggle_pin(name)
        return name


def listed(app) -> set[str]:
    """The filenames the app lists."""
    with app.app_context():
        return {b["filename"] for b in BackupService().list()}


def save_schedule(app, effective_from: datetime | None = None, **fields) -> ScheduleSettings:
    """Save schedule fields as an admin would; ``effective_from`` backdates when the timing took effect."""
    with app.app_context():
        update_settings(fields, utcnow())
        if effective_from is not None:
            db.session.execute(update(BackupSchedule).values(updated_at=effective_from))
            db.session.commit()
        return load_settings()


def message_text(envelope) -> str:
    """The decoded text of a received message (headers and body)."""
    import email
    from email import policy

    message = email.message_from_bytes(envelope.content, policy=policy.default)
    body = message.get_body(preferencelist=("plain",))
    return f"Subject: {message['Subject']}\n\n{body.get_content() if body else ''}"
