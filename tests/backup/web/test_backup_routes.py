"""The System Backup HTTP face: JSON for scripts, HTML for the browser, guards and errors."""
from __future__ import annotations

import zipfile
from io import BytesIO
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.backup.jobs.lock import acquire_exclusive
from app.backup.jobs.runner import create_job
from app.backup.service import BackupService
from app.extensions import db
from app.models import BackupJob, utcnow
from support.app import ADMIN_PASSWORD, build_app
from support.backup import seed_sample_rows
from support.web import JSON, csrf_token_from, login, wait_for_job


def create(client, headers, **fields):
    return client.post("/admin/create-backup", data={"wait": "1", **fields}, headers=headers)


def test_create_with_wait_lists_downloads_and_deletes(app, client, api_headers):
    seed_sample_rows(app)
    created = create(client, api_headers)
    assert created.status_code == 201
    backup = created.get_json()["backup"]
    assert backup["trigger"] == "manual" and backup["created_by"] == "admin"
    assert backup["total_records"] == 9 + 1  # the sample rows and the admin

    listing = client.get("/admin/system-backup", headers=api_headers).get_json()
    assert {key: listing[key] for key in ("backups", "job")} == {"backups": [backup], "job": None}
    assert listing["at_risk"] == {"since": backup["created_at"], "rows": 0,
                                  "tables": {table: 0 for table in backup["record_counts"]}}

    download = client.get(f"/admin/download-backup/{backup['filename']}", headers=api_headers)
    assert download.status_code == 200
    assert download.mimetype == "application/zip"
    assert download.headers["Content-Disposition"] == f"attachment; filename={backup['filename']}"
    body = download.get_data()
    download.close()
    assert download.content_length == backup["size_bytes"] == len(body)
    partial = client.get(f"/admin/download-backup/{backup['filename']}", headers={**api_headers, "Range": "bytes=0-3"})
    assert partial.status_code == 206 and partial.get_data() == b"PK\x03\x04"
    partial.close()
    assert body == (Path(app.config["BACKUP_DIRECTORY"]) / backup["filename"]).read_bytes()
    assert len(zipfile.ZipFile(BytesIO(body)).namelist()) == 3

    deleted = client.post(f"/admin/delete-backup/{backup['filename']}", headers=api_headers)
    assert deleted.status_code == 200 and deleted.get_json() == {"deleted": backup["filename"]}
    assert client.get("/admin/system-backup", headers=api_headers).get_json()["backups"] == []
    assert client.get(f"/admin/download-backup/{backup['filename']}", headers=api_headers).status_code == 404


def test_create_in_the_background_answers_202_with_a_job_to_follow(client, api_headers):
    response = client.post("/admin/create-backup", json={}, headers=api_headers)
    assert response.status_code == 202
    job = response.get_json()["job"]
    assert response.headers["Location"] == f"/admin/backup-jobs/{job['id']}"
    assert job["kind"] == "backup" and job["status"] in ("queued", "running", "succeeded")
    assert set(job) >= {"id", "kind", "status", "progress", "message", "started_at", "finished_at", "result"}
    finished = wait_for_job(client, api_headers, job["id"])
    assert finished["status"] == "succeeded" and finished["progress"] == 1.0
    listing = client.get("/admin/system-backup", headers=api_headers).get_json()
    assert [b["filename"] for b in listing["backups"]] == [finished["result"]["filename"]]


def test_unknown_job_is_404(client, api_headers):
    response = client.get("/admin/backup-jobs/no-such-job", headers=api_headers)
    assert response.status_code == 404 and "error" in response.get_json()


def test_json_body_with_wait_true_is_accepted(client, api_headers):
    response = client.post("/admin/create-backup", json={"wait": True}, headers=api_headers)
    assert response.status_code == 201 and response.get_json()["backup"]["signed"] is True


def test_bad_wait_flag_is_400(client, api_headers):
    response = client.post("/admin/create-backup", data={"wait": "maybe"}, headers=api_headers)
    assert response.status_code == 400 and "wait" in response.get_json()["error"]


def test_pin_toggles(client, api_headers):
    name = create(client, api_headers).get_json()["backup"]["filename"]
    pinned = client.post(f"/admin/pin-backup/{name}", headers=api_headers)
    assert pinned.status_code == 200 and pinned.get_json()["backup"]["pinned"] is True
    assert client.get("/admin/system-backup", headers=api_headers).get_json()["backups"][0]["pinned"] is True
    assert client.post(f"/admin/pin-backup/{name}", headers=api_headers).get_json()["backup"]["pinned"] is False


