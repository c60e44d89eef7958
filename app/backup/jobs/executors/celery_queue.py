"""The Celery executor: the web process queues each job; ``celery -A wsgi:celery worker`` runs it.

A queued job is plain data (its id, kind, body name and JSON arguments: a
``runner.JobWork``); the worker rebuilds it in an app context of its own app and
runs it through ``runner.execute_job`` on a thread ``BACKUP_JOB_NICE`` nicer than
itself (``priority.py``), so its row, progress, result, audit entry
and e-mails are those of an in-process job. Results travel through the database,
not a Celery result backend. Messages are acknowledged when a worker receives
them: a worker killed mid-job does not get the job redelivered to run twice; its
heartbeat stops and the job is failed (``runner.recover_interrupted_jobs``).
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from celery import Celery
from celery.signals import worker_process_init

from ....extensions import db
from ...errors import QueueUnavailableError
from ..priority import start_job_thread
from ..runner import JobHandle, JobWork, error_of, execute_job, get_job, job_handle, record_outcome

log = logging.getLogger(__name__)

TASK_NAME = "cyberquest.backup.run_job"
EXTENSION_KEY = "celery"
POLL_SECONDS = 0.2


class CeleryExecutor:
    """Queues jobs to ``celery`` (its broker is ``CELERY_BROKER_URL``); waiting watches the job's row."""

    queues = True

    def __init__(self, celery: Celery, poll_seconds: float = POLL_SECONDS):
        self.celery, self.poll_seconds = celery, poll_seconds

    def start(self, handle: JobHandle, work: Callable[[JobHandle], dict], exclusive: bool) -> None:
        """Queue the job and return at once; ``QueueUnavailableError`` (the job failed) when the broker is down."""
        if not isinstance(work, JobWork):
            raise TypeError(f"a {handle.kind} job must be a JobWork to be queued, not {work!r}")
        try:
            self.celery.send_task(TASK_NAME, args=[handle.job_id, handle.kind, work.body, work.args, exclusive])
        except Exception as exc:  # kombu raises several kinds; any of them means "not queued"
            log.exception("could not queue %s job %s", handle.kind, handle.job_id)
            error = QueueUnavailableError(f"The job queue (CELERY_BROKER_URL) is not reachable ({exc}); "
                                          "the job was not started.")
            record_outcome(handle.job_id, "failed", error.message, None, error, exclusive=exclusive)
            raise error from exc

    def run(self, handle: JobHandle, work: Callable[[JobHandle], dict], exclusive: bool) -> BaseException | None:
        """Queue the job and wait until a worker has finished it; returns the error it failed with, if any.

        The job's progress is passed on to ``handle.listener`` as the worker records it.
        """
        self.start(handle, work, exclusive)
        last = None
        while True:
            db.session.rollback()  # a new snapshot each time (REPEATABLE READ would show the first one forever)
            job = get_job(handle.job_id)
            if handle.listener is not None and job.status == "running" and (job.progress, job.message) != last:
                last = (job.progress, job.message)
                handle.listener(job.progress or 0.0, job.message or "")
            if job.status in ("succeeded", "failed"):
                return error_of(job)
            time.sleep(self.poll_seconds)


def celery_app(app) -> Celery:
    """The Celery instance of the Flask ``app`` (made once), with the task that runs its jobs."""
    if EXTENSION_KEY in app.extensions:
        return app.extensions[EXTENSION_KEY]
    celery = Celery(app.import_name, broker=app.config.get("CELERY_BROKER_URL"), set_as_current=False)
    celery.conf.update(
        task_ignore_result=True,
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"socket_connect_timeout": 5},
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
    )

    # Not shared: the task runs jobs of this app only, not of Celery instances made later in the process.
    @celery.task(name=TASK_NAME, shared=False)
    def run_job_task(job_id: str, kind: str, body: str, args: dict, exclusive: bool) -> None:
        def run():
            try:
                execute_job(job_handle(job_id, kind), JobWork(body, args), exclusive)
            finally:
                db.session.remove()

        # On a thread of its own, so that only the job runs at BACKUP_JOB_NICE: the worker
        # could not make itself less nice again afterwards without privilege.
        start_job_thread(app, f"{kind}-job-{job_id[:8]}", run).join()

    def forget_parent_connections(**_):
        # A forked pool child must not share the parent's pooled database connections.
        with app.app_context():
            db.engine.dispose(close=False)

    worker_process_init.connect(forget_parent_connections, weak=False)
    app.extensions[EXTENSION_KEY] = celery
    return celery
