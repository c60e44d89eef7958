"""Background jobs with progress, and the one-at-a-time lock held in the database.

One backup or restore runs at a time across every process and host sharing the
database: the lock is a row in ``operation_locks`` (primary key = lock name), so
inserting it is taking it and the database arbitrates. A lock whose holder died
(kill -9, lost host) is recognised as stale by its expiry, or at once when the
holder was a process on this host that no longer exists.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

import orjson
from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...models import BackupJob, OperationLock, utcnow
from ..dialects import dialect_for
from ..errors import BackupError, ConflictError

log = logging.getLogger(__name__)

EXCLUSIVE_LOCK = "backup-restore"
LOCK_TTL = timedelta(minutes=30)
HOSTNAME = socket.gethostname()

ProgressCallback = Callable[[float, str], None]


def current_owner() -> str:
    """``host:pid`` of this process (recomputed: forks get their own)."""
    return f"{HOSTNAME}:{os.getpid()}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` (``host:pid``) was a process on this host that no longer exists."""
    host, _, pid = (owner or "").rpartition(":")
    if host != HOSTNAME or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def job_to_dict(job: BackupJob) -> dict:
    """The contract's Job object."""
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": round(job.progress or 0.0, 4),
        "message": job.message,
        "created_by": job.created_by,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "result": orjson.loads(job.result) if job.result else None,
    }


# --- The lock -------------------------------------------------------------------

def _lock_is_stale(lock: OperationLock) -> bool:
    return lock.expires_at <= utcnow() or owner_is_dead(lock.owner)


def acquire_exclusive(job_id: str | None, name: str = EXCLUSIVE_LOCK) -> None:
    """Take the one-at-a-time lock or raise ``ConflictError`` carrying the running job."""
    for _ in range(3):
        db.session.add(OperationLock(name=name, job_id=job_id, owner=current_owner(),
                                     expires_at=utcnow() + LOCK_TTL))
        try:
            db.session.commit()
            return
        except IntegrityError:
            db.session.rollback()
        held = db.session.get(OperationLock, name, populate_existing=True)
        if held is None:
            continue
        if _lock_is_stale(held):
            _fail_job(held.job_id, "Interrupted: the process running it stopped.")
            db.session.execute(delete(OperationLock).where(OperationLock.name == name,
                                                           OperationLock.owner == held.owner,
                                                           OperationLock.acquired_at == held.acquired_at))
            # The session must forget the stale row before the next try adds one with the same key.
            db.session.expunge(held)
            db.session.commit()
            continue
        running = db.session.get(BackupJob, held.job_id) if held.job_id else None
        raise ConflictError(
            "Another backup or restore is running; wait for it to finish.",
            job=job_to_dict(running) if running else None,
        )
    raise ConflictError("Another backup or restore is running; wait for it to finish.", job=None)


def release_exclusive(job_id: str | None, name: str = EXCLUSIVE_LOCK) -> None:
    """Release the lock if this job holds it."""
    db.session.rollback()
    db.session.execute(delete(OperationLock).where(OperationLock.name == name, OperationLock.job_id == job_id))
    db.session.commit()


def refresh_exclusive(job_id: str | None, name: str = EXCLUSIVE_LOCK) -> None:
    """Push the lock's expiry forward while a long job still runs."""
    db.session.execute(update(OperationLock).where(OperationLock.name == name, OperationLock.job_id == job_id)
                       .values(expires_at=utcnow() + LOCK_TTL))
    db.session.commit()


def exclusive_is_held() -> dict | None:
    """The job holding the lock right now (as a dict), or None."""
    held = db.session.get(OperationLock, EXCLUSIVE_LOCK, populate_existing=True)
    if held is None or _lock_is_stale(held):
        return None
    job = db.session.get(BackupJob, held.job_id) if held.job_id else None
    return job_to_dict(job) if job else {"id": held.job_id}


