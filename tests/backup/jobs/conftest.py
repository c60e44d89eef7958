"""Fixtures of the job tests: an app that queues its jobs to Celery, and real workers for it."""
from __future__ import annotations

import pytest

from app.extensions import db
from support.app import build_app
from support.workers import CeleryWorker, worker_environment

# Short, so a dead holder on "another host" is noticed within seconds, not half a minute.
TEST_LOCK_TTL = 3


@pytest.fixture
def queued_app(tmp_path, postgres_url, broker_url):
    """A migrated app on PostgreSQL whose jobs are queued to Celery (no worker yet)."""
    app = build_app(tmp_path, postgres_url, BACKUP_JOB_EXECUTOR="celery", CELERY_BROKER_URL=broker_url,
                    BACKUP_LOCK_TTL=TEST_LOCK_TTL)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def start_worker(queued_app, broker_url):
    """Starts a real Celery worker for ``queued_app`` (extra environment as keywords); all are stopped after."""
    workers: list[CeleryWorker] = []

    def start(**env: str) -> CeleryWorker:
        worker = CeleryWorker(worker_environment(queued_app, broker_url, **env)).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
