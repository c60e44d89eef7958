"""Four real processes fire the same slot at the same moment: exactly one backup, one run, one e-mail.

On SQLite (one file shared by the processes) and on PostgreSQL. The processes are
released together through a file gate once all four have built their app, so they
reach the claim at the same instant rather than one after the other.
"""
import json
import os
import subprocess
import sys
import time
from datetime import timedelta

from sqlalchemy import select

from app.extensions import db
from app.models import AuditLog, ScheduledRun, utcnow
from support.app import build_app
from support.mail import message_text, send_mail_to
from support.schedule import listed, save_schedule
from support.processes import REPO

PROCESSES = 4

RUNNER = """
import json, sys, time
from pathlib import Path
from app import create_app
from app.backup.schedule.runner import run_scheduled

# A script like this is a runner of its own (as cron is): no in-process scheduler beside it.
app = create_app({"SCHEDULER_ENABLED": False})
gate, ready = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
deadline = time.monotonic() + 60
while not gate.exists():
    if time.monotonic() > deadline:
        sys.exit("the gate never opened")
    time.sleep(0.002)
with app.app_context():
    print(json.dumps(run_scheduled().to_dict()))
"""


def environment(tmp_path, database_url, smtp_port) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FLASK_", "WERKZEUG_"))}
    env.update(FLASK_APP="wsgi", DATABASE_URL=database_url, SECRET_KEY="test-secret-key-of-at-least-32-bytes",
               BACKUP_DIRECTORY=str(tmp_path / "backups"), MAIL_SERVER="127.0.0.1", MAIL_PORT=str(smtp_port),
               MAIL_DEFAULT_SENDER="cyberquest@test.local", PYTHONPATH=str(REPO))
    return env


def prepared_app(tmp_path, database_url, smtp_server):
    app = build_app(tmp_path, database_url)
    mailbox = send_mail_to(app, smtp_server)
    # A daily slot twelve hours ago, in force for a month: due now for every process, far from any boundary.
    save_schedule(app, effective_from=utcnow() - timedelta(days=30), enabled=True, frequency="daily",
                  time=(utcnow() - timedelta(hours=12)).strftime("%H:%M"), notify_emails="ops@example.com",
                  notify_on="always")
    return app, mailbox


def assert_exactly_one(app, mailbox, outcomes: list[dict]):
    statuses = sorted(o["status"] for o in outcomes)
    assert statuses == ["succeeded"] + ["taken"] * (PROCESSES - 1), outcomes
    assert len({o["slot"] for o in outcomes}) == 1
    backups = listed(app)
    assert len(backups) == 1
    with app.app_context():
        runs = db.session.execute(select(ScheduledRun)).scalars().all()
        assert [(r.status, r.filename) for r in runs] == [("succeeded", next(iter(backups)))]
        audited = db.session.execute(select(AuditLog).where(AuditLog.action == "backup.scheduled_run")).scalars()
        assert len(list(audited)) == 1
        db.session.remove()
        db.engine.dispose()
    assert len(mailbox) == 1 and "Scheduled backup succeeded" in message_text(mailbox[0]), [message_text(m) for m in mailbox]


def test_four_processes_released_together_make_one_backup(tmp_path, database_url, smtp_server):
    app, mailbox = prepared_app(tmp_path, database_url, smtp_server)
    env = environment(tmp_path, database_url, smtp_server.port)
    gate = tmp_path / "gate"
    readies = [tmp_path / f"ready-{n}" for n in range(PROCESSES)]
    workers = [subprocess.Popen([sys.executable, "-c", RUNNER, str(gate), str(ready)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for ready in readies]
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in readies):
            assert time.monotonic() < deadline, "the workers did not start"
            assert all(w.poll() is None for w in workers), [w.communicate() for w in workers if w.poll() is not None]
            time.sleep(0.01)
        gate.touch()
        results = [w.communicate(timeout=120) for w in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert all(w.returncode == 0 for w in workers), [err for _, err in results]
    assert_exactly_one(app, mailbox, [json.loads(out.strip().splitlines()[-1]) for out, _ in results])


def test_four_cron_invocations_of_run_scheduled_make_one_backup(tmp_path, database_url, smtp_server):
    app, mailbox = prepared_app(tmp_path, database_url, smtp_server)
    env = environment(tmp_path, database_url, smtp_server.port)
    command = [sys.executable, "-m", "flask", "backup", "run-scheduled", "--json"]
    workers = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(PROCESSES)]
    results = [w.communicate(timeout=120) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err for _, err in results]
    assert_exactly_one(app, mailbox, [json.loads(out) for out, _ in results])
