"""A child process that owns a restore's SQLite connection, so writing overlaps reading.

SQLite inserts and builds indexes on one core; checking the archive's rows takes
another. Threads cannot share that work (the sqlite3 module takes the GIL for
every row it binds, and the two threads then wait on each other), so the
connection lives in a child process instead: the restore sends it statements and
batches of rows through a pipe and goes on reading the archive while the child
writes. Everything still happens on one connection in one transaction.

The child commits only when told to. If the parent dies, the child reads the end
of its pipe and rolls back; if the child dies, the parent's next call fails and
SQLite discards the unfinished transaction. Either way nothing is half-written.

This file is also the child's program (``python sqlite_worker.py DATABASE``) and
imports only the standard library, so the child starts in milliseconds.
"""
from __future__ import annotations

import fcntl
import os
import pickle
import select
import sqlite3
import subprocess
import sys
from collections import deque
from itertools import chain
from typing import Callable, Sequence

_FRAME = 8  # bytes of the little-endian length before each pickled message
# An insert batch goes in statements of this many rows each (``VALUES (…), (…), …``):
# a quarter less of the writing process's time per row than one row per statement.
ROWS_PER_STATEMENT = 50
MAX_VARIABLES = 999  # SQLite before 3.32 takes no more parameters in one statement


# --- The parent's side ------------------------------------------------------------------------

class WorkerDied(sqlite3.OperationalError):
    """The child process ended (or broke its pipe) before answering."""


def _error(name: str, message: str) -> sqlite3.Error:
    kind = getattr(sqlite3, name, None)
    if not (isinstance(kind, type) and issubclass(kind, sqlite3.Error)):
        kind = sqlite3.DatabaseError
    return kind(message)


