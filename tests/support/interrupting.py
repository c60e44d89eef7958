"""Interrupting the app part-way: where (seeded points spread over a run), how (SIGKILL at a progress line
or after a delay), and what the next start of the app finds.

The reliability tests kill real ``flask`` processes (``support.processes``) and then
compare the database and the backup store with what they held before.
"""
from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from app.backup.archive import format
from app.backup.provenance import schema_revision
from app.backup.service import BackupService
from app.backup.storage.local import PARTIAL_MARKER
from app.extensions import db
from app.models import BackupJob
from support.app import build_app
from support.archives import build_archive
from support.processes import progress_lines, progress_message

BACKUP_NAME = re.compile(r"cyberquest_backup_\S+?\.zip")
# How long any one child may take before the test gives up on it (a hang is a failure, not a wait).
PROCESS_TIMEOUT = 300


def spread(count: int, size: int, seed: int) -> list[int]:
    """``count`` distinct indexes of ``range(size)`` spread over all of it, in order: ``range(size)`` cut in
    ``count`` equal slices and one index drawn from each by a generator seeded with ``seed`` (so a
    failure can be replayed). Needs ``count <= size``."""
    assert 0 < count <= size, (count, size)
    rng = random.Random(seed)
    return [rng.randrange(size * i // count, size * (i + 1) // count) for i in range(count)]


def spread_fractions(count: int, seed: int) -> list[float]:
    """``count`` fractions of a run in (0, 1), one drawn from each of ``count`` equal slices (seeded), in order."""
    rng = random.Random(seed)
    return [(i + rng.random()) / count for i in range(count)]


def point_of(line: str) -> str:
    """A progress line as a point of the run: its message without the percentage (how far a restore has read
    ahead varies) and with any backup's filename as ``<backup>`` (a safety backup is named by the second)."""
    return BACKUP_NAME.sub("<backup>", progress_message(line))


def markers(lines: list[str]) -> list[tuple[str, int]]:
    """Each progress line of a run as (``point_of`` it, how many times that point came before): a point of
    the run that a later run of the same work passes too."""
    seen: Counter = Counter()
    points = []
    for line in lines:
        message = point_of(line)
        points.append((message, seen[message]))
        seen[message] += 1
    return points


def run_to_end(process: subprocess.Popen) -> tuple[list[str], float]:
    """Let a ``--progress`` child run to its end (exit status 0 asserted); returns its progress lines and the
    seconds from its first progress line to its exit."""
    lines, first = [], None
    for line in progress_lines(process):
        first = first or time.monotonic()
        lines.append(line)
    rest = process.stderr.read()
    status = process.wait(timeout=PROCESS_TIMEOUT)
    assert status == 0, (status, process.stdout.read(), rest)
    assert first is not None, "the child printed no progress line"
    return lines, time.monotonic() - first


def stop_at(process: subprocess.Popen, marker: tuple[str, int], sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to a ``--progress`` child as soon as it prints the progress line ``marker`` (see
    ``markers``); True if it did, False if the child's stderr ended first."""
    message, before = marker
    for line in progress_lines(process):
        if point_of(line) == message:
            if before == 0:
                process.send_signal(sig)
                return True
            before -= 1
    return False


def kill_after_first_line(start, delay: float, tries: int = 5) -> tuple[int, float]:
    """SIGKILL the ``--progress`` child ``start()`` makes ``delay`` seconds after its first progress line (the
    delay is the point of the run being tried). A child that ends before the kill (runs vary in speed) is
    started again with a delay 20 % shorter, up to ``tries`` times; returns how many runs were made and the
    delay that found the child running (an AssertionError if none did)."""
    for attempt in range(1, tries + 1):
        with reaped(start()) as process:
            next(progress_lines(process), None)
            time.sleep(delay)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            if process.wait(timeout=PROCESS_TIMEOUT) == -signal.SIGKILL:
                return attempt, delay
        delay *= 0.8
    raise AssertionError(f"the child ended before every kill ({tries} tries, down to {delay:.3f} s)")


@contextmanager
def reaped(process: subprocess.Popen):
    """``process``, killed and waited for on the way out if it is still running (a failing test leaves no child)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=PROCESS_TIMEOUT)
        process.stdout.close()
        process.stderr.close()


@contextmanager
def app_holding(tmp_path: Path, url: str | None, tables: dict, **settings):
    """A migrated app on ``url`` (None: a SQLite file) with ``settings``, whose data tables hold ``tables`` (a
    signed archive of them restored with `flask backup restore`, so a safety backup is listed too); the
    engine is disposed after."""
    app = build_app(tmp_path, url, **settings)
    try:
        loaded = build_archive(tmp_path / "holding.zip", tables, key=signing_key(app),
                               schema_revision=revision(app))
        done = app.test_cli_runner().invoke(args=["backup", "restore", str(loaded), "--mode", "replace", "--yes"])
        assert done.exit_code == 0, done.output
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def signing_key(app) -> bytes:
    """The key ``app`` signs archives with."""
    return format.signing_key(app.config)


def revision(app) -> str | None:
    """The schema revision ``app``'s archives record."""
    with app.app_context():
        return schema_revision(app)


@contextmanager
def restarted(app, scratch: Path):
    """The app started again on the same database and backup directory (its crash recovery runs as at any
    start); ``scratch`` is a directory for what else the start needs. Disposed after."""
    again = build_app(scratch, app.config["SQLALCHEMY_DATABASE_URI"], BACKUP_DIRECTORY=app.config["BACKUP_DIRECTORY"])
    try:
        yield again
    finally:
        with again.app_context():
            db.session.remove()
            db.engine.dispose()


def latest_job(app, kind: str) -> BackupJob | None:
    """The newest job of ``kind`` (detached from the session)."""
    with app.app_context():
        job = db.session.query(BackupJob).filter_by(kind=kind).order_by(BackupJob.created_at.desc()).first()
        if job is not None:
            db.session.expunge(job)
        return job


def listed_names(app) -> list[str]:
    """The filenames ``app`` lists."""
    with app.app_context():
        return [backup["filename"] for backup in BackupService().list()]


def partial_files(app) -> list[str]:
    """The unfinished (partial) archive files in ``app``'s backup directory."""
    directory = Path(app.config["BACKUP_DIRECTORY"])
    return sorted(path.name for path in directory.iterdir() if PARTIAL_MARKER in path.name)
