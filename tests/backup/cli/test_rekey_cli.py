"""`flask backup rekey [--dry-run]` as an operator runs it, and a kill -9 in the middle of it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import text

from app.backup.service import BackupService
from app.extensions import db
from support.app import build_app
from support.backup import seed_sample_rows
from support.processes import REPO, flask_environment

OLD, NEW = "the passphrase of last year", "the passphrase of this year"


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["backup", "rekey", *args])


def backup_made_with(tmp_path, key: str | None) -> str:
    app = build_app(tmp_path, **({"BACKUP_ENCRYPTION_KEY": key} if key else {}))
    seed_sample_rows(app)
    with app.app_context():
        name = BackupService().create("cli", None)["filename"]
        db.engine.dispose()
    return name


def test_rekey_prints_one_line_per_archive_and_a_dry_run_says_would(tmp_path):
    old = backup_made_with(tmp_path, OLD)
    app = build_app(tmp_path, BACKUP_ENCRYPTION_KEY=NEW, BACKUP_ENCRYPTION_OLD_KEYS=(OLD,))
    dry = cli(app, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.splitlines() == [f"{old}  would be re-encrypted"]
    done = cli(app)
    assert done.exit_code == 0 and done.stdout.splitlines() == [f"{old}  re-encrypted"]
    again = cli(app)
    assert again.exit_code == 0 and again.stdout.splitlines() == [f"{old}  already current"]


def test_failures_exit_1_with_one_line_on_stderr(tmp_path):
    old = backup_made_with(tmp_path, OLD)
    forgotten = build_app(tmp_path, BACKUP_ENCRYPTION_KEY=NEW)
    result = cli(forgotten)
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{old}  failed: The archive is encrypted with a passphrase that is neither")
    assert result.stderr.strip().splitlines() == [
        "Error: 1 archive(s) could not be re-encrypted and were left as they were; see the lines above."]
    no_key = cli(build_app(tmp_path))
    assert no_key.exit_code == 1 and "BACKUP_ENCRYPTION_KEY is not set" in no_key.stderr


KILLED_MID_REWRITE = textwrap.dedent("""
    import os, signal
    from app.backup.archive.reader import Archive

    real = Archive.member_chunks

    def dying(self, name):
        for number, chunk in enumerate(real(self, name)):
            if number == 2:  # the new file is half written beside the old one
                os.kill(os.getpid(), signal.SIGKILL)
            yield chunk

    Archive.member_chunks = dying
    from wsgi import app
    from app.backup.rekey import rekey_archives
    with app.app_context():
        list(rekey_archives(app))
""")


def test_a_kill_9_mid_rekey_leaves_the_old_file_whole_and_listed(tmp_path):
    app = build_app(tmp_path)
    seed_sample_rows(app)
    with app.app_context():
        # enough rows for a data member of several chunks
        db.session.execute(text("INSERT INTO login_attempts (ip_address, username_or_email, success, attempted_at, "
                                "user_agent) SELECT '203.0.113.1', hex(randomblob(40)), 0, '2025-01-01 00:00:00', "
                                "hex(randomblob(200)) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                                "FROM n WHERE i < 20000) SELECT i FROM n)"))
        db.session.commit()
        name = BackupService().create("cli", None)["filename"]
    path = Path(app.config["BACKUP_DIRECTORY"]) / name
    before = path.read_bytes()

    env = dict(flask_environment(app), BACKUP_ENCRYPTION_KEY=NEW)
    child = subprocess.run([sys.executable, "-c", KILLED_MID_REWRITE], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert path.read_bytes() == before
    leftovers = [n for n in os.listdir(path.parent) if n != name]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{name}.partial-")  # the half-written new file

    restarted = build_app(tmp_path, BACKUP_ENCRYPTION_KEY=NEW)  # start-up removes the dead writer's partial
    assert os.listdir(path.parent) == [name]
    with restarted.app_context():
        [backup] = BackupService().list()
    assert backup["filename"] == name and backup["encrypted"] is False and backup["signed"] is True
    result = cli(restarted)  # the dead process's lock is recognised as stale
    assert result.exit_code == 0 and result.stdout.splitlines() == [f"{name}  encrypted"]
