"""The lock's owner heartbeat (app/backup/jobs/heartbeat.py) seen from another host.

Two processes act as two hosts through ``BACKUP_OWNER_HOST``: a process cannot look
at another host's processes, so it can only trust the heartbeat. A live holder that
reports no progress stays the holder for as long as it runs; a dead one is noticed
once its TTL has passed, and its job is failed and its lock released.
"""
from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from app.backup.errors import ConflictError
from app.backup.jobs.lock import exclusive_is_held
from app.backup.jobs.runner import get_job, run_job
from app.extensions import db
from app.models import OperationLock
from support.app import build_app
from support.backup import seed_sample_rows
from support.jobs import job_row, table_held
from support.waiting import until
from support.web import bearer_client, wait_for_job


def test_a_silent_job_keeps_its_lock_alive_for_another_host_past_many_ttls(tmp_path, postgres_url):
    host_a = build_app(tmp_path / "a", postgres_url, BACKUP_OWNER_HOST="host-a", BACKUP_LOCK_TTL=1)
    host_b = build_app(tmp_path / "b", postgres_url, BACKUP_OWNER_HOST="host-b", BACKUP_LOCK_TTL=1)
    release = threading.Event()
    try:
        with host_a.app_context():
            job = run_job("backup", "admin", lambda handle: release.wait(30) and {}, background=True)
        with host_b.app_context():
            until(lambda: get_job(job.id).status == "running", 10, "the job's start")
            seen_until = time.monotonic() + 3.5  # three and a half TTLs without a single progress report
            while time.monotonic() < seen_until:
                db.session.rollback()
                held = exclusive_is_held()
                assert held is not None and held["id"] == job.id
                time.sleep(0.2)
            with pytest.raises(ConflictError):
                run_job("backup", "admin", lambda handle: {}, background=False)
            owner = db.session.execute(sa.select(OperationLock.owner)).scalar_one()
            assert owner.startswith("host-a:")
            release.set()
            until(lambda: get_job(job.id).status == "succeeded", 10, "the job's end")
            assert exclusive_is_held() is None
    finally:
        release.set()
        for app in (host_a, host_b):
            with app.app_context():
                db.engine.dispose()


def test_a_worker_dead_on_another_host_is_noticed_once_its_ttl_has_passed(queued_app, start_worker):
    seed_sample_rows(queued_app)
    worker = start_worker(BACKUP_OWNER_HOST="host-b")
    ttl = queued_app.config["BACKUP_LOCK_TTL"]
    client = bearer_client(queued_app, "ops")
    with table_held(queued_app):
        job_id = client.post("/admin/create-backup").get_json()["job"]["id"]
        until(lambda: job_row(queued_app, job_id).status == "running", 30, "the backup's start in the worker")
        with queued_app.app_context():
            first_expiry = db.session.execute(sa.select(OperationLock.expires_at)).scalar_one()
            owner = db.session.execute(sa.select(OperationLock.owner)).scalar_one()
        assert owner.startswith("host-b:")
        # Alive on "host-b": held through two TTLs by its heartbeat, while the backup waits on the table.
        time.sleep(ttl * 2)
        assert client.post("/admin/create-backup").status_code == 409
        with queued_app.app_context():
            assert db.session.execute(sa.select(OperationLock.expires_at)).scalar_one() > first_expiry
        worker.kill()
        killed_at = time.monotonic()
        # This host cannot see host-b's processes: the job still looks alive until the TTL has passed.
        assert client.get(f"/admin/backup-jobs/{job_id}").get_json()["job"]["status"] == "running"
        failed = wait_for_job(client, {}, job_id, timeout=ttl * 4)
        noticed_after = time.monotonic() - killed_at
    assert failed["status"] == "failed" and "Interrupted" in failed["message"]
    assert noticed_after <= ttl + 2
    with queued_app.app_context():
        assert db.session.execute(sa.select(OperationLock)).scalars().all() == []
    assert client.post("/admin/create-backup").status_code == 202
