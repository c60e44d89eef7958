"""Fixtures of the backup tests: the schedule tests' app, on SQLite and on PostgreSQL."""
from __future__ import annotations

import pytest

from app.extensions import db
from support.app import build_app


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
