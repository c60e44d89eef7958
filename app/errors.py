"""Errors become JSON ``{"error": ...}`` or an HTML page, by content negotiation."""
from __future__ import annotations

from flask import current_app, jsonify, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .backup.errors import BackupError
from .security import wants_json


def error_response(status: int, message: str, **extra):
    """``{"error": message, **extra}`` with ``status`` for JSON clients, else the error page."""
    if wants_json():
        body = {"error": message}
        body.update(extra)
        return jsonify(body), status
    return render_template("error.html", status=status, message=message), status


def backup_error_response(exc: BackupError):
    """A System Backup error as the contract answers it: its status and message (and extras such as the job)."""
    if exc.status >= 500:
        current_app.logger.exception("System Backup error: %s", exc)
    return error_response(exc.status, exc.message, **exc.extra)


def register(app) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return error_response(400, "The form's CSRF token is missing or invalid; reload the page and try again.")

    app.register_error_handler(BackupError, backup_error_response)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        message = exc.description or exc.name
        if exc.code == 404 and message.startswith("The requested URL"):
            message = "Not found."
        response = error_response(exc.code, message)
        if exc.code == 401 and wants_json():
            response[0].headers["WWW-Authenticate"] = 'Bearer realm="cyberquest"'
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc):
        app.logger.exception("Unhandled error")
        return error_response(500, "An internal error occurred; the server log has the details.")
