"""The HTTP face of restore: status codes, background jobs, the lock, browser sessions and their password."""
from __future__ import annotations

import time

import pytest

from app.backup.jobs.lock import EXCLUSIVE_LOCK, HOSTNAME, acquire_exclusive, release_exclusive
from app.backup.jobs.runner import create_job
from app.cli import create_account
from app.extensions import db
from app.models import BackupJob, OperationLock, utcnow
from support.app import ADMIN_PASSWORD
from support.web import csrf_token_from, login, wait_for_job
from support.archives import as_archive_rows, build_archive, expected_rows, sample_tables, snapshot
from support.restoring import backup_names, create_backup, restore_listed, restore_upload


def test_without_wait_the_restore_runs_as_a_job(app, client, env, archive):
    response = restore_upload(client, env["headers"], archive, wait="0")
    assert response.status_code == 202
    job = response.get_json()["job"]
    assert job["kind"] == "restore" and job["status"] in ("queued", "running", "succeeded")
    location = response.headers["Location"]
    assert location.endswith(f"/admin/backup-jobs/{job['id']}")
    finished = wait_for_job(client, env["headers"], location)
    assert finished["status"] == "succeeded", finished
    assert finished["progress"] == 1.0
    assert finished["result"]["tables"]["users"]["inserted"] == 3
    assert finished["result"]["safety_backup"] in backup_names(app)
    assert as_archive_rows(app) == expected_rows(sample_tables())


def test_a_background_restore_of_a_bad_archive_fails_its_job_and_changes_nothing(app, client, env, tmp_path):
    tables = sample_tables()
    tables["users"][2]["is_admin"] = "no"
    bad = build_archive(tmp_path / "bad.zip", tables, key=env["key"], schema_revision=env["revision"])
    before, backups = snapshot(app), backup_names(app)
    response = restore_upload(client, env["headers"], bad, wait="0")
    assert response.status_code == 202
    job = wait_for_job(client, env["headers"], response.headers["Location"])
    assert job["status"] == "failed"
    assert "Table users, row 3 (id 5): column is_admin must be true or false" in job["message"]
    assert snapshot(app) == before and backup_names(app) == backups


def test_restore_of_a_listed_backup_by_filename(app, client, env):
    filename = create_backup(app)
    response = restore_listed(client, env["headers"], filename, mode="merge")
    assert response.status_code == 200
    result = response.get_json()["restore"]
    assert result["tables"]["users"] == {"inserted": 0, "updated": 0, "skipped": 1, "deleted": 0}


def test_a_json_body_is_accepted(app, client, env):
    filename = create_backup(app)
    response = client.post("/admin/restore-backup", headers=env["headers"],
                           json={"filename": filename, "mode": "merge", "confirm": "merge", "wait": True,
                                 "dry_run": True, "tables": ["users"]})
    assert response.status_code == 200
    assert set(response.get_json()["preview"]["tables"]) == {"users"}


@pytest.mark.parametrize("fields, fragment", [
    ({"mode": ""}, "'mode' is required"),
    ({"mode": "upsert", "confirm": "upsert"}, "Unknown restore mode 'upsert'"),
    ({"confirm": "merge"}, "'confirm' must equal the mode"),
    ({"confirm": ""}, "'confirm' must equal the mode"),
    ({"on_conflict": "explode", "mode": "merge", "confirm": "merge"}, "Unknown on_conflict 'explode'"),
    ({"on_conflict": "overwrite"}, "on_conflict applies to merge restores only"),
    ({"dry_run": "maybe"}, "'dry_run' must be 1/true or 0/false"),
])
def test_malformed_requests_are_400(app, client, env, archive, fields, fragment):
    from io import BytesIO

    before, backups = snapshot(app), backup_names(app)
    data = {"mode": "replace", "confirm": "replace", **fields}
    data["backup_file"] = (BytesIO(archive.read_bytes()), "a.zip")
    data["wait"] = "1"
    response = client.post("/admin/restore-backup", data=data, headers=env["headers"],
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]
    assert snapshot(app) == before and backup_names(app) == backups


def test_no_source_is_400_and_both_sources_are_400(app, client, env, archive):
    response = client.post("/admin/restore-backup", headers=env["headers"],
                           data={"mode": "merge", "confirm": "merge"})
    assert response.status_code == 400
    assert "'filename'" in response.get_json()["error"]
    filename = create_backup(app)
    response = restore_upload(client, env["headers"], archive, filename=filename)
    assert response.status_code == 400
    assert "not both" in response.get_json()["error"]


@pytest.mark.parametrize("filename", ["cyberquest_backup_20990101_000000.zip", "../instance/secret_key",
                                      "notes.txt"])
def test_unknown_backup_is_404(app, client, env, filename):
    before = snapshot(app)
    response = restore_listed(client, env["headers"], filename)
    assert response.status_code == 404
    assert snapshot(app) == before


