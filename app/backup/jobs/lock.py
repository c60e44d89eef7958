"""The one-at-a-time lock held in the database, and who holds it.

One backup or restore runs at a time across every process and host sharing the
database, and one verification (``VERIFY_LOCK``, a lock of its own: it reads an
archive into a scratch database and may run beside a backup): the lock is a row in
``operation_locks`` (primary key = lock name), so inserting it is taking it and the
database arbitrates. A lock whose holder died
(kill -9, lost host) is recognised as stale by its expiry, or at once when the
holder was a process on this host that no longer exists. A holder is named
``host:pid`` (``current_owner``).
"""
from __future__ import annotations

import os
import socket
from datetime import timedelta

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
LOCK_TTL = timedelta(minutes=30)
HOSTNAME = socket.gethostname()


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
            fail_unfinished_job(held.job_id, "Interrupted: the process running it stopped.")
            db.session.execute(delete(OperationLock).where(OperationLock.name == name,
                                                           OperationLock.owner == held.owner,
                                                           OperationLock.acquired_at == held.acquired_at))
            # The session must forget the stale row before the next try adds one with the same key.
            db.session.expunge(held)
            db.session.commit()
            continue
        running = db.session.get(BackupJob, held.job_id) if held.job_id else None
        raise ConflictError(_BUSY.get(name, _BUSY[EXCLUSIVE_LOCK]), job=job_to_dict(running) if running else None)
    raise ConflictError(_BUSY.get(name, _BUSY[EXCLUSIVE_LOCK]), job=None)


def drop_exclusive(job_id: str | None, name: str = EXCLUSIVE_LOCK) -> None:
    """Delete the lock this job holds, within the session's transaction (the caller commits)."""
    db.session.execute(delete(OperationLock).where(OperationLock.name == name, OperationLock.job_id == job_id))


def release_exclusive(job_id: str | None, name: str = EXCLUSIVE_LOCK) -> None:
    """Release the lock if this job holds it (the session's uncommitted work is discarded first)."""
    db.session.rollback()
    drop_exclusive(job_id, name)
    db.session.commit()


def refresh_exclusive(conn: Connection, job_id: str) -> None:
    """Push the expiry of the lock this job holds forward, on ``conn`` in its transaction (a long job still runs)."""
    conn.execute(update(OperationLock).where(OperationLock.job_id == job_id).values(expires_at=utcnow() + LOCK_TTL))


def exclusive_is_held() -> dict | None:
    """The job holding the lock right now (as a dict), or None."""
    held = db.session.get(OperationLock, EXCLUSIVE_LOCK, populate_existing=True)
    if held is None or _lock_is_stale(held):
        return None
    job = db.session.get(BackupJob, held.job_id) if held.job_id else None
    return job_to_dict(job) if job else {"id": held.job_id}


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
