"""The ``backup_jobs`` rows as the contract shows them, and the one update the lock also needs.

At the bottom of ``jobs/``: the lock (``lock.py``) reports the job holding it and fails
the job of a dead holder; the runner (``runner.py``) records every job's life.
"""
from __future__ import annotations

import orjson
from sqlalchemy import update

from ...extensions import db
from ...models import BackupJob, utcnow

UNFINISHED = ("queued", "running")


def job_to_dict(job: BackupJob) -> dict:
    """The contract's Job object, plus ``waited_seconds``: how long it has waited (or waited) in the queue."""
    started = job.started_at or (utcnow() if job.status == "queued" else None)
    waited = round((started - job.created_at).total_seconds(), 1) if started and job.created_at else None
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
        "waited_seconds": max(waited, 0.0) if waited is not None else None,
    }


def fail_unfinished_job(job_id: str | None, message: str) -> None:
    """Mark the job failed with ``message`` if it is still queued or running (the caller commits)."""
    if not job_id:
        return
    db.session.execute(update(BackupJob).where(BackupJob.id == job_id, BackupJob.status.in_(UNFINISHED))
                       .values(status="failed", message=message, finished_at=utcnow()))
