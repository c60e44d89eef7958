"""A replace interrupted at any moment leaves the database exactly as it was.

The restore runs as a real `flask backup restore … --progress` process. Its
progress lines on stderr mark where it is; the test kills it with SIGKILL at a
line chosen by a seeded random generator (so a failure can be replayed), then
checks the data tables and API tokens equal their state before the restore,
and that the next start of the app marks the interrupted job failed. On
PostgreSQL the restore's connection is also terminated from another session.
A restore frozen half-way (SIGSTOP) shows that the app keeps answering
signed-in requests while a replace holds its transaction open.
"""
from __future__ import annotations

import random
import signal
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.backup.archive import format
from app.backup.provenance import schema_revision
from app.cli import create_account
from app.extensions import db
from app.models import BackupJob
from support.app import build_app
from support.archives import as_archive_rows, build_archive, generated_tables, snapshot
from support.restoring import restore_upload
from support.processes import FLASK, REPO as ROOT, flask_environment

pytestmark = pytest.mark.slow

KILL_POINTS = 10
SEED = 20261126


@contextmanager
def prepared(tmp_path, url):
    """An app holding one data set, and an archive of a larger, different one (engine disposed after)."""
    app = build_app(tmp_path, url)
    try:
        yield app, _archives(app, tmp_path)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _archives(app, tmp_path):
    with app.app_context():
        admin = create_account("admin", "admin@example.com", "admin-password-1", is_admin=True)
        from app.security import issue_api_token

        headers = {"Authorization": "Bearer " + issue_api_token(admin)}
        key, revision = format.signing_key(app.config), schema_revision(app)
    earlier = build_archive(tmp_path / "earlier.zip", generated_tables(users=200, attempts=2_000, seed=1),
                            key=key, schema_revision=revision)
    assert restore_upload(app.test_client(), headers, earlier).status_code == 200
    return build_archive(tmp_path / "restore.zip", generated_tables(users=4_000, attempts=60_000, seed=2),
                         key=key, schema_revision=revision)


