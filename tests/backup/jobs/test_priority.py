"""Background jobs run nicer than the process that runs them (app/backup/jobs/priority.py, BACKUP_JOB_NICE).

A page must not wait in the CPU's run queue behind a backup: the job's thread, and
the threads it starts (the deflate threads, the heartbeat), run ``BACKUP_JOB_NICE``
nicer; the web worker or Celery worker itself keeps its priority.
"""
from __future__ import annotations

import threading

import pytest

from app.backup.jobs.executors import celery_of
from app.backup.jobs.executors.celery_queue import TASK_NAME
from app.backup.jobs.priority import thread_niceness as niceness
from app.backup.jobs.runner import create_job, job_body, run_job, wait_for_job
from app.backup.jobs.records import job_to_dict
from app.extensions import db
from support.app import build_app


def report_niceness(handle=None) -> dict:
    """What a job sees: its own thread's niceness and that of a thread it starts, as a deflate pool does."""
    started = {}
    helper = threading.Thread(target=lambda: started.update(niceness=niceness()))
    helper.start()
    helper.join()
    return {"job": niceness(), "started_by_job": started["niceness"]}


@job_body("test.report_niceness")
def report_niceness_body(app, handle) -> dict:
    return report_niceness(handle)


def finished_result(job_id: str) -> dict:
    job = wait_for_job(job_id, poll_seconds=0.02)
    assert job.status == "succeeded", job.message
    return job_to_dict(job)["result"]


def test_a_background_job_and_the_threads_it_starts_run_ten_nicer_than_the_web_process(app):
    process = niceness()
    with app.app_context():
        assert app.config["BACKUP_JOB_NICE"] == 10
        result = finished_result(run_job("backup", "admin", report_niceness, background=True).id)
    assert result == {"job": min(19, process + 10), "started_by_job": min(19, process + 10)}
    assert niceness() == process  # the thread that served the request is as it was


def test_a_job_waited_for_in_the_callers_thread_leaves_its_priority_alone(app):
    process = niceness()
    with app.app_context():
        job = run_job("backup", "admin", report_niceness, background=False)
    assert job_to_dict(job)["result"] == {"job": process, "started_by_job": process}
    assert niceness() == process


def test_with_backup_job_nice_zero_a_job_keeps_the_process_priority(tmp_path):
    app = build_app(tmp_path, BACKUP_JOB_NICE=0)
    process = niceness()
    with app.app_context():
        result = finished_result(run_job("backup", "admin", report_niceness, background=True).id)
        db.engine.dispose()
    assert result == {"job": process, "started_by_job": process}


@pytest.mark.postgres
def test_a_celery_task_runs_its_job_nicer_and_leaves_the_worker_as_it_was(queued_app):
    worker = niceness()
    with queued_app.app_context():
        job = create_job("backup", "admin", queued=True)
        # The task's own code, run here as a worker's pool runs it (no broker needed).
        celery_of(queued_app).tasks[TASK_NAME](job.id, "backup", "test.report_niceness", {}, False)
        result = finished_result(job.id)
    assert result == {"job": min(19, worker + 10), "started_by_job": min(19, worker + 10)}
    assert niceness() == worker
