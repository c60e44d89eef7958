"""BackupService: listing rules, the metadata cache, 404s, atomicity and clear failures."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app
from app.backup.archive import format
from app.backup.jobs.lock import HOSTNAME, acquire_exclusive, release_exclusive
from app.backup.jobs.runner import create_job
from app.backup.errors import BackupError, BackupNotFoundError, ConflictError, StorageError
from app.backup.catalogue import metadata_cache_info
from app.backup.service import BackupService
from app.extensions import db
from app.models import BackupRecord
from support.backup import archive_members, resign, seed_sample_rows
from support.archives import write_zip
from support.app import build_app, test_settings
from support.services import service_unavailable
from support.processes import REPO
from support.s3 import TEST_CREDENTIALS, SilentEndpoint
from support.waiting import until
from support.restoring import backup_names as listed_names


def backup_dir(app) -> Path:
    return Path(app.config["BACKUP_DIRECTORY"])


def create(app, trigger="manual", created_by="admin") -> dict:
    with app.app_context():
        return BackupService().create(trigger, created_by)


def test_create_and_list_on_every_database(tmp_path, any_database_url):
    app = build_app(tmp_path, any_database_url)
    seed_sample_rows(app)
    first = create(app, "manual", "ann")
    second = create(app, "scheduled", None)
    with app.app_context():
        backups = BackupService().list()
    with app.app_context():
        db.engine.dispose()
    assert [b["filename"] for b in backups] == [second["filename"], first["filename"]]
    newest = backups[0]
    assert set(newest) == {"filename", "size_bytes", "created_at", "created_by", "trigger", "record_counts",
                           "total_records", "signed", "verified", "pinned", "encrypted", "restore_seconds"}
    assert newest["trigger"] == "scheduled" and newest["created_by"] is None
    assert newest["total_records"] == 9 and newest["signed"] is True
    assert newest["pinned"] is False and newest["verified"] is None and newest["encrypted"] is False
    assert newest["size_bytes"] == (backup_dir(app) / newest["filename"]).stat().st_size


def test_only_archives_made_or_accepted_by_the_app_are_listed(app):
    made = create(app)
    members = archive_members(backup_dir(app) / made["filename"])
    store = backup_dir(app)
    write_zip(store / "cyberquest_backup_20200101_000000.zip", resign(members, b"someone else's key"))
    write_zip(store / "cyberquest_backup_20200101_000001.zip", {k: v for k, v in members.items()
                                                                 if k != format.METADATA_MEMBER})
    (store / "cyberquest_backup_20200101_000002.zip").write_bytes(b"garbage")
    shutil.copy(store / made["filename"], store / "my_backup.zip")
    shutil.copy(store / made["filename"], store / ".cyberquest_backup_20200101_000003.zip")
    assert listed_names(app) == [made["filename"]]

    with app.app_context():
        service = BackupService()
        for name in ("cyberquest_backup_20200101_000000.zip", "cyberquest_backup_20200101_000001.zip",
                     "cyberquest_backup_20200101_000002.zip", "my_backup.zip",
                     ".cyberquest_backup_20200101_000003.zip", "../app.db", "/etc/passwd",
                     f"../backups/{made['filename']}", "cyberquest_backup_20200101_000009.zip", ""):
            with pytest.raises(BackupNotFoundError):
                service.get(name)
        # accepting the foreign-signed archive lists it, as unsigned
        db.session.add(BackupRecord(filename="cyberquest_backup_20200101_000000.zip", accepted=True))
        db.session.commit()
        foreign = service.get("cyberquest_backup_20200101_000000.zip")
        assert foreign["signed"] is False
    assert listed_names(app) == [made["filename"], "cyberquest_backup_20200101_000000.zip"]


def test_listing_reads_each_archive_once_and_then_uses_the_cache(app):
    made = create(app)
    store = backup_dir(app)
    for i in range(1000):
        shutil.copy(store / made["filename"], store / f"cyberquest_backup_2019{i // 60 // 24 % 28 + 1:04d}"
                                                      f"_{i // 60 % 24:02d}{i % 60:02d}00.zip")
    before = metadata_cache_info()
    assert len(listed_names(app)) == 1001
    after_first = metadata_cache_info()
    assert after_first["misses"] - before["misses"] >= 1000
    assert len(listed_names(app)) == 1001
    after_second = metadata_cache_info()
    assert after_second["misses"] == after_first["misses"]
    assert after_second["hits"] - after_first["hits"] == 1001

    # a changed file (size or mtime) is read again
    target = store / made["filename"]
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 1_000_000_000))
    assert len(listed_names(app)) == 1001
    assert metadata_cache_info()["misses"] == after_second["misses"] + 1


def test_delete_removes_the_file_and_its_record(app):
    made = create(app)
    with app.app_context():
        service = BackupService()
        assert service.toggle_pin(made["filename"])["pinned"] is True
        assert service.delete(made["filename"]) == made["filename"]
        assert db.session.get(BackupRecord, made["filename"]) is None
        with pytest.raises(BackupNotFoundError):
            service.delete(made["filename"])
    assert not (backup_dir(app) / made["filename"]).exists()
    assert listed_names(app) == []


def test_pin_toggles_and_verification_is_recorded(app):
    made = create(app)
    with app.app_context():
        service = BackupService()
        assert service.toggle_pin(made["filename"])["pinned"] is True
        assert service.list()[0]["pinned"] is True
        assert service.toggle_pin(made["filename"])["pinned"] is False
        assert service.record_verification(made["filename"], True, {"checksums": "ok"})["verified"] is True
        assert service.get(made["filename"])["verified"] is True
        assert service.record_verification(made["filename"], False, {"error": "bad"})["verified"] is False


def test_progress_is_reported_from_zero_to_one(app):
    seed_sample_rows(app)
    seen = []
    with app.app_context():
        BackupService().create("manual", "admin", lambda fraction, message: seen.append((fraction, message)))
    fractions = [f for f, _ in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert any("users" in message for _, message in seen)


def test_a_database_error_midway_leaves_nothing_behind(app):
    seed_sample_rows(app)
    with app.app_context(), db.engine.begin() as conn:
        # the last table in restore order vanishes: the backup fails after writing the others
        conn.execute(sa.text("DROP TABLE password_reset_tokens"))
    with app.app_context():
        with pytest.raises(BackupError) as failure:
            BackupService().create("manual", "admin")
    assert "database could not be read" in str(failure.value)
    assert "password_reset_tokens" in str(failure.value)
    assert listed_names(app) == []
    assert os.listdir(backup_dir(app)) == []


def test_an_unwritable_store_is_a_clear_storage_error(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the backup directory should be")
    app = build_app(tmp_path, BACKUP_DIRECTORY=str(blocker / "backups"))
    with app.app_context():
        with pytest.raises(StorageError) as failure:
            BackupService().create("manual", "admin")
    assert "BACKUP_DIRECTORY" in str(failure.value)


@pytest.fixture
def tiny_disk(tmp_path):
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        service_unavailable("A 64 KiB tmpfs (mount needs root) to fill a disk", RuntimeError(done.stderr.strip()))
    yield mountpoint
    subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_full_disk_is_a_clear_storage_error_and_leaves_nothing(tmp_path, tiny_disk):
    app = build_app(tmp_path, BACKUP_DIRECTORY=str(tiny_disk))
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO contact_submissions (name, email, message, created_at, is_read) "
                             "VALUES ('x', 'x@example.com', :m, '2024-01-01 00:00:00', 0)"),
                     [{"m": os.urandom(40_000).hex()} for _ in range(8)])
    with app.app_context():
        with pytest.raises(StorageError) as failure:
            BackupService().create("manual", "admin")
        assert "full" in str(failure.value) and "BACKUP_DIRECTORY" in str(failure.value)
        assert BackupService().list() == []
    assert os.listdir(tiny_disk) == []


def test_a_second_backup_while_one_runs_is_a_conflict(app):
    with app.app_context():
        running = create_job("restore", "someone")
        acquire_exclusive(running.id)
        with pytest.raises(ConflictError) as conflict:
            BackupService().start_create("manual", "admin", wait=True)
        assert conflict.value.extra["job"]["id"] == running.id
        release_exclusive(running.id)
        assert BackupService().start_create("manual", "admin", wait=True).status == "succeeded"


WRITER = textwrap.dedent("""
    import sys, time
    from app.backup.storage.local import LocalStorage
    storage = LocalStorage(sys.argv[1])
    with storage.atomic_writer(["cyberquest_backup_20240101_000000.zip"]) as pending:
        pending.file.write(b"half an archive")
        pending.file.flush()
        print("writing", flush=True)
        time.sleep(600)
