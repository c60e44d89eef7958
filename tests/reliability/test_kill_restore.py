"""A restore interrupted at any moment leaves the database as it was before, or (killed after its commit) as after.

The restore runs as a real `flask backup restore … --progress` process. Its
progress lines on stderr mark where it is (the safety backup, each batch read,
the index builds, the commit); the test kills it with SIGKILL at lines chosen by a
seeded generator from equal slices of a full run's lines (so the points cover the
whole run and a failure can be replayed). After each kill it counts mixed states:
data tables or API tokens equal to neither their state before the restore nor the
state a full run leaves; and jobs the next start of the app did not mark failed.
On PostgreSQL the restore's connection is also terminated from another session
(`pg_terminate_backend`) with the process frozen at a chosen line: the restore must
fail with one clear line, change nothing, and its job must be failed.

The figures go to docs/RELIABILITY.md (rows kill-replace-*, kill-merge-*,
pg-terminate); then the losses must be 0.
"""
from __future__ import annotations

import signal
from functools import lru_cache

import orjson
import pytest
import sqlalchemy as sa

from support.archives import build_archive, generated_tables, snapshot
from support.interrupting import (PROCESS_TIMEOUT, app_holding, latest_job, listed_names, markers, reaped,
                                  restarted, revision, run_to_end, signing_key, spread, stop_at)
from support.processes import flask_process
from support.reliability import count, record

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SEED = 20261126
# The database holds a small data set; the archive a larger, different one (ids overlap, so a merge skips some).
EARLIER = {"users": 200, "attempts": 2_000, "seed": 1}
LATER = {"users": 4_000, "attempts": 60_000, "seed": 2}


@lru_cache(maxsize=None)
def tables(users: int, attempts: int, seed: int) -> dict:
    return generated_tables(users=users, attempts=attempts, seed=seed)


def restore_process(app, archive, mode: str):
    return flask_process(app, "backup", "restore", str(archive), "--mode", mode, "--yes", "--progress")


class Restoring:
    """An app holding EARLIER, an archive of LATER, and one full restore's lines and end state (then undone)."""

    def __init__(self, tmp_path, app, mode: str):
        self.app, self.mode = app, mode
        self.archive = build_archive(tmp_path / "restore.zip", tables(**LATER), key=signing_key(app),
                                     schema_revision=revision(app))
        self.before = snapshot(app)
        with reaped(restore_process(app, self.archive, mode)) as process:
            lines, self.seconds = run_to_end(process)
        self.points = markers(lines)
        self.after = snapshot(app)
        assert self.after != self.before
        # The calibration's safety backup holds the state before: restoring it in replace mode undoes a run.
        self.undo_archive = orjson.loads(latest_job(app, "restore").result)["safety_backup"]
        self.undo()

    def undo(self) -> None:
        done = self.app.test_cli_runner().invoke(args=["backup", "restore", self.undo_archive, "--mode", "replace",
                                                       "--yes"])
        assert done.exit_code == 0, done.output
        assert snapshot(self.app) == self.before


