"""``GET /admin/api/openapi.json``: an OpenAPI 3.1 document of every JSON endpoint under ``/admin``.

The paths come from the app's URL map, so each route appears as it is really
routed; ``OPERATIONS`` adds what the map cannot know (a summary, the request's
fields, the answers and their statuses), and the schemas are generated from the
types in ``api_schema``. A route under ``/admin`` with no entry here is left out of
the document, and the tests fail on it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import msgspec
from flask import Blueprint, current_app, jsonify

from ...version import __version__
from ...security import admin_required
from . import api_schema as shapes

bp = Blueprint("api_docs", __name__)

REF = "#/components/schemas/{name}"
FORM_BODIES = ("application/x-www-form-urlencoded", "application/json")
UPLOAD_BODIES = ("multipart/form-data", "application/x-www-form-urlencoded", "application/json")
# Any request under /admin may meet these.
COMMON_ERRORS = {401: "No session and no valid API token.", 403: "Not an admin, or the token lacks the scope.",
                 500: "An internal error; the server log has the details."}
PATH_PARAMETERS = {"filename": "The file name of a listed backup.", "job_id": "A job's id.",
                   "token_id": "An API token's id."}
_RULE_PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


@dataclass(frozen=True)
class Operation:
    """What the document says about one endpoint beyond its path and method.

    ``answers`` maps a status to its description and the type of its JSON body (a
    tuple: one of these; ``dict``: any object; None: no JSON, e.g. a download).
    ``fields`` is the type of the request's form or JSON fields, ``query`` that of
    its query parameters; ``uploads`` adds a multipart body; ``binary`` is the
    media type of an answer that is a file; ``headers`` the headers of an answer.
    """

    summary: str
    answers: dict[int, tuple[str, type | tuple[type, ...] | None]]
    fields: type | None = None
    query: type | None = None
    uploads: bool = False
    binary: str | None = None
    headers: dict[int, dict] = field(default_factory=dict)


_JOB_LOCATION = {202: {"Location": {"description": "The job's URL, to poll.", "schema": {"type": "string"}}}}
_NOT_FOUND = ("No listed backup has that name.", shapes.Error)
_BUSY = ("Another backup or restore is running; the body carries its job.", shapes.Error)

OPERATIONS: dict[str, Operation] = {
    "admin.dashboard": Operation("The admin panel's figures", {200: ("Rows per table, recent logins.",
                                                                     shapes.Dashboard)}),
    "backup.system_backup": Operation("List the backups, newest first, and the running job",
                                      {200: ("The backups.", shapes.BackupList)}),
    "backup.create_backup": Operation(
        "Start a backup (or make it and wait, with wait=1)",
        {201: ("Made (wait=1).", shapes.BackupAnswer), 202: ("Started; follow the job.", shapes.JobAnswer),
         400: ("A malformed field.", shapes.Error), 409: _BUSY},
        fields=shapes.CreateBackupFields, headers=_JOB_LOCATION),
    "backup.download_backup": Operation(
        "Download a backup (ranges allowed); audited",
        {200: ("The archive, as an attachment.", None), 206: ("The requested range.", None),
         302: ("With BACKUP_S3_PRESIGNED_DOWNLOADS=true on S3 storage: a redirect to a presigned URL of the "
               "store, valid BACKUP_S3_PRESIGNED_EXPIRY seconds, that serves the archive as an attachment.", None),
         404: _NOT_FOUND},
        binary="application/zip",
        headers={302: {"Location": {"description": "The presigned URL.", "schema": {"type": "string"}}}}),
    "backup.delete_backup": Operation("Delete a backup", {200: ("Deleted.", shapes.Deleted), 404: _NOT_FOUND}),
    "backup.pin_backup": Operation("Pin or unpin a backup (retention never deletes a pinned one)",
                                   {200: ("Its new state.", shapes.BackupAnswer), 404: _NOT_FOUND}),
    "backup.backup_job": Operation("One job's state", {200: ("The job.", shapes.JobAnswer),
                                                       404: ("No job has that id.", shapes.Error)}),
    "restore.restore_backup": Operation(
        "Restore a listed or uploaded backup (merge or replace), or preview it (dry_run=1)",
        {200: ("Restored (wait=1) or previewed (dry_run=1).", (shapes.RestoreAnswer, shapes.PreviewAnswer)),
         202: ("Started; follow the job.", shapes.JobAnswer),
         400: ("A missing or malformed field, a wrong confirmation, an empty upload.", shapes.Error),
         404: _NOT_FOUND, 409: _BUSY,
         413: ("Larger than MAX_BACKUP_SIZE, or decompressing past the limits.", shapes.Error),
         422: ("Not a valid backup, failed checksums, unsigned without trust_unsigned=1, or a schema mismatch.",
               shapes.Error)},
        fields=shapes.RestoreFields, uploads=True, headers=_JOB_LOCATION),
    "restore.verify_backup": Operation(
        "Verify a backup: the recorded SHA-256, checksums, signature and a test restore into a scratch database",
        {200: ("The verification (ok true or false).", shapes.VerificationAnswer),
         202: ("Started (wait=0); follow the job.", shapes.JobAnswer),
         400: ("A malformed field.", shapes.Error), 404: _NOT_FOUND,
         409: ("Another verification is running (or, on SQLite, a restore); the body carries its job.",
               shapes.Error)},
        fields=shapes.VerifyFields, headers=_JOB_LOCATION),
    "schedule.backup_schedule": Operation("The backup schedule", {200: ("The schedule.", shapes.ScheduleAnswer)}),
    "schedule.save_backup_schedule": Operation(
        "Save the schedule (fields left out keep their values)",
        {200: ("Saved.", shapes.ScheduleAnswer), 400: ("A bad value; fields names each.", shapes.Error)},
        fields=shapes.ScheduleFields),
    "schedule.backup_health": Operation(
        "Backup health, for uptime monitors (a token with the health scope)",
        {200: ("Healthy.", shapes.Health), 503: ("Stale, failing or empty; reason says why.", shapes.Health)}),
    "audit.audit_log": Operation(
        "The audit log, newest first", {200: ("One page.", shapes.AuditPage), 400: ("A bad value.", shapes.Error)},
        query=shapes.AuditQuery),
    "api_docs.openapi_document": Operation("This document", {200: ("OpenAPI 3.1.", dict)}),
    "admin.api_tokens_page": Operation("List the API tokens", {200: ("The tokens.", shapes.TokenList)}),
    "admin.create_api_token": Operation(
        "Create an API token (its secret is in this answer only)",
        {201: ("Created.", shapes.TokenCreated), 400: ("A bad name, scope or expiry.", shapes.Error)},
        fields=shapes.TokenFields),
    "admin.revoke_api_token": Operation("Revoke an API token", {200: ("Revoked.", shapes.TokenRevoked),
                                                                404: ("No token has that id.", shapes.Error)}),
}


@bp.route("/api/openapi.json")
@admin_required
def openapi_document():
    """The OpenAPI 3.1 document of the JSON endpoints under /admin."""
    return jsonify(document(current_app))


def admin_routes(app) -> list[tuple[str, str, str]]:
    """Every (method, URL rule, endpoint) under /admin, HEAD and OPTIONS aside."""
    return [(method, rule.rule, rule.endpoint) for rule in app.url_map.iter_rules()
            if rule.rule == "/admin" or rule.rule.startswith("/admin/")
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]


def document(app) -> dict:
    """The document for ``app``'s routes."""
    routed = [(method, rule, OPERATIONS[endpoint], endpoint) for method, rule, endpoint in admin_routes(app)
              if endpoint in OPERATIONS]
    types = [kind for _, _, operation, _ in routed for kind in _types_of(operation)]
    _, schemas = msgspec.json.schema_components(types, ref_template=REF)
    paths: dict[str, dict] = {}
    for method, rule, operation, endpoint in routed:
        path, parameters = _path_of(rule)
        paths.setdefault(path, {})[method.lower()] = _operation(operation, endpoint, parameters, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "CyberQuest Admin API", "version": __version__,
                 "description": "The System Backup and admin endpoints under /admin. Authenticate with "
                                "`Authorization: Bearer <token>` (`flask create-api-token USERNAME`); a token's "
                                "scopes are health < read < backup < admin. Errors are {\"error\": \"...\"}."},
        "servers": [{"url": app.config.get("PUBLIC_URL") or "/"}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An admin's API token."}}},
        "security": [{"bearerAuth": []}],
    }


