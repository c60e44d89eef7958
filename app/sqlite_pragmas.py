"""SQLite settings every connection needs.

WAL lets job progress be written while a backup streams a long read; the busy
timeout makes concurrent processes wait instead of failing; foreign keys are off
by default in SQLite and a restore must honour them as PostgreSQL and MariaDB do.
"""
import sqlite3
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

BUSY_TIMEOUT_MS = 30000


@event.listens_for(Engine, "connect")
def set_sqlite_pragmas(dbapi_connection, _record):
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    if cursor.execute("PRAGMA database_list").fetchone()[2]:  # a file, not :memory:
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


@contextmanager
def lock_waits_skipped(connection: Connection):
    """Within the block, a write that finds SQLite locked fails at once instead of waiting.

    For best-effort writes: a restore holds SQLite's write lock for its whole
    transaction, and a request must not stall behind it. Other databases are left as they are.
    """
    raw = connection.connection.dbapi_connection
    if not isinstance(raw, sqlite3.Connection):
        yield
        return
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
