"""Bodies over 1 MiB get 413 before they are read, saying why; bodies that are allowed still work: a body
under 1 MiB, and an admin's upload to /admin/restore-backup up to MAX_BACKUP_SIZE, by token or session.

tests/reliability/test_body_limits.py probes a gunicorn server with 100 MB bodies of every kind, from
every kind of caller, and measures the server's memory."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.backup.archive import format
from app.backup.service import schema_revision
from app.extensions import db
from app.models import User
from app.security import issue_api_token
from support.app import ADMIN_PASSWORD
from support.web import csrf_token_from, flashes
from support.archives import build_archive, generated_tables
from support.live_server import HttpClient, post_chunked, post_declaring, serving
from support.restoring import multipart

MiB = 1024 * 1024
PREVIEW = {"mode": "merge", "confirm": "merge", "dry_run": "1", "wait": "1"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Accept": "application/json"}


@pytest.fixture
def app_settings():
    return {"SERVER_NAME": None}  # served over real sockets


@pytest.fixture
def live_app(app, admin_user, admin_token, plain_user):
    """A migrated app served over real sockets, with an admin, an admin token and an ordinary user."""
    app.admin_token = admin_token
    with app.app_context():
        app.read_token = issue_api_token(db.session.get(User, admin_user["id"]), "dashboard", scopes=["read"])
    return app


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_body_of_1_mib_or_less_is_read_as_usual(live_app):
    with serving(live_app) as port:
        status, _ = post_chunked(port, "/auth/login", MiB - 100_000, FORM)
        assert status == 400  # read in full, then refused for its missing CSRF token


def test_a_refused_body_is_told_the_limit(live_app):
    response = live_app.test_client().post("/admin/create-backup", headers=bearer(live_app.admin_token),
                                           data=b'{"wait": 1, "pad": "' + b"x" * (2 * MiB) + b'"}',
                                           content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"] == ("The request body is larger than 1.0 MiB, the most this server reads"
                                            " (only an admin's backup upload to /admin/restore-backup may be larger).")


def test_an_admin_upload_over_max_backup_size_is_told_that_limit(live_app):
    live_app.config["MAX_BACKUP_SIZE"] = 2 * MiB
    body, headers = multipart(PREVIEW, b"PK" * (2 * MiB))
    response = live_app.test_client().post("/admin/restore-backup", data=body,
                                           headers={**headers, **bearer(live_app.admin_token)})
    assert response.status_code == 413
    assert response.get_json()["error"] == "The upload is larger than MAX_BACKUP_SIZE (2.0 MiB)."


def test_a_form_with_more_fields_than_the_forms_need_is_told_so(live_app):
    client = live_app.test_client()
    urlencoded = client.post("/auth/login", data={f"field{n}": "" for n in range(51)}, headers=JSON)
    assert urlencoded.status_code == 413
    assert urlencoded.get_json()["error"] == "The form has more than 50 fields."
    body, headers = multipart({f"field{n}": "x" for n in range(60)}, b"")
    many = client.post("/contact", data=body, headers={**headers, **JSON})
    assert many.status_code == 413
    assert many.get_json()["error"] == "The form has more than 50 fields, or a field larger than 1.0 MiB."


def test_json_nested_too_deeply_is_a_bad_request(live_app):
    response = live_app.test_client().post("/admin/create-backup", headers=bearer(live_app.admin_token),
                                           data=b"[" * 100_000, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "The JSON body must be an object."


def big_archive(app, path: Path) -> bytes:
    with app.app_context():
        key, revision = format.signing_key(app.config), schema_revision(app)
    data = build_archive(path, generated_tables(users=1000, attempts=45_000), key=key,
                         schema_revision=revision).read_bytes()
    assert len(data) > 1.2 * MiB
    return data


def test_an_admin_upload_over_1_mib_to_restore_still_works(live_app, tmp_path):
    archive = big_archive(live_app, tmp_path / "big.zip")
    body, headers = multipart(PREVIEW, archive)
    with serving(live_app) as port:
        answer = HttpClient(port).request("POST", "/admin/restore-backup", body,
                                          {**headers, **bearer(live_app.admin_token)})
        assert answer.status == 200, answer.text
        assert '"preview"' in answer.text and '"inserted":45000' in answer.text.replace(" ", "")
        # the same upload streamed without a length
        status, sent = post_chunked(port, "/admin/restore-backup", 0, {**headers, **bearer(live_app.admin_token)},
                                    body=body)
        assert status == 200 and sent >= len(body)


def test_an_admin_session_upload_over_1_mib_passes_the_csrf_check_and_restores(live_app, tmp_path):
    archive = big_archive(live_app, tmp_path / "big.zip")
    client = live_app.test_client()
    page = client.get("/auth/login")
    client.post("/auth/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                     "csrf_token": csrf_token_from(page.get_data(as_text=True))})
    token = csrf_token_from(client.get("/admin/system-backup").get_data(as_text=True))
    body, headers = multipart({**PREVIEW, "password": ADMIN_PASSWORD, "csrf_token": token}, archive)
    response = client.post("/admin/restore-backup", data=body, headers=headers)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert flashes(client.get(response.headers["Location"]))[0].startswith("Preview (merge)")


def test_an_admin_token_without_the_admin_scope_is_refused_before_its_upload_is_read(live_app):
    upload = {"Content-Type": "multipart/form-data; boundary=cq-boundary", **bearer(live_app.read_token)}
    with serving(live_app) as port:
        assert post_declaring(port, "/admin/restore-backup", 5 * MiB, upload) == 403
