"""`flask backup restore` and `flask backup verify` as an operator's script sees them."""
from __future__ import annotations

import orjson
import pytest

from app.backup.archive import format
from app.backup.provenance import schema_revision
from support.archives import as_archive_rows, build_archive, expected_rows, legacy_archive, sample_tables, snapshot
from support.restoring import backup_names, create_backup


@pytest.fixture
def env(app, admin_user):
    """The archive signing key and schema revision; no API token, as the CLI needs none."""
    with app.app_context():
        return {"key": format.signing_key(app.config), "revision": schema_revision(app)}


def cli(app, *args, input=None):
    return app.test_cli_runner().invoke(args=["backup", *args], input=input)


def test_restore_a_path_in_replace_mode(app, archive):
    result = cli(app, "restore", str(archive), "--mode", "replace", "--yes")
    assert result.exit_code == 0, result.output
    assert "Restored (replace):" in result.stdout
    assert "users: 3 inserted, 0 updated, 0 skipped, 1 deleted" in result.stdout
    assert "Safety backup: cyberquest_backup_" in result.stdout
    assert as_archive_rows(app) == expected_rows(sample_tables())


def test_restore_a_listed_backup_by_name_as_json(app, archive):
    filename = create_backup(app)
    result = cli(app, "restore", filename, "--mode", "merge", "--on-conflict", "overwrite", "--yes", "--json")
    assert result.exit_code == 0, result.output
    restored = orjson.loads(result.stdout)["restore"]
    assert restored["mode"] == "merge"
    assert restored["tables"]["users"] == {"inserted": 0, "updated": 0, "skipped": 1, "deleted": 0}
    assert restored["safety_backup"] in backup_names(app)


def test_dry_run_needs_no_confirmation_and_changes_nothing(app, archive):
    before, backups = snapshot(app), backup_names(app)
    result = cli(app, "restore", str(archive), "--mode", "replace", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    preview = orjson.loads(result.stdout)["preview"]
    assert preview["tables"]["users"]["inserted"] == 3 and preview["safety_backup"] is None
    assert snapshot(app) == before and backup_names(app) == backups


def test_restore_without_yes_is_refused_with_a_usage_error(app, archive):
    before = snapshot(app)
    result = cli(app, "restore", str(archive), "--mode", "replace")
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert snapshot(app) == before


def test_tables_option_and_trust_unsigned(app, tmp_path):
    archive = legacy_archive(tmp_path / "old.zip")
    refused = cli(app, "restore", str(archive), "--mode", "merge", "--yes")
    assert refused.exit_code == 1 and "trust_unsigned" in refused.stderr
    result = cli(app, "restore", str(archive), "--mode", "merge", "--trust-unsigned", "--tables",
                 "users,contact_submissions", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert set(orjson.loads(result.stdout)["restore"]["tables"]) == {"users", "contact_submissions"}


@pytest.mark.parametrize("args, code", [
    (["--mode", "upsert", "--yes"], 2),
    (["--mode", "replace", "--on-conflict", "overwrite", "--yes"], 1),
    (["--mode", "merge", "--tables", "badges", "--yes"], 1),
])
def test_bad_options_fail_cleanly(app, archive, args, code):
    result = cli(app, "restore", str(archive), *args)
    assert result.exit_code == code
    assert "Traceback" not in result.output


def test_a_bad_archive_fails_with_one_line_on_stderr(app, env, tmp_path):
    tables = sample_tables()
    tables["users"][0]["email"] = 42
    bad = build_archive(tmp_path / "bad.zip", tables, key=env["key"], schema_revision=env["revision"])
    before, backups = snapshot(app), backup_names(app)
    result = cli(app, "restore", str(bad), "--mode", "replace", "--yes")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: Table users, row 1 (id 1): column email must be text, not the number 42."]
    assert snapshot(app) == before and backup_names(app) == backups


def test_an_unknown_file_fails(app):
    result = cli(app, "restore", "no-such-file.zip", "--mode", "merge", "--yes")
    assert result.exit_code == 1
    assert "No listed backup and no file is named 'no-such-file.zip'" in result.stderr


def test_progress_lines_go_to_stderr(app, archive):
    result = cli(app, "restore", str(archive), "--mode", "replace", "--yes", "--progress")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("progress   0.0% Taking the safety backup")
    assert any("Restoring users" in line for line in lines)
    assert lines[-1].startswith("progress 100.0%")
