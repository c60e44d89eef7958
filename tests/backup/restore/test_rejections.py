"""Every way a restore request can be refused, each checked to change nothing.

Archives are uploaded through ``POST /admin/restore-backup`` with an admin API
token and ``wait=1``; the answer must carry the contract's status and a message
naming the problem, and the database, the API tokens and the backup list must
be exactly as before.
"""
from __future__ import annotations

import struct
import zipfile

import orjson
import pytest

from app.backup.archive import format
from app.backup.service import BackupService
from app.extensions import db
from app.models import ContactSubmission
from support.archives import build_archive, data_bytes, legacy_archive, sample_tables, snapshot, write_zip
from support.restoring import backup_names, restore_upload


@pytest.fixture
def live(app, env):
    """A database with some rows of its own, and what a test needs to build archives for it."""
    from app.cli import create_account

    with app.app_context():
        create_account("carol", "carol@example.com", "carol-password-1", is_admin=False)
        db.session.add(ContactSubmission(name="Kept", email="kept@example.com", message="still here"))
        db.session.commit()
    return env


def assert_refused(app, client, live, archive, status, *fragments, **fields):
    before, backups = snapshot(app), backup_names(app)
    response = restore_upload(client, live["headers"], archive, **fields)
    body = response.get_json()
    assert response.status_code == status, body
    for fragment in fragments:
        assert fragment in body["error"], body["error"]
    assert snapshot(app) == before
    assert backup_names(app) == backups
    return body["error"]


def tables_with(change):
    tables = sample_tables()
    change(tables)
    return tables