def test_an_unlisted_file_in_the_store_is_404(app, client, env, archive):
    import shutil

    shutil.copy(archive, app.config["BACKUP_DIRECTORY"] + "/cyberquest_backup_20200101_000000.zip")
    # Signed by this instance, so it is listed: a foreign one is not.
    foreign = build_archive(archive.parent / "f.zip", key=b"other", schema_revision=env["revision"])
    shutil.copy(foreign, app.config["BACKUP_DIRECTORY"] + "/cyberquest_backup_20200101_000001.zip")
    assert restore_listed(client, env["headers"], "cyberquest_backup_20200101_000001.zip").status_code == 404
    assert restore_listed(client, env["headers"], "cyberquest_backup_20200101_000000.zip").status_code == 200


def test_a_restore_while_another_job_holds_the_lock_is_409_with_that_job(app, client, env, archive):
    with app.app_context():
        job = create_job("backup", "someone")
        acquire_exclusive(job.id)
        job_id = job.id
    before, backups = snapshot(app), backup_names(app)
    response = restore_upload(client, env["headers"], archive)
    assert response.status_code == 409
    body = response.get_json()
    assert body["job"]["id"] == job_id and "running" in body["error"]
    assert snapshot(app) == before and backup_names(app) == backups
    for dry in ("0", "1"):
        assert restore_upload(client, env["headers"], archive, wait="0", dry_run=dry).status_code == 409
    with app.app_context():
        release_exclusive(job_id)
        assert db.session.query(BackupJob).filter_by(kind="restore").count() == 0
    assert restore_upload(client, env["headers"], archive).status_code == 200


def test_a_restore_waits_for_nobody_once_a_dead_holder_left_the_lock(app, client, env, archive):
    with app.app_context():
        db.session.add(OperationLock(name=EXCLUSIVE_LOCK, job_id=None, owner=f"{HOSTNAME}:999999999",
                                     expires_at=utcnow()))
        db.session.commit()
    assert restore_upload(client, env["headers"], archive).status_code == 200


def test_an_oversized_body_is_refused_before_it_is_read(app, client, env):
    app.config["MAX_BACKUP_SIZE"] = 10
    response = client.post("/admin/restore-backup", headers=env["headers"], data=b"x" * (2 * 2**20),
                           content_type="multipart/form-data; boundary=x")
    assert response.status_code == 413
    assert "MAX_BACKUP_SIZE" in response.get_json()["error"]


# --- browser sessions ---------------------------------------------------------------------------------

def browser_form(admin_client, archive, **fields):
    token = csrf_token_from(admin_client.get("/admin/").get_data(as_text=True))
    from io import BytesIO

    data = {"mode": "replace", "confirm": "replace", "wait": "1", "csrf_token": token,
            "backup_file": (BytesIO(archive.read_bytes()), "a.zip"), **fields}
    return admin_client.post("/admin/restore-backup", data=data, content_type="multipart/form-data")


def test_a_browser_restore_needs_the_admins_current_password(app, admin_client, env, archive):
    before, backups = snapshot(app), backup_names(app)
    for password, why in ((None, "Enter your current password"), ("wrong-password", "password is not correct")):
        fields = {"password": password} if password else {}
        response = browser_form(admin_client, archive, **fields)
        # Refused: an error page, or back to the System Backup page with the reason flashed.
        if response.status_code == 302:
            assert response.headers["Location"].endswith("/admin/system-backup")
            page = admin_client.get("/admin/system-backup").get_data(as_text=True)
        else:
            assert response.status_code == 400
            page = response.get_data(as_text=True)
        assert why in page
    # Nothing changed but the wrong password's entry in login_attempts (issue 15: it is a login attempt).
    without_attempts = lambda hashes: {k: v for k, v in hashes.items() if k != "login_attempts"}  # noqa: E731
    assert without_attempts(snapshot(app)) == without_attempts(before) and backup_names(app) == backups
    response = browser_form(admin_client, archive, password=ADMIN_PASSWORD)
    assert response.status_code == 302


def test_a_browser_restore_without_csrf_token_is_400(app, admin_client, env, archive):
    from io import BytesIO

    response = admin_client.post("/admin/restore-backup", content_type="multipart/form-data",
                                 data={"mode": "replace", "confirm": "replace", "password": ADMIN_PASSWORD,
                                       "backup_file": (BytesIO(archive.read_bytes()), "a.zip")})
    assert response.status_code == 400


