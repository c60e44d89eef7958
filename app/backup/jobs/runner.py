"""Background jobs with progress: each backup, restore or verify is a recorded ``BackupJob``.

``run_job`` records the job, takes the one-at-a-time lock (``lock.py``) when asked,
and hands ``execute_job`` (the work plus the recording of its outcome) to an
executor. How a job body is executed is one seam: ``start_in_thread`` (a daemon
thread with its own app context) for background jobs, a direct call for inline
ones. A queue-backed executor (Celery) replaces ``start_in_thread``.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import orjson
from flask import current_app
from sqlalchemy import select, update

from ...extensions import db
from ...models import BackupJob, utcnow
from ..dialects import dialect_for
from ..errors import BackupError, ConflictError
from .lock import (EXCLUSIVE_LOCK, LOCK_TTL, acquire_exclusive, current_owner, drop_exclusive,
                   jobs_holding_live_locks, owner_is_dead, refresh_exclusive, refuse_while_locked)
from .records import UNFINISHED, job_to_dict

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]


def recover_interrupted_jobs() -> int:
    """Mark failed every job left running by a process that is gone; returns how many.

    Called at start-up and before reading job state, so a killed run never stays "running".
    """
    held = jobs_holding_live_locks()
    count = 0
    for job in db.session.execute(select(BackupJob).where(BackupJob.status.in_(UNFINISHED))).scalars():
        if job.id in held:
            continue
        heartbeat = job.heartbeat_at or job.started_at or job.created_at
        if owner_is_dead(job.owner) or heartbeat <= utcnow() - LOCK_TTL:
            job.status, job.finished_at = "failed", utcnow()
            job.message = "Interrupted: the process running it stopped before it finished."
            count += 1
    db.session.commit()
    return count


@dataclass
class JobHandle:
    """What a running job's work function uses to report progress."""

    job_id: str
    kind: str
    write_progress_to_db: bool = True
    _last_write: float = field(default=0.0)

    def progress(self, fraction: float, message: str = "") -> None:
        """Record progress (0..1). Throttled to about one database write a second."""
        fraction = max(0.0, min(1.0, fraction))
        _live_progress[self.job_id] = (fraction, message)
        now = time.monotonic()
        if not self.write_progress_to_db or now - self._last_write < 1.0:
            return
        self._last_write = now
        try:
            with db.engine.begin() as conn:
                conn.execute(update(BackupJob).where(BackupJob.id == self.job_id)
                             .values(progress=fraction, message=message or None, heartbeat_at=utcnow()))
                refresh_exclusive(conn, self.job_id)
        except Exception:  # progress is best effort; the job's outcome is recorded in finally
            log.warning("could not record progress of job %s", self.job_id, exc_info=True)

    def reporter(self, also: ProgressCallback | None = None) -> ProgressCallback:
        """A progress callback recording to this job, and passing each report on to ``also`` too."""
        if also is None:
            return self.progress

        def report(fraction: float, message: str) -> None:
            self.progress(fraction, message)
            also(fraction, message)

        return report


# Progress of jobs running in this process, readable even while a write transaction
# (an SQLite restore) keeps the database from recording it.
_live_progress: dict[str, tuple[float, str]] = {}


def live_job_dict(job: BackupJob) -> dict:
    """``job_to_dict`` with the freshest progress this process knows of."""
    data = job_to_dict(job)
    if job.status == "running" and job.id in _live_progress:
        data["progress"], message = _live_progress[job.id]
        data["message"] = message or data["message"]
    return data


def create_job(kind: str, created_by: str | None) -> BackupJob:
    """Record a new queued job of ``kind``, owned by this process."""
    job = BackupJob(id=str(uuid.uuid4()), kind=kind, status="queued", created_by=created_by,
                    owner=current_owner(), progress=0.0)
    db.session.add(job)
    db.session.commit()
    return job


