"""The SQLite writer process: a restore's one connection, in a child that never half-commits.

Real processes and real SQLite files throughout: the child is killed, or its
parent is, and the database must be exactly as before, with the write lock free.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.backup.archive import format
from app.backup.errors import ArchiveError, RestoreError
from app.backup.archive.limits import Limits
from app.backup.archive.reader import Archive
from app.backup.restore.engine import restore_archive
from app.backup.restore.options import RestoreOptions
from app.backup.dialects.sqlite_worker import SQLiteWorker, WorkerDied
from app.extensions import db
from support.archives import as_archive_rows, build_archive, expected_rows, generated_tables, sample_tables
from support.processes import REPO as ROOT


def small_database(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.executescript("PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE);"
                           "INSERT INTO t VALUES (1, 'kept');")
    conn.close()
    return path


def rows_of(path: Path) -> list:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM t ORDER BY id").fetchall()
    finally:
        conn.close()


def assert_write_lock_free(path: Path) -> None:
    conn = sqlite3.connect(path, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")  # raises "database is locked" if a writer were still there
        conn.rollback()
    finally:
        conn.close()


def wait_until_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # A zombie (exited, not yet reaped by its dead parent's adopter) counts as gone.
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return
        except FileNotFoundError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} is still running")


def worker_children() -> list[int]:
    """PIDs of this process's SQLite writer children (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                if b"sqlite_worker.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
            except FileNotFoundError:
                pass
    return found


def test_a_bad_row_is_named_by_its_place_in_the_batch(tmp_path):
    path = small_database(tmp_path / "w.db")
    worker = SQLiteWorker(str(path))
    cursor = worker.cursor()
    try:
        cursor.execute("BEGIN IMMEDIATE")
        worker.insert_later("INSERT OR FAIL INTO t (id, name)", [(2, "a"), (3, "b")], on_error=lambda i, e: e)
        worker.insert_later("INSERT OR FAIL INTO t (id, name)", [(4, "c"), (5, "kept"), (6, "d")],
                            on_error=lambda index, exc: ValueError(f"row {index}: {exc}"))
        with pytest.raises(ValueError, match=r"row 1: UNIQUE constraint failed: t\.name"):
            cursor.execute("SELECT 1")
        # The rows before the failing one are in; the rollback takes them back with the rest.
        assert cursor.execute("SELECT id FROM t ORDER BY id").fetchall() == [(1,), (2,), (3,), (4,)]
        worker.rollback()
    finally:
        worker.close()
    assert rows_of(path) == [(1, "kept")]


@pytest.mark.parametrize("bad", [0, 49, 50, 73, 149, 151])
def test_a_bad_row_among_many_row_statements_is_named_by_its_place(tmp_path, bad):
    """Batches go in statements of ROWS_PER_STATEMENT rows; the failing row's index and the rows
    before it are what they are when each row is its own statement."""
    path = small_database(tmp_path / "w.db")
    worker = SQLiteWorker(str(path))
    cursor = worker.cursor()
    rows = [(id_, f"n{id_}") for id_ in range(2, 154)]  # 152 rows: three statements of 50, then 2 alone
    rows[bad] = (rows[bad][0], "kept")
    try:
        cursor.execute("BEGIN IMMEDIATE")
        worker.insert_later("INSERT OR FAIL INTO t (id, name)", rows,
                            on_error=lambda index, exc: ValueError(f"row {index}: {exc}"))
        with pytest.raises(ValueError, match=rf"row {bad}: UNIQUE constraint failed: t\.name"):
            cursor.execute("SELECT 1")
        assert cursor.execute("SELECT id FROM t ORDER BY id").fetchall() == [(1,)] + [(id_,) for id_, _ in rows[:bad]]
        worker.rollback()
    finally:
        worker.close()
    assert rows_of(path) == [(1, "kept")]


def test_every_row_of_a_batch_is_stored_whatever_its_width(tmp_path):
    path = tmp_path / "wide.db"
    columns = [f"c{i}" for i in range(30)]  # 30 columns: fewer rows per statement, within 999 parameters
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE w (id INTEGER PRIMARY KEY, {', '.join(columns)})")
    conn.close()
    rows = [(id_, *(f"{id_}.{i}" for i in range(30))) for id_ in range(1, 1001)]
    worker = SQLiteWorker(str(path))
    cursor = worker.cursor()
    try:
        cursor.execute("BEGIN IMMEDIATE")
        worker.insert_later(f"INSERT OR FAIL INTO w (id, {', '.join(columns)})", rows, on_error=lambda i, e: e)
        cursor.execute("COMMIT")
    finally:
        worker.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM w ORDER BY id").fetchall() == rows
    conn.close()


