"""The backup schedule: its settings, their validation and storage, and its slots.

A *slot* is one instant at which the schedule says a backup is due (UTC, to the
minute). Everything about time here is pure: functions take ``now`` and return
datetimes, so tests drive the clock instead of waiting for it.

A slot is *due* when it is the latest slot at or before ``now`` and the schedule's
timing was already in force then (``effective_from``): a slot missed while every
instance was down still runs when one comes back (like anacron), but enabling or
re-timing a schedule never fires a slot that lies before the change.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, timezone

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...models import BackupSchedule
from .. import audit
from ..errors import BadRequestError
from .hooks import HOOK_FIELDS, parse_hook_url

FREQUENCIES = ("daily", "weekly", "monthly")
NOTIFY_ON = ("failure", "always", "never")
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# The fields that decide when slots fall; changing one of them moves ``effective_from``.
TIMING_FIELDS = ("enabled", "frequency", "time", "weekday", "day_of_month")
EDITABLE_FIELDS = TIMING_FIELDS + ("retention_days", "keep_last", "notify_emails", "notify_on") + HOOK_FIELDS
# Sent by forms or echoed back from a GET; never an error, never stored.
IGNORED_FIELDS = frozenset({"csrf_token", "next_run_at", "submit"})
MAX_RETENTION_DAYS = 36500
MAX_KEEP_LAST = 10000
MAX_NOTIFY_EMAILS = 50
# Longest gap between two slots of each frequency (a month can have 31 days).
INTERVALS = {"daily": timedelta(days=1), "weekly": timedelta(days=7), "monthly": timedelta(days=31)}

_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})(?::00)?")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


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


# --- Validation ---------------------------------------------------------------------

class ScheduleValidationError(BadRequestError):
    """One or more schedule fields hold bad values; ``extra["fields"]`` maps field → message."""


def _integer(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number from {low} to {high}.")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}.")
    return value


def _flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if value is not None else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false.")


def _clock_text(value) -> str:
    match = _TIME_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError("time must be HH:MM in UTC, from 00:00 to 23:59.")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _choice(value, name: str, choices: tuple[str, ...]) -> str:
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}.")
    return text


def parse_emails(value) -> tuple[str, ...]:
    """Addresses from a list or a comma/semicolon/whitespace-separated string, validated.

    Raises ``ValueError`` naming the first bad address. Duplicates are dropped.
    """
    if value is None:
        items: list = []
    elif isinstance(value, str):
        items = [part for part in re.split(r"[,;\s]+", value) if part]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError("notify_emails must be a list of addresses or a comma-separated string.")
    addresses: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError("notify_emails must hold e-mail addresses only.")
        try:
            address = validate_email(item.strip(), check_deliverability=False).normalized
        except EmailNotValidError:
            raise ValueError(f"notify_emails: {item.strip()!r} is not a valid e-mail address.") from None
        if address.lower() not in (known.lower() for known in addresses):
            addresses.append(address)
    if len(addresses) > MAX_NOTIFY_EMAILS:
        raise ValueError(f"notify_emails can hold at most {MAX_NOTIFY_EMAILS} addresses.")
    return tuple(addresses)


def _parse_field(name: str, value):
    if name == "enabled":
        return _flag(value, name)
    if name == "frequency":
        return _choice(value, name, FREQUENCIES)
    if name == "time":
        return _clock_text(value)
    if name == "weekday":
        return _integer(value, name, 0, 6)
    if name == "day_of_month":
        return _integer(value, name, 1, 28)
    if name == "retention_days":
        if value is None:
            return None
        return _integer(value, name, 1, MAX_RETENTION_DAYS)
    if name == "keep_last":
        return _integer(value, name, 0, MAX_KEEP_LAST)
    if name == "notify_emails":
        return parse_emails(value)
    if name in HOOK_FIELDS:
        return parse_hook_url(value, name)
    return _choice(value, name, NOTIFY_ON)


def apply_changes(current: ScheduleSettings, fields: dict, now: datetime) -> ScheduleSettings:
    """``current`` with the given fields changed, or ``ScheduleValidationError`` listing every bad one.

    Fields left out keep their values. A JSON body may wrap the fields as ``{"schedule": {...}}``
    (the shape a GET returns). When a timing field changes, ``effective_from`` becomes ``now``.
    """
    if set(fields) == {"schedule"} and isinstance(fields["schedule"], dict):
        fields = fields["schedule"]
    errors: dict[str, str] = {}
    changes: dict = {}
    for name, value in fields.items():
        if name in IGNORED_FIELDS:
            continue
        if name not in EDITABLE_FIELDS:
            errors[name] = f"{name} is not a schedule field."
            continue
        try:
            changes[name] = _parse_field(name, value)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise ScheduleValidationError("The schedule was not saved: " + " ".join(errors.values()), fields=errors)
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


def update_settings(fields: dict, now: datetime, actor: str | None = None) -> ScheduleSettings:
    """Validate ``fields`` against the stored schedule, save the result and audit the change.

    Raises ``ScheduleValidationError`` (400) and changes nothing when a value is bad.
    """
    before = load_settings()
    saved = save_settings(apply_changes(before, fields, now))
    changed = {name: getattr(saved, name) for name in EDITABLE_FIELDS if getattr(saved, name) != getattr(before, name)}
    audit.record(actor, "backup.schedule_saved", "backup_schedule", changed)
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