def run_job(kind: str, created_by: str | None, work: Callable[[JobHandle], dict], *,
            exclusive: bool = True, background: bool = True, lock_name: str = EXCLUSIVE_LOCK) -> BackupJob:
    """Run ``work(handle)`` as a recorded job and return its ``BackupJob`` row.

    With ``exclusive`` the lock ``lock_name`` (by default the one-at-a-time lock of
    backups and restores) is taken first, in the caller's thread, so a conflict
    raises ``ConflictError`` before anything starts. ``work`` returns the
    job's result (a JSON-able dict); any exception marks the job failed with its message.
    With ``background`` the work runs in a thread with its own app context and this
    returns at once; otherwise it returns when the job has finished (and re-raises
    a ``BackupError`` the work raised).
    """
    if exclusive and lock_name == EXCLUSIVE_LOCK:
        refuse_while_locked()
    job = create_job(kind, created_by)
    if exclusive:
        try:
            acquire_exclusive(job.id, lock_name)
        except ConflictError:
            db.session.delete(job)
            db.session.commit()
            raise
    job_id = job.id
    locked_by_restore = kind == "restore" and dialect_for(db.engine).restore_locks_database
    handle = JobHandle(job_id, kind, write_progress_to_db=not locked_by_restore)
    body = functools.partial(execute_job, handle, work, exclusive, lock_name)
    if background:
        start_in_thread(body, name=f"{kind}-job-{job_id[:8]}")
        return job

    error = body()
    finished = db.session.get(BackupJob, job_id, populate_existing=True)
    if isinstance(error, BackupError):
        raise error
    if error is not None:
        raise BackupError(f"The {kind} failed: {finished.message}") from error
    return finished


def start_in_thread(body: Callable[[], object], name: str) -> None:
    """The background executor: run ``body`` on a daemon thread inside an app context of this app."""
    app = current_app._get_current_object()

    def thread_main():
        with app.app_context():
            body()

    threading.Thread(target=thread_main, name=name, daemon=True).start()


def execute_job(handle: JobHandle, work: Callable[[JobHandle], dict], exclusive: bool,
                lock_name: str = EXCLUSIVE_LOCK) -> BaseException | None:
    """Run the recorded job's ``work`` to its end and record the outcome; returns what it raised, if anything.

    Never raises for a failing ``work``: its status, message and result are recorded,
    and with ``exclusive`` the lock ``lock_name`` goes in the same commit.
    """
    job_id, kind = handle.job_id, handle.kind
    error: BaseException | None = None
    status, message, result = "failed", None, None
    try:
        db.session.execute(update(BackupJob).where(BackupJob.id == job_id)
                           .values(status="running", started_at=utcnow(), heartbeat_at=utcnow()))
        db.session.commit()
        result = work(handle)
        status, message = "succeeded", "Done."
    except BackupError as exc:
        error, message = exc, exc.message
    except Exception as exc:  # the job records any failure; the log keeps the traceback
        log.exception("%s job %s failed", kind, job_id)
        error, message = exc, f"{type(exc).__name__}: {exc}"
    finally:
        db.session.rollback()
        db.session.execute(update(BackupJob).where(BackupJob.id == job_id).values(
            status=status, message=message, finished_at=utcnow(),
            progress=1.0 if status == "succeeded" else BackupJob.progress,
            result=orjson.dumps(result).decode() if result is not None else None))
        if exclusive:
            # Same commit as the final status: a client that sees the job finished
            # can start the next one at once without meeting a 409.
            drop_exclusive(job_id, lock_name)
        db.session.commit()
        _live_progress.pop(job_id, None)
    return error


def get_job(job_id: str) -> BackupJob | None:
    """The job with this id, after marking interrupted jobs failed."""
    recover_interrupted_jobs()
    return db.session.get(BackupJob, job_id, populate_existing=True)


def wait_for_job(job_id: str, poll_seconds: float = 0.1) -> BackupJob:
    """Wait until the job has succeeded or failed (or was found interrupted) and return its row."""
    while True:
        job = get_job(job_id)
        if job is None or job.status not in UNFINISHED:
            return job
        db.session.rollback()  # the next look sees the executor's commits
        time.sleep(poll_seconds)


def latest_active_job() -> BackupJob | None:
    """The queued or running job, if any (for the System Backup page)."""
    recover_interrupted_jobs()
    return db.session.execute(select(BackupJob).where(BackupJob.status.in_(UNFINISHED))
                              .order_by(BackupJob.created_at.desc())).scalars().first()
