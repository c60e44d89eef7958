"""One class per database, both directions: reading a backup's rows, writing a restore's.

``dialect_for(engine)`` picks the class by SQLAlchemy's name of the database
(as django-dbbackup picks a connector per engine); a database not listed gets
the standard-SQL ``Dialect``. A new database is a new module here and a line in
``DIALECTS``.
"""
from __future__ import annotations

from sqlalchemy.engine import Engine

from .base import Dialect
from .mysql import MySQLDialect
from .postgresql import PostgreSQLDialect
from .sqlite import SQLiteDialect

DIALECTS: dict[str, type[Dialect]] = {
    "sqlite": SQLiteDialect,
    "postgresql": PostgreSQLDialect,
    "mysql": MySQLDialect,
    "mariadb": MySQLDialect,
}


def dialect_for(engine: Engine) -> Dialect:
    """A new (unconnected) ``Dialect`` of ``engine``'s database."""
    return DIALECTS.get(engine.dialect.name, Dialect)(engine)

