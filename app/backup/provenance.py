"""What an archive records about where it comes from: the schema revision of the app's migrations, and
``app_info.json``."""
from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata as package_metadata

import sqlalchemy
from alembic.config import Config
from alembic.script import ScriptDirectory

from ..version import __version__
from .archive import format


@dataclass(frozen=True)
class _Migrations:
    head: str | None          # the Alembic head(s), comma-separated
    revisions: frozenset      # the head and every ancestor


_migrations: dict[str, _Migrations] = {}


def _migrations_of(app) -> _Migrations:
    """The revisions of the app's migrations directory (read once per directory)."""
    directory = str(app.extensions["migrate"].directory)
    if directory not in _migrations:
        config = Config()
        config.set_main_option("script_location", directory)
        script = ScriptDirectory.from_config(config)
        _migrations[directory] = _Migrations(head=",".join(sorted(script.get_heads())) or None,
                                             revisions=frozenset(r.revision for r in script.walk_revisions()))
    return _migrations[directory]


def schema_revision(app) -> str | None:
    """The Alembic head of the app's migrations: the schema revision an archive records."""
    return _migrations_of(app).head


def known_revisions(app) -> frozenset[str]:
    """Every Alembic revision of this app's migrations (the head and its ancestors): the archives it can read."""
    return _migrations_of(app).revisions


def app_info(dialect: str) -> dict:
    """The ``app_info.json`` content for this installation."""
    return {
        "app_name": format.APP_NAME,
        "app_version": __version__,
        "python_version": platform.python_version(),
        "flask_version": package_metadata.version("flask"),
        "sqlalchemy_version": sqlalchemy.__version__,
        "database_dialect": dialect,
    }
