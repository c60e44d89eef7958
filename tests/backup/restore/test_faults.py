"""A replace frozen half-way (SIGSTOP) does not stop the app answering signed-in requests.

The restore runs as a real `flask backup restore … --progress` process, frozen at
a progress line with its transaction open. (Restores killed or cut off from their
database at any moment are counted in tests/reliability/test_kill_restore.py.)
"""
from __future__ import annotations

import signal
import threading

import pytest

from app.extensions import db
from app.models import BackupJob, User
from app.security import issue_api_token
from support.archives import build_archive, generated_tables
from support.interrupting import app_holding, reaped, revision, signing_key
from support.processes import flask_process, progress_lines

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_signed_in_requests_are_answered_while_a_replace_is_half_way(tmp_path, request, database):
    url = f"sqlite:///{tmp_path / 'busy.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    with app_holding(tmp_path, url, generated_tables(users=200, attempts=2_000, seed=1)) as app:
        archive = build_archive(tmp_path / "restore.zip", generated_tables(users=4_000, attempts=60_000, seed=2),
                                key=signing_key(app), schema_revision=revision(app))
        with app.app_context():
            headers = {"Authorization": "Bearer " + issue_api_token(db.session.query(User).filter_by(
                username="admin").one())}
        with reaped(flask_process(app, "backup", "restore", str(archive), "--mode", "replace", "--yes",
                                  "--progress")) as process:
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
