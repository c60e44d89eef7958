"""One scheduled run, driven by an injected clock: backup, verification, retention, record, e-mail."""
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from app.backup.jobs.lock import acquire_exclusive, release_exclusive
from app.backup.schedule import runner as scheduler
from app.backup.service import BackupService
from app.extensions import db
from app.models import AuditLog, BackupRecord, ScheduledRun, data_tables, utcnow
from support.app import build_app
from support.mail import message_text, send_mail_to
from support.processes import flask_process
from support.schedule import backup_at, listed, save_schedule


def in_force(app, **fields):
    """A schedule saved long ago, so its latest slot is due now."""
    defaults = {"enabled": True, "frequency": "daily", "time": "02:00", "notify_emails": "ops@example.com",
                "notify_on": "always"}
    return save_schedule(app, effective_from=utcnow() - timedelta(days=60), **{**defaults, **fields})


def run(app, now=None) -> scheduler.SlotOutcome:
    with app.app_context():
        return scheduler.run_scheduled(now)


def runs(app) -> list[ScheduledRun]:
    with app.app_context():
        rows = db.session.execute(select(ScheduledRun).order_by(ScheduledRun.slot)).scalars().all()
        db.session.expunge_all()
        return rows


def test_a_due_slot_makes_one_verified_backup_applies_retention_and_mails_success(sched_app, smtp_server):
    mailbox = send_mail_to(sched_app, smtp_server)
    now = utcnow()
    old = backup_at(sched_app, now - timedelta(days=90))
    in_force(sched_app, retention_days=30, keep_last=1)

    outcome = run(sched_app, now)
    assert outcome.status == "succeeded", outcome.message
    backup = outcome.report.backup
    assert outcome.slot.strftime("%H:%M") == "02:00" and timedelta(0) <= now - outcome.slot < timedelta(days=1)
    with sched_app.app_context():
        fresh = BackupService().get(backup["filename"])
        assert fresh["trigger"] == "scheduled" and fresh["created_by"] is None and fresh["verified"] is True
        audit = db.session.execute(select(AuditLog.action, AuditLog.target)).all()
    assert listed(sched_app) == {backup["filename"]}  # retention removed the 90-day-old one
    assert ("backup.prune", old) in audit and ("backup.scheduled_run", backup["filename"]) in audit
    [row] = runs(sched_app)
    assert (row.status, row.filename, row.error) == ("succeeded", backup["filename"], None)

    [message] = mailbox
    text = message_text(message)
    assert "Scheduled backup succeeded" in text and backup["filename"] in text
    assert "Verified:       yes" in text and old in text

    # The same slot again (another tick, another instance): nothing happens.
    assert run(sched_app, now + timedelta(seconds=30)).status == "taken"
    assert len(listed(sched_app)) == 1 and len(mailbox) == 1


def test_disabled_or_not_yet_due_does_nothing(sched_app):
    assert run(sched_app).status == "disabled"
    now = utcnow()
    # saved just now for a time of day that has passed: the first slot is tomorrow's
    save_schedule(sched_app, enabled=True, time=(now - timedelta(minutes=5)).strftime("%H:%M"))
    outcome = run(sched_app, now)
    assert outcome.status == "not-due" and outcome.next_run_at > now
    assert runs(sched_app) == [] and listed(sched_app) == set()
    # the clock reaches the slot: it runs
    assert run(sched_app, outcome.next_run_at + timedelta(seconds=5)).status == "succeeded"


def test_storage_failure_is_recorded_and_mailed_with_what_to_check(tmp_path, database_url, smtp_server):
    not_a_directory = tmp_path / "backups-is-a-file"
    not_a_directory.write_text("")
    app = build_app(tmp_path, database_url, BACKUP_DIRECTORY=str(not_a_directory))
    mailbox = send_mail_to(app, smtp_server)
    in_force(app, notify_on="failure")

    outcome = run(app)
    assert outcome.status == "failed"
    [row] = runs(app)
    assert row.status == "failed" and row.filename is None and str(not_a_directory) in row.error
    [message] = mailbox
    text = message_text(message)
    assert "FAILED: storage" in text and str(not_a_directory) in text
    assert f"that the backup directory {not_a_directory} exists and the app may write to it" in text
    # the health endpoint's view of it
    with app.app_context():
        from app.backup.schedule import health

        assert health.assess().status == "failing"
    with app.app_context():
        db.engine.dispose()


def _drop_database(app, database_url):
    """Make the database go away for real: the file, or the PostgreSQL database."""
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        Path(url.database).unlink()
        return
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {url.database} WITH (FORCE)"))
    admin.dispose()


def test_failure_mail_goes_out_when_the_database_is_gone(tmp_path, database_url, smtp_server):
    app = build_app(tmp_path, database_url)
    mailbox = send_mail_to(app, smtp_server)
    in_force(app, notify_on="failure", notify_emails="dba@example.com")
    now = utcnow()
    # An earlier tick read the schedule (every instance does, each minute) and its slot is done.
    assert run(app, now).status == "succeeded"
    mailbox.clear()

    _drop_database(app, database_url)
    next_day = now + timedelta(days=1)
    outcome = run(app, next_day)
    assert outcome.status == "failed" and "database could not be read" in outcome.message
    # the driver's one line, not SQLAlchemy's statement, parameters and background link
    assert "\n" not in outcome.message and "SELECT" not in outcome.message and "sqlalche.me" not in outcome.message
    [message] = mailbox
    assert message.rcpt_tos == ["dba@example.com"]
    text = message_text(message)
    assert "FAILED: database" in text and "database server is running" in text
    assert "SELECT" not in text and "sqlalche.me" not in text
    # reported once per slot, not at every tick
    assert run(app, next_day + timedelta(minutes=1)).status == "failed"
    assert len(mailbox) == 1
    with app.app_context():
        db.engine.dispose()


