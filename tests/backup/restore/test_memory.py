"""Memory stays flat: a restore streams its archive, so ten times the rows barely moves peak RSS."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.backup.archive import format
from app.backup.provenance import schema_revision
from app.extensions import db
from support.app import build_app
from support.archives import build_archive, generated_tables
from support.processes import FLASK, REPO as ROOT, flask_environment

pytestmark = pytest.mark.slow


def peak_rss_mb(app, archive: Path) -> float:
    env = flask_environment(app)
    done = subprocess.run(["/usr/bin/time", "-f", "%M", FLASK, "backup", "restore", str(archive), "--mode",
                           "replace", "--yes"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def test_ten_times_the_rows_adds_little_memory(tmp_path):
    app = build_app(tmp_path)
    try:
        with app.app_context():
            key, revision = format.signing_key(app.config), schema_revision(app)
        small = build_archive(tmp_path / "small.zip", generated_tables(users=3_000, attempts=25_000),
                              key=key, schema_revision=revision)
        large = build_archive(tmp_path / "large.zip", generated_tables(users=30_000, attempts=250_000),
                              key=key, schema_revision=revision)
        small_mb, large_mb = peak_rss_mb(app, small), peak_rss_mb(app, large)
    finally:
        with app.app_context():
            db.engine.dispose()
    # The large archive holds ~300k rows (~90 MB of JSON); loaded whole it would add several hundred MB.
    # What does grow is bounded: SQLite's page cache (16 MB) and index-build sorter fill up.
    assert large_mb - small_mb < 60, (small_mb, large_mb)
    assert large_mb < 200
