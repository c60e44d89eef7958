"""Request parsing and response shaping shared by the System Backup routes."""
from __future__ import annotations

from flask import flash, jsonify, redirect, request
from flask_login import current_user

from ..errors import BadRequestError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def request_fields() -> dict:
    """The request's fields: a JSON body, or form fields (urlencoded or multipart)."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequestError("The JSON body must be an object.")
        return body
    return request.form.to_dict()


def flag(fields: dict, name: str) -> bool:
    """A boolean field: 1/true/yes/on or 0/false/no/off (absent is false)."""
    value = fields.get(name)
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadRequestError(f"The field {name!r} must be 1/true or 0/false.")


def actor_name() -> str | None:
    """The username of whoever makes this request."""
    return current_user.username if current_user.is_authenticated else None


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
