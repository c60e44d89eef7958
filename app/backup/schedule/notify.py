"""E-mails about scheduled runs: success, failure, and a missed schedule.

Composing a message needs only the run's report and the schedule settings held in
memory, never the database or the backup store: the failure e-mail has to go out
precisely when one of those is what failed. Templates are rendered straight from
the Jinja environment (no context processors, which could query the database).
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from ...mail import MailError, send_mail
from ..errors import ArchiveError, ConflictError, StorageError
from ..units import human_size
from .settings import ScheduleSettings

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "[CyberQuest]"


@dataclass
class RunReport:
    """What happened in one scheduled run, as plain data."""

    slot: datetime | None
    started_at: datetime
    finished_at: datetime | None = None
    succeeded: bool = False
    backup: dict | None = None
    verified: bool | None = None
    verification: dict | None = None
    error: str | None = None
    error_kind: str | None = None
    pruned: list[str] = field(default_factory=list)
    retention_note: str | None = None
    owner: str | None = None

    @property
    def duration_seconds(self) -> float | None:
        """Wall time of the run (backup, verification and retention)."""
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 1)

    def to_dict(self) -> dict:
        """JSON-able form (for the CLI's output and logs)."""
        return {
            "slot": self.slot.isoformat() if self.slot else None,
            "succeeded": self.succeeded,
            "backup": self.backup,
            "verified": self.verified,
            "error": self.error,
            "error_kind": self.error_kind,
            "pruned": list(self.pruned),
            "duration_seconds": self.duration_seconds,
        }


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def classify_error(exc: BaseException) -> str:
    """Which part failed: ``storage``, ``database``, ``verification``, ``conflict`` or ``other``."""
    chain = list(_chain(exc))
    if any(isinstance(e, ConflictError) for e in chain):
        return "conflict"
    if any(isinstance(e, StorageError) for e in chain):
        return "storage"
    if any(isinstance(e, SQLAlchemyError) for e in chain):
        return "database"
    if any(isinstance(e, ArchiveError) for e in chain):
        return "verification"
    if any(isinstance(e, OSError) for e in chain):
        return "storage"
    return "other"


def what_to_check(kind: str | None) -> list[str]:
    """Concrete things an operator should look at for this kind of failure."""
    config = current_app.config
    if kind == "storage":
        if config.get("BACKUP_STORAGE") == "s3":
            where = f"the S3 bucket {config.get('BACKUP_S3_BUCKET')!r}"
            return [f"that {where} exists and the app's credentials may write to it",
                    f"that the endpoint {config.get('BACKUP_S3_ENDPOINT_URL') or '(AWS default)'} is reachable"]
        return [f"that the backup directory {config.get('BACKUP_DIRECTORY')} exists and the app may write to it",
                "that the disk holding it is not full"]
    if kind == "database":
        return ["that the database server is running and reachable with DATABASE_URL",
                "that the disk holding the database is not full",
                "that migrations are applied (flask db upgrade)"]
    if kind == "verification":
        return ["the archive with `flask backup verify FILE` for the details",
                "the disk holding the backups for errors (a backup that cannot be read back is no backup)"]
    if kind == "conflict":
        return ["whether a long backup or restore is still running (System Backup page)"]
    return [f"the application log on {socket.gethostname()} for the full error"]


def _render(template: str, **context) -> str:
    return current_app.jinja_env.get_template(f"email/{template}").render(**context)



def compose_run_mail(settings: ScheduleSettings, report: RunReport) -> tuple[str, str]:
    """Subject and plain-text body reporting ``report``; needs no database."""
    context = {"report": report, "schedule": settings.describe(), "host": socket.gethostname(),
               "size": human_size((report.backup or {}).get("size_bytes"))}
    if report.succeeded:
        filename = (report.backup or {}).get("filename", "?")
        return (f"{SUBJECT_PREFIX} Scheduled backup succeeded: {filename}",
                _render("backup_success.txt", **context))
    try:
        body = _render("backup_failure.txt", checks=what_to_check(report.error_kind), **context)
    except Exception:  # a broken template must not swallow the failure report
        log.exception("could not render the backup failure e-mail")
        body = f"The scheduled backup failed.\n\nError: {report.error}\n"
    return f"{SUBJECT_PREFIX} Scheduled backup FAILED: {report.error_kind or 'error'}", body


def compose_missed_mail(settings: ScheduleSettings, reason: str, last_success_at: datetime | None,
                        next_run_at: datetime | None) -> tuple[str, str]:
    """Subject and body of the one alert sent when backups are overdue."""
    body = _render("backup_missed.txt", reason=reason, last_success_at=last_success_at, next_run_at=next_run_at,
                   schedule=settings.describe(), host=socket.gethostname())
    return f"{SUBJECT_PREFIX} Backups are overdue", body


def deliver(recipients, subject: str, body: str) -> bool:
    """Send one message; a mail failure is logged, never raised (the run's outcome stands)."""
    try:
        send_mail(list(recipients), subject, body)
        return True
    except MailError as exc:
        # The error names the message, the server and the cause; a traceback would only bury it (in
        # `flask backup run-scheduled`, under the one line the command prints).
        log.warning("%s", exc)
        return False


def notify_run(settings: ScheduleSettings, report: RunReport) -> bool:
    """E-mail the run's outcome when the schedule's ``notify_on`` asks for it; True if sent."""
    if not settings.wants_mail(report.succeeded):
        return False
    subject, body = compose_run_mail(settings, report)
    return deliver(settings.notify_emails, subject, body)
