"""Every backup endpoint of CONTRACT.md and each status code the contract gives it, in both faces.

JSON face: a Bearer token; the answer is JSON, and an error is ``{"error": "<sentence>"}``.
HTML face: an admin's browser session with its CSRF token; a page of that status, or
after a form post a 302 back to the page with a flash saying what happened (the
contract's "redirect + flash"). ``CASES`` lists every (endpoint, code, face). Who may call
each endpoint (anonymous, a non-admin, a session without its CSRF token, each token scope) is
the matrix in tests/reliability/test_authz_matrix.py.

Left out, because they cannot arise:
- 201 from ``POST /create-backup`` and 200 from ``POST /restore-backup`` with wait=1, 202 from
  either, in HTML: a form post always answers 302 with a flash (the JSON codes are tested).
- 413 and 422 from ``POST /create-backup``, ``/verify-backup``, ``/pin-backup``: they read no upload.
- 400 from GET pages other than the audit log: they read no fields.
- 404 from the list, schedule, audit, token list, health and document: they name no resource.
- 409 from ``/delete-backup``, ``/pin-backup``, the schedule and the tokens: they take no lock; from
  ``/verify-backup`` only while another verification runs (tests/backup/test_verify.py), not the restore lock.
- The job state and the OpenAPI document have no page: their HTML face is the same JSON.
- 503 from anything but ``/backup-health``: only health reports a state by its status.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from app.backup.jobs.lock import acquire_exclusive, release_exclusive
from app.backup.service import BackupService
from support.app import ADMIN_PASSWORD
from support.web import csrf_token_from, flashes, wait_for_job

LIMIT = 256 * 1024  # MAX_BACKUP_SIZE here: a small database's backup fits, a 300 KiB upload does not


@pytest.fixture
def app_settings():
    return {"MAX_BACKUP_SIZE": LIMIT}


@dataclass(frozen=True)
class Case:
    """One request: ``path`` and ``fields`` may name ``{backup}`` (a listed backup); ``held`` holds the lock."""

    method: str
    path: str
    code: int
    fields: dict | None = None
    upload: bytes | None = None
    held: bool = False


def restore(code: int, upload: bytes | None = None, held: bool = False, **fields) -> Case:
    return Case("POST", "/admin/restore-backup", code, fields, upload, held)


MERGE = {"mode": "merge", "confirm": "merge"}
# (endpoint, code) -> the request; each runs in both faces unless HTML_CODES or JSON_ONLY says otherwise.
CASES = {
    "list 200": Case("GET", "/admin/system-backup", 200),
    "create 202": Case("POST", "/admin/create-backup", 202),
    "create wait 201": Case("POST", "/admin/create-backup", 201, {"wait": "1"}),
    "create 400": Case("POST", "/admin/create-backup", 400, {"wait": "maybe"}),
    "create 409": Case("POST", "/admin/create-backup", 409, held=True),
    "download 200": Case("GET", "/admin/download-backup/{backup}", 200),
    "download 404": Case("GET", "/admin/download-backup/nope.zip", 404),
    "delete 200": Case("POST", "/admin/delete-backup/{backup}", 200),
    "delete 404": Case("POST", "/admin/delete-backup/nope.zip", 404),
    "restore 202": restore(202, filename="{backup}", **MERGE),
    "restore wait 200": restore(200, filename="{backup}", wait="1", **MERGE),
    "restore dry run 200": restore(200, filename="{backup}", dry_run="1", **MERGE),
    "restore 400": restore(400, filename="{backup}", mode="merge", confirm="replace"),
    "restore 404": restore(404, filename="nope.zip", **MERGE),
    "restore 409": restore(409, held=True, filename="{backup}", **MERGE),
    "restore 413": restore(413, upload=b"x" * (LIMIT + 50_000), **MERGE),
    "restore 422": restore(422, upload=b"not a zip at all", **MERGE),
    "schedule 200": Case("GET", "/admin/backup-schedule", 200),
    "schedule save 200": Case("POST", "/admin/backup-schedule", 200, {"enabled": "1"}),
    "schedule save 400": Case("POST", "/admin/backup-schedule", 400, {"time": "25:00"}),
    "job 200": Case("GET", "/admin/backup-jobs/{job}", 200),
    "job 404": Case("GET", "/admin/backup-jobs/nope", 404),
    "pin 200": Case("POST", "/admin/pin-backup/{backup}", 200),
    "pin 404": Case("POST", "/admin/pin-backup/nope.zip", 404),
    "verify 200": Case("POST", "/admin/verify-backup/{backup}", 200),
    "verify 400": Case("POST", "/admin/verify-backup/{backup}", 400, {"wait": "maybe"}),
    "verify 404": Case("POST", "/admin/verify-backup/nope.zip", 404),
    "audit 200": Case("GET", "/admin/audit", 200),
    "audit 400": Case("GET", "/admin/audit?before=x", 400),
    "tokens 200": Case("GET", "/admin/api-tokens", 200),
    "token create 201": Case("POST", "/admin/api-tokens", 201, {"name": "monitor", "scopes": "health"}),
    "token create 400": Case("POST", "/admin/api-tokens", 400, {"name": "monitor", "scopes": "everything"}),
    "token revoke 200": Case("POST", "/admin/api-tokens/{token}/revoke", 200),
    "token revoke 404": Case("POST", "/admin/api-tokens/999999/revoke", 404),
    "openapi 200": Case("GET", "/admin/api/openapi.json", 200),
    "health 200": Case("GET", "/admin/backup-health", 200),
    "health 503": Case("GET", "/admin/backup-health", 503),
}
# A form post that the page refuses or runs answers 302 + flash; these codes show as themselves in HTML.
HTML_AS_ITSELF = {200, 201, 404, 503}
HTML_ONLY_JSON = {"create 202", "create wait 201", "restore 202", "restore wait 200"}  # see the docstring
JSON_ALWAYS = {"job 200", "openapi 200"}
# The schedule and token pages show a refused form again, with its errors, as a 400 / 201 page.
HTML_PAGE_CODES = {"schedule save 400": 400, "token create 201": 201, "token create 400": 400}


@pytest.fixture
def world(app, admin_user, api_headers, client):
    """A listed backup, a finished job, a second token to revoke; health fresh unless the case wants 503."""
    with app.app_context():
        backup = BackupService().create("manual", "admin")["filename"]
    started = client.post("/admin/verify-backup/" + backup, data={"wait": "0"}, headers=api_headers)
    job = wait_for_job(client, api_headers, started.get_json()["job"]["id"])["id"]
    token = client.post("/admin/api-tokens", data={"name": "spare"}, headers=api_headers).get_json()["id"]
    return {"backup": backup, "job": job, "token": str(token)}


def send(app, client, case: Case, world: dict, headers: dict, extra: dict):
    path = case.path.format(**world)
    fields = {k: v.format(**world) for k, v in (case.fields or {}).items()} | extra
    if case.code == 503:
        with app.app_context():
            BackupService().delete(world["backup"])
    if case.upload is not None:
        fields["backup_file"] = (io.BytesIO(case.upload), "upload.zip")
    if case.held:
        with app.app_context():
            acquire_exclusive("contract-test")
    try:
        if case.method == "GET":
            return client.get(path, headers=headers, buffered=True)
        return client.post(path, data=fields, headers=headers,
                           content_type="multipart/form-data" if case.upload is not None else None)
    finally:
        if case.held:
            with app.app_context():
                release_exclusive("contract-test")


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_json_face_answers_the_contracts_code_and_shape(app, client, api_headers, world, name):
    case = CASES[name]
    response = send(app, client, case, world, api_headers, {})
    assert response.status_code == case.code, response.get_data(as_text=True)
    if name == "download 200":
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert response.mimetype == "application/zip"
        return
    assert response.is_json
    body = response.get_json()
    if case.code >= 400 and case.code != 503:
        assert isinstance(body["error"], str) and body["error"].endswith("."), body
    response.close()


@pytest.mark.parametrize("name", sorted(set(CASES) - HTML_ONLY_JSON))
def test_the_html_face_answers_the_contracts_code_as_a_page_or_a_redirect_with_a_flash(app, admin_client, world,
                                                                                        name):
    case = CASES[name]
    extra = {}
    if case.method == "POST":
        extra["csrf_token"] = csrf_token_from(admin_client.get("/admin/system-backup").get_data(as_text=True))
        if case.path == "/admin/restore-backup":
            extra["password"] = ADMIN_PASSWORD
    response = send(app, admin_client, case, world, {"Accept": "text/html"}, extra)
    expected = HTML_PAGE_CODES.get(name, case.code if case.method == "GET" or case.code == 404 else 302)
    assert response.status_code == expected, response.get_data(as_text=True)[:500]
    if name == "download 200":
        assert response.headers["Content-Disposition"].startswith("attachment")
    elif name in JSON_ALWAYS:
        assert response.is_json
    elif expected == 302:
        assert response.mimetype == "text/html" and response.headers["Location"].startswith("/admin/")
        shown = flashes(admin_client.get(response.headers["Location"]))
        assert shown and all(message.strip() for message in shown)
    else:
        assert response.mimetype == "text/html" and "<!doctype html>" in response.get_data(as_text=True).lower()
    response.close()