def restore_process(app, archive: Path) -> subprocess.Popen:
    env = flask_environment(app)
    return subprocess.Popen([FLASK, "backup", "restore", str(archive), "--mode", "replace", "--yes", "--progress"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def progress_lines(process: subprocess.Popen):
    for line in process.stderr:
        if line.startswith("progress"):
            yield line.rstrip("\n")


def count_write_phase_lines(app, archive: Path) -> tuple[list[str], dict]:
    """Run one restore to its end and return its progress lines from the deletes on (then undo it)."""
    before = as_archive_rows(app)
    with restore_process(app, archive) as process:
        lines = list(progress_lines(process))
        assert process.wait(timeout=300) == 0, process.stdout.read()
    start = next(i for i, line in enumerate(lines) if "Deleted the current rows" in line)
    # Undo through the app, so the next runs start from the same state.
    with app.app_context():
        job = db.session.query(BackupJob).filter_by(kind="restore").order_by(BackupJob.created_at.desc()).first()
        import orjson

        safety = orjson.loads(job.result)["safety_backup"]
    env = flask_environment(app)
    subprocess.run([FLASK, "backup", "restore", safety, "--mode", "replace", "--yes"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    assert as_archive_rows(app) == before
    return lines[start:], before


def message(line: str) -> str:
    """A progress line without its percentage (how far the reader has read ahead varies run to run)."""
    return line.split("%", 1)[1].strip()


def kill_at(app, archive: Path, marker: str) -> None:
    with restore_process(app, archive) as process:
        try:
            for line in progress_lines(process):
                if message(line) == marker:
                    process.send_signal(signal.SIGKILL)
                    break
            assert process.wait(timeout=300) == -signal.SIGKILL, f"the restore ended before {marker!r}"
        finally:
            if process.poll() is None:
                process.kill()


def assert_interrupted_job_is_failed_after_restart(tmp_path, app, index: int) -> None:
    restarted = build_app(tmp_path / f"restart-{index}", app.config["SQLALCHEMY_DATABASE_URI"])
    with restarted.app_context():
        job = db.session.query(BackupJob).filter_by(kind="restore").order_by(BackupJob.created_at.desc()).first()
        assert job.status == "failed" and "Interrupted" in job.message
        db.session.remove()
        db.engine.dispose()


def run_kills(tmp_path, url):
    with prepared(tmp_path, url) as (app, archive):
        kill_at_seeded_points(tmp_path, app, archive)


def kill_at_seeded_points(tmp_path, app, archive):
    lines, before = count_write_phase_lines(app, archive)
    tokens = snapshot(app)["api_tokens"]
    # Every line but the last two (the final flush and "Committing"): killing there could race the commit.
    candidates = [message(line) for line in lines[:-2]]
    assert len(set(candidates)) == len(candidates), candidates
    assert len(candidates) >= KILL_POINTS, lines
    points = sorted(random.Random(SEED).sample(range(len(candidates)), KILL_POINTS))
    for index in points:
        kill_at(app, archive, candidates[index])
        assert as_archive_rows(app) == before, f"after a kill at {candidates[index]!r}"
        assert snapshot(app)["api_tokens"] == tokens
        assert_interrupted_job_is_failed_after_restart(tmp_path, app, index)
    # And the lock left by the killed process does not block the next restore.
    with restore_process(app, archive) as process:
        list(progress_lines(process))
        assert process.wait(timeout=300) == 0
    with app.app_context():
        assert db.session.query(sa.func.count()).select_from(sa.table("login_attempts")).scalar() == 60_000


def test_sqlite_restore_killed_at_random_points_changes_nothing(tmp_path):
    run_kills(tmp_path, f"sqlite:///{tmp_path / 'faults.db'}")


@pytest.mark.postgres
def test_postgresql_restore_killed_at_random_points_changes_nothing(tmp_path, postgres_url):
    run_kills(tmp_path, postgres_url)


@pytest.mark.postgres
def test_postgresql_connection_terminated_mid_restore_changes_nothing(tmp_path, postgres_url):
    with prepared(tmp_path, postgres_url) as (app, archive):
        terminate_mid_restore(app, archive, postgres_url)


def terminate_mid_restore(app, archive, postgres_url):
    before, tokens = as_archive_rows(app), snapshot(app)["api_tokens"]
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with restore_process(app, archive) as process:
        restoring = 0
        for line in progress_lines(process):
            if "Restoring login_attempts" in line:
                restoring += 1
            if restoring == 3:
                break
        with admin.connect() as conn:
            terminated = conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'cyberquest-restore'")).scalars().all()
        assert terminated == [True]
        stderr = process.stderr.read()
        assert process.wait(timeout=300) == 1
    admin.dispose()
    # One error line, no traceback; the driver's wording of the lost connection varies with where it was
    # lost. Progress lines may still come first: rows read ahead are sent before the loss is noticed.
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("progress")]
    assert len(lines) == 1 and lines[0].startswith(
        "Error: The restore failed and was rolled back; nothing was changed ("), stderr
    assert as_archive_rows(app) == before
    assert snapshot(app)["api_tokens"] == tokens
    with app.app_context():
        job = db.session.query(BackupJob).filter_by(kind="restore").order_by(BackupJob.created_at.desc()).first()
        assert job.status == "failed" and "rolled back" in job.message


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_signed_in_requests_are_answered_while_a_replace_is_half_way(tmp_path, request, database):
    url = f"sqlite:///{tmp_path / 'busy.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    with prepared(tmp_path, url) as (app, archive):
        with app.app_context():
            from app.models import User
            from app.security import issue_api_token

            headers = {"Authorization": "Bearer " + issue_api_token(db.session.query(User).filter_by(
                username="admin").one())}
        with restore_process(app, archive) as process:
            try:
                for line in progress_lines(process):
                    if "Restoring login_attempts" in line:
                        break
                # Frozen with its transaction open: whatever it locks stays locked.
                process.send_signal(signal.SIGSTOP)
                with app.app_context():
                    job_id = db.session.query(BackupJob.id).filter_by(kind="restore", status="running").scalar()
                    db.session.remove()
                answers = []
                asking = threading.Thread(target=lambda: answers.append(
                    app.test_client().get(f"/admin/backup-jobs/{job_id}", headers=headers)), daemon=True)
                asking.start()
                asking.join(timeout=30)
                assert answers, "the job's status request waited for the restore's transaction"
                assert answers[0].status_code == 200
                assert answers[0].get_json()["job"]["status"] == "running"
            finally:
                process.send_signal(signal.SIGCONT)
            list(progress_lines(process))
            assert process.wait(timeout=300) == 0, process.stdout.read()