def test_a_killed_worker_fails_the_next_call_and_changes_nothing(tmp_path):
    path = small_database(tmp_path / "w.db")
    worker = SQLiteWorker(str(path))
    cursor = worker.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    cursor.execute("DELETE FROM t")
    os.kill(worker._process.pid, signal.SIGKILL)
    with pytest.raises(WorkerDied):
        cursor.execute("INSERT INTO t VALUES (9, 'lost')")
    worker.close()
    assert rows_of(path) == [(1, "kept")]
    assert_write_lock_free(path)


PARENT = """
import sys
sys.path.insert(0, {root!r})
from app.backup.dialects.sqlite_worker import SQLiteWorker
worker = SQLiteWorker({path!r})
cursor = worker.cursor()
cursor.execute("BEGIN IMMEDIATE")
cursor.execute("DELETE FROM t")
worker.insert_later("INSERT OR FAIL INTO t (id, name)", [(7, "new")], on_error=lambda i, e: e)
cursor.execute("SELECT COUNT(*) FROM t")
print(worker._process.pid, cursor.fetchone()[0], flush=True)
sys.stdin.read()
"""


def test_when_the_parent_is_killed_the_worker_rolls_back_and_exits(tmp_path):
    path = small_database(tmp_path / "w.db")
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(root=str(ROOT), path=str(path))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child_pid, rows_seen = map(int, parent.stdout.readline().split())
        assert rows_seen == 1  # the transaction had replaced the row when the parent died
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdin.close()
        parent.stdout.close()
    wait_until_gone(child_pid)
    assert rows_of(path) == [(1, "kept")]
    assert_write_lock_free(path)


def test_a_restore_whose_worker_dies_is_rolled_back_and_says_so(app, tmp_path):
    key = format.signing_key(app.config)
    build_archive(tmp_path / "first.zip", generated_tables(users=300, attempts=3_000, seed=1), key=key)
    with app.app_context():
        with Archive.open(tmp_path / "first.zip", limits=Limits.from_config(app.config), signing_key=key) as archive:
            restore_archive(archive, db.engine, RestoreOptions("replace"))
    before = as_archive_rows(app)
    archive_path = build_archive(tmp_path / "second.zip", generated_tables(users=2_000, attempts=30_000, seed=2),
                                 key=key)
    killed = []

    def kill_the_worker_midway(fraction: float, message: str) -> None:
        if not killed and "login_attempts" in message:
            killed.extend(worker_children())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    with app.app_context():
        with Archive.open(archive_path, limits=Limits.from_config(app.config), signing_key=key) as archive:
            with pytest.raises(RestoreError, match="rolled back; nothing was changed"):
                restore_archive(archive, db.engine, RestoreOptions("replace"), progress=kill_the_worker_midway)
    assert len(killed) == 1
    assert as_archive_rows(app) == before


def test_without_a_python_to_start_the_child_a_restore_writes_in_process(app, tmp_path, monkeypatch):
    """Under uWSGI or mod_wsgi ``sys.executable`` is no Python: the same restore runs on an in-process connection."""
    started = []
    monkeypatch.setattr(SQLiteWorker, "can_start", staticmethod(lambda: False))
    monkeypatch.setattr(SQLiteWorker, "__init__", lambda self, database: started.append(database))
    key = format.signing_key(app.config)
    good = build_archive(tmp_path / "good.zip", sample_tables(), key=key)
    duplicated = sample_tables()
    duplicated["users"].append(dict(duplicated["users"][1], username="zed", email="zed@example.com"))
    bad = build_archive(tmp_path / "bad.zip", duplicated, key=key)
    with app.app_context():
        limits = Limits.from_config(app.config)
        with Archive.open(good, limits=limits, signing_key=key) as archive:
            result = restore_archive(archive, db.engine, RestoreOptions("replace"))
        assert result["tables"]["users"]["inserted"] == len(sample_tables()["users"])
        with Archive.open(bad, limits=limits, signing_key=key) as archive:
            with pytest.raises(ArchiveError, match=r"Table users, row 4 \(id 2\) cannot be stored"):
                restore_archive(archive, db.engine, RestoreOptions("replace"))
    assert as_archive_rows(app) == expected_rows(sample_tables())
    assert started == []
