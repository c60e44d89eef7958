"""A migrated test app: its settings, the test accounts' passwords, and counting its rows."""
from __future__ import annotations

import sqlalchemy as sa

from app import create_app
from app.extensions import db
from app.models import data_tables

ADMIN_PASSWORD = "admin-password-1"
USER_PASSWORD = "user-password-1"


def test_settings(tmp_path, database_url: str | None = None, **extra) -> dict:
    """Settings for a test app: its own database and backup directory under tmp_path."""
    settings = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-of-at-least-32-bytes",
        "SQLALCHEMY_DATABASE_URI": database_url or f"sqlite:///{tmp_path / 'app.db'}",
        "BACKUP_DIRECTORY": str(tmp_path / "backups"),
        "ARGON2_FAST": True,
        "SCHEDULER_ENABLED": False,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": 1,  # nothing listens: a test that sends mail must use the smtp_server fixture
        "MAIL_DEFAULT_SENDER": "cyberquest@test.local",
        "SERVER_NAME": "localhost",
        "PUBLIC_URL": "http://localhost",
    }
    settings.update(extra)
    return settings


# pytest must not collect the helper above as a test where a test module imports it.
test_settings.__test__ = False


def build_app(tmp_path, database_url: str | None = None, **extra):
    """A migrated app on ``database_url`` (default: a fresh SQLite file)."""
    from flask_migrate import upgrade

    app = create_app(test_settings(tmp_path, database_url, **extra))
    with app.app_context():
        upgrade()
    return app


def count_rows(app) -> dict:
    """Rows per data table: what a test compares to prove nothing changed."""
    with app.app_context():
        with db.engine.connect() as conn:
            return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                    for t in data_tables()}
