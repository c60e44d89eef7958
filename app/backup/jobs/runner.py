"""Background jobs with progress: each backup, restore or verify is a recorded ``BackupJob``.

``run_job`` records the job, takes the one-at-a-time lock (``lock.py``) when asked,
and hands the work to the app's executor (``executors``): a thread of this process
or a Celery worker, as ``BACKUP_JOB_EXECUTOR`` says. Wherever it runs,
``execute_job`` takes the queued job (exactly once), keeps its heartbeat going
(``heartbeat.py``), runs the work and records the outcome.

A job body a worker can run is a ``JobWork``: the name of a body registered with
``job_body`` and plain (JSON-able) arguments, so another process can rebuild it.
"""
from __future__ import annotations

import logging
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import orjson
from flask import current_app
from sqlalchemy import select, update

from ...extensions import db
from ...models import BackupJob, utcnow
from .. import errors
from ..dialects import dialect_for
from ..errors import BackupError, ConflictError
from ..storage import get_storage
from . import messages
from .heartbeat import Heartbeat
from .lock import (EXCLUSIVE_LOCK, QUEUE_OWNER, acquire_exclusive, current_owner, drop_exclusive,
                   jobs_holding_live_locks, lock_ttl, owner_is_gone, queue_timeout, refresh_exclusive,
                   refuse_while_locked, release_stale_locks, take_over)
from .records import UNFINISHED, job_to_dict

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
EXECUTOR_KEY = "backup_job_executor"
QUEUED_MESSAGE = "Queued: waiting for a worker."
NEVER_STARTED = "Never started: no worker took it from the queue in time."

# Job bodies by name: module-level functions ``body(app, handle, **args) -> result``.
_BODIES: dict[str, Callable[..., dict]] = {}


def job_body(name: str):
    """Register a module-level function as the job body ``name``, runnable by any worker as a ``JobWork``."""
    def register(function):
        _BODIES[name] = function
        return function

    return register


@dataclass(frozen=True)
class JobWork:
    """A registered job body and its plain (JSON-able) arguments: what a worker in another process rebuilds."""

    body: str
    args: dict

    def __call__(self, handle: "JobHandle") -> dict:
        return _BODIES[self.body](current_app._get_current_object(), handle, **self.args)


def recover_interrupted_jobs() -> int:
    """Fail every job whose holder is gone and release its lock; returns how many were found.

    Called at start-up, by the scheduler's beat and before reading job state, so a job
    whose process or worker died (on any host) stays "running" at most one heartbeat
    TTL (``BACKUP_LOCK_TTL``), and a job nobody takes from the queue at most
    ``BACKUP_JOB_QUEUE_TIMEOUT``.
    """
    count = release_stale_locks()
    held = jobs_holding_live_locks()
    ttl, waited_too_long = lock_ttl(), utcnow() - queue_timeout()
    for job in db.session.execute(select(BackupJob).where(BackupJob.status.in_(UNFINISHED))).scalars():
        if job.id in held:
            continue
        if job.owner == QUEUE_OWNER:
            gone, message = job.created_at <= waited_too_long, NEVER_STARTED
        else:
            gone = owner_is_gone(job.owner, job.heartbeat_at or job.started_at or job.created_at, ttl)
            message = "Interrupted: the process running it stopped before it finished."
        if gone:
            job.status, job.finished_at, job.message = "failed", utcnow(), message
            count += 1
    db.session.commit()
    if count:
        _remove_unfinished_archives()
    return count


def _remove_unfinished_archives() -> None:
    # A dead job may have left a half-written archive; files of live writers are kept.
    try:
        get_storage(current_app).cleanup_partials()
    except BackupError as exc:
        log.warning("could not clean up the backup store after an interrupted job: %s", exc)


@dataclass
class JobHandle:
    """What a running job's work function uses to report progress.

    ``listener`` (in the process that started the job) hears every report too,
    e.g. the CLI's progress lines.
    """

    job_id: str
    kind: str
    write_progress_to_db: bool = True
    listener: ProgressCallback | None = None
    _last_write: float = field(default=0.0)

    def progress(self, fraction: float, message: str = "") -> None:
        """Record progress (0..1). Throttled to about one database write a second."""
        fraction = max(0.0, min(1.0, fraction))
        _live_progress[self.job_id] = (fraction, message)
        messages.record(self.job_id, message)
        if self.listener is not None:
            self.listener(fraction, message)
        now = time.monotonic()
        if not self.write_progress_to_db or now - self._last_write < 1.0:
            return
        self._last_write = now
        try:
            with db.engine.begin() as conn:
                conn.execute(update(BackupJob).where(BackupJob.id == self.job_id)
                             .values(progress=fraction, message=message or None, heartbeat_at=utcnow()))
                refresh_exclusive(conn, self.job_id, lock_ttl())
        except Exception:  # progress is best effort; the job's outcome is recorded in finally
            log.warning("could not record progress of job %s", self.job_id, exc_info=True)


def job_handle(job_id: str, kind: str, listener: ProgressCallback | None = None) -> JobHandle:
    """The handle of job ``job_id`` in the process that runs it."""
    # A restore that holds the database's write lock until it commits (SQLite): progress stays in memory.
    locked_by_restore = kind == "restore" and dialect_for(db.engine).restore_locks_database
    return JobHandle(job_id, kind, write_progress_to_db=not locked_by_restore, listener=listener)


# Progress of jobs running in this process, readable even while a write transaction
# (an SQLite restore) keeps the database from recording it.
_live_progress: dict[str, tuple[float, str]] = {}


