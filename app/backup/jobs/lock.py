"""The one-at-a-time lock held in the database, and who holds it.

One backup or restore runs at a time across every process and host sharing the
database, and one verification (``VERIFY_LOCK``, a lock of its own: it reads an
archive into a scratch database and may run beside a backup): the lock is a row in
``operation_locks`` (primary key = lock name), so inserting it is taking it and the
database arbitrates. A holder is named
``host:pid`` (``current_owner``; the host is ``BACKUP_OWNER_HOST``, by default the
machine's name). A job waiting in a Celery queue holds the lock as ``QUEUE_OWNER``
until a worker takes the job over (``take_over``).

The holder proves it is alive with a heartbeat: the running job pushes the lock's
expiry ``BACKUP_LOCK_TTL`` seconds ahead several times per TTL (``refresh_exclusive``,
from the job's heartbeat thread). A lock is *stale* when its holder is gone: a process
on this host that no longer exists (seen at once), or, for a holder on another host
(whose processes cannot be seen from here), a lock whose expiry passed. A queued lock
expires after ``BACKUP_JOB_QUEUE_TIMEOUT``. Whoever meets a stale lock fails its job
and deletes it (``acquire_exclusive``, ``release_stale_locks``).
"""
from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from flask import current_app, has_app_context
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...models import BackupJob, OperationLock, utcnow
from ..errors import ConflictError
from .records import fail_unfinished_job, job_to_dict

EXCLUSIVE_LOCK = "backup-restore"
VERIFY_LOCK = "verify"
# What a request that meets a held lock is told.
_BUSY = {EXCLUSIVE_LOCK: "Another backup or restore is running; wait for it to finish.",
         VERIFY_LOCK: "Another verification is running; wait for it to finish."}
LOCK_TTL = timedelta(seconds=30)
QUEUE_TIMEOUT = timedelta(hours=1)
HOSTNAME = socket.gethostname()
# The holder of a job's lock while the job waits in a queue: no process, so never "dead".
QUEUE_OWNER = "queue"
INTERRUPTED = "Interrupted: the process running it stopped."


def this_host() -> str:
    """The host part of this process's owner id (``BACKUP_OWNER_HOST`` of the current app, else the machine's name)."""
    if has_app_context():
        return current_app.config.get("BACKUP_OWNER_HOST") or HOSTNAME
    return HOSTNAME


def current_owner() -> str:
    """``host:pid`` of this process (recomputed: forks get their own)."""
    return f"{this_host()}:{os.getpid()}"


def lock_ttl() -> timedelta:
    """How long a lock (and a running job) stays alive without a heartbeat: ``BACKUP_LOCK_TTL`` seconds."""
    seconds = current_app.config.get("BACKUP_LOCK_TTL") if has_app_context() else None
    return timedelta(seconds=seconds) if seconds else LOCK_TTL


def queue_timeout() -> timedelta:
    """How long a job may wait in the queue for a worker: ``BACKUP_JOB_QUEUE_TIMEOUT`` seconds."""
    seconds = current_app.config.get("BACKUP_JOB_QUEUE_TIMEOUT") if has_app_context() else None
    return timedelta(seconds=seconds) if seconds else QUEUE_TIMEOUT


