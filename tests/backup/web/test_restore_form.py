"""The restore form of the System Backup page, driven as a browser would post it (Flask test client).

Covers the panel's fields, the refusals a browser sees (flash + back to the page,
nothing changed), Preview, and real restores. ``test_restore_http.py``
covers the same endpoint for scripts (JSON).
"""
from __future__ import annotations

import html
import io
import re
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa

from app.backup.jobs.lock import acquire_exclusive
from app.backup.jobs.runner import create_job
from app.backup.service import BackupService
from app.extensions import db
from app.models import BackupJob, User
from support.backup import seed_sample_rows, user_ids
from support.app import ADMIN_PASSWORD, count_rows
from support.web import JSON, csrf_token_from, wait_for_job
from support.archives import legacy_archive, snapshot
from support.restoring import backup_names

PAGE = "/admin/system-backup"
RESTORE = "/admin/restore-backup"


# --- helpers ----------------------------------------------------------------------------------------

class FormControls(HTMLParser):
    """The controls of one form (by id): inputs, selects with their options, buttons."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id = form_id
        self.form: dict | None = None
        self.inputs: list[dict] = []
        self.selects: dict[str, dict] = {}
        self.buttons: list[dict] = []
        self._inside = False
        self._select: dict | None = None
        self._button: dict | None = None
        self._option: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == self.form_id:
            self.form, self._inside = attrs, True
        elif not self._inside:
            return
        elif tag == "input":
            self.inputs.append(attrs)
        elif tag == "select":
            self._select = self.selects[attrs["name"]] = {**attrs, "options": []}
        elif tag == "option" and self._select is not None:
            self._option = {**attrs, "text": ""}
            self._select["options"].append(self._option)
        elif tag == "button":
            self._button = {**attrs, "text": ""}
            self.buttons.append(self._button)

    def handle_endtag(self, tag):
        if tag == "form":
            self._inside = False
        elif tag == "select":
            self._select = None
        elif tag == "option":
            self._option = None
        elif tag == "button":
            self._button = None

    def handle_data(self, data):
        for element in (self._option, self._button):
            if element is not None:
                element["text"] += data

    def named(self, name: str) -> list[dict]:
        return [i for i in self.inputs if i.get("name") == name]


def restore_form(admin_client) -> FormControls:
    response = admin_client.get(PAGE)
    assert response.status_code == 200
    controls = FormControls("restore-form")
    controls.feed(response.get_data(as_text=True))
    assert controls.form is not None, "the page has no restore form"
    return controls


def flashes(html_text: str, category: str) -> list[str]:
    """The flash messages of one category on a page, as plain text."""
    found = re.findall(rf'<div class="flash flash-{category}" role="alert">(.*?)</div>', html_text, re.S)
    return [html.unescape(message) for message in found]


def post_restore(admin_client, **fields):
    """Post the restore form as the page does: merge with skip, the admin's password, its CSRF token."""
    token = csrf_token_from(admin_client.get(PAGE).get_data(as_text=True))
    data = {"csrf_token": token, "mode": "merge", "on_conflict": "skip", "tables": "",
            "password": ADMIN_PASSWORD, "backup_file": (io.BytesIO(b""), ""), **fields}
    data.setdefault("confirm", data["mode"])
    return admin_client.post(RESTORE, data=data, content_type="multipart/form-data")


def after_redirect(admin_client, response) -> str:
    """The System Backup page a refused or accepted form post sends the browser back to."""
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"] == PAGE
    return admin_client.get(PAGE).get_data(as_text=True)


def state(app) -> tuple:
    """What "nothing changed" compares: rows per table, their content, the listed backups.

    login_attempts aside: the password step of every browser restore is a login attempt (issue 15).
    """
    counts, hashes = count_rows(app), snapshot(app)
    counts.pop("login_attempts"), hashes.pop("login_attempts")
    return counts, hashes, backup_names(app)


def delete_user(app, user_id: int) -> None:
    with app.app_context():
        db.session.execute(sa.delete(User).where(User.id == user_id))
        db.session.commit()


@pytest.fixture
def listed(app, admin_client):
    """Sample rows in every table and two listed backups of them; their names, newest first."""
    seed_sample_rows(app)
    with app.app_context():
        for _ in range(2):
            BackupService().create("manual", "admin")
    names = backup_names(app)
    assert len(names) == 2
    return names


# --- the panel --------------------------------------------------------------------------------------

