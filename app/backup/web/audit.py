"""HTTP face of the audit log: ``GET /admin/audit``, the page and the JSON, newest first.

Paging is by entry id (``before=<id>``: the entries older than it) and the answer
names the next page's ``before`` (``next``, null on the last page); ``action``
shows one action only.
"""
from flask import Blueprint, jsonify, render_template, request

from ...security import admin_required, wants_json
from .. import audit
from ..errors import BackupError, BadRequestError
from .forms import AuditQueryForm
from .http import refused_form

bp = Blueprint("audit", __name__)
bp.register_error_handler(BackupError, refused_form)


@bp.route("/audit")
@admin_required
def audit_log():
    """``{"entries": [AuditEntry…], "next": <id or null>}``, or the page with its action filter."""
    form = AuditQueryForm(request.args.to_dict())
    if not form.validate():
        raise BadRequestError(form.refusal())
    entries, next_before = audit.entries(before=form.before.data, action=form.action.data or None,
                                         limit=form.limit.data)
    if wants_json():
        return jsonify({"entries": entries, "next": next_before})
    return render_template("backup/audit.html", entries=entries, next_before=next_before,
                           action=form.action.data, actions=audit.recorded_actions())