def refuse_while_locked(kinds: tuple[str, ...] | None = None) -> None:
    """``ConflictError`` (409, carrying the job) when a backup or restore holds the lock.

    Asked before anything is written: on SQLite a running restore holds the write
    lock, so even recording a new job would wait for it (up to the busy timeout)
    instead of answering at once. ``kinds`` limits the refusal to jobs of those kinds.
    """
    held = exclusive_is_held()
    db.session.rollback()
    if held is not None and (kinds is None or held.get("kind") in kinds):
        raise ConflictError("Another backup or restore is running; wait for it to finish.", job=held)


# --- Jobs -------------------------------------------------------------------------

def _fail_job(job_id: str | None, message: str) -> None:
    if not job_id:
        return
    db.session.execute(update(BackupJob).where(BackupJob.id == job_id, BackupJob.status.in_(("queued", "running")))
                       .values(status="failed", message=message, finished_at=utcnow()))


def recover_interrupted_jobs() -> int:
    """Mark failed every job left running by a process that is gone; returns how many.

    Called at start-up and before reading job state, so a killed run never stays "running".
    """
    held = {lock.job_id for lock in db.session.execute(select(OperationLock)).scalars() if not _lock_is_stale(lock)}
    count = 0
    for job in db.session.execute(select(BackupJob).where(BackupJob.status.in_(("queued", "running")))).scalars():
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
        import time

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
                conn.execute(update(OperationLock).where(OperationLock.job_id == self.job_id)
                             .values(expires_at=utcnow() + LOCK_TTL))
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
    job = BackupJob(id=str(uuid.uuid4()), kind=kind, status="queued", created_by=created_by,
                    owner=current_owner(), progress=0.0)
    db.session.add(job)
    db.session.commit()
    return job


def run_job(kind: str, created_by: str | None, work: Callable[[JobHandle], dict], *,
            exclusive: bool = True, background: bool = True) -> BackupJob:
    """Run ``work(handle)`` as a recorded job and return its ``BackupJob`` row.

    With ``exclusive`` the one-at-a-time lock is taken first, in the caller's thread,
    so a conflict raises ``ConflictError`` before anything starts. ``work`` returns the
    job's result (a JSON-able dict); any exception marks the job failed with its message.
    With ``background`` the work runs in a thread with its own app context and this
    returns at once; otherwise it returns when the job has finished (and re-raises
    a ``BackupError`` the work raised).
    """
    if exclusive:
        refuse_while_locked()
    job = create_job(kind, created_by)
    if exclusive:
        try:
            acquire_exclusive(job.id)
        except ConflictError:
            db.session.delete(job)
            db.session.commit()
            raise
    job_id = job.id
    locked_by_restore = kind == "restore" and dialect_for(db.engine).restore_locks_database
    handle = JobHandle(job_id, kind, write_progress_to_db=not locked_by_restore)
    app = current_app._get_current_object()

    def body():
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
                db.session.execute(delete(OperationLock).where(OperationLock.name == EXCLUSIVE_LOCK,
                                                               OperationLock.job_id == job_id))
            db.session.commit()
            _live_progress.pop(job_id, None)
        return error

    if background:
        def thread_main():
            with app.app_context():
                body()

        threading.Thread(target=thread_main, name=f"{kind}-job-{job_id[:8]}", daemon=True).start()
        return job

    error = body()
    finished = db.session.get(BackupJob, job_id, populate_existing=True)
    if isinstance(error, BackupError):
        raise error
    if error is not None:
        raise BackupError(f"The {kind} failed: {finished.message}") from error
    return finished


def get_job(job_id: str) -> BackupJob | None:
    """The job with this id, after marking interrupted jobs failed."""
    recover_interrupted_jobs()
    return db.session.get(BackupJob, job_id, populate_existing=True)


def latest_active_job() -> BackupJob | None:
    """The queued or running job, if any (for the System Backup page)."""
    recover_interrupted_jobs()
    return db.session.execute(select(BackupJob).where(BackupJob.status.in_(("queued", "running")))
                              .order_by(BackupJob.created_at.desc())).scalars().first()
