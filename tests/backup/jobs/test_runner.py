"""Background jobs and the one-at-a-time lock (app/backup/jobs/: lock, records, runner)."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from app.backup.jobs.lock import (EXCLUSIVE_LOCK, HOSTNAME, LOCK_TTL, QUEUE_OWNER, acquire_exclusive,
                                  exclusive_is_held)
from app.backup.jobs.records import job_to_dict
from app.backup.jobs.runner import (create_job, error_of, execute_job, get_job, job_handle, latest_active_job,
                                    live_job_dict, run_job)
from app.backup.errors import ArchiveError, BackupError, ConflictError
from app.extensions import db
from app.models import BackupJob, OperationLock, utcnow


def test_a_job_records_its_result_and_releases_the_lock(app):
    with app.app_context():
        job = run_job("backup", "admin", lambda handle: {"answer": 42}, background=False)
        assert job.status == "succeeded" and job_to_dict(job)["result"] == {"answer": 42}
        assert exclusive_is_held() is None


def test_a_failing_job_is_recorded_failed_and_reraised(app):
    def work(handle):
        handle.progress(0.5, "half way")
        raise BackupError("The disk is on fire; call someone.")

    with app.app_context():
        with pytest.raises(BackupError, match="on fire"):
            run_job("backup", "admin", work, background=False)
        job = db.session.execute(db.select(BackupJob)).scalars().one()
        assert job.status == "failed" and job.message == "The disk is on fire; call someone."
        assert db.session.get(OperationLock, EXCLUSIVE_LOCK) is None


def test_while_a_job_holds_the_lock_another_is_refused_with_it(app):
    started, release = threading.Event(), threading.Event()

    def slow(handle):
        started.set()
        release.wait(30)
        return {}

    with app.app_context():
        first = run_job("restore", "admin", slow, background=True)
        assert started.wait(30)
        with pytest.raises(ConflictError) as conflict:
            run_job("backup", "admin", lambda handle: {}, background=False)
        assert conflict.value.extra["job"]["id"] == first.id
        assert latest_active_job().id == first.id
        release.set()
        deadline = time.monotonic() + 30
        while get_job(first.id).status != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert get_job(first.id).status == "succeeded"
        assert run_job("backup", "admin", lambda handle: {}, background=False).status == "succeeded"


def test_a_lock_left_by_a_dead_process_is_taken_over(app):
    with app.app_context():
        dead = create_job("backup", "admin")
        db.session.add(OperationLock(name=EXCLUSIVE_LOCK, job_id=dead.id,
                                     owner=f"{HOSTNAME}:{2**22 + 4321}",
                                     expires_at=utcnow() + LOCK_TTL))
        dead.status = "running"
        db.session.commit()
        assert run_job("backup", "admin", lambda handle: {}, background=False).status == "succeeded"
        assert get_job(dead.id).status == "failed"


def test_live_progress_is_visible_while_the_job_runs(app):
    reported, release = threading.Event(), threading.Event()

    def work(handle):
        handle.progress(0.25, "a quarter")
        reported.set()
        release.wait(30)
        return {}

    with app.app_context():
        job = run_job("backup", "admin", work, background=True)
        assert reported.wait(30)
        live = live_job_dict(get_job(job.id))
        assert live["progress"] == 0.25 and live["message"] == "a quarter"
        release.set()
        deadline = time.monotonic() + 30
        while get_job(job.id).status == "running" and time.monotonic() < deadline:
            time.sleep(0.02)


def test_a_failed_job_gives_back_the_error_class_it_raised(app):
    def work(handle):
        raise ArchiveError("The archive holds a broken foreign key.")

    with app.app_context():
        with pytest.raises(ArchiveError):
            run_job("restore", "admin", work, background=False)
        job = db.session.execute(db.select(BackupJob)).scalars().one()
        rebuilt = error_of(job)
        assert type(rebuilt) is ArchiveError and rebuilt.status == 422 and "foreign key" in rebuilt.message
        job.error_type = "NotAnErrorOfOurs"
        assert type(error_of(job)) is BackupError


def test_a_job_no_longer_queued_is_not_run_again(app):
    ran = []
    with app.app_context():
        job = run_job("backup", "admin", lambda handle: ran.append(1) or {}, background=False)
        error = execute_job(job_handle(job.id, "backup"), lambda handle: ran.append(2) or {}, True)
        assert ran == [1] and isinstance(error, BackupError)
        assert get_job(job.id).status == "succeeded"


def test_a_job_nobody_takes_from_the_queue_fails_after_the_queue_timeout(app):
    with app.app_context():
        job = create_job("backup", "admin", queued=True)
        acquire_exclusive(job.id, queued=True)
        assert job.owner == QUEUE_OWNER and exclusive_is_held()["id"] == job.id
        assert get_job(job.id).status == "queued"
        job.created_at = utcnow() - timedelta(seconds=app.config["BACKUP_JOB_QUEUE_TIMEOUT"] + 1)
        db.session.execute(db.update(OperationLock).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        failed = get_job(job.id)
        assert failed.status == "failed" and failed.message.startswith("Never started")
        assert db.session.get(OperationLock, EXCLUSIVE_LOCK, populate_existing=True) is None
