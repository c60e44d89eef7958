"""GET /admin/backup-health for uptime monitors, and the one alert e-mail of a missed schedule."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app.backup.schedule import health
from app.backup.schedule.runner import alert_if_missed
from app.backup.schedule.settings import ScheduleSettings
from app.extensions import db
from app.models import BackupSchedule, ScheduledRun, utcnow
from support.web import bearer_client, login
from support.mail import message_text, send_mail_to
from support.schedule import backup_at, save_schedule

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
LONG_AGO = NOW - timedelta(days=100)
DAILY = ScheduleSettings(enabled=True, frequency="daily", time="02:00", effective_from=LONG_AGO)


# --- The rules (pure) -------------------------------------------------------------------

def test_fresh_backup_is_ok():
    state = health.evaluate(DAILY, NOW - timedelta(hours=10), None, None, NOW)
    assert (state.status, state.http_status) == ("ok", 200)
    assert state.next_run_at == datetime(2026, 11, 27, 2, tzinfo=timezone.utc)


def test_older_than_one_and_a_half_intervals_is_stale():
    assert health.evaluate(DAILY, NOW - timedelta(hours=35), None, None, NOW).status == "ok"
    state = health.evaluate(DAILY, NOW - timedelta(hours=37), None, None, NOW)
    assert (state.status, state.http_status) == ("stale", 503)
    assert "36 hours" in state.reason and state.alert_due
    weekly = ScheduleSettings(enabled=True, frequency="weekly", effective_from=LONG_AGO)
    assert health.evaluate(weekly, NOW - timedelta(days=10), None, None, NOW).status == "ok"
    assert health.evaluate(weekly, NOW - timedelta(days=11), None, None, NOW).status == "stale"


def test_a_schedule_just_enabled_reports_stale_but_does_not_alert_yet():
    fresh = ScheduleSettings(enabled=True, effective_from=NOW - timedelta(hours=2))
    state = health.evaluate(fresh, NOW - timedelta(days=5), None, None, NOW)
    assert state.status == "stale" and not state.alert_due


def test_failed_scheduled_run_or_verification_is_failing():
    run = {"slot": "2026-11-26T02:00:00+00:00", "status": "failed", "error": "disk full"}
    state = health.evaluate(DAILY, NOW - timedelta(hours=1), run, None, NOW)
    assert state.status == "failing" and "disk full" in state.reason and state.http_status == 503
    state = health.evaluate(DAILY, NOW - timedelta(hours=1), None, ("x.zip", False), NOW)
    assert state.status == "failing" and "x.zip" in state.reason
    assert health.evaluate(DAILY, NOW - timedelta(hours=1), {**run, "status": "succeeded"}, ("x.zip", True),
                           NOW).status == "ok"


def test_no_backup_is_empty_and_a_disabled_schedule_is_not_held_to_an_interval():
    assert health.evaluate(DAILY, None, None, None, NOW).status == "empty"
    disabled = ScheduleSettings(enabled=False)
    state = health.evaluate(disabled, NOW - timedelta(days=300), None, None, NOW)
    assert state.status == "ok" and "disabled" in state.reason and state.next_run_at is None


# --- Over HTTP, on SQLite and PostgreSQL ------------------------------------------------

@pytest.fixture
def monitor(sched_app):
    """A script's client with an admin API token (what an uptime monitor uses)."""
    return bearer_client(sched_app, "monitor")


def test_health_answers_monitors_with_the_contract_shape(sched_app, monitor):
    response = monitor.get("/admin/backup-health")
    assert response.status_code == 503
    assert response.get_json()["status"] == "empty"
    save_schedule(sched_app, enabled=True, frequency="daily", time="02:00")
    backup_at(sched_app, utcnow() - timedelta(hours=3))
    response = monitor.get("/admin/backup-health")
    body = response.get_json()
    assert response.status_code == 200, body
    assert set(body) >= {"status", "reason", "last_success_at", "next_run_at"}
    assert body["status"] == "ok" and body["next_run_at"].endswith("02:00:00+00:00")


