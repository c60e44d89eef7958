"""Verification: checksums, signature and a test restore into a scratch database, by HTTP and CLI."""
from __future__ import annotations

import hashlib
import shutil

import orjson
import pytest

from app.backup.archive import format
from app.backup.jobs.lock import VERIFY_LOCK, acquire_exclusive, release_exclusive
from app.backup.jobs.runner import create_job
from app.extensions import db
from app.models import BackupJob, BackupRecord
from support.archives import build_archive, legacy_archive, sample_tables, sha256, snapshot, write_zip
from support.backup import archive_members, resign, seed_sample_rows
from support.restoring import backup_names, create_backup, restore_listed
from support.web import wait_for_job


def put_in_store(app, archive, name="cyberquest_backup_20250101_000000.zip") -> str:
    shutil.copy(archive, f"{app.config['BACKUP_DIRECTORY']}/{name}")
    return name


def verify(client, headers, filename):
    return client.post(f"/admin/verify-backup/{filename}", headers=headers)


def listed(client, headers, filename) -> dict:
    backups = client.get("/admin/system-backup", headers=headers).get_json()["backups"]
    return next(b for b in backups if b["filename"] == filename)


def test_a_good_backup_verifies_and_is_marked_verified(app, client, env):
    filename = create_backup(app)
    before = snapshot(app)
    response = verify(client, env["headers"], filename)
    assert response.status_code == 200
    verification = response.get_json()["verification"]
    assert verification["ok"] is True and verification["error"] is None
    assert verification["checksums"] == "ok" and verification["signature"] == "valid"
    assert verification["test_restore"]["users"] == {"expected": 1, "restored": 1}
    assert verification["record_counts"]["users"] == 1
    assert listed(client, env["headers"], filename)["verified"] is True
    assert snapshot(app) == before
    with app.app_context():
        assert db.session.query(BackupJob).filter_by(kind="verify", status="succeeded").count() == 1


def test_a_damaged_backup_fails_verification_and_is_marked(app, client, env, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=env["key"], schema_revision=env["revision"],
                            change_data=lambda d: d.replace(b"bob@example.com", b"rob@example.com"))
    filename = put_in_store(app, archive)
    verification = verify(client, env["headers"], filename).get_json()["verification"]
    assert verification["ok"] is False
    assert verification["checksums"] == "failed"
    assert "database_backup.json fails its checksum" in verification["error"]
    assert listed(client, env["headers"], filename)["verified"] is False


def test_a_backup_with_a_broken_foreign_key_fails_its_test_restore(app, client, env, tmp_path):
    tables = sample_tables()
    tables["password_reset_tokens"][0]["user_id"] = 40
    archive = build_archive(tmp_path / "a.zip", tables, key=env["key"], schema_revision=env["revision"])
    filename = put_in_store(app, archive)
    verification = verify(client, env["headers"], filename).get_json()["verification"]
    assert verification["ok"] is False
    assert "user_id 40 refers to a users row that does not exist" in verification["error"]


def test_verifying_an_unknown_backup_is_404(app, client, env):
    assert verify(client, env["headers"], "cyberquest_backup_20990101_000000.zip").status_code == 404


def test_verify_in_a_browser_flashes_the_outcome(app, admin_client, env):
    from support.web import csrf_token_from

    filename = create_backup(app)
    token = csrf_token_from(admin_client.get("/admin/").get_data(as_text=True))
    response = admin_client.post(f"/admin/verify-backup/{filename}", data={"csrf_token": token})
    assert response.status_code == 302
    assert f"Backup {filename} verified." in admin_client.get("/admin/system-backup").get_data(as_text=True)


def test_cli_verify_exits_0_for_a_good_backup_and_1_for_a_bad_one(app, env, tmp_path):
    runner = app.test_cli_runner()
    filename = create_backup(app)
    good = runner.invoke(args=["backup", "verify", filename])
    assert good.exit_code == 0, good.output
    assert good.stdout.strip().endswith("OK")
    bad_archive = build_archive(tmp_path / "bad.zip", key=env["key"], schema_revision=env["revision"],
                                change_data=lambda d: d[:-5])
    bad = runner.invoke(args=["backup", "verify", str(bad_archive), "--json"])
    assert bad.exit_code == 1
    assert orjson.loads(bad.stdout)["verification"]["ok"] is False
    assert bad.stderr.startswith("Error: bad.zip is bad:")


def test_cli_verify_of_an_original_archive_needs_trust_unsigned(app, env, tmp_path):
    archive = legacy_archive(tmp_path / "old.zip")
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["backup", "verify", str(archive)])
    assert refused.exit_code == 1 and "not signed by this instance" in refused.stderr
    accepted = runner.invoke(args=["backup", "verify", str(archive), "--trust-unsigned", "--json"])
    assert accepted.exit_code == 0, accepted.output
    verification = orjson.loads(accepted.stdout)["verification"]
    assert verification["signature"] == "absent" and verification["checksums"] == "absent"
    assert verification["record_counts"]["users"] == 3


def test_a_verification_records_how_long_its_test_restore_took(app, client, env):
    filename = create_backup(app)
    assert listed(client, env["headers"], filename)["restore_seconds"] is None
    verification = verify(client, env["headers"], filename).get_json()["verification"]
    assert isinstance(verification["restore_seconds"], float) and verification["restore_seconds"] > 0
    assert listed(client, env["headers"], filename)["restore_seconds"] == verification["restore_seconds"]


# --- A listed backup is what was recorded (issue 15, item 4) ---------------------------------------