""")


def test_a_killed_writer_leaves_no_listed_file_and_the_next_start_removes_its_partial(tmp_path):
    app = build_app(tmp_path)
    store = backup_dir(app)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    try:
        assert writer.stdout.readline().strip() == "writing"
        partials = os.listdir(store)
        assert len(partials) == 1 and partials[0].startswith(".cyberquest_backup_20240101_000000.zip.partial-")
        assert listed_names(app) == []
        create_app(test_settings(tmp_path))  # a start while the writer lives keeps its file
        assert os.listdir(store) == partials
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert listed_names(app) == []
    create_app(test_settings(tmp_path))
    assert os.listdir(store) == []


def test_start_up_marks_jobs_of_dead_processes_failed(tmp_path):
    app = build_app(tmp_path)
    with app.app_context():
        job = create_job("backup", "admin")
        job.status, job.owner = "running", f"{HOSTNAME}:{2**22 + 12345}"
        db.session.commit()
        job_id = job.id
    restarted = create_app(test_settings(tmp_path))
    with restarted.app_context():
        job = BackupService.job(job_id)
    with restarted.app_context():
        db.engine.dispose()
    assert job["status"] == "failed" and "Interrupted" in job["message"]
    with app.app_context():
        db.engine.dispose()


def test_start_up_on_an_unmigrated_database_does_nothing(tmp_path):
    app = create_app(test_settings(tmp_path))
    with app.app_context():
        assert not sa.inspect(db.engine).has_table("backup_jobs")
        db.engine.dispose()


def test_without_hard_links_the_name_is_reserved_by_exclusive_create(tmp_path):
    from app.backup.storage.local import LocalStorage

    storage = LocalStorage(tmp_path)
    (tmp_path / "cyberquest_backup_20240101_000000.zip").write_bytes(b"taken")
    partial = tmp_path / ".cyberquest_backup_20240101_000000.zip.partial-x"
    partial.write_bytes(b"complete archive")
    name = storage._publish_by_rename(partial, "cyberquest_backup_20240101_000000.zip",
                                      iter(["cyberquest_backup_20240101_000000_2.zip"]))
    assert name == "cyberquest_backup_20240101_000000_2.zip"
    assert (tmp_path / name).read_bytes() == b"complete archive" and not partial.exists()
    assert (tmp_path / "cyberquest_backup_20240101_000000.zip").read_bytes() == b"taken"


def test_start_up_does_not_wait_on_a_store_that_stopped_answering(tmp_path, monkeypatch):
    """Every command, worker and server start cleans up the store's unfinished uploads; against an S3
    endpoint that accepts connections and never answers that clean-up would hold the start for
    BACKUP_S3_TIMEOUT (each retry again), so it runs in the background and start-up goes on."""
    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with SilentEndpoint() as silent:
        started = time.monotonic()
        app = build_app(tmp_path, BACKUP_STORAGE="s3", BACKUP_S3_BUCKET="cq-test", BACKUP_S3_ENDPOINT_URL=silent.endpoint_url,
                        BACKUP_S3_TIMEOUT=30)
        took = time.monotonic() - started
        assert took < 15, f"create_app took {took:.0f} s against a silent store (BACKUP_S3_TIMEOUT=30)"
        until(lambda: silent.connections > 0, 30, "the start-up clean-up asking the store")
        with app.app_context():
            db.engine.dispose()
