"""Storage failing under a scheduled backup: each run fails in time, lists nothing partial, and mails the failure.

Each case drives `flask backup run-scheduled` (what cron runs) as a real process
with a schedule in force whose slot is due, against real storage made to fail:

- RLIMIT_FSIZE set in the child (``preexec_fn``): the archive's writes past the
  limit fail with EFBIG. (Python ignores SIGXFSZ at start-up, so the write raises
  instead of the signal killing the process; the database is PostgreSQL, whose
  files the server writes, not the child.)
- A read-only backup directory. The tests run as root, and root ignores mode bits
  (chmod 0500 would change nothing), so the child runs in its own mount namespace
  (``unshare --mount``) where the directory is bind-mounted over itself read-only:
  the kernel refuses every write there with EROFS whoever asks, and the mount goes
  away with the child, leaving nothing behind on the machine.
- S3 (moto's real server) reached through a TCP proxy that resets the connection
  once part of the upload has passed, and every connection after it.

Each must end with exit status 1 and one error line within PROCESS_TIMEOUT, the
backup job and the scheduled run failed, no new listed backup, no partial file
left, and one failure e-mail (real SMTP, aiosmtpd) saying "FAILED: storage".
"""
from __future__ import annotations

import resource
import shutil
import subprocess
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import ScheduledRun, utcnow
from support.archives import generated_tables
from support.interrupting import PROCESS_TIMEOUT, app_holding, latest_job, listed_names, partial_files
from support.mail import message_text, send_mail_to
from support.processes import FLASK, REPO, flask_environment
from support.proxy import DroppingProxy
from support.reliability import count, record
from support.s3 import TEST_CREDENTIALS, fresh_bucket
from support.schedule import save_schedule
from support.services import service_unavailable

pytestmark = pytest.mark.reliability

# Small, but its archive is several times the limits below.
TABLES = {"users": 1_000, "attempts": 10_000, "seed": 4}
FILE_SIZE_LIMIT = 64 * 1024
UPLOAD_LIMIT = 128 * 1024
BUCKET, PREFIX = "cq-reliability", "scheduled"


def run_failing_schedule(app, smtp_server, *, argv_prefix=(), env=None, preexec_fn=None) -> tuple[list[str], str]:
    """`flask backup run-scheduled` on ``app`` with its slot due; returns what went wrong, and the error line."""
    mailbox = send_mail_to(app, smtp_server)
    save_schedule(app, effective_from=utcnow() - timedelta(days=60), enabled=True, frequency="daily",
                  time="02:00", notify_emails="ops@example.com", notify_on="failure")
    before = listed_names(app)
    environment = {**flask_environment(app), "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(smtp_server.port),
                   **(env or {})}
    problems = []
    try:
        done = subprocess.run([*argv_prefix, FLASK, "backup", "run-scheduled"], cwd=REPO, env=environment,
                              capture_output=True, text=True, timeout=PROCESS_TIMEOUT, preexec_fn=preexec_fn)
    except subprocess.TimeoutExpired:
        return [f"still running after {PROCESS_TIMEOUT} s"], ""
    lines = done.stderr.replace(app.config["BACKUP_DIRECTORY"], "<BACKUP_DIRECTORY>").strip().splitlines()
    if done.returncode != 1 or len(lines) != 1 or not lines[0].startswith("Error: The scheduled backup failed: "):
        problems.append(f"exit status {done.returncode}, stderr {done.stderr!r}")
    error = lines[-1] if lines else ""
    job = latest_job(app, "backup")
    if job is None or job.status != "failed":
        problems.append(f"backup job {job and job.status}")
    with app.app_context():
        runs = db.session.execute(select(ScheduledRun.status)).scalars().all()
    if runs != ["failed"]:
        problems.append(f"scheduled runs {runs}")
    if listed_names(app) != before:
        problems.append(f"listed {listed_names(app)}, before {before}")
    texts = [message_text(envelope) for envelope in mailbox]
    if len(texts) != 1 or "FAILED: storage" not in texts[0]:
        problems.append(f"mail {texts!r}")
    return problems, error