def overwrite_with_recomputed_checksums(app, filename: str, *, keep_signature: bool) -> None:
    """Replace a listed backup's file with altered rows whose checksums are recomputed (as an attacker can)."""
    path = f"{app.config['BACKUP_DIRECTORY']}/{filename}"
    members = archive_members(path)
    data = members[format.DATA_MEMBER].replace(b'"username":"ann"', b'"username":"mallory"')
    assert data != members[format.DATA_MEMBER]
    metadata = orjson.loads(members[format.METADATA_MEMBER])
    metadata["checksums"][format.DATA_MEMBER] = sha256(data)
    if not keep_signature:
        del metadata["signature"]
    write_zip(path, {format.DATA_MEMBER: data, format.METADATA_MEMBER: orjson.dumps(metadata),
                     format.APP_INFO_MEMBER: members[format.APP_INFO_MEMBER]})


def test_the_sha256_of_a_new_backup_is_recorded(app, env):
    filename = create_backup(app)
    with app.app_context():
        recorded = db.session.get(BackupRecord, filename).sha256
    with open(f"{app.config['BACKUP_DIRECTORY']}/{filename}", "rb") as fh:
        assert recorded == hashlib.sha256(fh.read()).hexdigest()


@pytest.mark.parametrize("keep_signature", [False, True], ids=["signature-removed", "signature-kept"])
def test_a_listed_backup_overwritten_with_recomputed_checksums_fails_verify(app, client, env, keep_signature):
    seed_sample_rows(app)
    filename = create_backup(app)
    overwrite_with_recomputed_checksums(app, filename, keep_signature=keep_signature)
    assert filename in backup_names(app)  # still listed: its record says it was made here

    verification = verify(client, env["headers"], filename).get_json()["verification"]
    assert verification["ok"] is False
    assert verification["sha256"] == "failed"
    assert "not the file that was recorded" in verification["error"]
    assert listed(client, env["headers"], filename)["verified"] is False

    cli = app.test_cli_runner().invoke(args=["backup", "verify", filename])
    assert cli.exit_code == 1 and "not the file that was recorded" in cli.stderr


def test_a_restore_of_a_listed_backup_that_was_overwritten_is_refused_and_changes_nothing(app, client, env):
    seed_sample_rows(app)
    filename = create_backup(app)
    overwrite_with_recomputed_checksums(app, filename, keep_signature=False)
    before = snapshot(app)
    response = restore_listed(client, env["headers"], filename, mode="replace", trust_unsigned="1")
    assert response.status_code == 422
    assert "not the file that was recorded" in response.get_json()["error"]
    assert snapshot(app) == before


def test_a_signature_present_but_invalid_fails_verification_even_for_an_accepted_backup(app, client, env):
    made = create_backup(app)
    store = app.config["BACKUP_DIRECTORY"]
    foreign = "cyberquest_backup_20200101_000000.zip"
    write_zip(f"{store}/{foreign}", resign(archive_members(f"{store}/{made}"), b"someone else's key"))
    with app.app_context():
        db.session.add(BackupRecord(filename=foreign, accepted=True))  # listed before hashes were recorded
        db.session.commit()
    verification = verify(client, env["headers"], foreign).get_json()["verification"]
    assert verification["signature"] == "invalid" and verification["sha256"] == "not recorded"
    assert verification["ok"] is False
    assert "its signature does not match this instance's key" in verification["error"]


def test_verifying_a_backup_listed_before_hashes_were_recorded_records_its_hash(app, client, env):
    filename = create_backup(app)
    with app.app_context():
        db.session.get(BackupRecord, filename).sha256 = None
        db.session.commit()
    first = verify(client, env["headers"], filename).get_json()["verification"]
    assert first["ok"] is True and first["sha256"] == "not recorded"
    with app.app_context():
        assert db.session.get(BackupRecord, filename).sha256 is not None
    assert verify(client, env["headers"], filename).get_json()["verification"]["sha256"] == "ok"


# --- One verification at a time, off the request thread (issue 15, item 11) ------------------------------

def test_verification_runs_as_a_background_job_the_request_can_leave_to_run(app, client, env):
    seed_sample_rows(app)
    filename = create_backup(app)
    response = client.post(f"/admin/verify-backup/{filename}", headers=env["headers"], data={"wait": "0"})
    assert response.status_code == 202
    job = response.get_json()["job"]
    assert job["kind"] == "verify" and job["status"] in ("queued", "running")
    assert response.headers["Location"].endswith(f"/admin/backup-jobs/{job['id']}")
    finished = wait_for_job(client, env["headers"], response.headers["Location"])
    assert finished["status"] == "succeeded" and finished["result"]["ok"] is True
    assert listed(client, env["headers"], filename)["verified"] is True


def test_a_second_verification_while_one_runs_is_409_with_that_job(app, client, env):
    filename = create_backup(app)
    with app.app_context():
        running = create_job("verify", "someone")
        acquire_exclusive(running.id, VERIFY_LOCK)
        running_id = running.id
    response = verify(client, env["headers"], filename)
    assert response.status_code == 409
    assert response.get_json()["job"]["id"] == running_id
    assert "Another verification is running" in response.get_json()["error"]
    cli = app.test_cli_runner().invoke(args=["backup", "verify", filename])
    assert cli.exit_code == 1 and "Another verification is running" in cli.stderr
    # A verification takes nothing from backups and restores: they still run.
    assert client.post("/admin/create-backup", headers=env["headers"], data={"wait": "1"}).status_code == 201
    with app.app_context():
        release_exclusive(running_id, VERIFY_LOCK)
        assert db.session.query(BackupJob).filter_by(kind="verify").count() == 1
    assert verify(client, env["headers"], filename).status_code == 200
