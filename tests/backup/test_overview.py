"""What the System Backup page shows (app/backup/overview.py): the rows at risk, the cards, the history."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from app.backup import overview
from app.backup.audit import Actor
from app.backup.jobs.runner import create_job
from app.backup.service import BackupService
from app.backup.verify import verify_listed_backup
from app.extensions import db
from app.models import BackupJob, ContactSubmission, utcnow
from support.app import build_app, count_rows
from support.backup import seed_sample_rows


def add_contact(app, when=None) -> None:
    with app.app_context():
        db.session.add(ContactSubmission(name="New", email="new@example.com", message="Hello.",
                                         created_at=when or utcnow()))
        db.session.commit()


def test_with_no_backup_every_row_is_at_risk(app):
    seed_sample_rows(app)
    with app.app_context():
        risk = overview.listing()["at_risk"]
    assert risk == {"since": None, "rows": sum(count_rows(app).values()), "tables": count_rows(app)}


def test_rows_added_after_the_newest_good_backup_are_at_risk(app):
    seed_sample_rows(app)
    with app.app_context():
        older = BackupService().create("manual", "admin")
    add_contact(app)
    add_contact(app, utcnow() - timedelta(days=3))  # added before the backup's time: restored rows, say
    with app.app_context():
        risk = overview.listing()["at_risk"]
    assert risk["since"] == older["created_at"] and risk["rows"] == 1
    assert risk["tables"]["contact_submissions"] == 1 and set(risk["tables"]) == set(count_rows(app))

    with app.app_context():
        newer = BackupService().create("manual", "admin")
        assert overview.listing()["at_risk"]["rows"] == 0
        # A backup that failed its verification is no good backup: the older one is.
        BackupService().record_verification(newer["filename"], False)
        assert overview.listing()["at_risk"] == {**risk}


def test_rows_at_risk_on_every_database(tmp_path, any_database_url):
    app = build_app(tmp_path, any_database_url)
    try:
        seed_sample_rows(app)
        with app.app_context():
            made = BackupService().create("manual", "admin")
        add_contact(app)
        with app.app_context():
            risk = overview.listing()["at_risk"]
        assert risk["since"] == made["created_at"] and risk["rows"] == 1
        assert risk["tables"]["contact_submissions"] == 1
    finally:
        with app.app_context():
            db.engine.dispose()


def test_the_summary_cards_of_a_verified_backup(app):
    seed_sample_rows(app)
    with app.app_context():
        made = BackupService().create("manual", "admin")
        verify_listed_backup(made["filename"], actor=Actor("admin"))
        page = overview.system_backup_page()
    summary = page["summary"]
    assert summary["health"]["status"] == "ok" and summary["health"]["reason"]
    assert summary["last_backup"] == {"filename": made["filename"], "created_at": made["created_at"],
                                      "age": "just now"}
    assert summary["next_run_at"] is None
    assert summary["stored"] == {"count": 1, "size_bytes": made["size_bytes"]}
    proven = summary["proven_restore"]
    assert proven["ok"] is True and proven["filename"] == made["filename"] and proven["age"] == "just now"
    assert proven["restore_seconds"] > 0
    assert page["verified_at"][made["filename"]] == proven["verified_at"]
    assert page["schedule"]["enabled"] is False and "directory" in page["schedule"]["storage"]


def test_the_history_is_oldest_first_with_the_failed_backups(app):
    with app.app_context():
        first = BackupService().create("manual", "admin")
        failed = create_job("backup", "admin")
        db.session.execute(sa.update(BackupJob).where(BackupJob.id == failed.id).values(
            status="failed", message="The disk is full.", finished_at=utcnow()))
        db.session.commit()
        second = BackupService().create("manual", "admin")
        history = overview.system_backup_page()["history"]
    assert [p["filename"] for p in history["points"]] == [first["filename"], second["filename"]]
    assert [p["size"] for p in history["points"]] == [first["size_bytes"], second["size_bytes"]]
    assert [f["message"] for f in history["failures"]] == ["The disk is full."]


def test_the_page_reports_only_a_finished_job(app):
    with app.app_context():
        running = create_job("backup", "admin")
        assert overview.system_backup_page(running.id)["outcome"] is None
        assert overview.system_backup_page("no-such-job")["outcome"] is None
        db.session.execute(sa.update(BackupJob).where(BackupJob.id == running.id).values(
            status="failed", message="The disk is full.", finished_at=utcnow()))
        db.session.commit()
        assert overview.system_backup_page(running.id)["outcome"]["message"] == "The disk is full."
