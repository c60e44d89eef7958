"""One class per database: the mapping, the helpers' shared protocol, the app's replace hook."""
from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from app.backup.dialects import dialect_for
from app.backup.dialects.base import Dialect
from app.backup.dialects.deferred import DeferredExecutor
from app.backup.dialects.mysql import MySQLDialect
from app.backup.dialects.pg_sender import ConnectionHelper
from app.backup.dialects.postgresql import PostgreSQLDialect
from app.backup.dialects.sqlite import SQLiteDialect
from app.backup.dialects.sqlite_worker import SQLiteWorker
from app.backup.restore.hooks import register_replace_hook, replace_hooks
from app.restore_hooks import keep_rows_of_accounts_still_present


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///:memory:", SQLiteDialect),
    ("postgresql+psycopg://postgres@127.0.0.1:5432/test", PostgreSQLDialect),
    ("mysql+pymysql://root@127.0.0.1:3306/test", MySQLDialect),
    ("mariadb+pymysql://root@127.0.0.1:3306/test", MySQLDialect),
])
def test_each_database_gets_its_own_class(url, expected):
    engine = sa.create_engine(url)  # no connection is opened
    try:
        dialect = dialect_for(engine)
        assert type(dialect) is expected and dialect.name == engine.dialect.name
    finally:
        engine.dispose()


def test_only_sqlite_holds_the_write_lock_for_a_whole_restore():
    assert SQLiteDialect.restore_locks_database
    assert not any(kind.restore_locks_database for kind in (Dialect, PostgreSQLDialect, MySQLDialect))


def test_the_sqlite_worker_and_the_postgresql_sender_share_one_protocol(tmp_path):
    worker = SQLiteWorker(str(tmp_path / "w.db"))
    try:
        assert isinstance(worker, DeferredExecutor)
    finally:
        worker.close()
    assert isinstance(ConnectionHelper(cursor=None), DeferredExecutor)


def test_a_statement_run_later_fails_at_the_next_wait_as_its_explainer_says(tmp_path):
    path = tmp_path / "w.db"
    with sqlite3.connect(path) as conn:
        conn.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'a');")
    conn.close()
    worker = SQLiteWorker(str(path))
    try:
        worker.cursor().execute("BEGIN IMMEDIATE")
        worker.execute("CREATE UNIQUE INDEX t_name ON t (name)", on_error=lambda exc: ValueError(f"explained: {exc}"))
        with pytest.raises(ValueError, match="explained: UNIQUE constraint failed"):
            worker.wait()
        worker.stop()
        worker.rollback()
    finally:
        worker.close()


def test_the_apps_replace_hook_is_registered_once_however_often_it_is_asked(app):
    register_replace_hook(app, keep_rows_of_accounts_still_present)
    assert replace_hooks(app) == (keep_rows_of_accounts_still_present,)
