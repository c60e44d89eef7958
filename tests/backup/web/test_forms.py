"""The System Backup forms (app.backup.web.forms): one flag reading, errors beside fields, plain service values."""
from __future__ import annotations

import io

import pytest

from app.backup.errors import BadRequestError
from app.backup.restore_service import session_still_valid, upload_source
from app.backup.schedule.validation import parse_setting
from app.backup.web.forms import CreateBackupForm, RestoreForm, ScheduleForm
from app.extensions import db
from app.models import User, password_fingerprint
from config import ConfigError, parse_bool, parse_flag
from support.web import csrf_token_from

PAGE = "/admin/system-backup"


# --- one flag reading, each caller's empty value ------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [("1", True), (" TRUE ", True), ("yes", True), ("on", True), (1, True),
                                           (True, True), ("0", False), ("False", False), ("no", False),
                                           ("off", False), (0, False), (False, False)])
def test_parse_flag_reads_the_usual_spellings(raw, expected):
    assert parse_flag(raw) is expected


@pytest.mark.parametrize("raw", ["", "maybe", "2", None, 1.5])
def test_parse_flag_refuses_anything_else_the_empty_text_included(raw):
    with pytest.raises(ValueError):
        parse_flag(raw)


def test_each_caller_keeps_its_own_answer_to_an_empty_value(app):
    with pytest.raises(ConfigError, match="X_FLAG"):
        parse_bool("X_FLAG", "")
    with pytest.raises(ValueError, match="enabled must be true or false"):
        parse_setting("enabled", "")
    with app.test_request_context():
        for fields in ({}, {"wait": ""}, {"wait": None}):
            form = CreateBackupForm(fields)
            assert form.validate() and form.wait.data is False
        refused = CreateBackupForm({"wait": "maybe"})
        assert not refused.validate()
        assert refused.refusal() == "The field 'wait' must be 1/true or 0/false."


# --- the forms on their own ---------------------------------------------------------------------------

def test_the_restore_form_reads_json_values_as_sent(app, admin_user):
    with app.test_request_context():
        form = RestoreForm({"filename": " a.zip ", "mode": "merge", "confirm": "merge", "tables": ["users"],
                            "dry_run": True, "wait": 1}, session_username=None)
        assert form.validate()
        assert form.filename.data == "a.zip" and form.wait.data is True
        assert (form.options.mode, form.options.tables, form.options.on_conflict, form.options.dry_run) == (
            "merge", ("users",), "skip", True)


def test_the_restore_form_reports_the_first_problem_in_the_order_they_are_checked(app):
    with app.test_request_context():
        form = RestoreForm({"mode": "replace", "confirm": "merge", "on_conflict": "overwrite"}, session_username=None)
        assert not form.validate()
        assert form.refusal() == "on_conflict applies to merge restores only."
        assert form.confirm.errors and form.filename.errors


def test_the_schedule_form_changes_only_what_was_sent(app):
    with app.test_request_context():
        current = {"enabled": False, "time": "02:00", "keep_last": 7}
        form = ScheduleForm({"schedule": {"time": "7:05", "next_run_at": None}}, current=current)
        assert form.validate() and form.changes() == {"time": "07:05"}
        refused = ScheduleForm({"keep_last": "-1", "colour": "blue", "csrf_token": "x"}, current=current)
        assert not refused.validate()
        assert set(refused.setting_errors()) == {"keep_last", "colour"}
        assert refused.keep_last.data == "-1" and refused.time.data == "02:00"


# --- errors beside their fields in the pages ----------------------------------------------------------

def test_a_refused_restore_form_shows_the_error_beside_its_field_once(admin_client):
    token = csrf_token_from(admin_client.get(PAGE).get_data(as_text=True))
    response = admin_client.post("/admin/restore-backup", content_type="multipart/form-data", data={
        "csrf_token": token, "filename": "cyberquest_backup_20200101_000000.zip", "mode": "merge",
        "confirm": "merge", "password": "not-my-password", "backup_file": (io.BytesIO(b""), "")})
    assert response.status_code == 302 and response.headers["Location"] == PAGE
    page = admin_client.get(PAGE).get_data(as_text=True)
    assert ('<p class="field-error" id="restore-error-password">The password is not correct; '
            "the restore was not started.</p>") in page
    assert 'id="restore-error-password"' not in admin_client.get(PAGE).get_data(as_text=True)


def test_a_restore_refused_for_json_keeps_nothing_for_the_page(admin_client):
    token = csrf_token_from(admin_client.get(PAGE).get_data(as_text=True))
    response = admin_client.post("/admin/restore-backup", headers={"Accept": "application/json"},
                                 data={"csrf_token": token, "mode": "merge", "confirm": "merge"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "Enter your current password to confirm the restore."}
    assert "restore-error-" not in admin_client.get(PAGE).get_data(as_text=True)


def test_a_schedule_post_naming_no_setting_is_refused_in_the_page_and_in_json(admin_client, api_headers, client):
    token = csrf_token_from(admin_client.get("/admin/backup-schedule").get_data(as_text=True))
    response = admin_client.post("/admin/backup-schedule", data={"csrf_token": token, "colour": "blue"})
    assert response.status_code == 400
    assert '<p class="field-error">colour is not a schedule field.</p>' in response.get_data(as_text=True)
    answer = client.post("/admin/backup-schedule", json={"colour": "blue"}, headers=api_headers)
    assert answer.status_code == 400
    assert answer.get_json() == {"error": "The schedule was not saved: colour is not a schedule field.",
                                 "fields": {"colour": "colour is not a schedule field."}}


def test_a_schedule_form_left_empty_clears_nothing(api_headers, client):
    saved = client.post("/admin/backup-schedule", json={"notify_emails": ["ops@example.com"]}, headers=api_headers)
    assert saved.status_code == 200
    again = client.post("/admin/backup-schedule", data={"keep_last": "3"}, headers=api_headers)
    assert again.get_json()["schedule"]["notify_emails"] == ["ops@example.com"]
    cleared = client.post("/admin/backup-schedule", json={"notify_emails": []}, headers=api_headers)
    assert cleared.get_json()["schedule"]["notify_emails"] == []


# --- the services take plain values -------------------------------------------------------------------

def test_upload_source_takes_a_stream_and_the_clients_file_name(app):
    with app.app_context():
        source = upload_source(io.BytesIO(b"PK not really"), "../dir/mine.zip")
        try:
            assert source.label == "mine.zip" and source.temporary
            with open(source.path, "rb") as fh:
                assert fh.read() == b"PK not really"
        finally:
            source.discard()
        unnamed = upload_source(io.BytesIO(b"x"), None)
        unnamed.discard()
        assert unnamed.label == "uploaded archive"
        with pytest.raises(BadRequestError, match="empty"):
            upload_source(io.BytesIO(b""), "empty.zip")


def test_session_still_valid_takes_the_accounts_id_and_password_fingerprint(app, admin_user):
    with app.app_context():
        user = db.session.get(User, admin_user["id"])
        fingerprint = password_fingerprint(user.password_hash)
        assert session_still_valid(user.id, fingerprint)
        assert not session_still_valid(user.id, "0" * 16)
        assert not session_still_valid(user.id + 100, fingerprint)
        user.is_admin = False
        db.session.commit()
        assert not session_still_valid(user.id, fingerprint)