def test_a_browser_restore_that_keeps_the_admin_returns_to_the_backup_page(app, admin_client, env, tmp_path):
    from app.models import User

    tables = sample_tables()
    with app.app_context():  # the same account: same id, name and password hash
        tables["users"][0]["password_hash"] = db.session.get(User, 1).password_hash
    archive = build_archive(tmp_path / "same-admin.zip", tables, key=env["key"], schema_revision=env["revision"])
    response = browser_form(admin_client, archive, password=ADMIN_PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/system-backup")
    page = admin_client.get("/admin/system-backup")
    assert page.status_code == 200
    assert "Restored (replace)" in page.get_data(as_text=True)


def test_a_browser_restore_that_removes_the_admin_sends_them_to_login(app, admin_client, env, tmp_path):
    tables = sample_tables()
    tables["users"] = tables["users"][1:]  # no admin
    tables["password_reset_tokens"] = []
    archive = build_archive(tmp_path / "b.zip", tables, key=env["key"], schema_revision=env["revision"])
    response = browser_form(admin_client, archive, password=ADMIN_PASSWORD)
    assert response.status_code == 302
    assert "/auth/login" in response.headers["Location"]
    follow = admin_client.get("/admin/")
    assert follow.status_code == 302 and "/auth/login" in follow.headers["Location"]


def test_sessions_of_accounts_whose_password_the_restore_changed_end(app, client, env, archive):
    with app.app_context():
        create_account("zoë", "zoe@example.com", "an-older-password", is_admin=False)  # id 2, like the archive
    zoe = app.test_client()
    assert login(zoe, "zoë", "an-older-password").status_code == 302
    assert zoe.get("/").status_code == 200
    assert restore_upload(client, env["headers"], archive).status_code == 200
    page = zoe.get("/auth/login")
    assert page.status_code == 200  # anonymous again: the login page renders instead of redirecting
    assert login(app.test_client(), "zoë", "zoe-password-1").status_code == 302


def test_while_a_restore_holds_sqlites_write_lock_another_request_gets_409_at_once(app, admin_client, env, archive):
    import sqlite3
    from io import BytesIO

    token = csrf_token_from(admin_client.get("/admin/").get_data(as_text=True))
    with app.app_context():
        job = create_job("restore", "someone")
        acquire_exclusive(job.id)
        job_id = job.id
    writer = sqlite3.connect(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
    writer.execute("BEGIN IMMEDIATE")  # what a restore in progress holds
    try:
        started = time.monotonic()
        # A browser session (a Bearer request would wait on recording the token's last use).
        response = admin_client.post("/admin/restore-backup", headers={"Accept": "application/json"},
                                     content_type="multipart/form-data",
                                     data={"mode": "merge", "confirm": "merge", "wait": "1", "csrf_token": token,
                                           "password": ADMIN_PASSWORD,
                                           "backup_file": (BytesIO(archive.read_bytes()), "a.zip")})
        assert response.status_code == 409 and response.get_json()["job"]["id"] == job_id
        assert time.monotonic() - started < 5
    finally:
        writer.rollback()
        writer.close()
        with app.app_context():
            release_exclusive(job_id)


def test_uploads_wait_in_the_configured_directory_and_are_gone_afterwards(app, client, env, archive, tmp_path):
    uploads = tmp_path / "uploads" / "not-yet-created"
    app.config["BACKUP_UPLOAD_DIRECTORY"] = str(uploads)
    response = restore_upload(client, env["headers"], archive, wait="0")
    assert response.status_code == 202
    job = wait_for_job(client, env["headers"], response.headers["Location"])
    assert job["status"] == "succeeded", job
    assert as_archive_rows(app) == expected_rows(sample_tables())
    assert uploads.is_dir() and not any(uploads.iterdir())


def test_a_browser_preview_warns_on_the_page_which_accounts_the_restore_would_change(app, admin_client, env,
                                                                                    tmp_path):
    # The sample archive holds another admin password for "admin" and two accounts this instance lacks.
    archive = build_archive(tmp_path / "c.zip", key=env["key"], schema_revision=env["revision"])
    before = snapshot(app)
    response = browser_form(admin_client, archive, password=ADMIN_PASSWORD, dry_run="1")
    assert response.status_code == 302
    before["login_attempts"] = snapshot(app)["login_attempts"]  # the password step is a login attempt
    page = admin_client.get("/admin/system-backup").get_data(as_text=True)
    assert "Accounts: passwords changed: admin." in page  # the flashed summary
    warning = page[page.index('id="restore-security-changes"'):page.index("</div>", page.index(
        'id="restore-security-changes"'))]
    assert "restoring this would change" in warning and "Passwords changed: admin" in warning
    assert page.index('id="restore-security-changes"') < page.index('id="restore-form"')
    assert snapshot(app) == before


def test_the_restore_password_step_is_a_login_attempt_and_counts_toward_the_lock_out(app, admin_client, env,
                                                                                     archive):
    from app.models import LoginAttempt

    limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    before = snapshot(app)
    for attempt in range(1, limit + 1):
        response = browser_form(admin_client, archive, password="wrong-password")
        assert response.status_code == 302
        told = "the account is locked" if attempt == limit else "password is not correct"
        assert told in admin_client.get("/admin/system-backup").get_data(as_text=True)
    with app.app_context():
        attempts = db.session.query(LoginAttempt).filter_by(username_or_email="admin").order_by(LoginAttempt.id)
        assert [a.success for a in attempts] == [True] + [False] * limit  # the login, then each wrong password
    # Locked out now: the right password no longer confirms a restore, nor logs anyone in.
    response = browser_form(admin_client, archive, password=ADMIN_PASSWORD)
    assert response.status_code == 302
    assert "the account is locked" in admin_client.get("/admin/system-backup").get_data(as_text=True)
    assert {k: v for k, v in snapshot(app).items() if k != "login_attempts"} == \
        {k: v for k, v in before.items() if k != "login_attempts"}
    assert login(app.test_client(), "admin", ADMIN_PASSWORD).status_code == 200
