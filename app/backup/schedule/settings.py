"""The backup schedule: its settings, changes to them (values checked by ``validation``), their storage, and its slots.

A *slot* is one instant at which the schedule says a backup is due (UTC, to the
minute). Everything about time here is pure: functions take ``now`` and return
datetimes, so tests drive the clock instead of waiting for it.

A slot is *due* when it is the latest slot at or before ``now`` and the schedule's
timing was already in force then (``effective_from``): a slot missed while every
instance was down still runs when one comes back (like anacron), but enabling or
re-timing a schedule never fires a slot that lies before the change.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, timezone

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...models import BackupSchedule
from .. import audit
from ..audit import Actor
from ..errors import BadRequestError
from .hooks import HOOK_FIELDS
from .validation import ScheduleValidationError, parse_setting, submitted_fields

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# The fields that decide when slots fall; changing one of them moves ``effective_from``.
TIMING_FIELDS = ("enabled", "frequency", "time", "weekday", "day_of_month")
EDITABLE_FIELDS = TIMING_FIELDS + ("retention_days", "keep_last", "notify_emails", "notify_on") + HOOK_FIELDS
# Longest gap between two slots of each frequency (a month can have 31 days).
INTERVALS = {"daily": timedelta(days=1), "weekly": timedelta(days=7), "monthly": timedelta(days=31)}


@dataclass(frozen=True)
class ScheduleSettings:
    """The schedule as plain data: usable without a database (e.g. to send a failure e-mail).

    ``retention_days`` None means "the instance default" (``BACKUP_RETENTION_DAYS``);
    ``effective_from`` is when the timing fields last changed.
    """

    enabled: bool = False
    frequency: str = "daily"
    time: str = "02:00"
    weekday: int = 0
    day_of_month: int = 1
    retention_days: int | None = None
    keep_last: int = 7
    notify_emails: tuple[str, ...] = ()
    notify_on: str = "failure"
    webhook_url: str | None = None
    heartbeat_url: str | None = None
    effective_from: datetime | None = None
    missed_alert_at: datetime | None = None
    default_retention_days: int = 30
    exists: bool = field(default=False, compare=False)

    @property
    def effective_retention_days(self) -> int:
        """``retention_days``, or the instance default when it is unset."""
        return self.retention_days if self.retention_days is not None else self.default_retention_days

    @property
    def interval(self) -> timedelta:
        """The longest time between two slots of this schedule."""
        return INTERVALS[self.frequency]

    def wants_mail(self, succeeded: bool) -> bool:
        """Whether a run with this outcome should be reported by e-mail."""
        if not self.notify_emails or self.notify_on == "never":
            return False
        return self.notify_on == "always" or not succeeded

    def describe(self) -> str:
        """The schedule in words, e.g. "weekly on Monday at 02:00 UTC"."""
        if not self.enabled:
            return "disabled"
        if self.frequency == "weekly":
            return f"weekly on {WEEKDAY_NAMES[self.weekday]} at {self.time} UTC"
        if self.frequency == "monthly":
            return f"monthly on day {self.day_of_month} at {self.time} UTC"
        return f"daily at {self.time} UTC"

    def to_dict(self, now: datetime) -> dict:
        """The contract's Schedule object; ``next_run_at`` is computed from ``now``."""
        upcoming = next_run_at(self, now)
        return {
            "enabled": self.enabled,
            "frequency": self.frequency,
            "time": self.time,
            "weekday": self.weekday,
            "day_of_month": self.day_of_month,
            "retention_days": self.effective_retention_days,
            "keep_last": self.keep_last,
            "notify_emails": list(self.notify_emails),
            "notify_on": self.notify_on,
            "webhook_url": self.webhook_url,
            "heartbeat_url": self.heartbeat_url,
            "next_run_at": upcoming.isoformat() if upcoming else None,
        }


# --- Slots --------------------------------------------------------------------------

def _clock(settings: ScheduleSettings) -> time:
    hours, minutes = settings.time.split(":")
    return time(int(hours), int(minutes), tzinfo=timezone.utc)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def latest_slot_at_or_before(settings: ScheduleSettings, now: datetime) -> datetime:
    """The most recent instant at or before ``now`` at which the schedule fires."""
    now = _as_utc(now)
    at = _clock(settings)
    if settings.frequency == "daily":
        slot = datetime.combine(now.date(), at)
        return slot if slot <= now else slot - timedelta(days=1)
    if settings.frequency == "weekly":
        days_back = (now.weekday() - settings.weekday) % 7
        slot = datetime.combine(now.date() - timedelta(days=days_back), at)
        return slot if slot <= now else slot - timedelta(days=7)
    slot = datetime.combine(now.date().replace(day=settings.day_of_month), at)
    if slot <= now:
        return slot
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return slot.replace(year=year, month=month)


def next_slot_after(settings: ScheduleSettings, now: datetime) -> datetime:
    """The first instant strictly after ``now`` at which the schedule fires."""
    now = _as_utc(now)
    latest = latest_slot_at_or_before(settings, now)
    if settings.frequency == "daily":
        return latest + timedelta(days=1)
    if settings.frequency == "weekly":
        return latest + timedelta(days=7)
    year, month = (latest.year, latest.month + 1) if latest.month < 12 else (latest.year + 1, 1)
    # day_of_month is at most 28, so every month has it.
    return latest.replace(year=year, month=month)


def next_run_at(settings: ScheduleSettings, now: datetime) -> datetime | None:
    """When the schedule next fires after ``now``; None while it is disabled."""
    return next_slot_after(settings, now) if settings.enabled else None


