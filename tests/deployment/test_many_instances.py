"""Many instances on one database and one bucket: two gunicorn instances, a Celery worker, PostgreSQL, S3.

Driven over HTTP only, as users and scripts do. Instance A never schedules; instance B
does (two gunicorn workers, so two schedulers race for each slot).
"""
from __future__ import annotations

import io
import time
import zipfile
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import BackupJob, ScheduledRun, utcnow
from support.jobs import table_held
from support.served import call
from support.waiting import until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def finished(instance, token: str, job_id: str, timeout: float = 60) -> dict:
    """The job's final state, read through ``instance``."""
    def state():
        job = call("GET", f"{instance.url}/admin/backup-jobs/{job_id}", token=token).json["job"]
        return job if job["status"] in ("succeeded", "failed") else None

    return until(state, timeout, f"the end of job {job_id}")


def listing(instance, token: str) -> list[str]:
    return [b["filename"] for b in call("GET", f"{instance.url}/admin/system-backup", token=token).json["backups"]]


def test_a_backup_made_through_one_is_listed_downloadable_verifiable_and_restorable_through_the_other(deployment):
    a, b, token = deployment.a, deployment.b, deployment.token
    created = call("POST", f"{a.url}/admin/create-backup", token=token, fields={"wait": "1"})
    assert created.status == 201, created.json
    filename = created.json["backup"]["filename"]
    assert listing(a, token) == listing(b, token) and filename in listing(b, token)

    download = call("GET", f"{b.url}/admin/download-backup/{filename}", token=token)
    assert download.status == 200 and int(download.headers["Content-Length"]) == len(download.body)
    with zipfile.ZipFile(io.BytesIO(download.body)) as archive:
        assert archive.testzip() is None and "database_backup.json" in archive.namelist()

    verified = call("POST", f"{b.url}/admin/verify-backup/{filename}", token=token)
    assert verified.status == 200 and verified.json["verification"]["ok"] is True, verified.json
    restored = call("POST", f"{b.url}/admin/restore-backup", token=token,
                    fields={"filename": filename, "mode": "merge", "confirm": "merge", "wait": "1"})
    assert restored.status == 200, restored.json
    assert restored.json["restore"]["safety_backup"] in listing(a, token)
    with deployment.app.app_context():
        owners = db.session.execute(sa.select(BackupJob.owner)).scalars().all()
    assert owners and all(owner.startswith("worker-c:") for owner in owners)  # the worker ran every job


def test_a_restore_running_through_one_gives_409_on_the_other(deployment):
    a, b, token = deployment.a, deployment.b, deployment.token
    filename = listing(a, token)[0]
    with table_held(deployment.app):  # the restore's safety backup waits on a table: still running below
        started = call("POST", f"{a.url}/admin/restore-backup", token=token,
                       fields={"filename": filename, "mode": "merge", "confirm": "merge"})
        assert started.status == 202, started.json
        job_id = started.json["job"]["id"]
        until(lambda: call("GET", f"{b.url}/admin/backup-jobs/{job_id}", token=token).json["job"]["status"]
              == "running", 30, "the restore's start on the worker")
        for path, fields in (("/admin/restore-backup", {"filename": filename, "mode": "merge", "confirm": "merge"}),
                             ("/admin/create-backup", {})):
            refused = call("POST", f"{b.url}{path}", token=token, fields=fields)
            assert refused.status == 409 and refused.json["job"]["id"] == job_id, refused.json
    assert finished(b, token, job_id)["status"] == "succeeded"


def test_a_schedule_saved_on_one_fires_its_slot_once_on_the_other_within_a_minute(deployment):
    a, b, token = deployment.a, deployment.b, deployment.token
    now = utcnow()
    if now.second >= 50:  # too close to the next tick to save before it: take the one after
        time.sleep(61 - now.second)
        now = utcnow()
    slot = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    saved = call("POST", f"{a.url}/admin/backup-schedule", token=token,
                 fields={"enabled": "true", "frequency": "daily", "time": slot.strftime("%H:%M"),
                         "notify_on": "never"})
    assert saved.status == 200 and saved.json["schedule"]["next_run_at"] == slot.isoformat()
    assert call("GET", f"{b.url}/admin/backup-schedule", token=token).json["schedule"] == saved.json["schedule"]

    def the_run():
        with deployment.app.app_context():
            db.session.rollback()
            run = db.session.execute(sa.select(ScheduledRun).where(ScheduledRun.slot == slot)).scalars().first()
            return run if run is not None and run.status in ("succeeded", "failed") else None

    run = until(the_run, 100, "the scheduled slot's run on instance B")
    assert run.status == "succeeded", run.error
    assert run.owner.startswith("instance-b:")
    time.sleep(3)  # B's other scheduler (and A, which schedules nothing) had every chance to run it too
    with deployment.app.app_context():
        runs = db.session.execute(sa.select(ScheduledRun)).scalars().all()
    assert len(runs) == 1
    scheduled = [x for x in call("GET", f"{a.url}/admin/system-backup", token=token).json["backups"]
                 if x["trigger"] == "scheduled"]
    assert [x["filename"] for x in scheduled] == [run.filename] and scheduled[0]["verified"] is True
