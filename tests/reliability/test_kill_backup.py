"""kill -9 during `flask backup create`: whatever the moment, nothing half-made is listed and nothing changes.

A real `flask backup create --progress` process is killed with SIGKILL at seeded
points spread over its whole run: delays after its first progress line, drawn from
equal slices of the time a full run took (a backup prints too few progress lines to
pick 30 points among them, and the delay reaches the parts that print none: the
fsync, the publication, the records; a run that ends before its kill, as runs vary
in speed, is tried again 20 % earlier). After each kill the app is started again,
as an operator would, and the test counts:

- listed archives that fail verification (each newly listed one is verified: its
  recorded SHA-256, structure, checksums, signature and a test restore);
- partial files listed, or left in the directory after that start;
- changes to the data tables;
- jobs the start did not mark failed ("Interrupted…"; a kill after the job was
  recorded finished may leave it succeeded, with its archive listed and whole).

The figures go to docs/RELIABILITY.md (rows kill-backup-*); then the losses must be 0.
"""
from __future__ import annotations

import pytest

from app.backup.restore_service import listed_source
from app.backup.verify import verify_archive
from support.archives import generated_tables, snapshot
from support.interrupting import (app_holding, kill_after_first_line, latest_job, listed_names, partial_files,
                                  reaped, restarted, run_to_end, spread_fractions)
from support.processes import flask_process
from support.reliability import count, record

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SEED = 20261202
# About 130,000 rows: a run of a few tenths of a second, long enough to land kills in every phase.
TABLES = {"users": 8_000, "attempts": 120_000}


def create_process(app):
    return flask_process(app, "backup", "create", "--progress")


def kill_backups(tmp_path, url, key: str) -> None:
    points = count(ci=3, full=30)
    with app_holding(tmp_path, url, generated_tables(**TABLES, seed=3)) as app:
        before = snapshot(app)
        with reaped(create_process(app)) as process:
            _, span = run_to_end(process)
        known = set(listed_names(app))
        failed_verify, partial_listed, stray, changed, unmarked, retried, published = [], [], [], [], [], 0, 0
        for index, fraction in enumerate(spread_fractions(points, SEED)):
            runs, delay = kill_after_first_line(lambda: create_process(app), fraction * span)
            where = f"kill {index} {delay:.3f} s into a {span:.2f} s run"
            retried += runs > 1
            with restarted(app, tmp_path / f"restart-{index}") as again:
                listed = listed_names(again)
                new = [name for name in listed if name not in known]
                known.update(new)
                published += bool(new)
                partial_listed += [f"{where}: {name}" for name in listed if name.startswith(".") or ".partial" in name]
                with again.app_context():
                    for name in new:
                        verification = verify_archive(again, listed_source(name))
                        if not verification["ok"]:
                            failed_verify.append(f"{where}: {name}: {verification['error']}")
                stray += [f"{where}: {name}" for name in partial_files(again)]
                if snapshot(again) != before:
                    changed.append(where)
                job = latest_job(again, "backup")
                if not (job.status == "failed" and job.message.startswith("Interrupted")
                                   or job.status == "succeeded" and new):
                    unmarked.append(f"{where}: {job.status} {job.message!r}")
        losses = len(failed_verify) + len(partial_listed) + len(stray) + len(changed) + len(unmarked)
        record(f"kill-backup-{key}", cases=points, losses=losses, measured=(
            f"{key}: {len(failed_verify)} of {published} listed archives failed verify, {len(partial_listed)} "
            f"partial files listed and {len(stray)} left after the next start, {len(changed)} database changes, "
            f"{len(unmarked)} jobs not marked failed ({points} kills over a {span:.2f} s run; {retried} points "
            f"came after the end of their run and were tried again 20 % earlier)"))
        assert losses == 0, {"failed verify": failed_verify, "partial listed": partial_listed,
                             "partial left": stray, "database changed": changed, "job not failed": unmarked}


def test_sqlite_backup_killed_at_points_over_its_run(tmp_path):
    kill_backups(tmp_path, f"sqlite:///{tmp_path / 'kills.db'}", "sqlite")


@pytest.mark.postgres
def test_postgresql_backup_killed_at_points_over_its_run(tmp_path, postgres_url):
    kill_backups(tmp_path, postgres_url, "postgresql")
