"""A running job's heartbeat: a thread that tells the database, several times per TTL, that the job lives.

Each beat sets the job's ``heartbeat_at`` and pushes its lock's expiry one TTL ahead,
whether or not the work reports progress (a long COPY or upload may report nothing
for minutes). When the process dies, the beats stop, and any other process or host
sees the job's holder gone once the TTL has passed (``lock.owner_is_gone``).
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine

from ...models import BackupJob, utcnow
from .lock import refresh_exclusive

log = logging.getLogger(__name__)

BEATS_PER_TTL = 3


class Heartbeat:
    """While entered, beat for job ``job_id`` every third of ``ttl`` on ``engine`` (its own connections)."""

    def __init__(self, engine: Engine, job_id: str, ttl: timedelta):
        self.engine, self.job_id, self.ttl = engine, job_id, ttl
        self.interval = max(ttl.total_seconds() / BEATS_PER_TTL, 0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def beat(self) -> None:
        """Mark the job alive now and its lock held for one more TTL."""
        with self.engine.begin() as conn:
            conn.execute(update(BackupJob).where(BackupJob.id == self.job_id).values(heartbeat_at=utcnow()))
            refresh_exclusive(conn, self.job_id, self.ttl)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a missed beat is retried at the next; the TTL allows for a few
                log.warning("job %s: heartbeat not recorded", self.job_id, exc_info=True)
