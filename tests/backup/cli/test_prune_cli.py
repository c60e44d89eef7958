"""`flask backup prune [--dry-run]` against real archives on SQLite and PostgreSQL."""
from datetime import timedelta

import orjson
from sqlalchemy import select

from app.backup.jobs.lock import acquire_exclusive, release_exclusive
from app.backup.schedule import retention
from app.backup.schedule.settings import load_settings
from app.extensions import db
from app.models import AuditLog, utcnow
from support.schedule import backup_at, listed, save_schedule


def prune_json(app, *args) -> dict:
    result = app.test_cli_runner().invoke(args=["backup", "prune", "--json", *args])
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def test_dry_run_lists_exactly_what_the_real_prune_deletes_and_every_deletion_is_audited(sched_app):
    now = utcnow()
    save_schedule(sched_app, retention_days=7, keep_last=2)
    days = lambda n: now - timedelta(days=n)  # noqa: E731
    newest = backup_at(sched_app, days(0.5))
    kept_by_count = backup_at(sched_app, days(35))
    old = [backup_at(sched_app, days(n)) for n in (40, 45, 60, 100)]
    failed = backup_at(sched_app, days(33), verified=False)
    pinned = backup_at(sched_app, days(200), pinned=True, verified=None)
    safety_recent = backup_at(sched_app, days(3), trigger="pre-restore", verified=None)
    safety_old = backup_at(sched_app, days(10), trigger="pre-restore", verified=None)

    dry = prune_json(sched_app, "--dry-run")
    assert dry["dry_run"] is True
    assert set(dry["deleted"]) == set(old) | {failed, safety_old}
    assert listed(sched_app) >= set(dry["deleted"])  # the dry run deleted nothing

    real = prune_json(sched_app)
    assert real["deleted"] == dry["deleted"]
    assert listed(sched_app) == {newest, kept_by_count, pinned, safety_recent}
    assert "pinned" in real["kept"][pinned]

    with sched_app.app_context():
        audited = db.session.execute(select(AuditLog).where(AuditLog.action == "backup.prune")).scalars().all()
        assert sorted(a.target for a in audited) == sorted(real["deleted"])
        assert all(a.actor == "cli" for a in audited)

    # Nothing left to delete: a second prune is a no-op.
    assert prune_json(sched_app)["deleted"] == []


def test_plain_output_names_each_file(sched_app):
    now = utcnow()
    save_schedule(sched_app, retention_days=1, keep_last=1)
    backup_at(sched_app, now - timedelta(days=2))
    doomed = backup_at(sched_app, now - timedelta(days=3))
    runner = sched_app.test_cli_runner()
    dry = runner.invoke(args=["backup", "prune", "--dry-run"])
    assert dry.exit_code == 0
    assert f"Would delete {doomed}" in dry.output and "1 backup(s) would be deleted, 1 kept" in dry.output
    real = runner.invoke(args=["backup", "prune"])
    assert real.exit_code == 0 and f"Deleted {doomed}" in real.output
    assert doomed not in listed(sched_app)


def test_gfs_layers_are_configured_through_the_app_settings(tmp_path):
    from support.app import build_app

    app = build_app(tmp_path, BACKUP_KEEP_DAILY=3, BACKUP_KEEP_WEEKLY=0, BACKUP_KEEP_MONTHLY=0)
    now = utcnow()
    save_schedule(app, retention_days=1, keep_last=0)
    names = [backup_at(app, now - timedelta(days=n, hours=1)) for n in range(1, 7)]
    result = prune_json(app, "--dry-run")
    # today has none; yesterday and the day before are kept by the daily layer, the newest also as newest
    assert set(result["deleted"]) == set(names[2:])


def test_a_real_prune_waits_for_no_one_it_refuses_while_a_backup_or_restore_runs(sched_app):
    now = utcnow()
    save_schedule(sched_app, retention_days=1, keep_last=0)
    backup_at(sched_app, now - timedelta(days=5))
    backup_at(sched_app, now - timedelta(days=9))
    with sched_app.app_context():
        acquire_exclusive("someone-elses-job")
    runner = sched_app.test_cli_runner()
    refused = runner.invoke(args=["backup", "prune"])
    assert refused.exit_code == 1
    assert "Another backup or restore is running" in refused.output
    assert len(listed(sched_app)) == 2
    # the dry run only reads, so it still answers
    assert runner.invoke(args=["backup", "prune", "--dry-run"]).exit_code == 0
    with sched_app.app_context():
        release_exclusive("someone-elses-job")
    assert prune_json(sched_app)["deleted"] != []


def test_policy_comes_from_the_schedule(sched_app):
    save_schedule(sched_app, retention_days=12, keep_last=3)
    with sched_app.app_context():
        policy = retention.policy_for(load_settings())
    assert (policy.retention_days, policy.keep_last, policy.daily) == (12, 3, 0)