def _insert_orphan_row(app):
    """A live database with a broken foreign key (as old SQLite installs have): backups of it cannot restore."""
    with app.app_context():
        table = next(t for t in data_tables() if t.name == "password_reset_tokens")
        row = {"user_id": 4242, "token": "orphan", "created_at": utcnow(), "expires_at": utcnow(), "is_active": True}
        with db.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
                conn.execute(table.insert(), row)
                conn.exec_driver_sql("PRAGMA foreign_keys = ON")
            else:
                conn.exec_driver_sql("SET session_replication_role = replica")
                conn.execute(table.insert(), row)
                conn.exec_driver_sql("SET session_replication_role = DEFAULT")


def test_a_backup_that_fails_verification_is_a_failed_run_and_retention_does_not_run(sched_app, smtp_server):
    mailbox = send_mail_to(sched_app, smtp_server)
    now = utcnow()
    old = backup_at(sched_app, now - timedelta(days=90))
    in_force(sched_app, retention_days=1, keep_last=0, notify_on="failure")
    _insert_orphan_row(sched_app)

    outcome = run(sched_app, now)
    assert outcome.status == "failed"
    filename = outcome.report.backup["filename"]
    with sched_app.app_context():
        assert db.session.get(BackupRecord, filename).verified is False
    [row] = runs(sched_app)
    assert row.status == "failed" and row.filename == filename and "verification" in row.error
    assert old in listed(sched_app)  # nothing is pruned after a failed run
    text = message_text(mailbox[0])
    assert "FAILED: verification" in text and "flask backup verify FILE" in text


def test_a_slot_is_deferred_while_another_backup_runs_then_taken_over(sched_app):
    in_force(sched_app)
    now = utcnow()
    with sched_app.app_context():
        acquire_exclusive("a-manual-restore")
    outcome = run(sched_app, now)
    assert outcome.status == "deferred" and "Another backup or restore is running" in outcome.message
    assert [r.status for r in runs(sched_app)] == ["deferred"]
    with sched_app.app_context():
        release_exclusive("a-manual-restore")
    assert run(sched_app, now + timedelta(minutes=1)).status == "succeeded"
    assert [r.status for r in runs(sched_app)] == ["succeeded"]
    assert len(listed(sched_app)) == 1


def test_a_run_whose_process_died_is_marked_failed_and_reported_once(sched_app, smtp_server):
    mailbox = send_mail_to(sched_app, smtp_server)
    in_force(sched_app, notify_on="failure")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = f"{socket.gethostname()}:{dead.stdout.strip()}"
    now = utcnow()
    with sched_app.app_context():
        db.session.add(ScheduledRun(slot=now - timedelta(days=3), owner=owner, status="running",
                                    started_at=now - timedelta(days=3)))
        db.session.commit()
    run(sched_app, now)
    run(sched_app, now + timedelta(minutes=1))
    interrupted = runs(sched_app)[0]
    assert interrupted.status == "failed" and "Interrupted" in interrupted.error
    failures = [m for m in mailbox if "FAILED" in message_text(m)]
    assert len(failures) == 1 and owner in message_text(failures[0])


def test_a_schedule_saved_on_one_instance_is_followed_by_another(tmp_path, database_url):
    one = build_app(tmp_path / "one", database_url)
    two = build_app(tmp_path / "two", database_url, BACKUP_DIRECTORY=str(tmp_path / "one" / "backups"))
    assert run(two).status == "disabled"
    in_force(one)
    assert run(two).status == "succeeded"
    assert run(one).status == "taken"
    for app in (one, two):
        with app.app_context():
            db.engine.dispose()


def test_run_scheduled_command_for_cron(sched_app):
    runner = sched_app.test_cli_runner()
    result = runner.invoke(args=["backup", "run-scheduled"])
    assert result.exit_code == 0 and "disabled" in result.output
    in_force(sched_app)
    result = runner.invoke(args=["backup", "run-scheduled"])
    assert result.exit_code == 0, result.output
    assert "made and verified" in result.output
    result = runner.invoke(args=["backup", "run-scheduled", "--json"])
    assert result.exit_code == 0 and '"status": "taken"' in result.output


def test_run_scheduled_command_fails_with_one_line_on_stderr(tmp_path):
    app = build_app(tmp_path, BACKUP_DIRECTORY=os.devnull)
    in_force(app)
    # A real process: in pytest's own, the log's records go to its capture instead of stderr. No mail
    # server listens (MAIL_PORT 1): the lost failure mail is one warning line too, no traceback.
    with flask_process(app, "backup", "run-scheduled", env={"MAIL_PORT": "1"}) as process:
        stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and stdout == ""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert lines[-1] == (f"Error: The scheduled backup failed: The backup directory {os.devnull} cannot be "
                         "created (File exists); create it or set BACKUP_DIRECTORY to a writable place.")
    # Before it: the start-up's warning about the store, and the mail that could not be sent.
    assert len(lines) == 3 and "Could not send '[CyberQuest] Scheduled backup FAILED: storage'" in lines[1]


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_tick_never_raises_and_runs_inside_an_app_context(sched_app, status):
    in_force(sched_app)
    if status == "failed":
        sched_app.config["BACKUP_DIRECTORY"] = os.devnull
    outcome = scheduler.tick(sched_app, utcnow())
    assert outcome.status == status
