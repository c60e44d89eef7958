"""HTTP face of the backup schedule and of backup health.

``GET/POST /admin/backup-schedule`` shows and saves the schedule (HTML form or JSON);
``GET /admin/backup-health`` answers uptime monitors: 200 when backups are healthy,
503 with the reason otherwise.
"""
from flask import Blueprint, jsonify, render_template, url_for

from ...models import utcnow
from ...security import admin_required, wants_json
from ..schedule import health, hooks, retention, runner as scheduler
from ..errors import ConflictError
from .http import actor_name, done, request_fields
from ..schedule.settings import WEEKDAY_NAMES, ScheduleValidationError, load_settings, update_settings

bp = Blueprint("schedule", __name__)


@bp.app_context_processor
def backup_health_helper() -> dict:
    """``backup_health()`` in every template, computed only when a template calls it.

    Lets any page show the health card with ``{% include "backup/schedule_health_card.html" %}``.
    """
    return {"backup_health": health.assess}


def _page(settings, *, errors=None, values=None, status=200):
    now = utcnow()
    try:
        preview = retention.prune(retention.policy_for(settings), now, dry_run=True, actor=None)
    except ConflictError:
        preview = None
    schedule = settings.to_dict(now)
    body = render_template("backup/schedule.html", schedule=schedule, values=values or schedule,
                           errors=errors or {}, description=settings.describe(), weekdays=WEEKDAY_NAMES,
                           health=health.assess(now), runs=scheduler.recent_runs(), preview=preview,
                           deliveries=hooks.recent_deliveries())
    return body, status


@bp.route("/backup-schedule")
@admin_required
def backup_schedule():
    """The schedule: the page (form, health, retention preview, recent runs and hook deliveries) or JSON.

    The JSON is ``{"schedule": Schedule, "hook_deliveries": [...]}``, the latest webhook and
    heartbeat deliveries first, failed ones with their error.
    """
    settings = load_settings()
    if wants_json():
        return jsonify({"schedule": settings.to_dict(utcnow()), "hook_deliveries": hooks.recent_deliveries()})
    return _page(settings)


@bp.route("/backup-schedule", methods=["POST"])
@admin_required
def save_backup_schedule():
    """Validate and save the fields sent (others keep their values); 400 and no change on a bad value."""
    fields = request_fields()
    try:
        settings = update_settings(fields, utcnow(), actor=actor_name())
    except ScheduleValidationError as exc:
        if wants_json():
            raise
        # A browser gets the form back with its own values and the errors beside them.
        current = load_settings()
        values = {**current.to_dict(utcnow()), **fields}
        return _page(current, errors=exc.extra["fields"], values=values, status=400)
    return done({"schedule": settings.to_dict(utcnow())}, 200, f"Schedule saved: {settings.describe()}.",
                url_for("schedule.backup_schedule"), wants_json=wants_json())


@bp.route("/backup-health")
@admin_required
def backup_health():
    """200 when backups are healthy, else 503; the body says why. Sends the missed-schedule alert once."""
    state = health.assess(utcnow())
    if wants_json():
        return jsonify(state.to_dict()), state.http_status
    return render_template("backup/schedule_health.html", health=state), state.http_status
