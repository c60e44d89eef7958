"""HTTP face of restore and verify."""
from flask import Blueprint

bp = Blueprint("restore", __name__)
