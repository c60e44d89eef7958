"""The admin panel shell: dashboard with row counts and recent login attempts, and the API tokens page."""
from flask import Blueprint, abort, flash, jsonify, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import func, select

from ..extensions import db
from ..models import LoginAttempt, data_tables
from ..security import SCOPES, admin_required, request_actor, wants_json
from . import api_tokens
from .forms import ApiTokenForm

bp = Blueprint("admin", __name__)


@bp.route("/")
@admin_required
def dashboard():
    counts = {table.name: db.session.execute(select(func.count()).select_from(table)).scalar_one()
              for table in data_tables()}
    attempts = db.session.execute(
        select(LoginAttempt).order_by(LoginAttempt.attempted_at.desc(), LoginAttempt.id.desc()).limit(20)
    ).scalars().all()
    if wants_json():
        return jsonify({
            "counts": counts,
            "recent_login_attempts": [
                {"ip_address": a.ip_address, "username_or_email": a.username_or_email, "success": a.success,
                 "attempted_at": a.attempted_at.isoformat(), "user_agent": a.user_agent}
                for a in attempts
            ],
        })
    return render_template("admin/dashboard.html", counts=counts, attempts=attempts)


def _tokens_page(form, status=200, new_token=None):
    return render_template("admin/api_tokens.html", form=form, tokens=api_tokens.list_tokens(), scopes=SCOPES,
                           new_token=new_token), status


@bp.route("/api-tokens")
@admin_required
def api_tokens_page():
    """The tokens: list (JSON ``{"tokens": [...]}``) and the form to create one."""
    if wants_json():
        return jsonify({"tokens": api_tokens.list_tokens()})
    return _tokens_page(ApiTokenForm())


@bp.route("/api-tokens", methods=["POST"])
@admin_required
def create_api_token():
    """A new token for the admin asking; its secret is in this answer only (JSON 201 ``{"token", "id"}``)."""
    form = ApiTokenForm()
    try:
        if not form.validate():
            raise api_tokens.TokenError(form.first_error())
        token, secret = api_tokens.create_token(
            current_user, name=form.name.data or "api", scopes=form.scopes.data, expires_in_days=form.expires_in.data,
            actor=request_actor())
    except api_tokens.TokenError as exc:
        if wants_json():
            return jsonify({"error": exc.message}), exc.status
        flash(exc.message, "error")
        return _tokens_page(form, exc.status)
    if wants_json():
        return jsonify({"token": secret, "id": token["id"]}), 201
    flash(f"API token {token['name']!r} created. Copy it now: it is shown only once.", "success")
    return _tokens_page(ApiTokenForm(formdata=None), 201, new_token=secret)


@bp.route("/api-tokens/<int:token_id>/revoke", methods=["POST"])
@admin_required
def revoke_api_token(token_id):
    """Revoke one token (JSON ``{"revoked": <id>}``); 404 for an unknown id."""
    try:
        api_tokens.revoke_token(token_id, actor=request_actor())
    except api_tokens.TokenError as exc:
        abort(exc.status, exc.message)
    if wants_json():
        return jsonify({"revoked": token_id})
    flash(f"API token {token_id} revoked.", "success")
    return redirect(url_for("admin.api_tokens_page"))