def patch_declared_size(path, member: str, size: int) -> None:
    """Make the ZIP directory claim ``size`` uncompressed bytes for ``member`` (a lying header)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    struct.pack_into("<L", raw, info.header_offset + 22, size)
    position = raw.find(b"PK\x01\x02")
    while position != -1:
        name_length = struct.unpack_from("<H", raw, position + 28)[0]
        if raw[position + 46: position + 46 + name_length].decode() == member:
            struct.pack_into("<L", raw, position + 24, size)
        position = raw.find(b"PK\x01\x02", position + 4)
    path.write_bytes(bytes(raw))


# --- the request itself ---------------------------------------------------------------------------

def test_empty_upload_is_400(app, client, live):
    assert_refused(app, client, live, b"", 400, "empty")


def test_upload_larger_than_max_backup_size_is_413(app, client, live, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"])
    app.config["MAX_BACKUP_SIZE"] = archive.stat().st_size - 1
    assert_refused(app, client, live, archive, 413, "MAX_BACKUP_SIZE")


def test_stored_backup_larger_than_max_backup_size_is_413(app, client, live):
    with app.app_context():
        filename = BackupService().create("manual", "admin")["filename"]
        size = BackupService().get(filename)["size_bytes"]
    app.config["MAX_BACKUP_SIZE"] = size - 1
    before = snapshot(app)
    response = client.post("/admin/restore-backup", headers=live["headers"],
                           data={"filename": filename, "mode": "merge", "confirm": "merge", "wait": "1"})
    assert response.status_code == 413
    assert "MAX_BACKUP_SIZE" in response.get_json()["error"]
    assert snapshot(app) == before


# --- the ZIP ---------------------------------------------------------------------------------------

def test_not_a_zip_is_422(app, client, live):
    assert_refused(app, client, live, b"this is not a zip file at all", 422, "not a valid ZIP")


def test_truncated_zip_is_422(app, client, live, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"])
    assert_refused(app, client, live, archive.read_bytes()[:-200], 422, "ZIP")


def test_missing_member_is_422(app, client, live, tmp_path):
    archive = write_zip(tmp_path / "a.zip", [(format.DATA_MEMBER, data_bytes(sample_tables())),
                                             (format.METADATA_MEMBER, b"{}")])
    assert_refused(app, client, live, archive, 422, "lacks app_info.json")


def test_unexpected_member_is_422(app, client, live, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"],
                            extra_members=[("notes.txt", b"hello")])
    assert_refused(app, client, live, archive, 422, "unexpected members 'notes.txt'")


@pytest.mark.parametrize("name", ["../database_backup.json", "/etc/cron.d/evil", "a/../../b.json", "C:/x.json"])
def test_unsafe_member_name_is_422(app, client, live, tmp_path, name):
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"],
                            extra_members=[(name, b"{}")])
    assert_refused(app, client, live, archive, 422, "unsafe path", repr(name))


def test_zip_bomb_by_declared_ratio_is_413(app, client, live, tmp_path):
    bomb = b'{"users":[' + b" " * (40 * 1024 * 1024) + b"]}"
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"], data=bomb,
                            metadata_changes={"tables": ["users"], "record_counts": {"users": 0},
                                              "total_records": 0})
    assert_refused(app, client, live, archive, 413, "zip bomb")


def test_zip_bomb_with_lying_header_is_stopped_while_streaming(app, client, live, tmp_path):
    bomb = b'{"users":[' + b" " * (40 * 1024 * 1024) + b"]}"
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"], data=bomb,
                            metadata_changes={"tables": ["users"], "record_counts": {"users": 0},
                                              "total_records": 0})
    with zipfile.ZipFile(archive) as zf:
        compressed = zf.getinfo(format.DATA_MEMBER).compress_size
    patch_declared_size(archive, format.DATA_MEMBER, compressed * 3)
    assert_refused(app, client, live, archive, 413, "decompresses at more than 100:1")


def test_decompressed_size_cap_is_413(app, client, live, tmp_path):
    app.config["BACKUP_MAX_DECOMPRESSED_SIZE"] = 1024
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"])
    assert_refused(app, client, live, archive, 413, "past the limit")


# --- the metadata ------------------------------------------------------------------------------------

def test_unknown_format_version_is_422(app, client, live, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"],
                            metadata_changes={"format_version": 2})
    assert_refused(app, client, live, archive, 422, "format_version 2 is not supported")


def test_unknown_legacy_version_is_422(app, client, live, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=None, metadata_removals=("format_version",),
                            metadata_changes={"version": "3.0"})
    assert_refused(app, client, live, archive, 422, "version '3.0' is not supported", trust_unsigned="1")


def test_metadata_that_is_not_json_is_422(app, client, live, tmp_path):
    archive = write_zip(tmp_path / "a.zip", [(format.DATA_MEMBER, b"{}"), (format.METADATA_MEMBER, b"{nope"),
                                             (format.APP_INFO_MEMBER, b"{}")])
    assert_refused(app, client, live, archive, 422, "backup_metadata.json is not valid JSON")


@pytest.mark.parametrize("trust", ["0", "1"])
def test_data_checksum_mismatch_is_422_whatever_trust_unsigned_says(app, client, live, tmp_path, trust):
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"],
                            change_data=lambda d: d.replace(b"zoe@example.com", b"zoe@example.org"))
    assert_refused(app, client, live, archive, 422, "database_backup.json fails its checksum",
                   trust_unsigned=trust)


def test_damage_that_breaks_the_json_is_reported_as_a_checksum_failure(app, client, live, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"],
                            change_data=lambda d: d.replace(b'"is_admin":false', b'"is_admin":fals'))
    assert_refused(app, client, live, archive, 422, "fails its checksum")


def test_app_info_checksum_mismatch_is_422(app, client, live, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"],
                            metadata_changes={"checksums": {format.DATA_MEMBER: "sha256:" + "0" * 64,
                                                            format.APP_INFO_MEMBER: "sha256:" + "0" * 64}})
    assert_refused(app, client, live, archive, 422, "app_info.json fails its checksum", trust_unsigned="1")


def test_unsigned_archive_needs_trust_unsigned(app, client, live, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=None, schema_revision=live["revision"])
    assert_refused(app, client, live, archive, 422, "not signed", "trust_unsigned=1")


def test_archive_signed_with_another_key_needs_trust_unsigned(app, client, live, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=b"another-instance", schema_revision=live["revision"])
    assert_refused(app, client, live, archive, 422, "signature does not match")


def test_metadata_changed_after_signing_is_refused(app, client, live, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"])
    with zipfile.ZipFile(archive) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    metadata = orjson.loads(members[format.METADATA_MEMBER])
    metadata["created_by"] = "mallory"
    members[format.METADATA_MEMBER] = orjson.dumps(metadata)
    write_zip(archive, list(members.items()))
    assert_refused(app, client, live, archive, 422, "signature does not match")


def test_original_cyberquest_archive_needs_trust_unsigned(app, client, live, tmp_path):
    assert_refused(app, client, live, legacy_archive(tmp_path / "a.zip"), 422, "original CyberQuest",
                   "trust_unsigned=1")


def test_newer_schema_revision_is_refused(app, client, live, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision="ffffffffffff")
    assert_refused(app, client, live, archive, 422, "schema revision ffffffffffff", "newer")


def test_record_counts_that_do_not_match_the_rows_are_refused(app, client, live, tmp_path):
    counts = {name: len(rows) for name, rows in sample_tables().items()}
    counts["users"] += 1
    tables = sample_tables()
    archive = build_archive(tmp_path / "a.zip", tables, key=live["key"], schema_revision=live["revision"],
                            metadata_changes={"record_counts": counts, "total_records": sum(counts.values())})
    assert_refused(app, client, live, archive, 422, "holds 3 rows of users, but the metadata says 4")


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "trusted-unsigned"])
def test_metadata_that_disagrees_with_itself_is_refused_naming_the_table(app, client, live, tmp_path, signed):
    # issue 15, item 12: record_counts names a table its table list lacks (and one the instance lacks too).
    counts = {**{name: len(rows) for name, rows in sample_tables().items()}, "secrets": 0}
    archive = build_archive(tmp_path / "a.zip", key=live["key"] if signed else None,
                            schema_revision=live["revision"],
                            metadata_changes={"record_counts": counts, "total_records": sum(counts.values())})
    assert_refused(app, client, live, archive, 422, "record_counts names 'secrets', which its table list lacks",
                   trust_unsigned="1")
    listed_only = {name: len(rows) for name, rows in sample_tables().items() if name != "users"}
    archive = build_archive(tmp_path / "b.zip", key=live["key"] if signed else None,
                            schema_revision=live["revision"],
                            metadata_changes={"record_counts": listed_only,
                                              "total_records": sum(listed_only.values())})
    assert_refused(app, client, live, archive, 422, "table list names 'users', which its record_counts lacks",
                   trust_unsigned="1")


def test_a_table_listed_twice_is_refused_naming_it(app, client, live, tmp_path):
    archive = build_archive(tmp_path / "a.zip", key=live["key"], schema_revision=live["revision"],
                            metadata_changes={"tables": list(sample_tables()) + ["users"]})
    assert_refused(app, client, live, archive, 422, "table list names 'users' more than once")


# --- the rows -------------------------------------------------------------------------------------------

def refused_rows(app, client, live, tmp_path, change, *fragments, mode="replace"):
    archive = build_archive(tmp_path / "a.zip", tables_with(change), key=live["key"],
                            schema_revision=live["revision"])
    return assert_refused(app, client, live, archive, 422, *fragments, mode=mode, confirm=mode)


def test_unknown_table_is_named(app, client, live, tmp_path):
    refused_rows(app, client, live, tmp_path, lambda t: t.update(badges=[{"id": 1}]), "unknown table(s) badges")


@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_unknown_column_is_named(app, client, live, tmp_path, mode):
    refused_rows(app, client, live, tmp_path, lambda t: t["users"][1].update(xp=10),
                 "Table users, row 2 (id 2): unknown column 'xp'", mode=mode)


@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_wrong_type_names_table_row_and_column(app, client, live, tmp_path, mode):
    refused_rows(app, client, live, tmp_path, lambda t: t["login_attempts"][1].update(success="yes"),
                 "Table login_attempts, row 2 (id 2): column success must be true or false, not the text 'yes'",
                 mode=mode)


@pytest.mark.parametrize("change, fragment", [
    (lambda t: t["users"][0].update(created_at="yesterday"),
     "Table users, row 1 (id 1): column created_at must be an ISO 8601 date and time"),
    (lambda t: t["users"][0].update(created_at="9999-12-31T23:30:00-01:00"),
     "Table users, row 1 (id 1): column created_at is the text '9999-12-31T23:30:00-01:00', outside the years "
     "1 to 9999"),
    (lambda t: t["users"][2].update(id="5"), "Table users, row 3 (id 5): column id must be a whole number"),
    (lambda t: t["users"][2].update(is_admin=1), "column is_admin must be true or false, not the number 1"),
    (lambda t: t["users"][0].update(email=None), "Table users, row 1 (id 1): column email must not be null"),
    (lambda t: t["users"][0].update(username="x" * 81), "column username is 81 characters long; the limit is 80"),
    (lambda t: t["contact_submissions"][0].update(message="a\x00b"), "NUL character"),
    (lambda t: t["users"][0].update(id=2**63), "column id is 9223372036854775808, outside the column's range"),
    (lambda t: t["email_verifications"][0].pop("expires_at"),
     "Table email_verifications, row 1 (id 1): column expires_at is missing and has no default"),
    (lambda t: t["users"].append(5), "Table users, row 4: the row is not a JSON object"),
])
def test_bad_values_are_named(app, client, live, tmp_path, change, fragment):
    refused_rows(app, client, live, tmp_path, change, fragment)


@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_broken_foreign_key_is_named(app, client, live, tmp_path, mode):
    refused_rows(app, client, live, tmp_path, lambda t: t["email_verifications"][1].update(user_id=99),
                 "Table email_verifications, row 2 (id 2): user_id 99 refers to a users row that does not exist",
                 mode=mode)


def test_duplicate_ids_in_a_replace_are_named(app, client, live, tmp_path):
    refused_rows(app, client, live, tmp_path,
                 lambda t: t["users"].append(dict(t["users"][1], username="zed", email="zed@example.com")),
                 "Table users, row 4 (id 2) cannot be stored")


def test_a_duplicate_deep_in_a_batch_is_named_by_its_row(app, client, live, tmp_path):
    """Batches are written in statements of many rows; the refusal still names the very row."""
    def many_users(tables):
        template = tables["users"][-1]
        first = template["id"] + 1
        tables["users"] += [dict(template, id=i, username=f"u{i}", email=f"u{i}@example.com")
                            for i in range(first, first + 200)]
        tables["users"][136]["email"] = tables["users"][2]["email"]

    refused_rows(app, client, live, tmp_path, many_users, "Table users, row 137 (id 139) cannot be stored",
                 "UNIQUE")


@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_an_error_after_many_written_batches_still_changes_nothing(app, client, live, tmp_path, mode):
    def many(tables):
        template = tables["login_attempts"][0]
        tables["login_attempts"] = [dict(template, id=i) for i in range(1, 12_001)]
        tables["login_attempts"][11_500]["attempted_at"] = 12

    refused_rows(app, client, live, tmp_path, many,
                 "Table login_attempts, row 11501 (id 11501): column attempted_at must be an ISO 8601", mode=mode)


@pytest.mark.parametrize("data, fragment", [
    (b'{"users":[{"id":1', "not valid JSON"),
    (b"[]", "not a JSON object keyed by table name"),
    (b'{"users":{"id":1}}', "The value of 'users' in database_backup.json is not a list of rows"),
    (b'{"users":[]} trailing', "not valid JSON"),
])
def test_malformed_data_member_is_422(app, client, live, tmp_path, data, fragment):
    archive = build_archive(tmp_path / "a.zip", {"users": []}, key=live["key"], schema_revision=live["revision"],
                            data=data)
    assert_refused(app, client, live, archive, 422, fragment)


def test_a_table_listed_twice_is_refused(app, client, live, tmp_path):
    data = b'{"users":[],\n"users":[]}'
    archive = build_archive(tmp_path / "a.zip", {"users": []}, key=live["key"], schema_revision=live["revision"],
                            data=data)
    assert_refused(app, client, live, archive, 422, "holds the table 'users' twice")
