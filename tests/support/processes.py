"""Running the app's ``flask`` command in a child process, as an operator does."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FLASK = str(Path(sys.executable).with_name("flask"))


def flask_environment(app) -> dict:
    """The environment of a ``flask`` child process that works on ``app``'s database and backup directory."""
    return dict(os.environ, FLASK_APP="wsgi", DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
                SECRET_KEY=app.config["SECRET_KEY"], BACKUP_DIRECTORY=app.config["BACKUP_DIRECTORY"],
                ENABLE_AUTO_BACKUP="false")