def _types_of(operation: Operation) -> list[type]:
    answers = [kind for _, kinds in operation.answers.values()
               for kind in (kinds if isinstance(kinds, tuple) else (kinds,)) if kind not in (None, dict)]
    return answers + [kind for kind in (operation.fields, operation.query) if kind is not None]


def _schema(kind) -> dict:
    if isinstance(kind, tuple):
        return {"oneOf": [_schema(each) for each in kind]}
    return {"type": "object"} if kind is dict else {"$ref": REF.format(name=kind.__name__)}


def _path_of(rule: str) -> tuple[str, list[dict]]:
    """An OpenAPI path (``{filename}``) for a Werkzeug rule (``<path:filename>``), and its path parameters."""
    parameters = [{"name": name, "in": "path", "required": True, "description": PATH_PARAMETERS.get(name, name),
                   "schema": {"type": "integer"} if converter == "int" else {"type": "string"}}
                  for converter, name in _RULE_PARAMETER.findall(rule)]
    return _RULE_PARAMETER.sub(lambda match: "{" + match.group(2) + "}", rule), parameters


def _operation(operation: Operation, endpoint: str, parameters: list[dict], schemas: dict) -> dict:
    answers = {**{status: (text, shapes.Error) for status, text in COMMON_ERRORS.items()}, **operation.answers}
    described = {"operationId": endpoint, "summary": operation.summary, "tags": [endpoint.split(".")[0]],
                 "responses": {str(status): _answer(status, text, kind, operation)
                               for status, (text, kind) in sorted(answers.items())}}
    if operation.query is not None:
        fields = schemas[operation.query.__name__]
        parameters = parameters + [{"name": name, "in": "query", "required": False, "schema": schema}
                                   for name, schema in fields["properties"].items()]
    if parameters:
        described["parameters"] = parameters
    if operation.fields is not None:
        media = UPLOAD_BODIES if operation.uploads else FORM_BODIES
        described["requestBody"] = {"content": {kind: {"schema": _schema(operation.fields)} for kind in media}}
    return described


def _answer(status: int, text: str, kind, operation: Operation) -> dict:
    answer: dict = {"description": text}
    if kind is None:
        if status < 300:  # a redirect has no body worth describing
            answer["content"] = {operation.binary: {"schema": {"type": "string",
                                                               "contentMediaType": operation.binary}}}
    else:
        answer["content"] = {"application/json": {"schema": _schema(kind)}}
    if status in operation.headers:
        answer["headers"] = operation.headers[status]
    return answer