def _on_this_host(owner: str | None) -> int | None:
    """The pid of ``owner`` when it is a process of this host, else None."""
    host, _, pid = (owner or "").rpartition(":")
    return int(pid) if host == this_host() and pid.isdigit() else None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` (``host:pid``) was a process on this host that no longer exists."""
    pid = _on_this_host(owner)
    return pid is not None and not _process_exists(pid)


def owner_is_gone(owner: str | None, last_sign_of_life: datetime, ttl: timedelta) -> bool:
    """Whether the holder ``owner`` has stopped.

    A process of this host is asked directly (its lock may sit unrefreshed while it
    works, e.g. during an SQLite restore that keeps every writer out). Of a holder on
    another host only its heartbeat is known: it is gone once ``last_sign_of_life`` is
    ``ttl`` old.
    """
    pid = _on_this_host(owner)
    if pid is not None:
        return not _process_exists(pid)
    return last_sign_of_life <= utcnow() - ttl


def _lock_is_stale(lock: OperationLock) -> bool:
    if lock.owner == QUEUE_OWNER:
        return lock.expires_at <= utcnow()
    # expires_at is one TTL past the last heartbeat, so the holder is gone once it has passed.
    return owner_is_gone(lock.owner, lock.expires_at, timedelta(0))


def _clear_stale(held: OperationLock) -> None:
    """Fail the job of a stale lock and delete the lock, if nobody else did in the meantime."""
    message = ("Never started: no worker took it from the queue in time." if held.owner == QUEUE_OWNER
               else INTERRUPTED)
    fail_unfinished_job(held.job_id, message)
    db.session.execute(delete(OperationLock).where(OperationLock.name == held.name,
                                                   OperationLock.owner == held.owner,
                                                   OperationLock.acquired_at == held.acquired_at))
    # The session must forget the stale row before anyone adds one with the same key.
    db.session.expunge(held)
    db.session.commit()


def acquire_exclusive(job_id: str | None, name: str = EXCLUSIVE_LOCK, *, queued: bool = False) -> None:
    """Take the one-at-a-time lock or raise ``ConflictError`` carrying the running job.

    With ``queued`` the lock is held for a job waiting in the queue (``QUEUE_OWNER``),
    until a worker takes it over or ``BACKUP_JOB_QUEUE_TIMEOUT`` passes.
    """
    owner, ttl = (QUEUE_OWNER, queue_timeout()) if queued else (current_owner(), lock_ttl())
    for _ in range(3):
        db.session.add(OperationLock(name=name, job_id=job_id, owner=owner, expires_at=utcnow() + ttl))
        try:
            db.session.commit()
            return
        except IntegrityError:
            db.session.rollback()
        held = db.session.get(OperationLock, name, populate_existing=True)
        if held is None:
            continue
        if _lock_is_stale(held):
            _clear_stale(held)
            continue
        running = db.session.get(BackupJob, held.job_id) if held.job_id else None
        raise ConflictError(_BUSY.get(name, _BUSY[EXCLUSIVE_LOCK]), job=job_to_dict(running) if running else None)
    raise ConflictError(_BUSY.get(name, _BUSY[EXCLUSIVE_LOCK]), job=None)


def take_over(session, job_id: str, owner: str) -> None:
    """Make ``owner`` the holder of the lock the job holds (a worker starting a queued job), in ``session``."""
    session.execute(update(OperationLock).where(OperationLock.job_id == job_id)
                    .values(owner=owner, expires_at=utcnow() + lock_ttl()))


def drop_exclusive(job_id: str | None, name: str | None = None) -> None:
    """Delete the lock this job holds (only the lock ``name``, if given), in the session's transaction (the caller commits)."""
    held = delete(OperationLock).where(OperationLock.job_id == job_id)
    db.session.execute(held if name is None else held.where(OperationLock.name == name))


def release_exclusive(job_id: str | None, name: str = EXCLUSIVE_LOCK) -> None:
    """Release the lock if this job holds it (the session's uncommitted work is discarded first)."""
    db.session.rollback()
    drop_exclusive(job_id, name)
    db.session.commit()


def refresh_exclusive(conn: Connection, job_id: str, ttl: timedelta) -> None:
    """Push the expiry of the lock this job holds ``ttl`` ahead, on ``conn`` in its transaction (the job lives)."""
    conn.execute(update(OperationLock).where(OperationLock.job_id == job_id).values(expires_at=utcnow() + ttl))


def exclusive_is_held() -> dict | None:
    """The job holding the lock right now (as a dict), or None."""
    held = db.session.get(OperationLock, EXCLUSIVE_LOCK, populate_existing=True)
    if held is None or _lock_is_stale(held):
        return None
    job = db.session.get(BackupJob, held.job_id) if held.job_id else None
    return job_to_dict(job) if job else {"id": held.job_id}


def release_stale_locks() -> int:
    """Fail the jobs of stale locks and delete those locks; returns how many were released."""
    stale = [lock for lock in db.session.execute(select(OperationLock)).scalars() if _lock_is_stale(lock)]
    for lock in stale:
        _clear_stale(lock)
    db.session.rollback()
    return len(stale)


def jobs_holding_live_locks() -> set[str | None]:
    """The job ids of every lock whose holder is still alive."""
    return {lock.job_id for lock in db.session.execute(select(OperationLock)).scalars() if not _lock_is_stale(lock)}


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
