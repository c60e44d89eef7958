"""HTTP face of restore and verify: ``POST /admin/restore-backup``, ``POST /admin/verify-backup/<filename>``.

Views are thin: parse the request, make one service call, answer JSON or flash
and redirect. Errors are ``BackupError`` subclasses, turned into a status and a
message by ``app.errors``.
"""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, request, url_for
from flask_login import current_user, logout_user

from ...security import admin_required, bearer_token, verify_password, wants_json
from ..errors import BadRequestError, TooLargeError
from .http import actor_name, done, flag, request_fields
from ..archive.reader import Limits
from ..units import human_size
from ..restore.options import RestoreOptions, parse_tables
from ..restore_service import listed_source, session_still_valid, start_restore, upload_source
from ..verify import verify_listed_backup

bp = Blueprint("restore", __name__)

# Multipart framing and the other fields around an uploaded archive.
_FORM_OVERHEAD = 1024 * 1024


@bp.route("/restore-backup", methods=["POST"])
@admin_required
def restore_backup():
    _refuse_oversized_body()
    fields = request_fields()
    options = _restore_options(fields)
    if bearer_token() is None:
        _check_password(fields)
    source = _source(fields)
    outcome = start_restore(source, options, actor=actor_name(), wait=flag(fields, "wait"))
    page = url_for("backup.system_backup")
    json = wants_json()
    if "preview" in outcome:
        return done(outcome, 200, _summary("Preview", outcome["preview"]), page, wants_json=json)
    if "restore" in outcome:
        if not json and not session_still_valid():
            logout_user()
            flash("The restore replaced your account; log in again.", "info")
            return redirect(url_for("auth.login"))
        return done(outcome, 200, _summary("Restored", outcome["restore"]), page, wants_json=json)
    job = outcome["job"]
    return done(outcome, 202, "Restore started.", page, wants_json=json,
                headers={"Location": url_for("backup.backup_job", job_id=job["id"])})


@bp.route("/verify-backup/<path:filename>", methods=["POST"])
@admin_required
def verify_backup(filename):
    verification = verify_listed_backup(filename, actor=actor_name())
    message = (f"Backup {filename} verified." if verification["ok"]
               else f"Backup {filename} failed verification: {verification['error']}")
    if not wants_json() and not verification["ok"]:
        flash(message, "error")
        return redirect(url_for("backup.system_backup"))
    return done({"verification": verification}, 200, message, url_for("backup.system_backup"),
                wants_json=wants_json())


def _refuse_oversized_body() -> None:
    # Checked before Werkzeug parses (and spools) the body: a huge upload is refused unread.
    limit = Limits.from_config(current_app.config).max_size
    if request.content_length is not None and request.content_length > limit + _FORM_OVERHEAD:
        raise TooLargeError(f"The upload is larger than MAX_BACKUP_SIZE ({human_size(limit)}).")


def _restore_options(fields: dict) -> RestoreOptions:
    mode = str(fields.get("mode") or "").strip()
    if not mode:
        raise BadRequestError("The field 'mode' is required: merge or replace.")
    confirm = str(fields.get("confirm") or "").strip()
    options = RestoreOptions(mode=mode, tables=parse_tables(fields.get("tables")),
                             on_conflict=str(fields.get("on_conflict") or "skip").strip(),
                             dry_run=flag(fields, "dry_run"), trust_unsigned=flag(fields, "trust_unsigned")).validate()
    if confirm != mode:
        raise BadRequestError(f"To restore, the field 'confirm' must equal the mode ({mode!r}).")
    return options


def _check_password(fields: dict) -> None:
    password = fields.get("password")
    if not password:
        raise BadRequestError("Enter your current password to confirm the restore.")
    if not verify_password(current_user.password_hash, str(password)):
        raise BadRequestError("The password is not correct; the restore was not started.")


def _source(fields: dict):
    upload = request.files.get("backup_file")
    filename = str(fields.get("filename") or "").strip()
    if upload is not None and upload.filename and filename:
        raise BadRequestError("Give either 'filename' or an uploaded 'backup_file', not both.")
    if upload is not None and (upload.filename or not filename):
        return upload_source(upload)
    if filename:
        return listed_source(filename)
    raise BadRequestError("Name a listed backup in 'filename' or upload one in 'backup_file'.")


def _summary(verb: str, result: dict) -> str:
    parts = []
    for table, counts in result["tables"].items():
        changed = {k: v for k, v in counts.items() if v}
        if changed:
            parts.append(f"{table}: " + ", ".join(f"{v} {k}" for k, v in changed.items()))
    text = f"{verb} ({result['mode']}): " + ("; ".join(parts) or "nothing to change") + "."
    if result.get("safety_backup"):
        text += f" Safety backup: {result['safety_backup']}."
    return text