def test_failed_verification_of_the_newest_backup_makes_it_failing(sched_app, monitor):
    backup_at(sched_app, utcnow() - timedelta(hours=5))
    bad = backup_at(sched_app, utcnow() - timedelta(hours=1), verified=False)
    body = monitor.get("/admin/backup-health").get_json()
    assert body["status"] == "failing" and bad in body["reason"]
    # last_success_at ignores the failed one
    assert body["last_success_at"] < (utcnow() - timedelta(hours=4)).isoformat()


def test_a_failed_scheduled_run_makes_it_failing_until_one_succeeds(sched_app, monitor):
    backup_at(sched_app, utcnow() - timedelta(hours=1))
    with sched_app.app_context():
        db.session.add(ScheduledRun(slot=utcnow() - timedelta(hours=2), status="failed", error="disk full"))
        db.session.commit()
    response = monitor.get("/admin/backup-health")
    assert response.status_code == 503 and "disk full" in response.get_json()["reason"]
    with sched_app.app_context():
        db.session.add(ScheduledRun(slot=utcnow() - timedelta(hours=1), status="succeeded"))
        db.session.commit()
    assert monitor.get("/admin/backup-health").status_code == 200


def test_a_missed_schedule_sends_one_alert_per_episode(sched_app, monitor, smtp_server):
    mailbox = send_mail_to(sched_app, smtp_server)
    now = utcnow()
    save_schedule(sched_app, effective_from=now - timedelta(days=30), enabled=True, frequency="daily",
                  notify_emails="ops@example.com, dba@example.com", notify_on="failure")
    backup_at(sched_app, now - timedelta(days=3))
    for _ in range(3):
        with sched_app.app_context():
            alert_if_missed()  # the scheduler's beat (tick, run-scheduled) sends the alert; a GET does not
        response = monitor.get("/admin/backup-health")
        assert response.status_code == 503 and response.get_json()["status"] == "stale"
    assert len(mailbox) == 1
    assert sorted(mailbox[0].rcpt_tos) == ["dba@example.com", "ops@example.com"]
    text = message_text(mailbox[0])
    assert "Backups are overdue" in text and "flask backup run-scheduled" in text

    # Backups recover, then fall behind again: that is a new episode and a new alert.
    backup_at(sched_app, utcnow() + timedelta(seconds=1))
    assert monitor.get("/admin/backup-health").status_code == 200
    later = now + timedelta(days=3)
    with sched_app.app_context():
        for _ in range(2):
            assert alert_if_missed(later).status == "stale"
        assert db.session.execute(select(BackupSchedule.missed_alert_at)).scalar_one() == later
    assert len(mailbox) == 2


def test_no_alert_when_notifications_are_off(sched_app, monitor, smtp_server):
    mailbox = send_mail_to(sched_app, smtp_server)
    save_schedule(sched_app, effective_from=utcnow() - timedelta(days=30), enabled=True,
                  notify_emails="ops@example.com", notify_on="never")
    backup_at(sched_app, utcnow() - timedelta(days=3))
    with sched_app.app_context():
        alert_if_missed()  # the scheduler's beat is what would send it
    assert monitor.get("/admin/backup-health").status_code == 503
    assert mailbox == []


def test_health_is_admin_only(app, client, user_client):
    anonymous = app.test_client()
    assert anonymous.get("/admin/backup-health", headers={"Accept": "application/json"}).status_code == 401
    assert anonymous.get("/admin/backup-health").status_code == 302
    assert user_client.get("/admin/backup-health").status_code == 403


def test_the_browser_gets_a_page_with_the_same_health(app, admin_user):
    client = app.test_client()
    login(client, admin_user["username"], admin_user["password"])
    page = client.get("/admin/backup-health")
    assert page.status_code == 503
    html = page.get_data(as_text=True)
    assert "Backup health: empty" in html and "No successful backup exists yet." in html


def test_any_page_can_include_the_health_card(app):
    from flask import render_template_string

    with app.test_request_context("/admin/system-backup"):
        html = render_template_string('{% include "backup/schedule_health_card.html" %}', health=health.assess())
    assert 'data-status="empty"' in html and "No successful backup exists yet." in html
