"""One test deployment: two gunicorn instances, one Celery worker, PostgreSQL and an S3 endpoint (moto's server).

Every process gets the environment an operator would give it (README, "Running in
production"): the same database, bucket, secret and broker. Instance A serves with
the in-process scheduler off, instance B with it on; each names its host in lock
owner ids (``BACKUP_OWNER_HOST``), so the test can tell who ran what.
"""
from __future__ import annotations

from types import SimpleNamespace

import boto3
import pytest
from moto.server import ThreadedMotoServer

from app.cli import create_account
from app.extensions import db
from app.security import issue_api_token
from support.app import build_app
from support.backup import seed_sample_rows
from support.processes import flask_environment
from support.served import Gunicorn
from support.workers import CeleryWorker

BUCKET = "cq-deployment"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, postgres_databases, redis_database):
    """The running deployment: ``a`` and ``b`` (gunicorn), ``worker``, ``app`` (a view on the same database), ``token``."""
    redis_database.flush()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, port = s3.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
    shared = {"BACKUP_STORAGE": "s3", "BACKUP_S3_BUCKET": BUCKET, "BACKUP_S3_PREFIX": "prod",
              "BACKUP_S3_ENDPOINT_URL": endpoint, "BACKUP_JOB_EXECUTOR": "celery",
              "CELERY_BROKER_URL": redis_database.url}
    tmp = tmp_path_factory.mktemp("deployment")
    app = build_app(tmp, postgres_databases.create(), **shared)
    seed_sample_rows(app)
    with app.app_context():
        token = issue_api_token(create_account("ops", "ops@example.com", "ops-password-1", is_admin=True))
    base = {**flask_environment(app), **shared, **credentials, "BACKUP_DIRECTORY": str(tmp / "unused")}
    processes = SimpleNamespace(app=app, token=token, s3_endpoint=endpoint)
    started = []
    try:
        processes.worker = CeleryWorker({**base, "BACKUP_OWNER_HOST": "worker-c"}).start()
        started.append(processes.worker)
        processes.a = Gunicorn({**base, "BACKUP_OWNER_HOST": "instance-a", "ENABLE_AUTO_BACKUP": "false"}).start()
        started.append(processes.a)
        processes.b = Gunicorn({**base, "BACKUP_OWNER_HOST": "instance-b", "ENABLE_AUTO_BACKUP": "true"}).start()
        started.append(processes.b)
        yield processes
    finally:
        for process in reversed(started):
            process.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        s3.stop()
        redis_database.flush()
