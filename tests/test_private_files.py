"""Files on disk are private: instance secrets and the SQLite database 0600 in 0700 directories,
the secret written so that workers starting together agree, and short keys refused at start-up."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from config import ConfigError
from support.app import build_app, test_settings

REPO = Path(__file__).resolve().parent.parent
WORKERS = 8
ROUNDS = 25

# Each worker makes the instance's secret in one fresh directory per line it reads, so the parent
# starts every round in all workers at once and Python's start-up is paid once.
WORKER = """
import sys
from pathlib import Path
from config import instance_secret_key
for line in sys.stdin:
    print(instance_secret_key(Path(line.strip())), flush=True)
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_workers_starting_together_agree_on_one_private_secret_key(tmp_path):
    workers = [subprocess.Popen([sys.executable, "-c", WORKER], cwd=REPO, text=True, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE) for _ in range(WORKERS)]
    try:
        for round_number in range(ROUNDS):
            directory = tmp_path / f"instance-{round_number}"
            for worker in workers:
                worker.stdin.write(f"{directory}\n")
            for worker in workers:
                worker.stdin.flush()
            keys = [worker.stdout.readline().strip() for worker in workers]
            assert len(set(keys)) == 1 and len(keys[0]) == 64, keys
            assert mode(directory) == 0o700
            assert mode(directory / "secret_key") == 0o600
            assert [p.name for p in directory.iterdir()] == ["secret_key"]  # no temporary file left behind
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait(timeout=60)
            worker.stdout.close()


def test_the_sqlite_database_and_its_directory_are_created_private(tmp_path):
    database = tmp_path / "instance" / "cyberquest.db"
    app = build_app(tmp_path, f"sqlite:///{database}")
    try:
        assert mode(database.parent) == 0o700
        # The write-ahead log and shared-memory files SQLite makes take the database's mode.
        created = [database] + [p for p in database.parent.iterdir() if p.name.endswith(("-wal", "-shm"))]
        assert len(created) == 3, created
        assert {p.name: mode(p) for p in created} == {p.name: 0o600 for p in created}
    finally:
        with app.app_context():
            from app.extensions import db

            db.engine.dispose()


@pytest.mark.parametrize("name", ["SECRET_KEY", "BACKUP_SIGNING_KEY"])
def test_a_key_shorter_than_32_bytes_stops_start_up_naming_it(tmp_path, name):
    with pytest.raises(ConfigError, match=name):
        create_app(test_settings(tmp_path, **{name: "x" * 31}))
    create_app(test_settings(tmp_path, **{name: "x" * 32}))


def test_flask_refuses_a_short_secret_key_from_the_environment_in_one_line(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MAIL_", "BACKUP_", "SECRET_KEY"))}
    environ.update(FLASK_APP="wsgi", SECRET_KEY="too-short", DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}",
                   ENABLE_AUTO_BACKUP="false", BACKUP_DIRECTORY=str(tmp_path / "backups"))
    result = subprocess.run([sys.executable, "-m", "flask", "routes"], cwd=REPO, env=environ, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "SECRET_KEY" in result.stderr and "32 bytes" in result.stderr and "Traceback" not in result.stderr