def kill_restores(tmp_path, url, mode: str, key: str) -> None:
    planned = count(ci=2, full=30)
    with app_holding(tmp_path, url, tables(**EARLIER)) as app:
        run = Restoring(tmp_path, app, mode)
        mixed, unmarked, partial_listed, missed, afters = [], [], [], [], 0
        for index in spread(planned, len(run.points), SEED):
            marker = run.points[index]
            where = f"kill at {marker[0]!r} (#{marker[1] + 1}, line {index + 1} of {len(run.points)})"
            with reaped(restore_process(app, run.archive, mode)) as process:
                if not stop_at(process, marker):
                    missed.append(where)
                    continue
                process.wait(timeout=PROCESS_TIMEOUT)
            with restarted(app, tmp_path / f"restart-{index}") as again:
                state = snapshot(again)
                job = latest_job(again, "restore")
                partial_listed += [f"{where}: {name}" for name in listed_names(again) if ".partial" in name]
            if job.status not in ("failed", "succeeded") or job.status == "failed" and "Interrupted" not in job.message:
                unmarked.append(f"{where}: {job.status} {job.message!r}")
            if state == run.before:
                continue
            if state == run.after:
                afters += 1
            else:
                mixed.append(where)
            run.undo()
        cases = planned - len(missed)
        losses = len(mixed) + len(unmarked) + len(partial_listed)
        record(f"kill-{mode}-{key}", cases=cases, losses=losses, measured=(
            f"{key}: {len(mixed)} mixed states of {cases} kills ({afters} after the commit gave the after state), "
            f"{len(unmarked)} jobs not marked failed, {len(partial_listed)} partial files listed "
            f"({len(run.points)} progress lines, a full {mode} {run.seconds:.2f} s)"))
        assert losses == 0, {"mixed": mixed, "job not failed": unmarked, "partial listed": partial_listed}
        assert not missed, f"the restore ended before these points: {missed}"


@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_sqlite_restore_killed_at_points_over_its_run(tmp_path, mode):
    kill_restores(tmp_path, f"sqlite:///{tmp_path / 'kills.db'}", mode, "sqlite")


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_postgresql_restore_killed_at_points_over_its_run(tmp_path, postgres_url, mode):
    kill_restores(tmp_path, postgres_url, mode, "postgresql")


# --- The PostgreSQL connection terminated mid-restore ------------------------------------------------

def terminate_at(run: Restoring, marker, admin) -> list[str]:
    """Freeze the restore at ``marker``, terminate its connection, let it go on; returns what went wrong."""
    app, problems = run.app, []
    with reaped(restore_process(app, run.archive, run.mode)) as process:
        assert stop_at(process, marker, signal.SIGSTOP), f"the restore ended before {marker}"
        try:
            with admin.connect() as conn:
                terminated = conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND application_name = 'cyberquest-restore'"),
                    {"name": sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database}).scalars().all()
        finally:
            process.send_signal(signal.SIGCONT)
        assert terminated == [True], f"no restore connection at {marker}"
        stderr = process.stderr.read()
        status = process.wait(timeout=PROCESS_TIMEOUT)
    if status != 1:
        problems.append(f"exit status {status}")
    # One error line, no traceback; the driver's wording of the lost connection varies with where it was
    # lost. Progress lines may still come first: rows read ahead are sent before the loss is noticed.
    errors = [line for line in stderr.strip().splitlines() if not line.startswith("progress")]
    if not (len(errors) == 1 and errors[0].startswith(
            "Error: The restore failed and was rolled back; nothing was changed (")):
        problems.append(f"stderr {errors!r}")
    if snapshot(app) != run.before:
        problems.append("the database changed")
        run.undo()
    job = latest_job(app, "restore")
    if not (job.status == "failed" and "rolled back" in job.message):
        problems.append(f"job {job.status} {job.message!r}")
    return problems


@pytest.mark.postgres
def test_postgresql_connection_terminated_mid_restore_changes_nothing(tmp_path, postgres_url):
    planned = count(ci=1, full=5)
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with app_holding(tmp_path, postgres_url, tables(**EARLIER)) as app:
        run = Restoring(tmp_path, app, "replace")
        # From the deletes (the restore's connection is open) to before the commit, less the last two lines:
        # a process frozen there may already be committing.
        messages = [message for message, _ in run.points]
        window = run.points[messages.index("Deleted the current rows"):messages.index("Committing") - 2]
        failures = {}
        for index in spread(planned, len(window), SEED):
            problems = terminate_at(run, window[index], admin)
            if problems:
                failures[window[index]] = problems
    admin.dispose()
    record("pg-terminate", cases=planned, losses=len(failures), measured=(
        f"{len(failures)} of {planned} terminated restores changed something, printed other than one error line "
        f"or left the job other than failed ({len(window)} lines to choose from)"))
    assert not failures, failures
