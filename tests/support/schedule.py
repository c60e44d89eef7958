"""Helpers shared by the schedule, retention, health, notify and exactly-once tests.

Backups "from the past" are real signed archives whose metadata says when they were
made, written through the app's own store: time is driven, never waited for.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from app.backup.archive import writer as archive
from app.backup.schedule.settings import ScheduleSettings, load_settings, update_settings
from app.backup.dialects import dialect_for
from app.backup.service import BackupService, backup_name_candidates
from app.extensions import db
from app.models import BackupSchedule, data_tables, utcnow
from support.restoring import backup_names


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
    return set(backup_names(app))


def save_schedule(app, effective_from: datetime | None = None, **fields) -> ScheduleSettings:
    """Save schedule fields as an admin would; ``effective_from`` backdates when the timing took effect."""
    with app.app_context():
        update_settings(fields, utcnow())
        if effective_from is not None:
            db.session.execute(update(BackupSchedule).values(updated_at=effective_from))
            db.session.commit()
        return load_settings()
