"""The live log of jobs (app/backup/jobs/messages.py) and its place in the Job JSON."""
from __future__ import annotations

import uuid

from app.backup.jobs import messages
from app.backup.jobs.runner import run_job
from app.backup.service import BackupService


def new_id() -> str:
    return str(uuid.uuid4())


def test_one_line_per_step_in_order():
    job = new_id()
    for message in ("Starting the backup", "Backing up users", "Backing up users (1,000 of 9,000 rows)",
                    "Backing up users (2,000 of 9,000 rows)", "", "Backing up login_attempts (2,500 of 9,000 rows)",
                    "Writing metadata"):
        messages.record(job, message)
    assert messages.lines(job) == ["Starting the backup", "Backing up users (2,000 of 9,000 rows)",
                                   "Backing up login_attempts (2,500 of 9,000 rows)", "Writing metadata"]
    assert messages.lines(new_id()) == []


def test_the_log_is_bounded_per_job_and_in_jobs_kept():
    job = new_id()
    for n in range(messages.LINES + 10):
        messages.record(job, f"step {n}")
    assert messages.lines(job) == [f"step {n}" for n in range(10, messages.LINES + 10)]
    later = [new_id() for _ in range(messages.KEPT)]
    for other in later:
        messages.record(other, "hello")
    assert messages.lines(job) == [] and all(messages.lines(other) == ["hello"] for other in later)


def test_a_finished_job_keeps_its_log_in_its_json(app):
    def work(handle):
        handle.progress(0.3, "Backing up users (1 of 2 rows)")
        handle.progress(0.6, "Backing up users (2 of 2 rows)")
        handle.progress(0.9, "Writing metadata")
        return {}

    with app.app_context():
        job = run_job("backup", "admin", work, background=False)
        assert BackupService.job(job.id)["log"] == ["Backing up users (2 of 2 rows)", "Writing metadata"]
