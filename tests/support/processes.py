"""Running the app's ``flask`` command in a child process, as an operator does, and reading its progress."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FLASK = str(Path(sys.executable).with_name("flask"))


def flask_environment(app) -> dict:
    """The environment of a ``flask`` child process that works on ``app``'s database and backup directory."""
    return dict(os.environ, FLASK_APP="wsgi", DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
                SECRET_KEY=app.config["SECRET_KEY"], BACKUP_DIRECTORY=app.config["BACKUP_DIRECTORY"],
                ENABLE_AUTO_BACKUP="false")


def flask_process(app, *args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    """``flask ARGS`` started on ``app``'s database and backup directory (``env`` adds variables), its
    stdout and stderr piped as text; the caller waits for it (or kills it)."""
    return subprocess.Popen([FLASK, *args], cwd=REPO, env={**flask_environment(app), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def progress_lines(process: subprocess.Popen) -> Iterator[str]:
    """The ``progress NN.N% message`` lines of a child's ``--progress`` stderr as they come, newline stripped
    (other lines are skipped)."""
    for line in process.stderr:
        if line.startswith("progress"):
            yield line.rstrip("\n")


def progress_message(line: str) -> str:
    """A progress line without its percentage (how far a restore has read ahead varies run to run)."""
    return line.split("%", 1)[1].strip()
