"""wsgi.py served by gunicorn with two workers, driven over HTTP as a script does: list, create, 409."""
from __future__ import annotations

import pytest

from app.cli import create_account
from app.extensions import db
from app.security import issue_api_token
from support.app import build_app
from support.backup import seed_sample_rows
from support.jobs import table_held
from support.processes import flask_environment
from support.served import Gunicorn, call
from support.waiting import until

pytestmark = pytest.mark.postgres


@pytest.fixture
def served(tmp_path, postgres_url):
    """The app on PostgreSQL behind ``gunicorn -w 2``, and an admin's API token."""
    app = build_app(tmp_path, postgres_url)
    seed_sample_rows(app)
    with app.app_context():
        token = issue_api_token(create_account("ops", "ops@example.com", "ops-password-1", is_admin=True))
    server = Gunicorn(flask_environment(app)).start()
    yield app, server, token
    server.stop()
    with app.app_context():
        db.engine.dispose()


def test_two_gunicorn_workers_list_create_and_refuse_a_concurrent_create(served):
    app, server, token = served
    listing = call("GET", f"{server.url}/admin/system-backup", token=token)
    assert listing.status == 200 and listing.json["backups"] == [] and listing.json["job"] is None

    created = call("POST", f"{server.url}/admin/create-backup", token=token, fields={"wait": "1"})
    assert created.status == 201, created.json
    filename = created.json["backup"]["filename"]

    with table_held(app):  # the next backup waits on a table, so it is still running when the others come
        started = call("POST", f"{server.url}/admin/create-backup", token=token)
        assert started.status == 202, started.json
        job_id = started.json["job"]["id"]
        # Several tries, so both workers (not only the one running the backup) answer at least once.
        refusals = [call("POST", f"{server.url}/admin/create-backup", token=token) for _ in range(6)]
        assert {reply.status for reply in refusals} == {409}
        assert {reply.json["job"]["id"] for reply in refusals} == {job_id}
        assert all("running" in reply.json["error"] for reply in refusals)
    done = until(lambda: (lambda job: job if job["status"] in ("succeeded", "failed") else None)(
        call("GET", f"{server.url}/admin/backup-jobs/{job_id}", token=token).json["job"]), 30, "the second backup")
    assert done["status"] == "succeeded", done

    names = [b["filename"] for b in call("GET", f"{server.url}/admin/system-backup", token=token).json["backups"]]
    assert names == [done["result"]["filename"], filename]
    log = server.stop()
    assert log.count("Booting worker with pid") == 2
