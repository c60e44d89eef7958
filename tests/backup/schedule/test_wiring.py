"""When the in-process scheduler starts (served app) and when not (tests, CLI, switch off, reloader watcher)."""
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import click
import pytest
from sqlalchemy import select

from app.backup.jobs.priority import thread_niceness
from app.backup.schedule.wiring import EXTENSION_KEY, TICK_JOB_ID, should_start, stop_for_app
from app.extensions import db
from app.models import ScheduledRun, utcnow
from support.app import build_app
from support.services import free_port
from support.schedule import save_schedule
from support.processes import REPO


def in_force(app):
    save_schedule(app, effective_from=utcnow() - timedelta(days=30), enabled=True, frequency="daily",
                  time=(utcnow() - timedelta(hours=12)).strftime("%H:%M"))


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def scheduled_runs(app) -> list[ScheduledRun]:
    with app.app_context():
        rows = db.session.execute(select(ScheduledRun)).scalars().all()
        db.session.expunge_all()
        db.session.remove()
        return rows


# --- The decision ------------------------------------------------------------------------

def test_tests_do_not_get_a_scheduler(app):
    assert should_start(app) == (False, "SCHEDULER_ENABLED is False")
    assert EXTENSION_KEY not in app.extensions


def test_enable_auto_backup_false_turns_it_off(tmp_path):
    app = build_app(tmp_path, SCHEDULER_ENABLED=True, ENABLE_AUTO_BACKUP=False)
    assert should_start(app) == (False, "ENABLE_AUTO_BACKUP is false")
    assert EXTENSION_KEY not in app.extensions


@pytest.mark.parametrize("command, params, run_main, starts", [
    ("upgrade", {}, None, False),            # flask db upgrade
    ("run-scheduled", {}, None, False),      # flask backup run-scheduled: it runs the slot itself
    ("shell", {}, None, False),
    ("run", {"reload": None}, None, True),   # flask run
    ("run", {"reload": True}, None, False),  # flask run --reload: the watcher process
    ("run", {"reload": True}, "true", True),  # ... and its serving child
])
def test_cli_commands_other_than_flask_run_do_not_start_it(app, monkeypatch, command, params, run_main, starts):
    app.config["SCHEDULER_ENABLED"] = True
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    if run_main:
        monkeypatch.setenv("WERKZEUG_RUN_MAIN", run_main)
    else:
        monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    with click.Context(click.Command(command), info_name=command) as ctx:
        ctx.params.update(params)
        assert should_start(app)[0] is starts


# --- The real thing -----------------------------------------------------------------------

def test_a_served_app_starts_apscheduler_which_runs_the_due_slot(tmp_path):
    app = build_app(tmp_path, SCHEDULER_ENABLED=True)
    try:
        running = app.extensions[EXTENSION_KEY]
        assert running.running and str(running.timezone) == "UTC"
        beat = running.get_job(TICK_JOB_ID)
        assert beat.next_run_time.second == 0  # every minute, on the minute
        assert should_start(app) == (False, "already running for this app")
        in_force(app)
        # the start-up beat fires a couple of seconds after start; no waiting for the minute
        [run] = wait_for(lambda: [r for r in scheduled_runs(app) if r.status != "running"], what="the scheduled run")
        assert run.status == "succeeded" and run.filename
    finally:
        stop_for_app(app)
    assert EXTENSION_KEY not in app.extensions


def test_the_schedulers_threads_run_backup_job_nice_nicer_than_the_web_process(tmp_path):
    """With the thread executor a due slot's backup runs in the tick's own thread: that thread, not the
    serving ones, is BACKUP_JOB_NICE nicer, so pages do not queue behind a scheduled backup."""
    process = thread_niceness()
    app = build_app(tmp_path, SCHEDULER_ENABLED=True)
    try:
        seen = {}
        app.extensions[EXTENSION_KEY].add_job(
            lambda: seen.update(niceness=thread_niceness()))
        wait_for(lambda: "niceness" in seen, what="a job on the scheduler's thread")
        assert seen["niceness"] == min(19, process + app.config["BACKUP_JOB_NICE"]) != process
    finally:
        stop_for_app(app)
    assert thread_niceness() == process


def _environment(tmp_path, database: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FLASK_", "WERKZEUG_"))}
    env.update(FLASK_APP="wsgi", DATABASE_URL=f"sqlite:///{database}", SECRET_KEY="test-secret-key-of-at-least-32-bytes",
               BACKUP_DIRECTORY=str(tmp_path / "backups"), ENABLE_AUTO_BACKUP="true", PYTHONUNBUFFERED="1")
    return env


@pytest.mark.parametrize("debug", [False, True], ids=["flask-run", "flask-run-debug-reloader"])
def test_flask_run_starts_the_scheduler_in_the_serving_process(tmp_path, debug):
    app = build_app(tmp_path)
    in_force(app)
    command = [sys.executable, "-m", "flask", "run", "--port", str(free_port())]
    if debug:
        command.insert(3, "--debug")
    log = tmp_path / "server.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(command, cwd=REPO, env=_environment(tmp_path, tmp_path / "app.db"),
                                  stdout=output, stderr=subprocess.STDOUT)

    def claimed():
        assert server.poll() is None, log.read_text()
        return scheduled_runs(app)

    try:
        [run] = wait_for(claimed, timeout=60, what=f"flask run's scheduler to claim the slot; log: {log}")
        owner_pid = int(run.owner.rpartition(":")[2])
        if debug:
            assert owner_pid != server.pid  # the reloader's child, not its watcher
        else:
            assert owner_pid == server.pid
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_other_cli_commands_never_run_scheduled_backups(tmp_path):
    app = build_app(tmp_path)
    in_force(app)
    # A CLI process that lives well past the scheduler's start-up beat.
    shell = subprocess.run([sys.executable, "-m", "flask", "shell"], input="import time; time.sleep(4)\n",
                           cwd=REPO, env=_environment(tmp_path, tmp_path / "app.db"), capture_output=True,
                           text=True, timeout=60)
    assert shell.returncode == 0, shell.stderr
    assert scheduled_runs(app) == []
