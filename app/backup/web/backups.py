"""System Backup HTTP face: the page and list, create, download, delete, pin, job progress.

Views are thin: validate the form, make one service call (``BackupService``, or
``overview`` for what the page shows), answer with JSON or a flash message and a
redirect. Errors are ``BackupError`` subclasses, turned into a status and a
message by ``http.refused_form``.
"""
from datetime import datetime

from flask import Blueprint, abort, jsonify, redirect, render_template, request, send_file, url_for

from ...security import admin_required, request_actor, wants_json
from .. import overview
from ..errors import BackupError, BadRequestError
from ..service import BackupService
from ..units import human_age, human_duration, human_size
from .chart import history_chart
from .forms import CreateBackupForm, RestoreForm
from .http import done, kept_form_errors, refused_form, request_fields

bp = Blueprint("backup", __name__)
bp.add_app_template_filter(human_size)
bp.add_app_template_filter(human_duration)
bp.register_error_handler(BackupError, refused_form)


@bp.app_template_filter("ago")
def ago(moment: datetime | str, now: datetime) -> str:
    """``3 hours ago``: how long before ``now`` a moment (a datetime or ISO 8601 text) was."""
    moment = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return human_age((now - moment).total_seconds())


@bp.app_template_filter("sentence")
def sentence(text: str) -> str:
    """``text`` with its first letter upper case and the rest as it is (``capitalize`` would lower the rest)."""
    return text[:1].upper() + text[1:]


@bp.route("/system-backup")
@admin_required
def system_backup():
    """The page (summary, chart, backups, create, restore, schedule), or ``{"backups", "job", "at_risk"}``.

    ``?job=<id>`` asks the page to report that finished job's outcome (backup.js
    comes back with it when the job it followed ends).
    """
    if wants_json():
        return jsonify(overview.listing())
    page = overview.system_backup_page(request.args.get("job"))
    return render_template("backup/system_backup.html", **page, chart=history_chart(page["history"]),
                           restore_errors=kept_form_errors(RestoreForm))


@bp.route("/create-backup", methods=["POST"])
@admin_required
def create_backup():
    form = CreateBackupForm(request_fields())
    if not form.validate():
        raise BadRequestError(form.refusal())
    wait, actor = form.wait.data, request_actor()
    job = BackupService().start_create("manual", actor.username, wait=wait, actor=actor)
    page = url_for("backup.system_backup")
    if wait:
        backup = BackupService.job(job.id)["result"]
        return done({"backup": backup}, 201, f"Backup {backup['filename']} created.", page,
                    wants_json=wants_json())
    location = url_for("backup.backup_job", job_id=job.id)
    return done({"job": BackupService.job(job.id)}, 202, "Backup started.", page,
                wants_json=wants_json(), headers={"Location": location})


@bp.route("/download-backup/<path:filename>")
@admin_required
def download_backup(filename):
    fileobj, backup = BackupService().open_for_download(filename, actor=request_actor())
    if isinstance(fileobj, str):
        return redirect(fileobj, 302)  # a presigned S3 URL: the client fetches the bytes from the store
    response = send_file(fileobj, mimetype="application/zip", as_attachment=True, download_name=backup["filename"],
                         max_age=0, conditional=False)
    # A file object has no size werkzeug can see: give it, so clients get a length and ranges.
    response.content_length = backup["size_bytes"]
    return response.make_conditional(request, accept_ranges=True, complete_length=backup["size_bytes"])


@bp.route("/delete-backup/<path:filename>", methods=["POST"])
@admin_required
def delete_backup(filename):
    deleted = BackupService().delete(filename, request_actor())
    return done({"deleted": deleted}, 200, f"Backup {deleted} deleted.", url_for("backup.system_backup"),
                wants_json=wants_json())


@bp.route("/pin-backup/<path:filename>", methods=["POST"])
@admin_required
def pin_backup(filename):
    backup = BackupService().toggle_pin(filename, request_actor())
    state = "pinned: retention keeps it" if backup["pinned"] else "unpinned"
    return done({"backup": backup}, 200, f"Backup {backup['filename']} {state}.",
                url_for("backup.system_backup"), wants_json=wants_json())


@bp.route("/backup-jobs/<job_id>")
@admin_required
def backup_job(job_id):
    job = BackupService.job(job_id)
    if job is None:
        abort(404, f"No job has the id {job_id!r}.")
    return jsonify({"job": job})
