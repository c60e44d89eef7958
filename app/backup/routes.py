"""System Backup HTTP face (filled in by the backup engine)."""
from flask import Blueprint, jsonify

from ..security import admin_required

bp = Blueprint("backup", __name__)


@bp.route("/system-backup")
@admin_required
def system_backup():
    return jsonify({"backups": [], "job": None})
