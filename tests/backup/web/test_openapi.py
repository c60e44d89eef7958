"""``GET /admin/api/openapi.json``: valid OpenAPI 3.1, every /admin route in it, and real answers fit its schemas."""
from __future__ import annotations

import io
import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from app.backup.jobs.lock import acquire_exclusive, release_exclusive
from support.web import JSON, wait_for_job


@pytest.fixture
def api(client, api_headers):
    """A script's client, with its token on every request."""
    client.environ_base["HTTP_AUTHORIZATION"] = api_headers["Authorization"]
    return client


@pytest.fixture
def spec(api) -> dict:
    response = api.get("/admin/api/openapi.json")
    assert response.status_code == 200 and response.is_json
    return response.get_json()


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def test_the_document_is_valid_openapi_3_1_with_the_bearer_scheme(spec):
    validate_openapi(spec)
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "An admin's API token."}
    assert spec["security"] == [{"bearerAuth": []}]
    schemas = set(spec["components"]["schemas"])
    assert {"Backup", "Job", "Result", "Schedule", "Health", "AuditEntry", "Error"} <= schemas


def test_every_admin_route_is_in_the_document(app, spec):
    routes = [(method.lower(), openapi_path(rule.rule)) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/admin") for method in rule.methods - {"HEAD", "OPTIONS"}]
    assert len(routes) >= 14
    missing = [route for route in routes if route[0] not in spec["paths"].get(route[1], {})]
    assert missing == [], "routes under /admin without an entry in app/backup/web/openapi.py's OPERATIONS"


def test_request_fields_and_path_parameters_are_described(spec):
    restore = spec["paths"]["/admin/restore-backup"]["post"]["requestBody"]["content"]
    assert set(restore) == {"multipart/form-data", "application/x-www-form-urlencoded", "application/json"}
    fields = spec["components"]["schemas"]["RestoreFields"]
    assert {"mode", "confirm", "filename", "backup_file", "dry_run", "trust_unsigned", "tables", "on_conflict",
            "wait"} <= set(fields["properties"]) and fields["required"] == ["mode", "confirm"]
    [name] = spec["paths"]["/admin/download-backup/{filename}"]["get"]["parameters"]
    assert (name["name"], name["in"], name["required"]) == ("filename", "path", True)
    query = {p["name"] for p in spec["paths"]["/admin/audit"]["get"]["parameters"]}
    assert query == {"before", "action", "limit"}


class Answers:
    """Checks real answers against the document: the status is documented and the body fits its schema."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.checked: set[tuple[str, str, int]] = set()

    def check(self, method: str, path: str, response) -> dict | None:
        operation = self.spec["paths"][path][method]
        documented = operation["responses"].get(str(response.status_code))
        assert documented, f"{method.upper()} {path} answered {response.status_code}, which is not documented"
        self.checked.add((method, path, response.status_code))
        [(media, content)] = documented["content"].items()
        assert response.mimetype == media
        if media != "application/json":
            return None
        body = response.get_json()
        validator = Draft202012Validator({**content["schema"], "components": self.spec["components"]})
        problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
        assert problems == [], f"{method.upper()} {path} {response.status_code}: {problems}"
        return body


def test_real_answers_of_the_main_endpoints_fit_their_schemas(app, api, spec):
    answers = Answers(spec)
    check = answers.check
    check("get", "/admin/", api.get("/admin/"))
    check("get", "/admin/system-backup", api.get("/admin/system-backup"))
    check("get", "/admin/backup-health", api.get("/admin/backup-health"))  # 503: no backup yet
    backup = check("post", "/admin/create-backup", api.post("/admin/create-backup", data={"wait": "1"}))["backup"]
    name = backup["filename"]
    started = api.post("/admin/create-backup")
    job = check("post", "/admin/create-backup", started)["job"]
    check("get", "/admin/backup-jobs/{job_id}", api.get(f"/admin/backup-jobs/{job['id']}"))
    wait_for_job(api, JSON, job["id"])
    check("get", "/admin/backup-jobs/{job_id}", api.get(f"/admin/backup-jobs/{job['id']}"))
    check("get", "/admin/system-backup", api.get("/admin/system-backup"))
    download = api.get(f"/admin/download-backup/{name}")
    check("get", "/admin/download-backup/{filename}", download)
    download.close()
    check("get", "/admin/download-backup/{filename}", api.get("/admin/download-backup/nope.zip"))
    check("post", "/admin/pin-backup/{filename}", api.post(f"/admin/pin-backup/{name}"))
    check("post", "/admin/verify-backup/{filename}", api.post(f"/admin/verify-backup/{name}"))

    restore = "/admin/restore-backup"
    fields = {"filename": name, "mode": "merge", "confirm": "merge"}
    check("post", restore, api.post(restore, data={**fields, "dry_run": "1"}))
    check("post", restore, api.post(restore, data={**fields, "wait": "1"}))
    background = api.post(restore, data=fields)
    check("post", restore, background)
    wait_for_job(api, JSON, background.headers["Location"])
    check("get", "/admin/backup-jobs/{job_id}", api.get(background.headers["Location"]))
    check("post", restore, api.post(restore, data={"filename": name}))
    upload = {"mode": "merge", "confirm": "merge", "wait": "1", "backup_file": (io.BytesIO(b"not a zip"), "x.zip")}
    check("post", restore, api.post(restore, data=upload, content_type="multipart/form-data"))
    with app.app_context():
        acquire_exclusive("openapi-test")
    try:
        check("post", "/admin/create-backup", api.post("/admin/create-backup", data={"wait": "1"}))
    finally:
        with app.app_context():
            release_exclusive("openapi-test")

    check("get", "/admin/backup-schedule", api.get("/admin/backup-schedule"))
    check("post", "/admin/backup-schedule", api.post("/admin/backup-schedule", json={"enabled": True}))
    check("post", "/admin/backup-schedule", api.post("/admin/backup-schedule", json={"time": "25:00"}))
    check("get", "/admin/backup-health", api.get("/admin/backup-health"))
    check("get", "/admin/audit", api.get("/admin/audit"))
    check("get", "/admin/audit", api.get("/admin/audit?before=x"))
    check("post", "/admin/delete-backup/{filename}", api.post(f"/admin/delete-backup/{name}"))
    check("get", "/admin/system-backup", app.test_client().get("/admin/system-backup", headers=JSON))

    statuses = {status for _, _, status in answers.checked}
    assert {200, 201, 202, 400, 401, 404, 409, 422, 503} <= statuses
