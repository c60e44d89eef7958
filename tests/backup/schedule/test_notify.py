"""E-mails about scheduled runs, received by a real SMTP server (aiosmtpd)."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import OperationalError

from app.backup.schedule import notify
from app.backup.errors import BackupError, ConflictError, StorageError
from app.backup.schedule.settings import ScheduleSettings
from support.mail import message_text

SLOT = datetime(2026, 11, 26, 2, tzinfo=timezone.utc)
NOTIFY_ALWAYS = ScheduleSettings(enabled=True, notify_emails=("ops@example.com", "cto@example.com"),
                                 notify_on="always")
BACKUP = {"filename": "cyberquest_backup_20261126_020001.zip", "size_bytes": 3 * 1024 * 1024 + 1000,
          "record_counts": {"users": 120, "login_attempts": 4000}, "total_records": 4120}


def success_report() -> notify.RunReport:
    return notify.RunReport(slot=SLOT, started_at=SLOT, finished_at=SLOT + timedelta(seconds=42.3), succeeded=True,
                            backup=BACKUP, verified=True, pruned=["cyberquest_backup_20261001_020000.zip"],
                            owner="web-1:123")


def failure_report(kind: str, error: str = "Cannot write in the backup directory /srv/backups") -> notify.RunReport:
    return notify.RunReport(slot=SLOT, started_at=SLOT, finished_at=SLOT + timedelta(seconds=1), error=error,
                            error_kind=kind, owner="web-1:123")


def test_success_mail_says_file_size_counts_duration_and_verified(app):
    with app.app_context():
        subject, body = notify.compose_run_mail(NOTIFY_ALWAYS, success_report())
    assert subject == "[CyberQuest] Scheduled backup succeeded: cyberquest_backup_20261126_020001.zip"
    assert "cyberquest_backup_20261126_020001.zip" in body
    assert "3.0 MiB" in body
    assert "4120" in body and "users" in body and "120" in body and "login_attempts" in body
    assert "42.3 s" in body
    assert "Verified:       yes" in body
    assert "cyberquest_backup_20261001_020000.zip" in body  # what retention removed


@pytest.mark.parametrize("kind, hint", [
    ("storage", "backup directory"),
    ("database", "database server is running"),
    ("verification", "flask backup verify"),
    ("other", "application log"),
])
def test_failure_mail_says_the_error_and_what_to_check(app, kind, hint):
    with app.app_context():
        subject, body = notify.compose_run_mail(NOTIFY_ALWAYS, failure_report(kind, "boom: it broke"))
    assert "FAILED" in subject and kind in subject
    assert "boom: it broke" in body and "What to check" in body and hint in body


def test_errors_are_classified_by_their_cause():
    try:
        try:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        except OperationalError as exc:
            raise BackupError("The backup failed: database error") from exc
    except BackupError as wrapped:
        assert notify.classify_error(wrapped) == "database"
    assert notify.classify_error(StorageError("disk full")) == "storage"
    assert notify.classify_error(PermissionError(13, "denied")) == "storage"
    assert notify.classify_error(ConflictError("busy")) == "conflict"
    assert notify.classify_error(ValueError("?")) == "other"


@pytest.mark.parametrize("notify_on, succeeded, sent", [
    ("always", True, True), ("always", False, True),
    ("failure", True, False), ("failure", False, True),
    ("never", True, False), ("never", False, False),
])
def test_notify_on_decides_what_is_sent(app, mailbox, notify_on, succeeded, sent):
    settings = ScheduleSettings(enabled=True, notify_emails=("ops@example.com",), notify_on=notify_on)
    report = success_report() if succeeded else failure_report("storage")
    with app.app_context():
        assert notify.notify_run(settings, report) is sent
    assert len(mailbox) == (1 if sent else 0)
    if sent:
        assert mailbox[0].rcpt_tos == ["ops@example.com"]
        assert mailbox[0].mail_from == "cyberquest@test.local"
        assert ("succeeded" if succeeded else "FAILED") in message_text(mailbox[0])


def test_no_recipients_means_no_mail(app, mailbox):
    with app.app_context():
        assert notify.notify_run(ScheduleSettings(notify_on="always"), success_report()) is False
    assert mailbox == []


def test_an_unreachable_mail_server_does_not_raise(app):
    # test settings point MAIL_PORT at a port where nothing listens
    app.extensions["mail"].suppress = False
    with app.app_context():
        assert notify.notify_run(NOTIFY_ALWAYS, failure_report("storage")) is False


def test_both_recipients_receive_the_failure_mail(app, mailbox):
    with app.app_context():
        assert notify.notify_run(NOTIFY_ALWAYS, failure_report("storage"))
    assert sorted(mailbox[0].rcpt_tos) == ["cto@example.com", "ops@example.com"]
    text = message_text(mailbox[0])
    assert "Cannot write in the backup directory /srv/backups" in text
