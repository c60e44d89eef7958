"""`flask backup create|list|delete`: output, exit status, one clear line on failure."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from app.backup.jobs.lock import acquire_exclusive
from app.backup.jobs.runner import create_job
from support.backup import seed_sample_rows
from support.processes import REPO


def run(app, *args):
    return app.test_cli_runner().invoke(args=["backup", *args])


def test_create_prints_the_filename_and_list_shows_it(app):
    seed_sample_rows(app)
    created = run(app, "create")
    assert created.exit_code == 0, created.output
    name = created.stdout.strip()
    assert name.startswith("cyberquest_backup_") and (Path(app.config["BACKUP_DIRECTORY"]) / name).is_file()

    listed = run(app, "list", "--json")
    assert listed.exit_code == 0
    backups = orjson.loads(listed.stdout)["backups"]
    assert [b["filename"] for b in backups] == [name]
    assert backups[0]["trigger"] == "cli" and backups[0]["total_records"] == 9

    plain = run(app, "list")
    assert plain.exit_code == 0 and name in plain.stdout and "9 records" in plain.stdout


def test_create_progress_lines_go_to_stderr_and_the_filename_to_stdout(app):
    seed_sample_rows(app)
    created = run(app, "create", "--progress")
    assert created.exit_code == 0, created.output
    lines = created.stderr.splitlines()
    assert lines[0] == "progress   0.0% Starting the backup"
    assert any("Backing up users" in line for line in lines)
    name = created.stdout.strip()
    assert lines[-1] == f"progress 100.0% Created {name}"
    assert run(app, "create").stderr == ""


def test_list_when_empty(app):
    assert run(app, "list").stdout.strip() == "No backups yet."
    assert orjson.loads(run(app, "list", "--json").stdout) == {"backups": []}


def test_delete_removes_and_an_unknown_name_fails_with_one_line(app):
    name = run(app, "create").stdout.strip()
    deleted = run(app, "delete", name)
    assert deleted.exit_code == 0 and name in deleted.stdout
    again = run(app, "delete", name)
    assert again.exit_code == 1
    assert again.stderr.strip().splitlines() == [f"Error: No backup is named {name!r}."]
    assert "Traceback" not in again.output


def test_create_while_another_job_runs_fails_with_exit_1(app):
    with app.app_context():
        running = create_job("restore", "someone")
        acquire_exclusive(running.id)
    result = run(app, "create")
    assert result.exit_code == 1
    assert "Another backup or restore is running" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_real_process_reports_an_unwritable_store_in_one_line(tmp_path, app):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "SECRET_KEY": "test-secret-key-of-at-least-32-bytes",
           "BACKUP_DIRECTORY": str(blocker / "backups"), "FLASK_APP": "wsgi", "ENABLE_AUTO_BACKUP": "false"}
    done = subprocess.run([sys.executable, "-m", "flask", "backup", "create"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and "BACKUP_DIRECTORY" in error_lines[0]
    assert done.stdout == ""

