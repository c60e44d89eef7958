"""Reading the backup health changes nothing; the scheduler's beat sends the missed-schedule alert, once."""
import os
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.backup.schedule import health
from app.backup.schedule.runner import tick
from app.backup.schedule.settings import due_slot
from app.cli import create_account
from app.extensions import db
from app.models import BackupSchedule, ScheduledRun, utcnow
from support.mail import message_text, send_mail_to
from support.schedule import backup_at, listed, save_schedule
from support.web import login


def missed_schedule(app) -> None:
    """A daily schedule whose newest backup is 3 days old; today's slot already ran, so a beat makes no backup."""
    now = utcnow()
    settings = save_schedule(app, effective_from=now - timedelta(days=30), enabled=True, frequency="daily",
                             time=(now - timedelta(hours=12)).strftime("%H:%M"),
                             notify_emails="ops@example.com", notify_on="failure")
    backup_at(app, now - timedelta(days=3))
    slot = due_slot(settings, now)
    with app.app_context():
        db.session.add(ScheduledRun(slot=slot, status="succeeded", started_at=slot, finished_at=slot))
        db.session.commit()
        assert health.assess().alert_due  # the alert is due: only who sends it is in question


def every_row(app) -> dict[str, list[str]]:
    """Every row of every table the app knows, as text (a write of any kind shows up here)."""
    with app.app_context(), db.engine.connect() as conn:
        return {name: sorted(repr(tuple(row)) for row in conn.execute(sa.select(table)))
                for name, table in db.metadata.tables.items()}


def missed_alert_at(app):
    with app.app_context():
        return db.session.execute(sa.select(BackupSchedule.missed_alert_at)).scalar_one()


def test_reading_the_health_of_a_missed_schedule_sends_nothing_and_writes_nothing(sched_app, smtp_server):
    mailbox = send_mail_to(sched_app, smtp_server)
    missed_schedule(sched_app)
    with sched_app.app_context():
        create_account("watcher", "watcher@example.com", "watcher-pass-1", is_admin=True)
    browser = sched_app.test_client()
    assert login(browser, "watcher", "watcher-pass-1").status_code == 302
    rows_before, files_before = every_row(sched_app), sorted(os.listdir(sched_app.config["BACKUP_DIRECTORY"]))

    for _ in range(2):
        answer = browser.get("/admin/backup-health", headers={"Accept": "application/json"})
        assert answer.status_code == 503 and answer.get_json()["status"] == "stale"
        page = browser.get("/admin/backup-health")
        assert page.status_code == 503 and "Backup health: stale" in page.get_data(as_text=True)

    assert mailbox == []
    assert missed_alert_at(sched_app) is None
    assert every_row(sched_app) == rows_before
    assert sorted(os.listdir(sched_app.config["BACKUP_DIRECTORY"])) == files_before


@pytest.mark.parametrize("beat", ["tick", "run-scheduled"])
def test_the_scheduler_beat_sends_the_missed_alert_exactly_once(sched_app, smtp_server, beat):
    mailbox = send_mail_to(sched_app, smtp_server)
    missed_schedule(sched_app)
    backups = listed(sched_app)
    for _ in range(3):
        if beat == "tick":
            assert tick(sched_app).status == "taken"
        else:
            result = sched_app.test_cli_runner().invoke(args=["backup", "run-scheduled"])
            assert result.exit_code == 0 and "already taken" in result.output, result.output
    assert len(mailbox) == 1 and mailbox[0].rcpt_tos == ["ops@example.com"]
    assert "Backups are overdue" in message_text(mailbox[0])
    assert missed_alert_at(sched_app) is not None
    assert listed(sched_app) == backups  # the alert came from the beat itself, not from a new run
