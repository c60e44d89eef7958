"""Webhooks and heartbeats of scheduled runs: a Slack-compatible JSON POST, healthchecks.io-style GETs.

- ``webhook_url`` gets a JSON POST (``{"text": ..., "event": ..., ...}``; Slack shows
  ``text``) about each run that ``notify_on`` covers, and about a missed schedule.
- ``heartbeat_url`` gets a GET after each successful scheduled run, and a GET of
  ``<heartbeat_url>/fail`` after a failed one.

Deliveries never stand in a run's way: they go out on a thread of their own (not a
daemon, so ``flask backup run-scheduled`` waits for them before it exits), each try
with a short timeout (``BACKUP_HOOK_TIMEOUT``), up to ``BACKUP_HOOK_ATTEMPTS`` tries
with back-off. The outcome of each delivery is a ``hook_deliveries`` row, shown with
the schedule (``recent_deliveries``). Composing a message needs no database.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import orjson
from flask import current_app
from sqlalchemy import delete, select

from ...extensions import db
from ...models import HookDelivery
from ..units import human_size

log = logging.getLogger(__name__)

HOOK_FIELDS = ("webhook_url", "heartbeat_url")
MAX_URL_LENGTH = 2048
BACKOFF_SECONDS = 0.5
USER_AGENT = "CyberQuest-Backup-Hooks/1"
KEEP_DELIVERIES = 200  # the newest rows of hook_deliveries; older ones are deleted as new ones come


def parse_hook_url(value, name: str) -> str | None:
    """An http(s) URL with a host, or None for an empty value; ``ValueError`` naming ``name`` otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = value.strip() if isinstance(value, str) else None
    parts = urlsplit(text) if text and len(text) <= MAX_URL_LENGTH and not any(c.isspace() for c in text) else None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http:// or https:// URL (at most {MAX_URL_LENGTH} characters).")
    return text


def covers(settings, succeeded: bool) -> bool:
    """Whether ``notify_on`` asks to hear about a run with this outcome (e-mail and webhook alike)."""
    return settings.notify_on == "always" or (settings.notify_on == "failure" and not succeeded)


@dataclass(frozen=True)
class Delivery:
    """One request to send: which hook, about what, and how."""

    target: str  # "webhook" or "heartbeat"
    event: str
    url: str
    body: bytes | None = None  # a JSON POST when set, else a GET


def run_text(report) -> str:
    """The Slack ``text`` about a scheduled run's ``report`` (a ``notify.RunReport``)."""
    host = socket.gethostname()
    if report.succeeded:
        backup = report.backup or {}
        return (f":white_check_mark: Scheduled backup {backup.get('filename', '?')} succeeded on {host}: "
                f"{backup.get('total_records', '?')} records, {human_size(backup.get('size_bytes'))}, verified, "
                f"in {report.duration_seconds} s.")
    return f":x: Scheduled backup FAILED on {host} ({report.error_kind or 'error'}): {report.error}"


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def run_deliveries(settings, report) -> list[Delivery]:
    """What a finished scheduled run sends: the webhook (if ``notify_on`` covers it) and the heartbeat."""
    deliveries = []
    event = "backup.succeeded" if report.succeeded else "backup.failed"
    if settings.webhook_url and covers(settings, report.succeeded):
        payload = {"text": run_text(report), "event": event, "slot": _stamp(report.slot),
                   "filename": (report.backup or {}).get("filename"), "error": report.error,
                   "error_kind": report.error_kind, "host": socket.gethostname()}
        deliveries.append(Delivery("webhook", event, settings.webhook_url, orjson.dumps(payload)))
    if settings.heartbeat_url:
        url = settings.heartbeat_url if report.succeeded else settings.heartbeat_url.rstrip("/") + "/fail"
        deliveries.append(Delivery("heartbeat", event, url))
    return deliveries


def missed_deliveries(settings, reason: str, last_success_at: datetime | None,
                      next_run_at: datetime | None) -> list[Delivery]:
    """What a missed schedule sends: the webhook, unless ``notify_on`` is ``never``."""
    if not settings.webhook_url or not covers(settings, succeeded=False):
        return []
    text = f":warning: Backups are overdue on {socket.gethostname()}: {reason}"
    payload = {"text": text, "event": "schedule.missed", "reason": reason,
               "last_success_at": _stamp(last_success_at), "next_run_at": _stamp(next_run_at)}
    return [Delivery("webhook", "schedule.missed", settings.webhook_url, orjson.dumps(payload))]


def send_in_background(deliveries: list[Delivery]) -> threading.Thread | None:
    """Send ``deliveries`` one after the other on a new thread and record each outcome; returns the thread."""
    if not deliveries:
        return None
    app = current_app._get_current_object()
    timeout, attempts = app.config.get("BACKUP_HOOK_TIMEOUT", 5), app.config.get("BACKUP_HOOK_ATTEMPTS", 3)

    def send_all():
        with app.app_context():
            for delivery in deliveries:
                _record(delivery, *deliver(delivery, timeout, attempts))

    # Not a daemon: a short-lived process (cron's run-scheduled) finishes its deliveries before it exits.
    thread = threading.Thread(target=send_all, name="backup-hooks")
    thread.start()
    return thread


def deliver(delivery: Delivery, timeout: float, attempts: int) -> tuple[bool, int, int | None, str | None]:
    """Send one delivery, retrying failures with back-off; returns (ok, tries, last HTTP status, last error)."""
    status, error = None, None
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 2))
        status, error = _send_once(delivery, timeout)
        if status is not None and 200 <= status < 300:
            return True, attempt, status, None
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            break  # the receiver refuses this request: sending it again will not help
    log.warning("%s to %s failed after %d tries: %s", delivery.target, urlsplit(delivery.url).hostname,
                attempt, error)
    return False, attempt, status, error


def _send_once(delivery: Delivery, timeout: float) -> tuple[int | None, str | None]:
    headers = {"User-Agent": USER_AGENT}
    if delivery.body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(delivery.url, data=delivery.body, headers=headers,
                                     method="POST" if delivery.body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(64 * 1024)
            return response.status, None
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, f"HTTP {exc.code} {exc.reason}"
    except (OSError, ValueError) as exc:  # refused, unreachable, timed out, TLS, a malformed answer
        return None, f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"


def _record(delivery: Delivery, ok: bool, attempts: int, status: int | None, error: str | None) -> None:
    try:
        row = HookDelivery(target=delivery.target, event=delivery.event, url=delivery.url, ok=ok,
                           attempts=attempts, status_code=status, error=error)
        db.session.add(row)
        db.session.flush()
        db.session.execute(delete(HookDelivery).where(HookDelivery.id <= row.id - KEEP_DELIVERIES))
        db.session.commit()
    except Exception:  # the database may be what failed the run; the log keeps the outcome then
        db.session.rollback()
        log.warning("could not record the %s delivery (ok=%s, %s)", delivery.target, ok, error, exc_info=True)


def recent_deliveries(limit: int = 10) -> list[dict]:
    """The latest webhook and heartbeat deliveries, newest first (for the schedule page and its JSON)."""
    rows = db.session.execute(select(HookDelivery).order_by(HookDelivery.id.desc()).limit(limit)).scalars()
    return [{"at": row.created_at.isoformat(), "target": row.target, "event": row.event, "url": row.url,
             "ok": row.ok, "attempts": row.attempts, "status_code": row.status_code, "error": row.error}
            for row in rows]
