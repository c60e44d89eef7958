"""Fixtures of the backup tests: what building archives for the ``app`` needs, and the schedule tests' app."""
from __future__ import annotations

import pytest

from app.backup.archive import format
from app.backup.provenance import schema_revision
from app.extensions import db
from support.app import build_app
from support.archives import build_archive


@pytest.fixture
def env(app, admin_user, api_headers):
    """The app's archive signing key and schema revision, and an admin's API headers."""
    with app.app_context():
        return {"key": format.signing_key(app.config), "revision": schema_revision(app), "headers": api_headers}


@pytest.fixture
def archive(tmp_path, env):
    """A signed archive of the sample tables that the app accepts."""
    return build_archive(tmp_path / "a.zip", key=env["key"], schema_revision=env["revision"])


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
