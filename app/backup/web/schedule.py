"""HTTP face of the backup schedule and of backup health.

``GET/POST /admin/backup-schedule`` shows and saves the schedule (HTML form or JSON);
``GET /admin/backup-health`` answers uptime monitors: 200 when backups are healthy,
503 with the reason otherwise. It only reads.
"""
from flask import Blueprint, jsonify, render_template, url_for

from ...models import utcnow
from ...security import admin_required, request_actor, wants_json
from ..errors import BackupError, ConflictError
from ..schedule import health, hooks, retention, runner as scheduler
from ..schedule.settings import WEEKDAY_NAMES, ScheduleSettings, load_settings, update_settings
from ..schedule.validation import ScheduleValidationError
from .forms import ScheduleForm
from .http import done, refused_form, request_fields

bp = Blueprint("schedule", __name__)
bp.register_error_handler(BackupError, refused_form)


def _page(settings: ScheduleSettings, form: ScheduleForm, *, status=200):
    now = utcnow()
    try:
        preview = retention.prune(retention.policy_for(settings), now, dry_run=True, actor=None)
    except ConflictError:
        preview = None
    body = render_template("backup/schedule.html", schedule=settings.to_dict(now), form=form,
                           description=settings.describe(), weekdays=WEEKDAY_NAMES, health=health.assess(now),
                           runs=scheduler.recent_runs(), preview=preview, deliveries=hooks.recent_deliveries())
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
    return _page(settings, ScheduleForm(None, current=settings.to_dict(utcnow())))


@bp.route("/backup-schedule", methods=["POST"])
@admin_required
def save_backup_schedule():
    """Validate and save the fields sent (others keep their values); 400 and no change on a bad value."""
    current = load_settings()
    form = ScheduleForm(request_fields(), current=current.to_dict(utcnow()))
    if not form.validate():
        if wants_json():
            raise ScheduleValidationError.naming(form.setting_errors())
        # A browser gets the form back with its own values and the errors beside them.
        return _page(current, form, status=400)
    settings = update_settings(form.changes(), utcnow(), actor=request_actor())
    return done({"schedule": settings.to_dict(utcnow())}, 200, f"Schedule saved: {settings.describe()}.",
                url_for("schedule.backup_schedule"), wants_json=wants_json())


@bp.route("/backup-health")
@admin_required
def backup_health():
    """200 when backups are healthy, else 503; the body says why."""
    state = health.assess(utcnow())
    if wants_json():
        return jsonify(state.to_dict()), state.http_status
    return render_template("backup/schedule_health.html", health=state), state.http_status
