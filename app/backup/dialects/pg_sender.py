"""A helper thread that owns a PostgreSQL restore's connection, so the server's work overlaps ours.

A bulk restore alternates between our work (reading and checking rows) and the
server's (storing them, building indexes). Done in turn, each side idles while
the other works: storing a table with three unique keys, or building a
600,000-row table's indexes, keeps the server busy for seconds. So the restore
hands its statements and each table's COPY data to this helper, in order, and
goes on with the next table while the server catches up. Everything still runs
on one connection, in one transaction, in the order it was handed over.

COPY data is packed by psycopg in the restore's thread (``CopyData`` is a
psycopg ``Writer``) and kept in memory up to ``MEMORY_BYTES`` per table. When
the helper is still busy with earlier work, more goes to a temporary file; once
the helper sends this table, the restore waits instead of getting further ahead.
The helper only waits on the network (psycopg releases the GIL), so it takes
almost nothing from the restore's own thread.
"""
from __future__ import annotations

import os
import tempfile
import threading
from collections import deque
from psycopg.copy import Writer

from .deferred import ErrorExplainer

MEMORY_BYTES = 4 * 1024 * 1024
READ_BYTES = 1024 * 1024


class SendingStopped(Exception):
    """The COPY data was abandoned (the restore failed or is being rolled back)."""


class CopyData(Writer):
    """One table's COPY data, written by the restore's thread and sent by the helper."""

    def __init__(self, statement: str, helper: "ConnectionHelper"):
        self.statement = statement
        self._helper = helper
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._in_memory = 0
        self._file = None
        self._written = 0   # bytes in the temporary file
        self._read = 0      # of which the helper has sent
        self._closed = False
        self._sending = False
        self._stopped = False

    # the restore's side (psycopg's Copy calls these)

    def write(self, data) -> None:
        """Keep ``data``; waits only when the helper is sending this table and is behind."""
        if self._helper.failed.is_set():
            self._helper.raise_failure()
        with self._cond:
            while self._sending and not self._stopped and self._in_memory + self._backlog() >= MEMORY_BYTES:
                self._cond.wait()
            stopped = self._stopped
            if not stopped:
                if self._backlog() or self._in_memory >= MEMORY_BYTES:
                    if self._file is None:
                        self._file = tempfile.TemporaryFile(prefix="cyberquest-restore-")
                    os.pwrite(self._file.fileno(), data, self._written)
                    self._written += len(data)
                else:
                    self._chunks.append(data)
                    self._in_memory += len(data)
                self._cond.notify_all()
        if stopped:  # the helper failed while sending this table: raise why
            self._helper.wait()
            raise SendingStopped("The restore stopped.")

    def finish(self, exc: BaseException | None = None) -> None:
        """The table's last data was written (or, with ``exc``, will never be)."""
        with self._cond:
            if exc is None:
                self._closed = True
            else:
                self._stopped = True
            self._cond.notify_all()

    # the helper's side

    def _backlog(self) -> int:
        return self._written - self._read

    def _next_chunk(self) -> bytes | None:
        with self._cond:
            while not (self._chunks or self._backlog() or self._closed or self._stopped):
                self._cond.wait()
            if self._stopped:
                raise SendingStopped("The restore stopped.")
            if self._chunks:  # always older than what is in the file
                chunk = self._chunks.popleft()
                self._in_memory -= len(chunk)
                self._cond.notify_all()
                return chunk
            if not self._backlog():
                return None  # closed, and everything was sent
            start, size = self._read, min(READ_BYTES, self._backlog())
            self._read += size
            if not self._backlog():
                self._written = self._read = 0  # the file is reused from its start
            # Read under the lock: the restore's thread would otherwise write over it.
            chunk = os.pread(self._file.fileno(), size, start)
            self._cond.notify_all()
            return chunk

    def send(self, cursor) -> None:
        """Run this COPY on ``cursor`` with the data as it comes (the helper's thread)."""
        with self._cond:
            self._sending = True
            self._cond.notify_all()
        try:
            with cursor.copy(self.statement) as copy:
                while (chunk := self._next_chunk()) is not None:
                    copy.write(chunk)
        finally:
            self.stop()

    def stop(self) -> None:
        """Drop what is kept; a restore thread waiting to write is woken (and raises)."""
        with self._cond:
            self._stopped = True
            self._chunks.clear()
            self._in_memory = 0
            if self._file is not None:
                self._file.close()
                self._file = None
            self._cond.notify_all()


class ConnectionHelper:
    """Runs statements and COPYs on one cursor, in the order they were handed over, on a thread of its own.

    A ``deferred.DeferredExecutor``. The caller must not use the connection itself
    until ``wait`` returned.
    """

    def __init__(self, cursor):
        self._cursor = cursor
        self._jobs: deque = deque()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._current_copy: CopyData | None = None
        self.failed = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def execute(self, sql: str, on_error: ErrorExplainer | None = None) -> None:
        """Run ``sql`` after everything handed over before; its error is raised by a later call."""
        self._submit(("sql", sql, on_error))

    def copy(self, statement: str, on_error: ErrorExplainer | None = None) -> CopyData:
        """Run the COPY ``statement`` in turn, fed by the returned ``CopyData`` (finish it, or stop it)."""
        data = CopyData(statement, self)
        self._submit(("copy", data, on_error))
        return data

    def _submit(self, job: tuple) -> None:
        with self._lock:
            if self.failed.is_set():
                if job[0] == "copy":
                    job[1].stop()
                return  # the transaction is failing already; ``wait`` raises why
            self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="restore-connection", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._thread = None
                    return
                kind, work, on_error = self._jobs.popleft()
                self._current_copy = work if kind == "copy" else None
            try:
                if kind == "sql":
                    self._cursor.execute(work)
                else:
                    work.send(self._cursor)
            except BaseException as exc:
                explained = on_error(exc) if on_error is not None and isinstance(exc, Exception) else None
                if explained is not None:
                    explained.__cause__ = exc
                with self._lock:
                    self._error = explained or exc
                    self.failed.set()
                    for job in self._jobs:
                        if job[0] == "copy":
                            job[1].stop()
                    self._jobs.clear()
                    self._thread = None
                return

    def wait(self) -> None:
        """Return once everything handed over has run; raise the first failure, if any."""
        thread = self._thread
        if thread is not None:
            thread.join()
        self.raise_failure()

    def raise_failure(self) -> None:
        """Raise the failure that stopped the helper (after it stopped)."""
        if not self.failed.is_set():
            return
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Abandon everything not yet run, wait for the helper, and forget its failure (before a rollback)."""
        with self._lock:
            for job in self._jobs:
                if job[0] == "copy":
                    job[1].stop()
            self._jobs.clear()
            if self._current_copy is not None:  # its data may never be finished
                self._current_copy.stop()
        thread = self._thread
        if thread is not None:
            thread.join()
        # What it abandoned is rolled back; the connection can be used again.
        self._error = None
        self.failed.clear()
