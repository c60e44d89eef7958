"""Jobs on Celery (app/backup/jobs/executors/celery_queue.py): real workers, the machine's Redis, PostgreSQL."""
from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.backup.jobs.lock import exclusive_is_held
from app.backup.schedule.runner import run_scheduled
from app.cli import create_account
from app.extensions import db
from app.models import AuditLog, BackupJob, OperationLock, utcnow
from support.app import build_app
from support.backup import seed_sample_rows
from support.jobs import job_row, partials, table_held
from support.schedule import save_schedule
from support.services import free_port
from support.waiting import until
from support.web import JSON, bearer_client, login, wait_for_job

pytestmark = pytest.mark.postgres


def test_a_job_queued_while_no_worker_runs_waits_then_runs_when_one_starts(queued_app, start_worker):
    seed_sample_rows(queued_app)
    client = bearer_client(queued_app, "ops")
    response = client.post("/admin/create-backup")
    assert response.status_code == 202, response.get_data(as_text=True)
    job = response.get_json()["job"]
    assert job["status"] == "queued" and "waiting for a worker" in job["message"]

    waited = until(lambda: (lambda j: j if j["waited_seconds"] >= 1 else None)(
        client.get(f"/admin/backup-jobs/{job['id']}").get_json()["job"]), 10, "a second of waiting")
    assert waited["status"] == "queued" and waited["started_at"] is None
    listing = client.get("/admin/system-backup", headers=JSON).get_json()
    assert listing["job"]["status"] == "queued" and listing["job"]["waited_seconds"] >= 1
    browser = queued_app.test_client()
    with queued_app.app_context():
        create_account("anna", "anna@example.com", "anna-password-1", is_admin=True)
    assert login(browser, "anna", "anna-password-1").status_code == 302
    page = browser.get("/admin/system-backup").get_data(as_text=True)
    assert "Queued backup" in page and "waiting for" in page
    refused = client.post("/admin/create-backup")
    assert refused.status_code == 409 and refused.get_json()["job"]["id"] == job["id"]

    worker = start_worker()
    done = wait_for_job(client, {}, job["id"])
    assert done["status"] == "succeeded", done
    assert done["waited_seconds"] >= 1 and done["result"]["total_records"] > 0
    assert [b["filename"] for b in client.get("/admin/system-backup", headers=JSON).get_json()["backups"]] \
        == [done["result"]["filename"]]
    assert "cyberquest.backup.run_job" in worker.output and done["result"]["filename"] in worker.output


def test_restore_and_verify_run_on_the_worker_with_the_same_results_and_audit(queued_app, start_worker):
    seed_sample_rows(queued_app)
    worker = start_worker()
    client = bearer_client(queued_app, "ops")
    created = client.post("/admin/create-backup", data={"wait": "1"})
    assert created.status_code == 201, created.get_data(as_text=True)
    filename = created.get_json()["backup"]["filename"]

    verified = client.post(f"/admin/verify-backup/{filename}")
    assert verified.status_code == 200 and verified.get_json()["verification"]["ok"] is True
    restored = client.post("/admin/restore-backup", data={"filename": filename, "mode": "merge",
                                                          "confirm": "merge", "wait": "1"})
    assert restored.status_code == 200, restored.get_data(as_text=True)
    result = restored.get_json()["restore"]
    assert result["mode"] == "merge" and result["safety_backup"]
    assert set(result["tables"]["users"]) == {"inserted", "updated", "skipped", "deleted"}

    started = client.post("/admin/restore-backup", data={"filename": filename, "mode": "merge", "confirm": "merge"})
    assert started.status_code == 202
    assert wait_for_job(client, {}, started.get_json()["job"]["id"])["status"] == "succeeded"
    with queued_app.app_context():
        kinds = db.session.execute(sa.select(BackupJob.kind, BackupJob.status, BackupJob.owner)).all()
        actions = db.session.execute(sa.select(AuditLog.action, AuditLog.actor)).all()
    assert sorted(kind for kind, _, _ in kinds) == ["backup", "restore", "restore", "verify"]
    assert all(status == "succeeded" for _, status, _ in kinds)
    # Each ran in the worker's process, not in this one.
    assert all(not owner.endswith(f":{os.getpid()}") for _, _, owner in kinds)
    assert actions.count(("backup.restore", "ops")) == 2
    assert worker.output.count("cyberquest.backup.run_job") >= 8  # received + succeeded, four times
    # The two safety backups the worker took are listed here too.
    assert len(client.get("/admin/system-backup", headers=JSON).get_json()["backups"]) == 3


def test_a_worker_killed_mid_backup_leaves_a_failed_job_a_free_lock_and_no_partial(queued_app, start_worker):
    seed_sample_rows(queued_app)
    worker = start_worker()
    client = bearer_client(queued_app, "ops")
    with table_held(queued_app):
        job_id = client.post("/admin/create-backup").get_json()["job"]["id"]
        until(lambda: job_row(queued_app, job_id).status == "running" and partials(queued_app), 30,
              "the backup's start in the worker")
        worker.kill()
        killed_at = time.monotonic()
        failed = wait_for_job(client, {}, job_id, timeout=queued_app.config["BACKUP_LOCK_TTL"] * 3)
        noticed_after = time.monotonic() - killed_at
    assert failed["status"] == "failed" and "Interrupted" in failed["message"], failed
    assert noticed_after < queued_app.config["BACKUP_LOCK_TTL"] * 2
    with queued_app.app_context():
        assert exclusive_is_held() is None
        assert db.session.execute(sa.select(OperationLock)).scalars().all() == []
    assert partials(queued_app) == []
    assert client.get("/admin/system-backup", headers=JSON).get_json()["backups"] == []

    start_worker()
    again = client.post("/admin/create-backup", data={"wait": "1"})
    assert again.status_code == 201, again.get_data(as_text=True)


def test_an_unreachable_broker_fails_the_job_at_once_and_frees_the_lock(tmp_path, postgres_url):
    app = build_app(tmp_path, postgres_url, BACKUP_JOB_EXECUTOR="celery",
                    CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    try:
        client = bearer_client(app, "ops")
        started = time.monotonic()
        response = client.post("/admin/create-backup")
        assert response.status_code == 503, response.get_data(as_text=True)
        assert "CELERY_BROKER_URL" in response.get_json()["error"]
        assert time.monotonic() - started < 15
        with app.app_context():
            job = db.session.execute(sa.select(BackupJob)).scalars().one()
            assert job.status == "failed" and "not reachable" in job.message
            assert exclusive_is_held() is None
    finally:
        with app.app_context():
            db.engine.dispose()


def test_a_scheduled_slot_is_claimed_once_and_its_backup_and_verify_run_on_the_worker(queued_app, start_worker):
    seed_sample_rows(queued_app)
    save_schedule(queued_app, effective_from=utcnow() - timedelta(days=2), enabled=True, frequency="daily",
                  time="02:00")
    start_worker()
    with queued_app.app_context():
        outcome = run_scheduled()
        again = run_scheduled()
        jobs = db.session.execute(sa.select(BackupJob.kind, BackupJob.status, BackupJob.owner)).all()
    assert outcome.status == "succeeded" and outcome.report.verified is True, outcome.message
    assert again.status == "taken"
    assert sorted((kind, status) for kind, status, _ in jobs) == [("backup", "succeeded"), ("verify", "succeeded")]
    assert all(not owner.endswith(f":{os.getpid()}") for _, _, owner in jobs)
