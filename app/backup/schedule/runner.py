"""Scheduled backups: the run of one slot, exactly once, and the missed-schedule alert.

Every instance (each process of each host) may run an in-process scheduler
(``wiring.py`` starts it), and cron may call ``flask backup run-scheduled`` too; the
database decides who runs a slot. Each minute a runner reads the schedule from the
database (so a schedule saved anywhere takes effect everywhere within a minute),
finds the due slot, and tries to insert the ``scheduled_runs`` row for it. The
unique ``slot`` column makes exactly one insert succeed: that instance makes the
backup, verifies it, applies retention, records the outcome and sends the e-mail;
the others skip.

A slot that cannot start because another backup or restore holds the lock is
*deferred*: its row stays, and a later tick takes it over with a conditional
UPDATE (again, one winner).

The same beat (``tick``, and ``run-scheduled``) watches for a missed schedule and
sends its alert (e-mail and webhook) once per episode (``alert_if_missed``); reading
the health (``health.assess``) never sends or writes anything. Every finished run is
reported by e-mail, webhook and heartbeat as the schedule says (``hooks``).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ...extensions import db
from ...models import ScheduledRun, utcnow
from .. import audit
from . import health, hooks, notify, retention
from ..jobs.lock import current_owner, owner_is_dead
from ..jobs.runner import recover_interrupted_jobs
from ..errors import BackupError, ConflictError, database_message
from .settings import ScheduleSettings, claim_missed_alert, due_slot, load_settings, next_run_at
from ..service import BackupService
from ..verify import verify_listed_backup

log = logging.getLogger(__name__)

# A run with no sign of life for this long is taken to be dead even on another host.
RUN_STALE_AFTER = timedelta(hours=12)


class VerificationFailed(BackupError):
    """The scheduled backup was written but failed its verification."""

    status = 422


@dataclass
class SlotOutcome:
    """What one call of the runner did.

    ``status``: ``disabled``, ``not-due``, ``taken`` (another instance has the slot),
    ``deferred`` (another backup or restore was running), ``succeeded`` or ``failed``.
    """

    status: str
    slot: datetime | None = None
    message: str = ""
    report: notify.RunReport | None = None
    next_run_at: datetime | None = None

    @property
    def failed(self) -> bool:
        """True when this call ran the slot and the run failed."""
        return self.status == "failed"

    def to_dict(self) -> dict:
        """JSON-able form (``flask backup run-scheduled --json``)."""
        return {"status": self.status, "slot": self.slot.isoformat() if self.slot else None,
                "message": self.message, "run": self.report.to_dict() if self.report else None,
                "next_run_at": self.next_run_at.isoformat() if self.next_run_at else None}


# The last schedule each database gave us, so that a failure e-mail can still go
# out when the database itself is what fails; and the slots already reported so.
_settings_cache: dict[str, ScheduleSettings] = {}
_reported_without_db: set[tuple[str, datetime]] = set()
_cache_lock = threading.Lock()


def _database_key() -> str:
    return str(db.engine.url)


# --- Claiming a slot ------------------------------------------------------------------

def claim_slot(slot: datetime, now: datetime) -> bool:
    """Take ``slot`` for this process; False when another instance has it.

    Inserting the row is the claim (the unique index arbitrates); a deferred slot is
    taken over by a conditional UPDATE, which also has exactly one winner.
    """
    owner = current_owner()
    existing = db.session.execute(select(ScheduledRun).where(ScheduledRun.slot == slot)
                                  .execution_options(populate_existing=True)).scalars().first()
    if existing is None:
        db.session.add(ScheduledRun(slot=slot, owner=owner, status="running", started_at=now))
        try:
            db.session.commit()
            return True
        except IntegrityError:
            db.session.rollback()
            return False
    if existing.status != "deferred":
        return False
    result = db.session.execute(update(ScheduledRun)
                                .where(ScheduledRun.slot == slot, ScheduledRun.status == "deferred")
                                .values(status="running", owner=owner, started_at=now, error=None))
    db.session.commit()
    return result.rowcount == 1


def _finish_run(slot: datetime, status: str, **values) -> None:
    db.session.rollback()
    values = {"finished_at": utcnow(), **values}
    db.session.execute(update(ScheduledRun).where(ScheduledRun.slot == slot).values(status=status, **values))
    db.session.commit()


def fail_interrupted_runs(settings: ScheduleSettings, now: datetime) -> int:
    """Mark failed the runs whose process died mid-run, reporting each once; returns how many."""
    count = 0
    running = db.session.execute(select(ScheduledRun).where(ScheduledRun.status == "running")).scalars().all()
    for run in running:
        if not (owner_is_dead(run.owner) or run.started_at < now - RUN_STALE_AFTER):
            continue
        message = f"Interrupted: the process running it ({run.owner}) stopped before it finished."
        result = db.session.execute(update(ScheduledRun).where(ScheduledRun.id == run.id,
                                                               ScheduledRun.status == "running")
                                    .values(status="failed", finished_at=now, error=message))
        db.session.commit()
        if result.rowcount == 1:
            count += 1
            report = notify.RunReport(slot=run.slot, started_at=run.started_at, finished_at=now,
                                      error=message, error_kind="other", owner=run.owner)
            _report(settings, report)
    return count


def _report(settings: ScheduleSettings, report: notify.RunReport) -> None:
    """Tell whoever the schedule names about a finished run: e-mail, webhook, heartbeat (never raises)."""
    notify.notify_run(settings, report)
    try:
        hooks.send_in_background(hooks.run_deliveries(settings, report))
    except Exception:  # a hook must never change the run's outcome
        log.exception("could not start the webhook and heartbeat deliveries of slot %s", report.slot)


def _give_up_older_deferred(slot: datetime) -> None:
    db.session.execute(update(ScheduledRun).where(ScheduledRun.slot < slot, ScheduledRun.status == "deferred")
                       .values(status="missed", finished_at=utcnow(),
                               error="Never started: another backup or restore kept the lock until the next slot."))
    db.session.commit()


# --- Running a slot -------------------------------------------------------------------

def _make_verified_backup(report: notify.RunReport) -> None:
    job = BackupService().start_create("scheduled", None, wait=True, actor=audit.SCHEDULER)
    report.backup = orjson.loads(job.result) if isinstance(job.result, str) else job.result
    filename = report.backup["filename"]
    try:
        # Checksums, signature and a test restore, recorded on the backup; a bad archive does not raise.
        verification = verify_listed_backup(filename, actor=audit.SCHEDULER)
    except Exception as exc:  # could not even try: as bad as failing, the backup is unproven
        raise VerificationFailed(f"The new backup {filename} could not be verified: {exc}") from exc
    report.verified, report.verification = bool(verification.get("ok")), verification
    if not report.verified:
        raise VerificationFailed(f"The new backup {filename} failed its verification: "
                                 f"{verification.get('error') or 'no details'}")


def _apply_retention(settings: ScheduleSettings, report: notify.RunReport, now: datetime) -> None:
    try:
        result = retention.prune(retention.policy_for(settings), now, dry_run=False, actor=audit.SCHEDULER)
        report.pruned = list(result.deleted)
    except ConflictError:
        report.retention_note = "skipped this time: another backup or restore was running."
    except Exception as exc:  # the backup itself succeeded; a clean-up problem is reported, not fatal
        log.exception("retention after the scheduled backup failed")
        report.retention_note = f"failed: {exc}"


def _run_claimed_slot(settings: ScheduleSettings, slot: datetime, now: datetime) -> SlotOutcome:
    report = notify.RunReport(slot=slot, started_at=utcnow(), owner=current_owner())
    try:
        _make_verified_backup(report)
        _apply_retention(settings, report, now)
        report.succeeded = True
    except ConflictError as exc:
        if report.backup is None:
            try:
                _finish_run(slot, "deferred", error=exc.message, finished_at=None)
            except SQLAlchemyError:
                log.exception("could not defer scheduled slot %s", slot)
            return SlotOutcome("deferred", slot, f"Deferred: {exc.message}")
        report.error, report.error_kind = exc.message, "conflict"
    except Exception as exc:  # every failure is recorded and reported
        if isinstance(exc, BackupError):
            # Its message says what failed and what to fix, and it is recorded, audited and mailed below.
            # No traceback: in `flask backup run-scheduled` it would bury the one line the command prints.
            log.info("scheduled backup for slot %s failed: %s", slot, exc.message)
            report.error = exc.message
        else:  # a failure nobody foresaw: the log keeps the traceback
            log.exception("scheduled backup for slot %s failed", slot)
            report.error = f"{type(exc).__name__}: {exc}"
        report.error_kind = "verification" if isinstance(exc, VerificationFailed) else notify.classify_error(exc)
    report.finished_at = utcnow()
    _record_outcome(report)
    _report(settings, report)
    status = "succeeded" if report.succeeded else "failed"
    filename = (report.backup or {}).get("filename")
    message = f"Scheduled backup {filename} made and verified." if report.succeeded else f"Failed: {report.error}"
    return SlotOutcome(status, slot, message, report)


def _record_outcome(report: notify.RunReport) -> None:
    # Recording may fail when the database is what broke; the e-mail still goes out.
    status = "succeeded" if report.succeeded else "failed"
    filename = (report.backup or {}).get("filename")
    try:
        _finish_run(report.slot, status, filename=filename, error=report.error)
        audit.record(audit.SCHEDULER, "backup.scheduled_run", filename,
                     {"slot": report.slot, "status": status, "error": report.error, "verified": report.verified,
                      "pruned": report.pruned, "duration_seconds": report.duration_seconds})
    except SQLAlchemyError:
        db.session.rollback()
        log.exception("could not record the outcome of scheduled slot %s", report.slot)


def _report_database_failure(exc: Exception, now: datetime) -> SlotOutcome:
    """The schedule could not be read: report a due slot from the last known schedule, once."""
    db.session.rollback()
    key = _database_key()
    with _cache_lock:
        cached = _settings_cache.get(key)
        slot = due_slot(cached, now) if cached is not None else None
        first_time = slot is not None and (key, slot) not in _reported_without_db
        if first_time:
            _reported_without_db.add((key, slot))
    message = f"The database could not be read: {database_message(exc)}"
    if not first_time:
        return SlotOutcome("failed", slot, message)
    report = notify.RunReport(slot=slot, started_at=now, finished_at=utcnow(), owner=current_owner(),
                              error=message, error_kind="database")
    _report(cached, report)
    return SlotOutcome("failed", slot, message, report)


def run_scheduled(now: datetime | None = None) -> SlotOutcome:
    """Run the schedule's due slot if no instance has yet; the one entry point for ticks and cron.

    ``now`` is the clock (tests pass their own). Never raises for a failed run: the
    outcome says what happened, and it is recorded and e-mailed as configured.
    """
    now = now or utcnow()
    try:
        settings = load_settings()
        with _cache_lock:
            _settings_cache[_database_key()] = settings
        fail_interrupted_runs(settings, now)
        # The beat looks for dead jobs too, so one dies unseen for at most a minute and its lock's TTL.
        recover_interrupted_jobs()
        slot = due_slot(settings, now)
        upcoming = next_run_at(settings, now)
        if not settings.enabled:
            return SlotOutcome("disabled", message="Scheduled backups are disabled.")
        if slot is None:
            return SlotOutcome("not-due", message="No slot is due.", next_run_at=upcoming)
        if not claim_slot(slot, now):
            return SlotOutcome("taken", slot, "Another instance has run or is running this slot.",
                               next_run_at=upcoming)
        _give_up_older_deferred(slot)
    except SQLAlchemyError as exc:
        log.error("the scheduled-backup runner could not read the database: %s", database_message(exc))
        return _report_database_failure(exc, now)
    outcome = _run_claimed_slot(settings, slot, now)
    outcome.next_run_at = upcoming
    return outcome


def tick(app, now: datetime | None = None) -> SlotOutcome | None:
    """One beat of the in-process scheduler: run the due slot, then watch for a missed schedule.

    Runs inside an app context and never raises (a raising job would only be logged by
    APScheduler, and the next tick must come regardless).
    """
    with app.app_context():
        outcome = None
        try:
            outcome = run_scheduled(now)
        except Exception:  # the top of a background job: log, and let the next tick try again
            log.exception("scheduled backup tick failed")
        try:
            alert_if_missed(now)
        except Exception:
            log.exception("missed-schedule check failed")
        finally:
            db.session.remove()
        return outcome


def _run_in_progress() -> bool:
    return db.session.execute(select(ScheduledRun.id).where(ScheduledRun.status == "running").limit(1)).first() \
        is not None


def alert_if_missed(now: datetime | None = None) -> health.Health:
    """Assess health and, for a missed schedule, send the one alert (e-mail, webhook) of this episode.

    Called by every tick and by ``flask backup run-scheduled``, never by a page or a monitor:
    reading the health changes nothing. Exactly one instance sends the alert (a conditional
    UPDATE of ``missed_alert_at``); the next can only follow a successful backup newer than it.
    """
    now = now or utcnow()
    state = health.assess(now)
    if not state.alert_due or _run_in_progress():
        # A run under way may be about to end the drought: no alarm while it has its chance.
        return state
    settings = load_settings()
    deliveries = hooks.missed_deliveries(settings, state.reason, state.last_success_at, state.next_run_at)
    mail = settings.wants_mail(succeeded=False)
    if not (mail or deliveries):
        return state
    if not claim_missed_alert(state.last_success_at, now):
        return state
    hooks.send_in_background(deliveries)
    if not mail:
        return state
    subject, body = notify.compose_missed_mail(settings, state.reason, state.last_success_at, state.next_run_at)
    if not notify.deliver(settings.notify_emails, subject, body):
        log.warning("the missed-schedule alert could not be sent; it will not be retried for this episode")
    return state


def recent_runs(limit: int = 10) -> list[dict]:
    """The latest scheduled runs, newest slot first (for the schedule page)."""
    rows = db.session.execute(select(ScheduledRun).order_by(ScheduledRun.slot.desc()).limit(limit)).scalars()
    return [{"slot": run.slot, "status": run.status, "owner": run.owner, "started_at": run.started_at,
             "finished_at": run.finished_at, "filename": run.filename, "error": run.error} for run in rows]