def finish(key: str, what: str, problems: list[str], error: str, extra: str = "") -> None:
    record(key, cases=count(ci=1, full=1), losses=int(bool(problems)), measured=(
        f"{what}: {'; '.join(problems) or 'run failed in time, job failed, nothing partial listed, failure mailed'}"
        f" ({error.removeprefix('Error: ')}){extra}"))
    assert not problems, problems


@pytest.mark.postgres
def test_a_file_size_limit_mid_write_fails_the_scheduled_run_and_mails_it(tmp_path, postgres_url, smtp_server):
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))

    with app_holding(tmp_path, postgres_url, generated_tables(**TABLES)) as app:
        problems, error = run_failing_schedule(app, smtp_server, preexec_fn=limit_file_size)
        if partial_files(app):
            problems.append(f"partial files left: {partial_files(app)}")
        if "File too large" not in error:
            problems.append(f"the error does not say the file grew too large: {error!r}")
    finish("storage-fsize", f"RLIMIT_FSIZE of {FILE_SIZE_LIMIT // 1024} KiB", problems, error)


def test_a_read_only_backup_directory_fails_the_scheduled_run_and_mails_it(tmp_path, smtp_server):
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "--mount", "true"], capture_output=True, text=True) \
        if unshare else None
    if probe is None or probe.returncode:
        service_unavailable("a private mount namespace (`unshare --mount`, root)", OSError(probe and probe.stderr))
    with app_holding(tmp_path, f"sqlite:///{tmp_path / 'ro.db'}", generated_tables(**TABLES)) as app:
        directory = app.config["BACKUP_DIRECTORY"]
        read_only = [unshare, "--mount", "--propagation", "private", "sh", "-ec",
                     'mount --bind "$0" "$0"; mount -o remount,bind,ro "$0"; exec "$@"', directory]
        problems, error = run_failing_schedule(app, smtp_server, argv_prefix=read_only)
        if partial_files(app):
            problems.append(f"partial files left: {partial_files(app)}")
        if "Read-only file system" not in error:
            problems.append(f"the error does not say the directory is read-only: {error!r}")
    finish("storage-readonly", "backup directory bind-mounted read-only (EROFS, as root)", problems, error)


def test_an_s3_endpoint_dropping_the_upload_fails_the_scheduled_run_and_mails_it(tmp_path, s3_server, smtp_server,
                                                                               monkeypatch):
    s3 = fresh_bucket(s3_server.endpoint_url, BUCKET, monkeypatch)
    host, port = s3_server.get_host_and_port()
    proxy = DroppingProxy((host, port), UPLOAD_LIMIT).start()
    store = {"BACKUP_STORAGE": "s3", "BACKUP_S3_BUCKET": BUCKET, "BACKUP_S3_PREFIX": PREFIX}
    try:
        with app_holding(tmp_path, None, generated_tables(**TABLES), **store,
                         BACKUP_S3_ENDPOINT_URL=s3_server.endpoint_url) as app:
            before = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", ())]
            problems, error = run_failing_schedule(
                app, smtp_server, env={**store, "BACKUP_S3_ENDPOINT_URL": proxy.url, **TEST_CREDENTIALS})
            if not proxy.dropped.is_set():
                problems.append(f"the upload never reached {UPLOAD_LIMIT} bytes ({proxy.forwarded} forwarded)")
            objects = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", ())]
            if objects != before:
                problems.append(f"objects in the bucket: {objects}, before {before}")
            uploads = len(s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))
            if "cannot be reached" not in error and "was lost" not in error:
                problems.append(f"the error does not say the endpoint was lost: {error!r}")
    finally:
        proxy.stop()
    finish("storage-s3-drop", f"S3 connection reset after {UPLOAD_LIMIT // 1024} KiB of upload", problems, error,
           f"; {uploads} unfinished multipart upload(s) left for the store's clean-up, none listed")
