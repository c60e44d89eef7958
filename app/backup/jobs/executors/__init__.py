"""How job bodies run: one small class per way, chosen by ``BACKUP_JOB_EXECUTOR``.

- ``threads.ThreadExecutor`` (``thread``, the default): in this process, a daemon
  thread for a background job, the caller's thread for a job waited for.
- ``celery_queue.CeleryExecutor`` (``celery``): the job is queued to Celery
  (``CELERY_BROKER_URL``) and run by ``celery -A wsgi:celery worker``; waiting for a
  job means watching its row until a worker has finished it.

Both offer ``queues`` (whether the job waits in a queue), ``start`` (background) and
``run`` (to the end, returning what the work raised). ``install`` puts the chosen
one in ``app.extensions``, where ``runner.run_job`` finds it.
"""
from __future__ import annotations

from ..runner import EXECUTOR_KEY
from .threads import ThreadExecutor


def install(app) -> None:
    """Give ``app`` the executor its ``BACKUP_JOB_EXECUTOR`` names."""
    if app.config.get("BACKUP_JOB_EXECUTOR", "thread") == "celery":
        app.extensions[EXECUTOR_KEY] = queued_executor(app)
    else:
        app.extensions[EXECUTOR_KEY] = ThreadExecutor()


# Celery is imported only by the two functions below, not at the top: it costs 0.3 s to
# import, and only installations that queue their jobs (and their workers) need it.

def queued_executor(app):
    """A ``CeleryExecutor`` queueing ``app``'s jobs to its Celery instance."""
    from .celery_queue import CeleryExecutor, celery_app

    return CeleryExecutor(celery_app(app))


def celery_of(app):
    """The Celery instance of ``app`` (made on first use), whose worker runs the app's jobs."""
    from .celery_queue import celery_app

    return celery_app(app)