@pytest.mark.parametrize("name", [
    "cyberquest_backup_20200101_000000.zip", "../app.db", "..%2Fapp.db", "%2e%2e/%2e%2e/etc/passwd",
    "foreign.zip", ".cyberquest_backup_20200101_000000.zip", "cyberquest_backup_20200101_000000.zip/..",
])
def test_anything_but_a_listed_backup_is_404(app, client, api_headers, name):
    store = Path(app.config["BACKUP_DIRECTORY"])
    store.mkdir(parents=True, exist_ok=True)
    (store / "foreign.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    (store / ".cyberquest_backup_20200101_000000.zip").write_bytes(b"x")
    for method, path in (("get", "download-backup"), ("post", "delete-backup"), ("post", "pin-backup")):
        response = getattr(client, method)(f"/admin/{path}/{name}", headers=api_headers)
        assert response.status_code == 404, (path, name)
        assert response.get_json()["error"]
    assert (store / "foreign.zip").exists()


def test_a_running_backup_or_restore_makes_create_409_with_that_job(app, client, api_headers):
    with app.app_context():
        running = create_job("restore", "someone")
        acquire_exclusive(running.id)
        running_id = running.id
    response = create(client, api_headers)
    assert response.status_code == 409
    body = response.get_json()
    assert "running" in body["error"] and body["job"]["id"] == running_id
    assert client.get("/admin/system-backup", headers=api_headers).get_json()["backups"] == []


def test_storage_failure_is_a_500_with_what_to_fix(tmp_path, app, client, api_headers):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    app.config["BACKUP_DIRECTORY"] = str(blocker / "backups")
    response = create(client, api_headers)
    assert response.status_code == 500
    assert "BACKUP_DIRECTORY" in response.get_json()["error"]


ENDPOINTS = [("get", "/admin/system-backup"), ("post", "/admin/create-backup"),
             ("get", "/admin/download-backup/cyberquest_backup_20200101_000000.zip"),
             ("post", "/admin/delete-backup/cyberquest_backup_20200101_000000.zip"),
             ("post", "/admin/pin-backup/cyberquest_backup_20200101_000000.zip"),
             ("get", "/admin/backup-jobs/x")]


def session_csrf_token(client) -> str:
    page = client.get("/auth/login") if not client.get_cookie("session") else client.get("/")
    return csrf_token_from(page.get_data(as_text=True))


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_anonymous_gets_401_as_json_and_a_login_redirect_as_html(app, method, path):
    client = app.test_client()
    data = {"csrf_token": session_csrf_token(client)} if method == "post" else None
    response = getattr(client, method)(path, headers=JSON, data=data)
    assert response.status_code == 401 and response.get_json()["error"]
    response = getattr(client, method)(path, data=data)
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login?next=")


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_a_non_admin_gets_403(user_client, method, path):
    data = {"csrf_token": session_csrf_token(user_client)} if method == "post" else None
    response = getattr(user_client, method)(path, headers=JSON, data=data)
    assert response.status_code == 403 and response.get_json()["error"]
    assert getattr(user_client, method)(path, data=data).status_code == 403


def test_html_page_lists_backups_with_forms_and_creates_through_the_form(admin_client):
    page = admin_client.get("/admin/system-backup")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "Create Backup" in html and "No backups yet." in html
    assert "<script" in html and "backup.js" in html and "onclick" not in html
    token = csrf_token_from(html)

    created = admin_client.post("/admin/create-backup", data={"csrf_token": token, "wait": "1"})
    assert created.status_code == 302 and created.headers["Location"] == "/admin/system-backup"
    html = admin_client.get("/admin/system-backup").get_data(as_text=True)
    assert "created." in html
    name = admin_client.get("/admin/system-backup", headers=JSON).get_json()["backups"][0]["filename"]
    assert name in html
    for action in ("download-backup", "delete-backup", "pin-backup", "verify-backup"):
        assert f"/admin/{action}/{name}" in html

    unpinned = admin_client.post(f"/admin/pin-backup/{name}", data={"csrf_token": token})
    assert unpinned.status_code == 302
    assert "pinned" in admin_client.get("/admin/system-backup").get_data(as_text=True)

    deleted = admin_client.post(f"/admin/delete-backup/{name}", data={"csrf_token": token})
    assert deleted.status_code == 302
    html = admin_client.get("/admin/system-backup").get_data(as_text=True)
    assert f"Backup {name} deleted." in html and "No backups yet." in html


def test_html_form_post_without_csrf_is_400(admin_client):
    assert admin_client.post("/admin/create-backup", data={"wait": "1"}).status_code == 400


def test_html_page_shows_a_running_job_with_a_progress_bar(app, admin_client):
    with app.app_context():
        running = create_job("backup", "admin")
        acquire_exclusive(running.id)
        running_id = running.id
    html = admin_client.get("/admin/system-backup").get_data(as_text=True)
    assert "<progress" in html and f'data-job-url="/admin/backup-jobs/{running_id}"' in html
    js = admin_client.get("/static/backup.js")
    assert js.status_code == 200 and b"data-job-url" in js.get_data()
    js.close()


def test_html_conflict_flashes_and_returns_to_the_page(app, admin_client):
    with app.app_context():
        running = create_job("restore", "someone")
        acquire_exclusive(running.id)
    token = csrf_token_from(admin_client.get("/admin/system-backup").get_data(as_text=True))
    response = admin_client.post("/admin/create-backup", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/system-backup")
    assert "running" in admin_client.get("/admin/system-backup").get_data(as_text=True)



def test_the_page_warns_while_encryption_is_off_and_badges_encrypted_archives(app, admin_client, tmp_path):
    page = admin_client.get("/admin/system-backup").get_data(as_text=True)
    assert 'id="encryption-off"' in page and "Encryption is off" in page
    encrypted = build_app(tmp_path, BACKUP_ENCRYPTION_KEY="correct horse battery staple")  # same database
    with encrypted.app_context():
        BackupService().create("manual", "admin")
    client = encrypted.test_client()
    assert login(client, "admin", ADMIN_PASSWORD).status_code == 302
    page = client.get("/admin/system-backup").get_data(as_text=True)
    assert "Encryption is off" not in page
    assert ">encrypted</span>" in page


# --- The page's redesign (issue 16) --------------------------------------------------------------

def test_a_fresh_backup_has_a_state_and_the_page_its_summary_chart_and_dialog(app, admin_client):
    with app.app_context():
        backup = BackupService().create("manual", "admin")
    name = backup["filename"]
    html = admin_client.get("/admin/system-backup").get_data(as_text=True)
    row = html[html.index(f'<tr data-filename="{name}">'):]
    state = row[row.index('<td class="state"'):row.index("</td>", row.index('<td class="state"'))]
    assert ">signed</span>" in state and ">not verified yet</span>" in state
    assert f'<time data-local datetime="{backup["created_at"]}"' in row
    for card in ("backup-health", "card-last-backup", "card-next-run", "card-stored", "card-proven-restore",
                 "card-at-risk"):
        assert f'id="{card}"' in html
    assert '<svg viewBox="0 0 720 240" role="img" aria-labelledby="history-chart-title history-chart-description"' in html
    assert 'id="history-chart-data"' in html and "1 backup from" in html
    assert f'data-confirm="Delete {name}? ' in html and '<dialog id="confirm-dialog"' in html


def test_the_page_reports_how_a_followed_job_ended(app, admin_client):
    with app.app_context():
        made = BackupService().start_create("manual", "admin", wait=True)
        failed = create_job("backup", "admin")
        db.session.execute(sa.update(BackupJob).where(BackupJob.id == failed.id).values(
            status="failed", message="The backup store is full.", finished_at=utcnow()))
        db.session.commit()
        made_id, failed_id, filename = made.id, failed.id, BackupService.job(made.id)["result"]["filename"]
    done = admin_client.get(f"/admin/system-backup?job={made_id}").get_data(as_text=True)
    outcome = done[done.index('id="job-outcome"'):]
    assert "Backup created" in outcome and f'href="/admin/download-backup/{filename}"' in outcome
    assert '<div id="job-outcome" class="card outcome" data-focus' in done
    failed_page = admin_client.get(f"/admin/system-backup?job={failed_id}").get_data(as_text=True)
    assert "The backup failed" in failed_page and "The backup store is full." in failed_page
    assert "What to check" in failed_page
    assert 'id="job-outcome"' not in admin_client.get("/admin/system-backup").get_data(as_text=True)
