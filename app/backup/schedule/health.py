"""Is the installation protected? The health of backups, for monitors and the pages.

``ok`` (200) when the newest successful backup is fresh and nothing failed; otherwise
503 with a reason:

* ``failing``: the last scheduled run failed, or the last verification failed;
* ``empty``: no successful backup exists;
* ``stale``: the schedule is enabled and no successful backup is younger than 1.5x
  its interval (a dead-man's switch: whatever stopped the runs, this notices).

A *successful* backup is a listed one whose verification did not fail.
Assessing reads and never writes or sends anything, so pages and monitors may ask
as often as they like; ``alert_due`` tells the scheduler's beat
(``runner.alert_if_missed``) that a missed schedule deserves its alert e-mail.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from ...extensions import db
from ...models import BackupRecord, ScheduledRun, utcnow
from ..errors import BackupError
from ..units import human_age
from .retention import BackupDescriptor
from .settings import ScheduleSettings, load_settings, next_run_at
from ..service import BackupService

STALE_FACTOR = 1.5
FINISHED = ("succeeded", "failed")


@dataclass
class Health:
    """The contract's Health object, plus details for the pages."""

    status: str
    reason: str
    last_success_at: datetime | None
    next_run_at: datetime | None
    last_run: dict | None = None
    schedule_enabled: bool = False
    alert_due: bool = False

    @property
    def http_status(self) -> int:
        """200 when ok, else 503 (what uptime monitors look at)."""
        return 200 if self.status == "ok" else 503

    def to_dict(self) -> dict:
        """JSON body of ``GET /admin/backup-health``."""
        return {
            "status": self.status,
            "reason": self.reason,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "next_run_at": self.next_run_at.isoformat() if self.next_run_at else None,
            "last_scheduled_run": self.last_run,
            "schedule_enabled": self.schedule_enabled,
        }


def _ago(moment: datetime, now: datetime) -> str:
    return human_age((now - moment).total_seconds())


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _last_finished_run() -> ScheduledRun | None:
    return db.session.execute(select(ScheduledRun).where(ScheduledRun.status.in_(FINISHED))
                              .order_by(ScheduledRun.slot.desc()).limit(1)).scalars().first()


def _last_verification() -> BackupRecord | None:
    return db.session.execute(select(BackupRecord).where(BackupRecord.verified_at.is_not(None))
                              .order_by(BackupRecord.verified_at.desc()).limit(1)).scalars().first()


def _run_dict(run: ScheduledRun | None) -> dict | None:
    if run is None:
        return None
    return {"slot": run.slot.isoformat(), "status": run.status, "filename": run.filename, "error": run.error,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None}


def evaluate(settings: ScheduleSettings, last_success_at: datetime | None, last_run: dict | None,
             last_verification: tuple[str, bool] | None, now: datetime) -> Health:
    """The health for these facts (pure: the caller gathers them)."""
    upcoming = next_run_at(settings, now)

    def health(status: str, reason: str, alert_due: bool = False) -> Health:
        return Health(status, reason, last_success_at, upcoming, last_run, settings.enabled, alert_due)

    if last_run is not None and last_run["status"] == "failed":
        return health("failing", f"The last scheduled run (slot {last_run['slot'][:16]} UTC) failed: "
                                 f"{last_run['error'] or 'no details recorded'}")
    if last_verification is not None and not last_verification[1]:
        return health("failing", f"The last verification failed: {last_verification[0]} did not pass.")
    # The alert is for a schedule that had its chance: in force for 1.5 intervals without a fresh backup.
    window = settings.interval * STALE_FACTOR
    had_its_chance = settings.enabled and (settings.effective_from is None or now - settings.effective_from > window)
    if last_success_at is None:
        return health("empty", "No successful backup exists yet.", had_its_chance)
    if settings.enabled and now - last_success_at > window:
        hours = int(window.total_seconds() // 3600)
        return health("stale", f"No successful backup since {_stamp(last_success_at)} "
                               f"({_ago(last_success_at, now)}): the {settings.frequency} schedule expects one "
                               f"at least every {hours} hours.", had_its_chance)
    if not settings.enabled:
        return health("ok", f"The newest successful backup is from {_stamp(last_success_at)} "
                            f"({_ago(last_success_at, now)}); scheduled backups are disabled.")
    return health("ok", f"The newest successful backup is from {_stamp(last_success_at)} "
                        f"({_ago(last_success_at, now)}).")


def assess(now: datetime | None = None) -> Health:
    """The current health of backups, from the database and the backup store (reads only)."""
    now = now or utcnow()
    settings = load_settings()
    try:
        backups = BackupService().list()
    except BackupError as exc:
        return Health("failing", f"The backup store cannot be read: {exc.message}", None,
                      next_run_at(settings, now), _run_dict(_last_finished_run()), settings.enabled)
    successful = [BackupDescriptor.from_backup(b) for b in backups if b.get("verified") is not False]
    last_success_at = max((b.created_at for b in successful), default=None)
    record = _last_verification()
    last_verification = (record.filename, bool(record.verified)) if record is not None else None
    return evaluate(settings, last_success_at, _run_dict(_last_finished_run()), last_verification, now)

