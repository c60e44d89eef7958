"""What the System Backup page and its JSON show, gathered in one call each, as plain values.

``listing`` is the list's JSON (backups, the running job, the rows at risk);
``system_backup_page`` adds what a person reads at a glance: the summary cards,
the history the chart draws, the recent jobs, the schedule, and the outcome of a
job the page was asked about. It reads only; it never writes or sends anything.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import BackupJob, BackupRecord, ScheduledRun, data_tables, utcnow
from .jobs.records import UNFINISHED
from .schedule import health as backup_health
from .schedule.settings import load_settings
from .service import BackupService
from .units import human_age

# The columns that say when a row was added, by preference; a table without one is
# compared by its row count with the backup's instead.
ADDED_AT_COLUMNS = ("created_at", "attempted_at")
CHART_BACKUPS = 30


def _moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def newest_good_backup(backups: list[dict]) -> dict | None:
    """The newest listed backup whose verification did not fail (the health's "successful" backup)."""
    return next((b for b in backups if b.get("verified") is not False), None)


def at_risk(backups: list[dict]) -> dict:
    """``{"since", "rows", "tables"}``: the rows added to each data table since the newest good backup.

    With no good backup every row is at risk and ``since`` is None.
    """
    good = newest_good_backup(backups)
    since = _moment(good["created_at"]) if good else None
    tables = {}
    with db.engine.connect() as conn:
        for table in data_tables():
            added_at = next((table.c[name] for name in ADDED_AT_COLUMNS if name in table.c), None)
            query = sa.select(sa.func.count()).select_from(table)
            if since is not None and added_at is not None:
                query = query.where(added_at > since)
            count = conn.execute(query).scalar_one()
            if since is not None and added_at is None:
                count = max(0, count - good["record_counts"].get(table.name, 0))
            tables[table.name] = count
    return {"since": good["created_at"] if good else None, "rows": sum(tables.values()), "tables": tables}


def listing() -> dict:
    """The JSON of ``GET /admin/system-backup``: backups newest first, the running job, ``at_risk``."""
    backups = BackupService().list()
    return {"backups": backups, "job": BackupService.active_job(), "at_risk": at_risk(backups)}


def _verified_times() -> dict[str, datetime]:
    rows = db.session.execute(sa.select(BackupRecord.filename, BackupRecord.verified_at)
                              .where(BackupRecord.verified_at.is_not(None)))
    return {filename: verified_at for filename, verified_at in rows}


def _failures(since: datetime | None) -> list[dict]:
    """Failed backup jobs, and scheduled runs whose backup was made but failed its verification."""
    jobs = sa.select(BackupJob).where(BackupJob.kind == "backup", BackupJob.status == "failed")
    runs = sa.select(ScheduledRun).where(ScheduledRun.status == "failed", ScheduledRun.filename.is_not(None))
    if since is not None:
        jobs, runs = jobs.where(BackupJob.created_at >= since), runs.where(ScheduledRun.slot >= since)
    failed = [{"at": job.finished_at or job.created_at, "message": job.message or "failed"}
              for job in db.session.execute(jobs.order_by(BackupJob.created_at.desc()).limit(CHART_BACKUPS)).scalars()]
    failed += [{"at": run.finished_at or run.slot, "message": run.error or "failed"}
               for run in db.session.execute(runs.order_by(ScheduledRun.slot.desc()).limit(CHART_BACKUPS)).scalars()]
    return sorted(failed, key=lambda f: f["at"])


def history(backups: list[dict]) -> dict:
    """What the history chart draws: the newest backups oldest first (time, size, records) and failed runs."""
    shown = backups[:CHART_BACKUPS][::-1]
    points = [{"at": _moment(b["created_at"]), "size": b["size_bytes"], "records": b["total_records"],
               "filename": b["filename"]} for b in shown]
    since = points[0]["at"] if len(backups) >= CHART_BACKUPS else None
    return {"points": points, "failures": _failures(since)}


def _last_proven_restore(backups: list[dict], verified_at: dict[str, datetime], now: datetime) -> dict | None:
    checked = [b for b in backups if b["filename"] in verified_at and b.get("verified") is not None]
    if not checked:
        return None
    newest = max(checked, key=lambda b: verified_at[b["filename"]])
    moment = verified_at[newest["filename"]]
    return {"filename": newest["filename"], "ok": newest["verified"], "restore_seconds": newest["restore_seconds"],
            "verified_at": moment, "age": human_age((now - moment).total_seconds())}


def summary(backups: list[dict], risk: dict, health: backup_health.Health, verified_at: dict[str, datetime],
            now: datetime) -> dict:
    """The summary cards: health, the last good backup, the next run, the store, the last proven restore, the risk."""
    good = newest_good_backup(backups)
    last = None
    if good is not None:
        last = {"filename": good["filename"], "created_at": good["created_at"],
                "age": human_age((now - _moment(good["created_at"])).total_seconds())}
    return {
        "health": {"status": health.status, "reason": health.reason},
        "last_backup": last,
        "next_run_at": health.next_run_at,
        "stored": {"count": len(backups), "size_bytes": sum(b["size_bytes"] for b in backups)},
        "proven_restore": _last_proven_restore(backups, verified_at, now),
        "at_risk": risk,
    }


def _storage_place(app) -> str:
    config = app.config
    if config.get("BACKUP_STORAGE", "local") == "s3":
        prefix = config.get("BACKUP_S3_PREFIX") or ""
        return f"S3 bucket {config.get('BACKUP_S3_BUCKET')}" + (f", prefix {prefix}" if prefix else "")
    return f"the directory {config.get('BACKUP_DIRECTORY')}"


def _finished_job(job_id: str | None) -> dict | None:
    if not job_id:
        return None
    job = BackupService.job(job_id)
    return job if job is not None and job["status"] not in UNFINISHED else None


def system_backup_page(job_id: str | None = None, now: datetime | None = None) -> dict:
    """Everything the System Backup page shows; ``job_id`` names a job whose outcome the page reports."""
    now = now or utcnow()
    listed = listing()
    backups = listed["backups"]
    health = backup_health.assess(now)
    settings = load_settings()
    verified_at = _verified_times()
    return {
        **listed,
        "health": health,
        "verified_at": verified_at,
        "summary": summary(backups, listed["at_risk"], health, verified_at, now),
        "history": history(backups),
        "recent_jobs": BackupService.recent_jobs(),
        "outcome": _finished_job(job_id),
        "schedule": {"description": settings.describe(), "enabled": settings.enabled,
                     "retention_days": settings.effective_retention_days, "keep_last": settings.keep_last,
                     "notify": list(settings.notify_emails), "notify_on": settings.notify_on,
                     "storage": _storage_place(current_app)},
        "now": now,
    }
