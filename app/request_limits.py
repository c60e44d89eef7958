"""Request bodies are bounded before anything reads them.

Every body larger than ``MAX_CONTENT_LENGTH`` (1 MiB) is refused with 413, whoever
sends it and whatever the URL, before CSRF or a view parses it: a declared
``Content-Length`` at once, unread; a streamed (chunked) body is taken in up to the
limit and refused the moment it goes past.

The one larger body allowed is an admin's multipart upload to ``POST
/admin/restore-backup``: up to ``MAX_BACKUP_SIZE``, plus room for the multipart
framing around it, decided once the request is known to come from an admin and
before any of it is read. Werkzeug's ``LimitedStream`` (``request.max_content_length``)
holds a streamed upload to that limit while the multipart parser spools it to disk.

Parsing what is let in is bounded too (``BoundedRequest``): an urlencoded form, like a
multipart one, may have at most ``MAX_FORM_PARTS`` fields (a form over its limits is
told which, not that the body is too large), and JSON nested past the interpreter's
recursion limit is a bad request, not a server error.
"""
from __future__ import annotations

import io

from flask import Request, abort, current_app, request
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from .backup.errors import TooLargeError
from .backup.units import human_size

UPLOAD_RULE = "/admin/restore-backup"
# Multipart framing and the other fields around an uploaded archive.
UPLOAD_FORM_OVERHEAD = 1024 * 1024
_READ_SIZE = 64 * 1024


def _is_admin_upload() -> bool:
    # current_user comes from the session cookie or the Bearer token (whose admin scope
    # authenticate_bearer has checked): neither reads the body.
    return (request.method == "POST" and request.url_rule is not None and request.url_rule.rule == UPLOAD_RULE
            and request.mimetype == "multipart/form-data"
            and current_user.is_authenticated and current_user.is_admin)


def limit_request_body():
    """Before each request, after authentication and before CSRF reads a form: hold the body to this request's limit."""
    if _is_admin_upload():
        max_backup = current_app.config["MAX_BACKUP_SIZE"]
        request.max_content_length = max_backup + UPLOAD_FORM_OVERHEAD
        if request.content_length is not None and request.content_length > request.max_content_length:
            raise TooLargeError(f"The upload is larger than MAX_BACKUP_SIZE ({human_size(max_backup)}).")
        return
    limit = request.max_content_length
    if limit is None:
        return
    if request.content_length is not None:
        if request.content_length > limit:
            abort(413, too_large_message())
    elif "wsgi.input_terminated" in request.environ:  # the server ends a chunked body itself
        _take_in_streamed_body(limit)


def _take_in_streamed_body(limit: int) -> None:
    """Read a streamed body of at most ``limit`` bytes and hand it on as an ordinary one of known length.

    Werkzeug would otherwise cut an over-long body off at the limit without a word and
    let the form or JSON parser work on what it got.
    """
    stream = request.environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(_READ_SIZE, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        abort(413, too_large_message())
    request.environ["wsgi.input"] = io.BytesIO(b"".join(chunks))
    request.environ["CONTENT_LENGTH"] = str(size)


def too_large_message() -> str:
    """Why a body was refused, with this request's limit."""
    return (f"The request body is larger than {human_size(request.max_content_length)}, the most this server reads"
            f" (only an admin's backup upload to {UPLOAD_RULE} may be larger).")


class _FormDataParser(FormDataParser):
    def _parse_urlencoded(self, stream, mimetype, content_length, options):
        # Werkzeug holds only multipart forms to max_form_parts: 1 MiB of "1=&2=&…" is 150,000
        # fields, 40 MB once parsed.
        data = stream.read()
        if self.max_form_parts is not None and data.count(b"&") >= self.max_form_parts:
            raise RequestEntityTooLarge(f"The form has more than {self.max_form_parts} fields.")
        return super()._parse_urlencoded(io.BytesIO(data), mimetype, content_length, options)

    def _parse_multipart(self, stream, mimetype, content_length, options):
        try:
            return super()._parse_multipart(stream, mimetype, content_length, options)
        except RequestEntityTooLarge as exc:
            # Werkzeug says nothing of why; a streamed upload that reached its limit is too large
            # (too_large_message), anything else broke a form limit.
            if exc.description != RequestEntityTooLarge.description or (
                    content_length is None and getattr(stream, "is_exhausted", False)):
                raise
            raise RequestEntityTooLarge(
                f"The form has more than {self.max_form_parts} fields, or a field larger than "
                f"{human_size(self.max_form_memory_size)}.") from exc


class BoundedRequest(Request):
    """The app's request: forms of any encoding held to ``MAX_FORM_PARTS`` fields, JSON too deep a 400."""

    form_data_parser_class = _FormDataParser

    def get_json(self, force=False, silent=False, cache=True):
        try:
            return super().get_json(force=force, silent=silent, cache=cache)
        except RecursionError:  # json.loads recurses once per level: 1 MiB of "[" goes past the limit
            return None if silent else self.on_json_loading_failed(ValueError("nested too deeply"))
