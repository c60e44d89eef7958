"""HTTP face of the backup schedule and health."""
from flask import Blueprint

bp = Blueprint("schedule", __name__)
