"""The protocol of a restore's connection helpers: statements run in order while the restore reads on.

``pg_sender.ConnectionHelper`` (a thread sending to PostgreSQL) and
``sqlite_worker.SQLiteWorker`` (a child process owning the SQLite connection)
both take statements without making the restore wait for them, run them in the
order given, and report a failure at the next call that waits. The dialects hand
their index builds and other statements whose results nobody reads to one, when
they have one (``Dialect.execute_later``).
"""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

# Turns the database's refusal of a statement run later into the exception to raise, or None to raise it as is.
ErrorExplainer = Callable[[Exception], Exception | None]


@runtime_checkable
class DeferredExecutor(Protocol):
    """Runs statements on one connection after everything handed over before, without the caller waiting."""

    def execute(self, sql: str, on_error: ErrorExplainer | None = None) -> None:
        """Run ``sql`` in turn; its failure is raised by a later call, as ``on_error(error)`` when that gives one."""

    def wait(self) -> None:
        """Return once everything handed over has run; raise the first failure, if any."""

    def stop(self) -> None:
        """Abandon what has not run yet and forget any failure (the transaction is rolled back next)."""
