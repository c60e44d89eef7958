"""The benchmark's rows for running beyond one process (issue 17), called by bench/run.py.

* latency: p95 of `GET /admin/system-backup` (the page, as a logged-in admin) under
  `gunicorn -w 2`, idle and while a backup of the seeded database runs, with the
  thread executor (the backup runs inside a web worker) and with Celery (a real
  `celery worker` on the machine's Redis runs it);
* S3: `flask backup create` streaming to S3 (moto's server on this machine), against
  `flask backup create` to disk followed by a boto3 `upload_file` of the archive.

The servers and workers come from tests/support (one copy of each helper); every
process started here is stopped here. Request order and counts are fixed.
"""
from __future__ import annotations

import re
import statistics
import sys
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.served import Gunicorn, call  # noqa: E402
from support.workers import CeleryWorker, RedisDatabase  # noqa: E402

ADMIN, ADMIN_PASSWORD = "benchadmin", "bench-admin-password-1"
IDLE_REQUESTS = 60
S3_BUCKET = "cq-bench"


def p95(samples: list[float]) -> float:
    """The 95th percentile (inclusive method) of ``samples``, in the samples' unit."""
    return statistics.quantiles(samples, n=20, method="inclusive")[-1] if len(samples) > 1 else samples[0]


class PageClient:
    """A browser's session with the app: logs in through the form, then GETs the System Backup page."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def login(self) -> None:
        page = self.opener.open(f"{self.base_url}/auth/login", timeout=60).read().decode()
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"username": ADMIN, "password": ADMIN_PASSWORD, "csrf_token": csrf}).encode()
        self.opener.open(f"{self.base_url}/auth/login", data=form, timeout=60).read()
        assert self.page_seconds() > 0

    def page_seconds(self) -> float:
        """Seconds one GET of the page takes (the whole body read); fails unless it is the page."""
        started = time.perf_counter()
        with self.opener.open(f"{self.base_url}/admin/system-backup", timeout=120) as answer:
            body = answer.read()
            assert answer.status == 200 and answer.url.endswith("/admin/system-backup"), answer.url
        assert b"System Backup" in body
        return time.perf_counter() - started


def prepare_admin(run, flask: str, env: dict) -> str:
    """An admin account on the database of ``env`` (made once) and a new API token for it."""
    run([flask, "create-admin", "--username", ADMIN, "--email", "benchadmin@example.com",
         "--password", ADMIN_PASSWORD], env=env, check=False)
    return run([flask, "create-api-token", ADMIN, "--scope", "admin"], env=env).stdout.strip().splitlines()[-1]


def page_latency(env: dict, token: str, celery_env: dict | None = None) -> dict:
    """p95 page latency (ms) idle and during one backup, under gunicorn -w 2; with a worker when ``celery_env``."""
    server = Gunicorn(env, workers=2).start()
    worker = CeleryWorker(celery_env).start() if celery_env else None
    try:
        page = PageClient(server.url)
        page.login()
        idle = [page.page_seconds() for _ in range(IDLE_REQUESTS)]
        started = call("POST", f"{server.url}/admin/create-backup", token=token)
        assert started.status == 202, started.body[:500]
        job_url = f"{server.url}/admin/backup-jobs/{started.json['job']['id']}"
        busy, status = [], "queued"
        while status in ("queued", "running"):
            # Only while it runs: a job still waiting for its worker is not the load being measured.
            if status == "running":
                busy.extend(page.page_seconds() for _ in range(5))
            else:
                time.sleep(0.02)
            status = call("GET", job_url, token=token).json["job"]["status"]
        assert status == "succeeded", status
        if not busy:  # a backup shorter than the poll: one sample under whatever load was left
            busy.append(page.page_seconds())
        return {"idle_p95_ms": p95(idle) * 1000, "busy_p95_ms": p95(busy) * 1000, "busy_samples": len(busy)}
    finally:
        if worker is not None:
            worker.stop()
        server.stop()


def bench_latency(run, flask: str, env: dict) -> dict:
    """The latency rows for the thread executor and for Celery (on a Redis database claimed for the run)."""
    token = prepare_admin(run, flask, env)
    thread_env = dict(env, BACKUP_JOB_EXECUTOR="thread")
    results = {"latency_thread": page_latency(thread_env, token)}
    redis_db = RedisDatabase.claim()
    try:
        celery_env = dict(env, BACKUP_JOB_EXECUTOR="celery", CELERY_BROKER_URL=redis_db.url)
        results["latency_celery"] = page_latency(celery_env, token, celery_env)
    finally:
        redis_db.flush(keep_claim=False)
    return results


class MotoServer:
    """moto's S3 on a free port of this machine, in this process; ``endpoint_url``; ``empty()`` between runs."""

    def __init__(self):
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        import boto3

        self.client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                                   aws_access_key_id="bench", aws_secret_access_key="bench")
        self.client.create_bucket(Bucket=S3_BUCKET)

    def env(self, env: dict) -> dict:
        """``env`` with S3 credentials for moto (and, for the app, BACKUP_STORAGE=s3 on the bench bucket)."""
        return dict(env, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                    BACKUP_STORAGE="s3", BACKUP_S3_BUCKET=S3_BUCKET, BACKUP_S3_ENDPOINT_URL=self.endpoint_url)

    def empty(self) -> None:
        """Delete every object, so moto's memory does not grow from run to run."""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET):
            for entry in page.get("Contents", ()):
                self.client.delete_object(Bucket=S3_BUCKET, Key=entry["Key"])

    def stop(self) -> None:
        self.server.stop()


UPLOAD = ("import boto3, sys; boto3.client('s3', endpoint_url=sys.argv[3], region_name='us-east-1')"
          ".upload_file(sys.argv[1], sys.argv[2], 'uploaded/' + sys.argv[1].rsplit('/', 1)[-1])")


def s3_commands(python: str, flask: str, backup_dir: Path, moto: MotoServer) -> tuple[str, str]:
    """The two shell commands compared: our streamed backup to S3, and a disk backup then a boto3 upload."""
    streamed = f"{flask} backup create"
    staged = (f"name=$({flask} backup create | tail -n 1) && "
              f"{python} -c \"{UPLOAD}\" {backup_dir}/$name {S3_BUCKET} {moto.endpoint_url}")
    return streamed, staged
