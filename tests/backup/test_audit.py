"""The audit log beyond HTTP: the CLI and the scheduler are audited as ``cli`` and ``scheduler``, alike."""
from __future__ import annotations

from datetime import timedelta

from app.backup import audit
from app.backup.schedule import runner
from app.models import utcnow
from support.schedule import backup_at, save_schedule
from support.web import bearer_client


def audit_entries(client) -> list[dict]:
    response = client.get("/admin/audit", headers={"Accept": "application/json"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["entries"]


def cli(app, *args):
    result = app.test_cli_runner().invoke(args=["backup", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()


def test_every_cli_action_is_audited_as_cli_without_an_ip(app):
    [made] = cli(app, "create")
    cli(app, "verify", made)
    cli(app, "restore", made, "--mode", "merge", "--yes")
    cli(app, "delete", made)
    old = backup_at(app, utcnow() - timedelta(days=400), verified=False)
    save_schedule(app, retention_days=30, keep_last=1)
    cli(app, "prune")

    entries = [e for e in audit_entries(bearer_client(app, "root")) if e["action"] != "schedule.save"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("backup.prune", old), ("backup.delete", made), ("backup.restore", made), ("backup.verify", made),
        ("backup.create", made)]
    assert all((e["actor"], e["ip"]) == ("cli", None) and "token_id" not in e["details"] for e in entries)
    assert entries[-1]["details"]["trigger"] == "cli"
    assert entries[0]["details"]["reason"] == "kept by none of the retention rules"


def test_a_scheduled_run_is_audited_as_the_schedulers(sched_app):
    old = backup_at(sched_app, utcnow() - timedelta(days=90))
    save_schedule(sched_app, effective_from=utcnow() - timedelta(days=60), enabled=True, frequency="daily",
                  time="02:00", retention_days=30, keep_last=1)
    with sched_app.app_context():
        outcome = runner.run_scheduled()
    assert outcome.status == "succeeded", outcome.message
    made = outcome.report.backup["filename"]

    entries = {e["action"]: e for e in audit_entries(bearer_client(sched_app, "root"))}
    assert entries["backup.create"]["target"] == made and entries["backup.create"]["details"]["trigger"] == "scheduled"
    assert entries["backup.verify"]["target"] == made and entries["backup.verify"]["details"]["ok"] is True
    assert entries["backup.prune"]["target"] == old
    assert all((entries[a]["actor"], entries[a]["ip"]) == ("scheduler", None)
               for a in ("backup.create", "backup.verify", "backup.prune", "backup.scheduled_run"))


def test_record_cuts_every_label_to_its_column_and_names_the_token(app):
    with app.app_context():
        entry = audit.record(audit.Actor("a" * 100, ip="f" * 60, token_id=7), "backup." + "x" * 80, "t" * 300,
                             {"kept": True})
        assert (len(entry.actor), len(entry.action), len(entry.target), len(entry.ip)) == (80, 64, 255, 45)
        assert entry.target.endswith("…")
        [read] = audit.entries(action=entry.action)[0]
    assert read["details"] == {"kept": True, "token_id": 7}
