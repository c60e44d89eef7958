"""HTTP face of restore and verify: ``POST /admin/restore-backup``, ``POST /admin/verify-backup/<filename>``.

Views are thin: validate the form, make the service call, answer JSON or flash
and redirect. Errors are ``BackupError`` subclasses, turned into a status and a
message by ``http.refused_form``.
"""
from __future__ import annotations

from flask import Blueprint, flash, redirect, url_for
from flask_login import current_user, logout_user

from ...models import password_fingerprint
from ...security import admin_required, bearer_token, request_actor, wants_json
from ..errors import BackupError, BadRequestError
from ..jobs.lock import refuse_while_locked
from ..jobs.runner import wait_for_job
from ..restore.accounts import describe_security_changes
from ..restore_service import listed_source, session_still_valid, start_restore, upload_source
from ..service import BackupService
from ..verify import start_verify
from .forms import RestoreForm, VerifyForm
from .http import done, keep_form_errors, refused_form, request_fields

bp = Blueprint("restore", __name__)
bp.register_error_handler(BackupError, refused_form)


@bp.route("/restore-backup", methods=["POST"])
@admin_required
def restore_backup():
    # Before the password step, which writes a login attempt: a restore holding SQLite's write lock
    # would make it wait, where the request is to be refused at once.
    refuse_while_locked()
    # A session must confirm with the admin's password; a Bearer token is proof enough.
    form = RestoreForm(request_fields(uploads=True, joined=("tables",)),
                       session_username=None if bearer_token() else current_user.username)
    if not form.validate():
        if not wants_json():
            keep_form_errors(form)
        raise BadRequestError(form.refusal())
    # Read before the restore, which may delete or change the account behind current_user.
    account = current_user.id, password_fingerprint(current_user.password_hash)
    upload = form.backup_file.data
    source = upload_source(upload.stream, upload.filename) if upload else listed_source(form.filename.data)
    outcome = start_restore(source, form.options, actor=request_actor(), wait=form.wait.data)
    page = url_for("backup.system_backup")
    json = wants_json()
    if "preview" in outcome:
        return done(outcome, 200, _summary("Preview", outcome["preview"]), page, wants_json=json)
    if "restore" in outcome:
        if not json and not session_still_valid(*account):
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
    form = VerifyForm(request_fields())
    if not form.validate():
        raise BadRequestError(form.refusal())
    # Off the request thread, as every job; this request may wait for its outcome.
    job = start_verify(listed_source(filename), actor=request_actor(), background=True)
    if not form.wait.data:
        return done({"job": BackupService.job(job.id)}, 202, "Verification started.", url_for("backup.system_backup"),
                    wants_json=wants_json(), headers={"Location": url_for("backup.backup_job", job_id=job.id)})
    finished = wait_for_job(job.id)
    if finished.status != "succeeded":
        raise BackupError(f"The verification of {filename} could not run: {finished.message}")
    verification = BackupService.job(job.id)["result"]
    message = (f"Backup {filename} verified." if verification["ok"]
               else f"Backup {filename} failed verification: {verification['error']}")
    if not wants_json() and not verification["ok"]:
        flash(message, "error")
        return redirect(url_for("backup.system_backup"))
    return done({"verification": verification}, 200, message, url_for("backup.system_backup"),
                wants_json=wants_json())


def _summary(verb: str, result: dict) -> str:
    parts = []
    for table, counts in result["tables"].items():
        changed = {k: v for k, v in counts.items() if v}
        if changed:
            parts.append(f"{table}: " + ", ".join(f"{v} {k}" for k, v in changed.items()))
    text = f"{verb} ({result['mode']}): " + ("; ".join(parts) or "nothing to change") + "."
    accounts = describe_security_changes(result.get("security_changes") or {})
    if accounts:
        text += " Accounts: " + "; ".join(accounts) + "."
    if result.get("neutralised_tokens"):
        text += f" {result['neutralised_tokens']} mailed link(s) from the unsigned archive stored as already used."
    if result.get("safety_backup"):
        text += f" Safety backup: {result['safety_backup']}."
    return text
