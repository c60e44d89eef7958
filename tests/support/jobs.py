"""Watching a job from outside its process: holding it mid-backup, its row, the partial files it leaves."""
from __future__ import annotations

import os
from contextlib import contextmanager

import sqlalchemy as sa

from app.extensions import db
from app.models import BackupJob


@contextmanager
def table_held(app, table: str = "contact_submissions"):
    """While inside, PostgreSQL ``table`` is locked against reads: a backup that reaches it waits there."""
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"], poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def job_row(app, job_id: str) -> BackupJob:
    """The job's row as the database holds it now (detached)."""
    with app.app_context():
        db.session.rollback()
        job = db.session.get(BackupJob, job_id, populate_existing=True)
        db.session.expunge(job)
        return job


def partials(app) -> list[str]:
    """The unfinished archive files in the app's backup directory."""
    directory = app.config["BACKUP_DIRECTORY"]
    return [name for name in os.listdir(directory) if ".partial-" in name] if os.path.isdir(directory) else []
