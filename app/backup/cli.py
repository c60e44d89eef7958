"""`flask backup …` commands."""
from flask.cli import AppGroup

backup_cli = AppGroup("backup", help="Create, list, verify, restore and prune backups.")
