"""Verification: checksums, signature and a test restore into a scratch database, by HTTP and CLI."""
from __future__ import annotations

import shutil

import orjson

from app.extensions import db
from app.models import BackupJob
from support.archives import build_archive, legacy_archive, sample_tables, snapshot
from support.restoring import create_backup


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