def live_job_dict(job: BackupJob) -> dict:
    """``job_to_dict`` with the freshest progress this process knows of, and its ``log`` (``messages.lines``)."""
    data = job_to_dict(job)
    data["log"] = messages.lines(job.id)
    if job.status == "running" and job.id in _live_progress:
        data["progress"], message = _live_progress[job.id]
        data["message"] = message or data["message"]
    return data


def create_job(kind: str, created_by: str | None, *, queued: bool = False) -> BackupJob:
    """Record a new queued job of ``kind``: owned by this process, or with ``queued`` by the queue."""
    job = BackupJob(id=str(uuid.uuid4()), kind=kind, status="queued", created_by=created_by,
                    owner=QUEUE_OWNER if queued else current_owner(), progress=0.0,
                    message=QUEUED_MESSAGE if queued else None)
    db.session.add(job)
    db.session.commit()
    return job


def job_executor():
    """The executor the app runs its jobs with (installed at start-up by ``executors.install``)."""
    return current_app.extensions[EXECUTOR_KEY]


def run_job(kind: str, created_by: str | None, work: Callable[[JobHandle], dict], *,
            exclusive: bool = True, background: bool = True, progress: ProgressCallback | None = None,
            lock_name: str = EXCLUSIVE_LOCK) -> BackupJob:
    """Run ``work(handle)`` as a recorded job and return its ``BackupJob`` row.

    With ``exclusive`` the lock ``lock_name`` (by default the one-at-a-time lock of
    backups and restores) is taken first, in the caller's thread, so a conflict
    raises ``ConflictError`` before anything starts. ``work`` returns the
    job's result (a JSON-able dict); any exception marks the job failed with its message.
    A queueing executor needs ``work`` to be a ``JobWork``. With ``background`` this
    returns at once; otherwise it returns when the job has finished (and re-raises
    the ``BackupError`` the work raised). ``progress`` hears the job's progress reports.
    """
    executor = job_executor()
    if exclusive and lock_name == EXCLUSIVE_LOCK:
        refuse_while_locked()
    job = create_job(kind, created_by, queued=executor.queues)
    if exclusive:
        try:
            acquire_exclusive(job.id, lock_name, queued=executor.queues)
        except ConflictError:
            db.session.delete(job)
            db.session.commit()
            raise
    handle = job_handle(job.id, kind, listener=progress)
    if background:
        executor.start(handle, work, exclusive)
        return job

    error = executor.run(handle, work, exclusive)
    finished = db.session.get(BackupJob, job.id, populate_existing=True)
    if isinstance(error, BackupError):
        raise error
    if error is not None:
        raise BackupError(f"The {kind} failed: {finished.message}") from error
    return finished


def _take_queued_job(handle: JobHandle, exclusive: bool) -> bool:
    """Mark the queued job running in this process (and make it the lock's holder); False if it is not queued."""
    owner, now = current_owner(), utcnow()
    db.session.rollback()
    taken = db.session.execute(update(BackupJob).where(BackupJob.id == handle.job_id, BackupJob.status == "queued")
                               .values(status="running", owner=owner, started_at=now, heartbeat_at=now,
                                       message=None)).rowcount == 1
    if taken and exclusive:
        take_over(db.session, handle.job_id, owner)
    db.session.commit()
    return taken


def execute_job(handle: JobHandle, work: Callable[[JobHandle], dict], exclusive: bool) -> BaseException | None:
    """Run the recorded job's ``work`` to its end and record the outcome; returns what it raised, if anything.

    Never raises for a failing ``work``: its status, message and result are recorded,
    and with ``exclusive`` the lock it holds goes in the same commit. A job that is no
    longer queued (it ran already, or waited too long and was failed) is not run again.
    """
    job_id, kind = handle.job_id, handle.kind
    if not _take_queued_job(handle, exclusive):
        log.warning("%s job %s is no longer queued; not running it", kind, job_id)
        return BackupError(f"The {kind} job was no longer waiting to run; it was not started.")
    error: BaseException | None = None
    status, message, result = "failed", None, None
    beating = Heartbeat(db.engine, job_id, lock_ttl()) if handle.write_progress_to_db else nullcontext()
    try:
        with beating:
            result = work(handle)
        status, message = "succeeded", "Done."
    except BackupError as exc:
        error, message = exc, exc.message
    except Exception as exc:  # the job records any failure; the log keeps the traceback
        log.exception("%s job %s failed", kind, job_id)
        error, message = exc, f"{type(exc).__name__}: {exc}"
    finally:
        record_outcome(job_id, status, message, result, error, exclusive=exclusive)
    return error


def record_outcome(job_id: str, status: str, message: str | None, result: dict | None,
                   error: BaseException | None, *, exclusive: bool) -> None:
    """Write the job's final state and, with ``exclusive``, release the lock it holds in the same commit."""
    db.session.rollback()
    db.session.execute(update(BackupJob).where(BackupJob.id == job_id).values(
        status=status, message=message, finished_at=utcnow(),
        progress=1.0 if status == "succeeded" else BackupJob.progress,
        error_type=type(error).__name__ if isinstance(error, BackupError) else None,
        result=orjson.dumps(result).decode() if result is not None else None))
    if exclusive:
        # Same commit as the final status: a client that sees the job finished
        # can start the next one at once without meeting a 409.
        drop_exclusive(job_id)
    db.session.commit()
    _live_progress.pop(job_id, None)


def error_of(job: BackupJob) -> BackupError | None:
    """The error a failed job raised, rebuilt from its row (its class and message); None unless it failed."""
    if job.status != "failed":
        return None
    kind = getattr(errors, job.error_type or "", None)
    if not (isinstance(kind, type) and issubclass(kind, BackupError)):
        kind = BackupError
    return kind(job.message or f"The {job.kind} failed.")


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
