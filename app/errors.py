"""Errors become JSON ``{"error": ...}`` or an HTML page, by content negotiation."""
from __future__ import annotations

from flask import flash, jsonify, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, SecurityError

from .backup.errors import BackupError
from .request_limits import too_large_message
from .security import wants_json


def error_response(status: int, message: str, **extra):
    if wants_json():
        body = {"error": message}
        body.update(extra)
        return jsonify(body), status
    return render_template("error.html", status=status, message=message), status


# Refusals a browser form can recover from by changing its input (or waiting for the running job).
_FORM_ERROR_STATUSES = frozenset({400, 409, 413, 422})


def refused_admin_form(status: int, message: str):
    """For a browser form post to /admin refused with 400/409/413/422: flash why, back to System Backup.

    Returns None for anything else (JSON clients, other statuses, other paths),
    which keeps the plain error response.
    """
    is_admin_path = request.path == "/admin" or request.path.startswith("/admin/")
    if request.method != "POST" or not is_admin_path or status not in _FORM_ERROR_STATUSES or wants_json():
        return None
    flash(message, "error")
    return redirect(url_for("backup.system_backup"))


def register(app) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return error_response(400, "The form's CSRF token is missing or invalid; reload the page and try again.")

    @app.errorhandler(BackupError)
    def backup_error(exc):
        if exc.status >= 500:
            app.logger.exception("System Backup error: %s", exc)
        redirected = refused_admin_form(exc.status, exc.message)
        if redirected is not None:
            return redirected
        return error_response(exc.status, exc.message, **exc.extra)

    @app.errorhandler(SecurityError)
    def untrusted_host(exc):
        # A Host outside TRUSTED_HOSTS leaves Flask no URL adapter, so no page template can render.
        message = "The Host header names a host this server does not answer to."
        if wants_json():
            return jsonify({"error": message}), 400
        return message, 400, {"Content-Type": "text/plain; charset=utf-8"}

    @app.errorhandler(HTTPException)
    def http_error(exc):
        message = exc.description or exc.name
        if exc.code == 404 and message.startswith("The requested URL"):
            message = "Not found."
        if isinstance(exc, RequestEntityTooLarge) and message == RequestEntityTooLarge.description:
            message = too_large_message()  # a chunked body that streamed past the limit
        response = error_response(exc.code, message)
        if exc.code == 401 and wants_json():
            response[0].headers["WWW-Authenticate"] = 'Bearer realm="cyberquest"'
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc):
        app.logger.exception("Unhandled error")
        return error_response(500, "An internal error occurred; the server log has the details.")