class SQLiteWorker:
    """A DBAPI-like connection whose statements run in a child process.

    Calls that return something wait for the child (and for everything sent
    before them). ``execute`` and ``insert_later`` do not wait: their errors
    surface from a later call.
    """

    @staticmethod
    def can_start() -> bool:
        """Whether this process can start the child: ``sys.executable`` is a Python
        (under uWSGI or mod_wsgi it is not, and the restore then writes in-process)."""
        return os.path.basename(sys.executable or "").startswith("python")

    def __init__(self, database: str):
        from ..malloc_tuning import environment  # imported here: the child's program imports only the stdlib

        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), database],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=1 << 20, env={**os.environ, **environment()})
        self._replies = self._process.stdout.fileno()
        # A batch is megabytes: a bigger pipe moves it in fewer hand-overs between the processes.
        if hasattr(fcntl, "F_SETPIPE_SZ"):
            try:
                fcntl.fcntl(self._process.stdin.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
            except OSError:  # more than /proc/sys/fs/pipe-max-size allows: keep the default
                pass
        self._inbox = bytearray()
        # One entry per request whose reply has not been read: what explains its failure, or None.
        self._pending: deque = deque()
        self.broken = False

    # sending and receiving

    def _send(self, message) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._process.stdin.write(len(data).to_bytes(_FRAME, "little"))
            self._process.stdin.write(data)  # not concatenated: a batch is megabytes
            self._process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self.broken = True
            raise WorkerDied(f"the SQLite writer process is gone ({exc})") from exc

    def _frame(self):
        if len(self._inbox) >= _FRAME:
            size = int.from_bytes(self._inbox[:_FRAME], "little")
            if len(self._inbox) >= _FRAME + size:
                message = pickle.loads(self._inbox[_FRAME:_FRAME + size])
                del self._inbox[:_FRAME + size]
                return message
        return None

    def _receive(self, block: bool = True):
        while True:
            message = self._frame()
            if message is not None:
                return message
            if not block and not select.select([self._replies], [], [], 0)[0]:
                return None
            data = os.read(self._replies, 1 << 20)
            if not data:
                self.broken = True
                raise WorkerDied("the SQLite writer process ended unexpectedly")
            self._inbox += data

    def _settle(self, reply, explain=None) -> object:
        """The reply's result, or its error raised (as ``explain(error, *details)`` makes it, when that gives one)."""
        if reply[0] == "ok":
            return reply[1:]
        error = _error(reply[1], reply[2])
        explained = explain(error, *reply[3:]) if explain is not None else None
        if explained is None or explained is error:
            raise error
        raise explained from error

    def _drain(self, block: bool) -> None:
        """Read the replies of requests sent without waiting; raise the first error among them."""
        failure = None
        while self._pending:
            reply = self._receive(block)
            if reply is None:
                break
            explain = self._pending.popleft()
            try:
                self._settle(reply, explain)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def call(self, *message):
        """Send a request and wait for its reply, once every earlier request has answered."""
        self._drain(block=True)
        self._send(message)
        return self._settle(self._receive(), None)

    def execute(self, sql: str, on_error: Callable[[Exception], Exception | None] | None = None) -> None:
        """Run a statement without waiting for it (an index build, say); a later call raises its failure.

        Raised as ``on_error(error)`` when that gives an exception. (With ``wait`` and
        ``stop``, this is ``deferred.DeferredExecutor``, which this file does not import:
        the child's program imports only the standard library.)
        """
        self._drain(block=False)
        self._send(("execute", sql, ()))
        self._pending.append(on_error)

    def wait(self) -> None:
        """Return once every request has answered; raise the first failure among them."""
        self._drain(block=True)

    def stop(self) -> None:
        """Read what earlier requests still have to say and forget their failures (before a rollback).

        ``WorkerDied`` is raised all the same: nothing can be rolled back any more.
        """
        try:
            self._drain(block=True)
        except WorkerDied:
            raise
        except Exception:  # what failed earlier is moot now: everything is rolled back
            pass
        self._pending.clear()

    def insert_later(self, into: str, rows: list, on_error: Callable[[int, Exception], Exception]) -> None:
        """Insert ``rows`` (equally long value sequences) without waiting.

        ``into`` is the statement up to its values: ``INSERT OR FAIL INTO t (a, b)``
        (``_insert`` says why OR FAIL).

        A bad row makes a later call raise ``on_error(index, error)``. The rows
        before the bad one stay written: a failure is meant to end the transaction,
        as it ends a restore, which rolls back.
        """
        if not rows:
            return
        width = len(rows[0])
        per_statement = max(1, min(ROWS_PER_STATEMENT, MAX_VARIABLES // max(width, 1)))
        whole = len(rows) - len(rows) % per_statement
        # Flattened here: this process has time to spare, the writing one has not.
        statements = [list(chain.from_iterable(rows[start:start + per_statement]))
                      for start in range(0, whole, per_statement)]
        self._drain(block=False)
        self._send(("insert", into, width, per_statement, statements, rows[whole:]))
        self._pending.append(lambda error, index=None: None if index is None else on_error(index, error))

    # the DBAPI-like face used by dialects.sqlite.SQLiteDialect

    def cursor(self) -> "RemoteCursor":
        return RemoteCursor(self)

    def commit(self) -> None:
        self.call("commit")

    def rollback(self) -> None:
        """Roll back, whatever earlier requests still have to say."""
        self.stop()
        self.call("rollback")

    def close(self) -> None:
        """Stop the child (it rolls back anything uncommitted) and wait for it."""
        try:
            if not self.broken:
                self._pending.clear()
                self._send(("close",))
            self._process.stdin.close()
            self._process.wait(timeout=60)
        except Exception:
            self.invalidate()
        finally:
            self._process.stdout.close()

    def invalidate(self) -> None:
        """Kill the child: SQLite discards its unfinished transaction."""
        self.broken = True
        self._process.kill()
        self._process.wait()
        for pipe in (self._process.stdin, self._process.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class RemoteCursor:
    """The part of a sqlite3 cursor the restore uses; every call waits for its answer."""

    def __init__(self, worker: SQLiteWorker):
        self._worker = worker
        self._rows: list = []
        self.rowcount = -1

    def execute(self, sql: str, params: Sequence = ()):
        rows, self.rowcount = self._worker.call("execute", sql, params)
        self._rows = list(rows or ())
        return self

    def executemany(self, sql: str, rows):
        _, self.rowcount = self._worker.call("executemany", sql, list(rows))
        self._rows = []
        return self

    def fetchone(self):
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list:
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        self._rows = []


# --- The child's side -------------------------------------------------------------------------

def _insert(connection: sqlite3.Connection, into: str, width: int, per_statement: int, statements: list,
            rest: list):
    # No savepoint around the batch, and OR FAIL: a statement that fails keeps the rows it
    # stored before the failing one. Under a savepoint, or with the default OR ABORT (which
    # must be able to undo a many-row statement), SQLite first copies every page a statement
    # changes into a sub-journal: 7% of a 1M-row restore, and with unique indexes more than
    # many rows per statement save. A failure ends the transaction anyway; rows are stored
    # in order up to the failing one, so the number of rows changed is that row's index.
    row = "(" + ", ".join("?" * width) + ")"
    before = connection.total_changes
    try:
        if statements:
            connection.executemany(f"{into} VALUES {', '.join([row] * per_statement)}", statements)
        if rest:
            connection.executemany(f"{into} VALUES {row}", rest)
    except (sqlite3.IntegrityError, sqlite3.DataError) as exc:
        return ("failed", type(exc).__name__, str(exc), connection.total_changes - before)
    return ("ok", None, len(statements) * per_statement + len(rest))


def _answer(connection: sqlite3.Connection, cursor: sqlite3.Cursor, request: tuple):
    op = request[0]
    if op == "execute":
        cursor.execute(request[1], request[2])
        return ("ok", cursor.fetchall() if cursor.description else None, cursor.rowcount)
    if op == "executemany":
        cursor.executemany(request[1], request[2])
        return ("ok", None, cursor.rowcount)
    if op == "insert":
        return _insert(connection, *request[1:])
    if op == "commit":
        connection.execute("COMMIT")
        return ("ok", None, -1)
    if op == "rollback":
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        return ("ok", None, -1)
    raise ValueError(f"unknown request {op!r}")


def _read_exactly(stream, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def serve(database: str) -> None:
    """The child: answer requests until told to close or until the parent is gone, then roll back."""
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    connection = sqlite3.connect(database, isolation_level=None, timeout=30)
    # The same settings as every connection of the app (app/sqlite_pragmas.py).
    connection.execute("PRAGMA busy_timeout = 30000")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA journal_mode = WAL")
    # CREATE INDEX may sort with helper threads (measured: 1.7 s down to 1.35 s at 600k rows).
    connection.execute("PRAGMA threads = 4")
    cursor = connection.cursor()
    try:
        while True:
            header = _read_exactly(requests, _FRAME)
            if header is None:
                break  # the parent is gone
            body = _read_exactly(requests, int.from_bytes(header, "little"))
            if body is None:
                break
            request = pickle.loads(body)
            del body  # a batch is megabytes: let it go before the next one arrives
            if request[0] == "close":
                break
            try:
                reply = _answer(connection, cursor, request)
            except sqlite3.Error as exc:
                reply = ("error", type(exc).__name__, str(exc))
            except Exception as exc:  # a bad parameter, say: report it, keep serving
                reply = ("error", "InterfaceError", f"{type(exc).__name__}: {exc}")
            del request
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                replies.write(len(data).to_bytes(_FRAME, "little") + data)
                replies.flush()
            except (BrokenPipeError, OSError):
                break
    finally:
        if connection.in_transaction:
            connection.rollback()
        connection.close()


if __name__ == "__main__":
    serve(sys.argv[1])