def test_the_page_shows_the_restore_panel_with_the_listed_backups(admin_client, listed):
    form = restore_form(admin_client)

    assert form.form["method"] == "post" and form.form["action"] == RESTORE
    assert form.form["enctype"] == "multipart/form-data"
    assert form.named("csrf_token")[0]["value"]
    # A listed backup, newest first, or (the empty choice) an uploaded file.
    options = form.selects["filename"]["options"]
    assert [o["value"] for o in options] == ["", *listed]
    assert all(o["text"].startswith(o["value"]) for o in options[1:])
    assert form.named("backup_file")[0]["type"] == "file"
    modes = {i["value"]: i for i in form.named("mode")}
    assert set(modes) == {"merge", "replace"} and "checked" in modes["merge"] and "checked" not in modes["replace"]
    assert [o["value"] for o in form.selects["on_conflict"]["options"]] == ["skip", "overwrite"]
    # Issue 16: the tables are checkboxes, not free text (scripts may still send comma-separated text).
    assert [(i["type"], i["value"]) for i in form.named("tables")] == [
        ("checkbox", name) for name in ("users", "login_attempts", "email_verifications", "contact_submissions",
                                        "password_reset_tokens")]
    assert form.named("trust_unsigned")[0] == {"type": "checkbox", "name": "trust_unsigned", "value": "1"}
    password, confirm = form.named("password")[0], form.named("confirm")[0]
    assert password["type"] == "password" and "required" in password and "required" in confirm
    assert [(b["text"], b.get("name"), b.get("value")) for b in form.buttons] == [
        ("Preview", "dry_run", "1"), ("Restore", None, None)]
    assert not any("disabled" in b for b in form.buttons)
    assert not form.named("wait")  # the form restores in the background; the page follows the job

    page = admin_client.get(PAGE).get_data(as_text=True)
    assert 'Type the restore type, "merge" or "replace", to confirm' in html.unescape(page)
    assert 'src="/static/restore.js"' in page
    script = admin_client.get("/static/restore.js")
    assert script.status_code == 200 and b"restore-form" in script.get_data()
    script.close()


def test_the_buttons_are_disabled_while_a_job_runs(app, admin_client, listed):
    with app.app_context():
        running = create_job("backup", "admin")
        acquire_exclusive(running.id)
    form = restore_form(admin_client)
    assert [b["text"] for b in form.buttons if "disabled" in b] == ["Preview", "Restore"]


# --- refusals: a flash, back to the page, nothing changed -------------------------------------------

@pytest.mark.parametrize("password, message", [
    ("not-my-password", "The password is not correct; the restore was not started."),
    ("", "Enter your current password to confirm the restore."),
])
def test_a_wrong_password_flashes_an_error_and_changes_nothing(app, admin_client, listed, password, message):
    delete_user(app, 103)
    before = state(app)
    response = post_restore(admin_client, filename=listed[0], password=password)
    page = after_redirect(admin_client, response)
    assert flashes(page, "error") == [message]
    assert state(app) == before


@pytest.mark.parametrize("mode, confirm", [("merge", "replace"), ("replace", "merge"), ("replace", ""),
                                           ("replace", "REPLACE")])
def test_a_wrong_confirmation_flashes_an_error_and_changes_nothing(app, admin_client, listed, mode, confirm):
    delete_user(app, 103)
    before = state(app)
    response = post_restore(admin_client, filename=listed[0], mode=mode, confirm=confirm)
    page = after_redirect(admin_client, response)
    assert flashes(page, "error") == [f"To restore, the field 'confirm' must equal the mode ('{mode}')."]
    assert state(app) == before


def test_no_backup_chosen_flashes_an_error(app, admin_client, listed):
    before = state(app)
    page = after_redirect(admin_client, post_restore(admin_client, filename=""))
    # The browser still sends the empty file field; the route's wording for that case is its own.
    assert len(flashes(page, "error")) == 1
    assert state(app) == before


def test_an_upload_that_is_not_a_backup_flashes_a_422_message(app, admin_client, listed):
    before = state(app)
    response = post_restore(admin_client, backup_file=(io.BytesIO(b"not a zip file"), "notes.zip"))
    (message,) = flashes(after_redirect(admin_client, response), "error")
    assert message.startswith("The file is not a valid ZIP archive")
    assert state(app) == before


def test_an_upload_over_max_backup_size_flashes_a_413_message(app, admin_client, listed):
    app.config["MAX_BACKUP_SIZE"] = 1024
    before = state(app)
    response = post_restore(admin_client, backup_file=(io.BytesIO(b"x" * 4096), "big.zip"))
    (message,) = flashes(after_redirect(admin_client, response), "error")
    assert "MAX_BACKUP_SIZE" in message
    assert state(app) == before


def test_an_original_cyberquest_archive_needs_trust_unsigned(app, admin_client, tmp_path):
    archive = legacy_archive(tmp_path / "original.zip").read_bytes()
    before = state(app)
    refused = post_restore(admin_client, dry_run="1", backup_file=(io.BytesIO(archive), "original.zip"))
    (message,) = flashes(after_redirect(admin_client, refused), "error")
    assert "trust_unsigned" in message
    previewed = post_restore(admin_client, dry_run="1", trust_unsigned="1",
                             backup_file=(io.BytesIO(archive), "original.zip"))
    (summary,) = flashes(after_redirect(admin_client, previewed), "success")
    assert summary.startswith("Preview (merge): ") and "users: 2 inserted, 1 skipped;" in summary
    assert state(app) == before


