"""Errors become JSON ``{"error": ...}`` or an HTML page, by content negotiation; in a command, one line.

The page (``templates/error.html``) keeps the site's layout and navigation, names
the error and says what to do next.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from html import escape

import click
from flask import current_app, jsonify, render_template
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, SecurityError

from .backup.errors import BackupError, database_message
from .request_limits import too_large_message
from .security import wants_json


@contextmanager
def errors_in_one_line() -> Iterator[None]:
    """Around a click command: a ``BackupError`` or a database error becomes ``Error: <one line>`` on stderr
    and exit status 1 (what cron mails and scripts read), never a traceback."""
    try:
        yield
    except BackupError as err:
        raise click.ClickException(str(err)) from err
    except SQLAlchemyError as err:
        raise click.ClickException(f"The database could not be used: {database_message(err)}") from err


class OneLineErrors(click.Command):
    """A click command whose failures are one line (``errors_in_one_line``): ``cls=`` of the account commands,
    and a base of the `flask backup` group."""

    def invoke(self, ctx):
        with errors_in_one_line():
            return super().invoke(ctx)


def error_response(status: int, message: str, **extra):
    """``{"error": message, **extra}`` with ``status`` for JSON clients, else the error page."""
    if wants_json():
        body = {"error": message}
        body.update(extra)
        return jsonify(body), status
    return _error_page(status, message), status


# What the page calls each status, and what the person in front of it can do about it.
_PAGE_TEXT = {
    400: ("Bad request", "Go back, correct the form and send it again."),
    401: ("Not logged in", "Log in and try again."),
    403: ("Not allowed", "This page is for administrators. Ask an administrator if you need access."),
    404: ("Not found", "Check the address, or start again from the admin panel."),
    405: ("Method not allowed", None),
    409: ("Busy", "Wait for the running job to finish, then try again."),
    413: ("Too large", "Send a smaller file, or ask the operator to raise MAX_BACKUP_SIZE."),
    422: ("Not a usable backup", None),
    500: ("Something went wrong", "Try again in a moment; if it keeps happening, tell the operator."),
}


def _error_page(status: int, message: str) -> str:
    title, hint = _PAGE_TEXT.get(status, ("Error", None))
    try:
        return render_template("error.html", status=status, title=title, message=message, hint=hint)
    except Exception:  # the layout needs the database (the user); an error page must not fail with it
        current_app.logger.exception("The error page could not be rendered")
        return (f"<!doctype html><title>Error {status}</title><h1>Error {status}: {escape(title)}</h1>"
                f"<p>{escape(message)}</p>")


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
