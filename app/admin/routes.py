"""The admin panel shell: dashboard with row counts and recent login attempts."""
from flask import Blueprint, jsonify, render_template
from sqlalchemy import func, select

from ..extensions import db
from ..models import LoginAttempt, data_tables
from ..security import admin_required, wants_json

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