def test_a_conflict_flashes_the_running_job_and_json_clients_keep_the_409(app, admin_client, listed):
    with app.app_context():
        running = create_job("backup", "someone")
        acquire_exclusive(running.id)
        running_id = running.id
    before = state(app)
    (message,) = flashes(after_redirect(admin_client, post_restore(admin_client, filename=listed[0])), "error")
    assert "running" in message

    token = csrf_token_from(admin_client.get(PAGE).get_data(as_text=True))
    response = admin_client.post("/admin/create-backup", data={"csrf_token": token}, headers=JSON)
    assert response.status_code == 409
    body = response.get_json()
    assert set(body) == {"error", "job"} and body["job"]["id"] == running_id
    assert state(app) == before


def test_json_clients_of_a_session_keep_the_status_and_error(app, admin_client, listed):
    token = csrf_token_from(admin_client.get(PAGE).get_data(as_text=True))
    response = admin_client.post(RESTORE, headers=JSON, data={
        "csrf_token": token, "filename": listed[0], "mode": "merge", "confirm": "merge", "password": "wrong"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "The password is not correct; the restore was not started."}


def test_a_form_without_its_csrf_token_keeps_the_400_page(app, admin_client, listed):
    before = state(app)
    response = admin_client.post(RESTORE, data={"filename": listed[0], "mode": "merge", "confirm": "merge",
                                                "password": ADMIN_PASSWORD})
    assert response.status_code == 400
    assert "CSRF token" in response.get_data(as_text=True)
    assert state(app) == before


# --- preview and restore -----------------------------------------------------------------------------

def test_a_preview_flashes_a_summary_and_changes_nothing(app, admin_client, listed):
    delete_user(app, 103)
    before = state(app)
    response = post_restore(admin_client, filename=listed[0], dry_run="1")
    page = after_redirect(admin_client, response)
    (summary,) = flashes(page, "success")
    assert summary.startswith("Preview (merge): ") and summary.endswith(".")
    assert sorted(summary[len("Preview (merge): "):-1].split("; ")) == [
        "contact_submissions: 2 skipped", "email_verifications: 1 skipped", "login_attempts: 3 skipped",
        "password_reset_tokens: 1 skipped", "users: 1 inserted, 3 skipped"]
    assert state(app) == before
    assert "The last preview" in page  # the panel's note of the latest restore job


def test_a_merge_restore_starts_and_completes(app, admin_client, listed):
    delete_user(app, 103)
    before_backups = backup_names(app)
    response = post_restore(admin_client, filename=listed[0])
    assert flashes(after_redirect(admin_client, response), "success") == ["Restore started."]
    with app.app_context():
        job_id = db.session.execute(sa.select(BackupJob.id).filter_by(kind="restore")).scalar_one()

    job = wait_for_job(admin_client, JSON, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["mode"] == "merge"
    assert job["result"]["tables"]["users"] == {"inserted": 1, "updated": 0, "skipped": 3, "deleted": 0}
    assert user_ids(app) == [1, 101, 102, 103]
    safety = job["result"]["safety_backup"]
    assert backup_names(app) == [safety, *before_backups]

    page = admin_client.get(PAGE).get_data(as_text=True)
    last = page[page.index('id="last-restore"'):page.index('id="restore-form"')]
    assert "The last restore succeeded" in last and f"Safety backup: {safety}." in last


def test_a_merge_that_overwrites_only_the_chosen_tables(app, admin_client, listed):
    """on_conflict and tables reach the restore; wait=1 keeps this one synchronous."""
    with app.app_context():
        t = {table.name: table for table in db.metadata.sorted_tables}
        with db.engine.begin() as conn:
            conn.execute(t["users"].update().where(t["users"].c.id == 103).values(email="changed@example.com"))
            conn.execute(t["contact_submissions"].update().values(is_read=True))
    contact_before = snapshot(app)["contact_submissions"]
    response = post_restore(admin_client, filename=listed[0], on_conflict="overwrite", tables="users", wait="1")
    (message,) = flashes(after_redirect(admin_client, response), "success")
    # Only the changed row is written; the identical ones count as skipped.
    assert message.startswith("Restored (merge): users: 1 updated, 3 skipped. Safety backup: ")
    with app.app_context():
        assert db.session.get(User, 103).email == "carl@example.com"
    assert snapshot(app)["contact_submissions"] == contact_before


def test_the_table_checkboxes_restore_only_the_ticked_tables(app, admin_client, listed):
    """Several ``tables`` values (ticked checkboxes) count as the comma-separated list a script sends."""
    delete_user(app, 103)
    before = state(app)
    response = post_restore(admin_client, filename=listed[0], dry_run="1", tables=["users", "contact_submissions"])
    (summary,) = flashes(after_redirect(admin_client, response), "success")
    assert summary == "Preview (merge): contact_submissions: 2 skipped; users: 1 inserted, 3 skipped."
    with_text = post_restore(admin_client, filename=listed[0], dry_run="1", tables="users, contact_submissions")
    assert flashes(after_redirect(admin_client, with_text), "success") == [summary]
    assert state(app) == before
