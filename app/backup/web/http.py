"""Request reading, who is asking, and answer shaping shared by the System Backup routes.

A refused browser form comes back to the System Backup page with the reason
flashed (each backup blueprint registers ``refused_form`` for ``BackupError``);
scripts get the app's JSON error answer.
"""
from __future__ import annotations

from flask import flash, jsonify, redirect, request, session, url_for

from ...errors import backup_error_response
from ...security import wants_json
from ..errors import BackupError, BadRequestError

# Refusals a browser form can recover from by changing its input (or waiting for the running job).
FORM_REFUSAL_STATUSES = frozenset({400, 409, 413, 422})


def request_fields(*, uploads: bool = False, joined: tuple[str, ...] = ()) -> dict:
    """The request's fields: a JSON object as sent, or the form fields (urlencoded or multipart).

    Each form field keeps its first value, except those named in ``joined`` (a
    group of checkboxes), whose values are joined by commas, as a script would
    write them in one field. With ``uploads`` the uploaded files (Werkzeug
    ``FileStorage``) are fields too. A JSON body that is not an object is a
    ``BadRequestError``.
    """
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequestError("The JSON body must be an object.")
        return body
    fields = request.form.to_dict()
    for name in joined:
        if len(request.form.getlist(name)) > 1:
            fields[name] = ",".join(request.form.getlist(name))
    if uploads:
        fields.update(request.files.to_dict())
    return fields


def done(json_body: dict, status: int, message: str, redirect_to: str, *, wants_json: bool, headers=None):
    """JSON with ``status``, or (for a browser form) a flash message and a redirect."""
    if wants_json:
        response = jsonify(json_body)
        response.status_code = status
        if headers:
            response.headers.update(headers)
        return response
    flash(message, "success")
    return redirect(redirect_to)


def refused_form(exc: BackupError):
    """The answer to a refused System Backup request.

    A browser form post refused with 400/409/413/422 goes back to the System
    Backup page with the reason flashed; anything else gets the app's answer
    (JSON ``{"error": ...}`` or the error page, with the error's status).
    """
    if request.method == "POST" and exc.status in FORM_REFUSAL_STATUSES and not wants_json():
        flash(exc.message, "error")
        return redirect(url_for("backup.system_backup"))
    return backup_error_response(exc)


def keep_form_errors(form) -> None:
    """Keep ``form``'s errors (first message per field) for the page a refusal redirects to, as a flash is kept."""
    session[_kept_errors_key(type(form))] = {name: errors[0] for name, errors in form.errors.items()}


def kept_form_errors(form_class) -> dict[str, str]:
    """The errors ``keep_form_errors`` kept for a form of ``form_class``, once: field name → message.

    Errors that belong to no single field are under the name ``""``.
    """
    return session.pop(_kept_errors_key(form_class), {})


def _kept_errors_key(form_class) -> str:
    return f"form_errors.{form_class.__name__}"