def due_slot(settings: ScheduleSettings, now: datetime) -> datetime | None:
    """The slot that should have run by ``now``, or None (disabled, or not yet in force).

    Whether that slot already ran is for the caller to find out (``ScheduledRun``).
    """
    if not settings.enabled:
        return None
    slot = latest_slot_at_or_before(settings, now)
    if settings.effective_from is not None and slot < _as_utc(settings.effective_from):
        return None
    return slot


# --- Changes ------------------------------------------------------------------------

def apply_changes(current: ScheduleSettings, fields: dict, now: datetime) -> ScheduleSettings:
    """``current`` with the given fields changed, or ``ScheduleValidationError`` listing every bad one.

    Fields left out keep their values; ``fields`` may be a request body (see
    ``submitted_fields``). When a timing field changes, ``effective_from`` becomes ``now``.
    """
    errors: dict[str, str] = {}
    changes: dict = {}
    for name, value in submitted_fields(fields).items():
        try:
            changes[name] = parse_setting(name, value)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise ScheduleValidationError.naming(errors)
    updated = replace(current, **changes)
    timing_changed = any(getattr(updated, name) != getattr(current, name) for name in TIMING_FIELDS)
    if timing_changed or current.effective_from is None:
        updated = replace(updated, effective_from=_as_utc(now))
    return updated


# --- Storage ------------------------------------------------------------------------

def _default_retention_days() -> int:
    return int(current_app.config.get("BACKUP_RETENTION_DAYS", 30))


def _from_row(row: BackupSchedule | None) -> ScheduleSettings:
    default_days = _default_retention_days()
    if row is None:
        return ScheduleSettings(default_retention_days=default_days)
    return ScheduleSettings(
        enabled=bool(row.enabled),
        frequency=row.frequency,
        time=row.time,
        weekday=row.weekday,
        day_of_month=row.day_of_month,
        retention_days=row.retention_days,
        keep_last=row.keep_last,
        notify_emails=tuple(part for part in (row.notify_emails or "").split(",") if part),
        notify_on=row.notify_on,
        webhook_url=row.webhook_url,
        heartbeat_url=row.heartbeat_url,
        # updated_at is kept as "when the timing last changed" (see save_settings).
        effective_from=row.updated_at,
        missed_alert_at=row.missed_alert_at,
        default_retention_days=default_days,
        exists=True,
    )


def _row(populate_existing: bool = True) -> BackupSchedule | None:
    statement = select(BackupSchedule).order_by(BackupSchedule.id).limit(1)
    if populate_existing:
        statement = statement.execution_options(populate_existing=True)
    return db.session.execute(statement).scalars().first()


def load_settings() -> ScheduleSettings:
    """The stored schedule (the defaults, disabled, when none was ever saved)."""
    return _from_row(_row())


def _values(settings: ScheduleSettings) -> dict:
    return {
        "enabled": settings.enabled,
        "frequency": settings.frequency,
        "time": settings.time,
        "weekday": settings.weekday,
        "day_of_month": settings.day_of_month,
        "retention_days": settings.retention_days,
        "keep_last": settings.keep_last,
        "notify_emails": ",".join(settings.notify_emails),
        "notify_on": settings.notify_on,
        "webhook_url": settings.webhook_url,
        "heartbeat_url": settings.heartbeat_url,
        # Set explicitly so the column's onupdate never moves it: it means "timing changed at".
        "updated_at": settings.effective_from,
    }


def save_settings(settings: ScheduleSettings) -> ScheduleSettings:
    """Store ``settings`` as the one schedule of the installation and return what is stored."""
    for _ in range(3):
        row = _row()
        if row is not None:
            db.session.execute(update(BackupSchedule).where(BackupSchedule.id == row.id).values(**_values(settings)))
            db.session.commit()
            return load_settings()
        db.session.add(BackupSchedule(id=1, **_values(settings)))
        try:
            db.session.commit()
            return load_settings()
        except IntegrityError:
            # Another instance created the row at the same moment: update it instead.
            db.session.rollback()
    raise BadRequestError("The schedule could not be saved; try again.")


def update_settings(fields: dict, now: datetime, actor: Actor | None = None) -> ScheduleSettings:
    """Validate ``fields`` against the stored schedule, save the result and audit the change.

    Raises ``ScheduleValidationError`` (400) and changes nothing when a value is bad.
    """
    before = load_settings()
    saved = save_settings(apply_changes(before, fields, now))
    changed = {name: getattr(saved, name) for name in EDITABLE_FIELDS if getattr(saved, name) != getattr(before, name)}
    audit.record(actor, "schedule.save", "backup_schedule", changed)
    return saved


def claim_missed_alert(last_success_at: datetime | None, now: datetime) -> bool:
    """Record that the missed-schedule alert goes out now; False when it already went out.

    One alert per episode: the alert is due again only after a successful backup newer
    than the previous alert. The conditional UPDATE lets exactly one instance win.
    """
    row = _row()
    if row is None:
        return False
    not_yet_alerted = BackupSchedule.missed_alert_at.is_(None)
    if last_success_at is not None:
        not_yet_alerted = not_yet_alerted | (BackupSchedule.missed_alert_at < last_success_at)
    result = db.session.execute(
        update(BackupSchedule).where(BackupSchedule.id == row.id, not_yet_alerted)
        .values(missed_alert_at=now, updated_at=BackupSchedule.updated_at)
    )
    db.session.commit()
    return result.rowcount == 1
