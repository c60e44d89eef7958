"""The archive format as the contract states it, on SQLite, PostgreSQL and MariaDB."""
from __future__ import annotations

import hashlib
import io
import os
import re
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.backup.archive import deflate
from app.backup.archive import writer as archive, format
from app.backup.archive.summary import read_summary
from app.backup.archive.writer import restore_order
from app.backup.dialects import dialect_for
from app.backup.errors import ArchiveError
from app.backup.service import BackupService, backup_name_candidates
from app.backup.provenance import app_info
from app.backup.storage.local import LocalStorage
from app.extensions import db
from app.models import data_tables
from support.backup import (archive_members, database_rows, parse_rows, seed_sample_rows)
from support.app import build_app

METADATA_TYPES = {
    "format_version": int, "created_at": str, "created_by": (str, type(None)), "trigger": str, "tables": list,
    "record_counts": dict, "total_records": int, "schema_revision": str, "database_dialect": str,
    "duration_seconds": (int, float), "checksums": dict, "signature": str,
}


@pytest.fixture
def seeded_app(tmp_path, any_database_url):
    app = build_app(tmp_path, any_database_url)
    seed_sample_rows(app)
    yield app
    with app.app_context():
        db.engine.dispose()


def make_backup(app, trigger="manual", created_by="ann"):
    with app.app_context():
        backup = BackupService().create(trigger, created_by)
    path = f"{app.config['BACKUP_DIRECTORY']}/{backup['filename']}"
    return backup, archive_members(path)


def test_archive_holds_exactly_the_three_members_with_contract_metadata(seeded_app):
    backup, members = make_backup(seeded_app)
    assert re.fullmatch(format.FILENAME_PATTERN, backup["filename"])
    assert sorted(members) == sorted(format.MEMBERS)

    metadata = orjson.loads(members[format.METADATA_MEMBER])
    assert set(metadata) == set(METADATA_TYPES)
    for field, expected in METADATA_TYPES.items():
        assert isinstance(metadata[field], expected), field
    assert metadata["format_version"] == 1
    assert metadata["trigger"] == "manual" and metadata["created_by"] == "ann"
    assert datetime.fromisoformat(metadata["created_at"]).utcoffset() == timedelta(0)
    tables = metadata["tables"]
    assert sorted(tables) == sorted(t.name for t in data_tables())
    for table in data_tables():  # the restore order: parents first
        for fk in table.foreign_keys:
            assert tables.index(fk.column.table.name) < tables.index(table.name)
    assert metadata["record_counts"] == {"users": 3, "login_attempts": 2, "email_verifications": 1,
                                         "contact_submissions": 2, "password_reset_tokens": 1}
    assert metadata["total_records"] == 9
    with seeded_app.app_context():
        assert metadata["database_dialect"] == db.engine.dialect.name
    assert re.fullmatch(r"[0-9a-f]{12}", metadata["schema_revision"])
    assert metadata["signature"].startswith("hmac-sha256:")

    info = orjson.loads(members[format.APP_INFO_MEMBER])
    assert info["app_name"] == "CyberQuest"
    assert set(info) == {"app_name", "app_version", "python_version", "flask_version", "sqlalchemy_version",
                         "database_dialect"}
    assert info["database_dialect"] == metadata["database_dialect"]

    assert backup["record_counts"] == metadata["record_counts"] and backup["signed"] is True


def test_checksums_recompute_and_signature_covers_every_field(seeded_app):
    _, members = make_backup(seeded_app)
    metadata = orjson.loads(members[format.METADATA_MEMBER])
    assert set(metadata["checksums"]) == {format.DATA_MEMBER, format.APP_INFO_MEMBER}
    for member, checksum in metadata["checksums"].items():
        assert checksum == "sha256:" + hashlib.sha256(members[member]).hexdigest()

    key = format.signing_key(seeded_app.config)
    assert format.signature_is_valid(metadata, key)
    assert not format.signature_is_valid(metadata, b"another key")
    for field in metadata:
        if field == "signature":
            continue
        tampered = dict(metadata, **{field: "changed"})
        assert not format.signature_is_valid(tampered, key), field


def test_rows_in_the_archive_equal_the_database_in_foreign_key_order(seeded_app):
    _, members = make_backup(seeded_app)
    document = parse_rows(members[format.DATA_MEMBER])
    assert list(document) == orjson.loads(members[format.METADATA_MEMBER])["tables"]
    assert document == database_rows(seeded_app)
    order = list(document)
    assert order.index("users") < order.index("email_verifications")
    assert order.index("users") < order.index("password_reset_tokens")
    raw = members[format.DATA_MEMBER].decode()
    # datetimes carry an explicit UTC offset, booleans stay booleans
    assert '"created_at":"2024-02-29T23:59:58' in raw and "+00:00" in raw
    assert '"is_admin":true' in raw and '"last_login":null' in raw


def test_data_member_has_one_row_per_line(seeded_app):
    _, members = make_backup(seeded_app)
    lines = members[format.DATA_MEMBER].split(b"\n")
    assert lines[0].startswith(b'{"') and lines[0].endswith(b'":[')
    assert lines[-1] == b""  # the document ends with a newline
    assert lines[-2] == b"]}"
    tables, rows = [], 0
    for line in lines[:-2]:
        if line.endswith(b":["):
            tables.append(orjson.loads(line.lstrip(b"{")[:-2]))
        elif line == b"],":
            continue
        else:
            row = orjson.loads(line[:-1] if line.endswith(b",") else line)
            assert isinstance(row, dict)
            rows += 1
    assert tables == orjson.loads(members[format.METADATA_MEMBER])["tables"]
    assert rows == 9


def test_backed_up_tables_are_every_table_not_marked_operational(app):
    with app.app_context():
        expected = [t.name for t in db.metadata.sorted_tables if not t.info.get("operational")]
        operational = {t.name for t in db.metadata.sorted_tables if t.info.get("operational")}
    assert [t.name for t in data_tables()] == expected
    assert {"users", "login_attempts", "email_verifications", "contact_submissions",
            "password_reset_tokens"} == set(expected)
    assert {"api_tokens", "audit_log", "backup_jobs", "operation_locks", "backup_records", "backup_schedule",
            "scheduled_runs"} <= operational


def test_a_name_clash_in_the_same_second_gets_a_numbered_suffix(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    moment = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    names = []
    for content in (b"one", b"two", b"three"):
        with storage.atomic_writer(backup_name_candidates(moment)) as pending:
            pending.file.write(content)
        names.append(pending.name)
    assert names == ["cyberquest_backup_20250102_030405.zip", "cyberquest_backup_20250102_030405_2.zip",
                     "cyberquest_backup_20250102_030405_3.zip"]
    assert (tmp_path / "store" / names[0]).read_bytes() == b"one"
    assert sorted(f.name for f in storage.list()) == sorted(names)


def test_backups_in_quick_succession_all_get_distinct_listed_names(app):
    with app.app_context():
        service = BackupService()
        made = [service.create("cli", None)["filename"] for _ in range(3)]
        assert len(set(made)) == 3
        assert [b["filename"] for b in service.list()] == list(reversed(made))


def test_read_metadata_refuses_what_is_not_an_archive():
    with pytest.raises(ArchiveError):
        read_summary(io.BytesIO(b"not a zip at all"))


# --- type fidelity, property-based --------------------------------------------------------

texts = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=60)
large_texts = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s),
                        st.integers(1, 4000))
offsets = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-14 * 60, 14 * 60))
moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31), timezones=offsets)

user_rows = st.lists(st.fixed_dictionaries({
    "username": texts, "email": texts, "password_hash": st.one_of(texts, large_texts),
    "is_active": st.booleans(), "is_admin": st.booleans(), "created_at": moments,
    "last_login": st.none() | moments,
}), max_size=8)
contact_rows = st.lists(st.fixed_dictionaries({
    "name": texts, "email": texts, "subject": st.none() | texts, "message": st.one_of(texts, large_texts),
    "created_at": moments, "is_read": st.booleans(),
}), max_size=8)


@pytest.fixture(scope="module")
def fidelity_app(tmp_path_factory):
    app = build_app(tmp_path_factory.mktemp("fidelity"))
    yield app
    with app.app_context():
        db.engine.dispose()


def load_generated_rows(app, users, contacts):
    """Replace the data tables' content with the generated rows (given unique ids and names)."""
    users = [dict(row, id=i + 1, username=f"{i}:{row['username']}", email=f"{i}:{row['email']}")
             for i, row in enumerate(users)]
    contacts = [dict(row, id=i + 1) for i, row in enumerate(contacts)]
    with app.app_context():
        tables = {t.name: t for t in data_tables()}
        with db.engine.begin() as conn:
            for table in reversed(data_tables()):
                conn.execute(table.delete())
            if users:
                conn.execute(tables["users"].insert(), users)
            if contacts:
                conn.execute(tables["contact_submissions"].insert(), contacts)
    return users, contacts


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(users=user_rows, contacts=contact_rows)
def test_rows_round_trip_through_the_archive_with_their_types(fidelity_app, users, contacts):
    users, contacts = load_generated_rows(fidelity_app, users, contacts)
    with fidelity_app.app_context():
        tables = {t.name: t for t in data_tables()}
        out = io.BytesIO()
        with dialect_for(db.engine).snapshot() as snapshot:
            archive.write_archive(out, snapshot, data_tables(), created_at=datetime.now(timezone.utc),
                                  created_by=None, trigger="cli", schema_revision="x", app_info=app_info("sqlite"),
                                  signing_key=b"k")
    document = parse_rows(archive_members(out.getvalue())[format.DATA_MEMBER])

    def expected(row):
        return {k: v.astimezone(timezone.utc) if isinstance(v, datetime) else v for k, v in row.items()}

    for row in document["users"] + document["contact_submissions"]:
        for value in row.values():
            if isinstance(value, datetime):
                assert value.utcoffset() == timedelta(0)
    assert [dict(r) for r in document["users"]] == [
        {c.name: expected(u)[c.name] for c in tables["users"].columns} for u in users]
    assert document["contact_submissions"] == [
        {c.name: expected(r)[c.name] for c in tables["contact_submissions"].columns} for r in contacts]


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(users=user_rows, contacts=contact_rows)
def test_sqlite_json_encoding_is_byte_for_byte_the_orjson_encoding(fidelity_app, users, contacts):
    """The fast SQLite path (json_object in SQL) must write exactly what the generic path writes."""
    users, contacts = load_generated_rows(fidelity_app, users, contacts)
    with fidelity_app.app_context():
        tables = {t.name: t for t in data_tables()}
        with dialect_for(db.engine).snapshot() as snapshot:
            conn, dialect = snapshot.connection, snapshot.dialect
            for name in ("users", "contact_submissions"):
                expression = dialect.json_expression(conn, tables[name])
                assert expression is not None
                fast = b",\n".join(b for b, _ in dialect.json_batches(conn, tables[name], expression))
                generic = b",\n".join(b for b, _ in dialect.generic_batches(conn, tables[name], archive.encode_rows))
                assert fast == generic


def test_timestamps_stored_in_another_shape_take_the_exact_path(fidelity_app):
    with fidelity_app.app_context():
        with db.engine.begin() as conn:
            for table in reversed(data_tables()):
                conn.execute(table.delete())
            conn.execute(sa.text("INSERT INTO contact_submissions (id, name, email, message, created_at, is_read) "
                                 "VALUES (1, 'n', 'e', 'm', '2024-05-06 07:08:09', 1)"))
        with dialect_for(db.engine).snapshot() as snapshot:
            conn, dialect = snapshot.connection, snapshot.dialect
            table = next(t for t in data_tables() if t.name == "contact_submissions")
            assert dialect.json_expression(conn, table) is None
            encoded = b"".join(b for b, _ in snapshot.batches(table, archive.encode_rows))
    assert orjson.loads(encoded)["created_at"] == "2024-05-06T07:08:09+00:00"


@settings(max_examples=30, deadline=None, derandomize=True)
@given(pieces=st.lists(st.binary(max_size=5000) | st.text(max_size=3000).map(str.encode), max_size=40),
       chunk_size=st.integers(1, 6000), workers=st.integers(1, 3))
def test_parallel_deflate_makes_one_ordinary_deflate_stream(pieces, chunk_size, workers):
    import zlib

    deflater = deflate.ParallelDeflater(workers=workers, chunk_size=chunk_size)
    stream = b"".join(deflater.compress(piece) for piece in pieces) + deflater.flush()
    inflater = zlib.decompressobj(-15)
    assert inflater.decompress(stream) + inflater.flush() == b"".join(pieces)
    assert inflater.eof and inflater.unused_data == b""


def test_a_data_member_of_many_deflate_chunks_reads_back(fidelity_app):
    with fidelity_app.app_context():
        users = next(t for t in data_tables() if t.name == "users")
        with db.engine.begin() as conn:
            for table in reversed(data_tables()):
                conn.execute(table.delete())
            conn.execute(users.insert(), [
                {"id": i, "username": f"user{i}", "email": f"u{i}@example.com", "password_hash": os.urandom(60).hex(),
                 "is_active": True, "is_admin": False, "created_at": datetime(2024, 1, 1, tzinfo=timezone.utc)}
                for i in range(1, 20_001)])
        out = io.BytesIO()
        with dialect_for(db.engine).snapshot() as snapshot:
            archive.write_archive(out, snapshot, data_tables(), created_at=datetime.now(timezone.utc), created_by=None,
                                  trigger="cli", schema_revision="x", app_info=app_info("sqlite"), signing_key=b"k")
    data = archive_members(out.getvalue())[format.DATA_MEMBER]  # zipfile checks the CRC
    assert len(data) > 3 * deflate.DEFLATE_CHUNK
    assert [row["id"] for row in orjson.loads(data)["users"]] == list(range(1, 20_001))


def test_columns_sqlite_cannot_encode_exactly_take_the_python_path(fidelity_app):
    from decimal import Decimal

    extra = sa.Table("extra_types", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("amount", sa.Numeric(10, 2)), sa.Column("blob", sa.LargeBinary),
                     sa.Column("day", sa.Date), sa.Column("ratio", sa.Float))
    with fidelity_app.app_context():
        extra.create(db.engine)
        try:
            with db.engine.begin() as conn:
                conn.execute(extra.insert(), [{"id": 1, "amount": Decimal("12.50"), "blob": b"\x00\xff",
                                               "day": datetime(2024, 2, 29).date(), "ratio": 0.1}])
            with dialect_for(db.engine).snapshot() as snapshot:
                conn, dialect = snapshot.connection, snapshot.dialect
                assert dialect.json_expression(conn, extra) is None
                encoded = b"".join(b for b, _ in snapshot.batches(extra, archive.encode_rows))
        finally:
            extra.drop(db.engine)
    assert orjson.loads(encoded) == {"id": 1, "amount": "12.50", "blob": "AP8=", "day": "2024-02-29", "ratio": 0.1}


def test_a_table_without_a_single_integer_key_is_encoded_in_key_order_too(fidelity_app):
    pairs = sa.Table("pairs", sa.MetaData(), sa.Column("kind", sa.String(10), primary_key=True),
                     sa.Column("n", sa.Integer, primary_key=True), sa.Column("on", sa.Boolean))
    rows = [{"kind": kind, "n": n, "on": n % 2 == 0} for n in range(1500, 0, -1) for kind in ("b", "a")]
    with fidelity_app.app_context():
        pairs.create(db.engine)
        try:
            with db.engine.begin() as conn:
                conn.execute(pairs.insert(), rows)
            with dialect_for(db.engine).snapshot() as snapshot:
                conn, dialect = snapshot.connection, snapshot.dialect
                expression = dialect.json_expression(conn, pairs)
                assert expression is not None
                fast = b",\n".join(b for b, _ in dialect.json_batches(conn, pairs, expression))
                generic = b",\n".join(b for b, _ in dialect.generic_batches(conn, pairs, archive.encode_rows))
        finally:
            pairs.drop(db.engine)
    assert fast == generic
    assert orjson.loads(b"[" + fast + b"]") == sorted(rows, key=lambda r: (r["kind"], r["n"]))


@pytest.fixture(scope="module")
def postgres_fidelity_app(tmp_path_factory, postgres_databases):
    app = build_app(tmp_path_factory.mktemp("pg-fidelity"), postgres_databases.create())
    yield app
    with app.app_context():
        db.engine.dispose()


pg_texts = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)
pg_moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31), timezones=offsets)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(users=st.lists(st.fixed_dictionaries({
    "username": pg_texts, "email": pg_texts, "password_hash": pg_texts, "is_active": st.booleans(),
    "is_admin": st.booleans(), "created_at": pg_moments, "last_login": st.none() | pg_moments}), max_size=6))
def test_postgresql_driver_path_is_byte_for_byte_the_sqlalchemy_path(postgres_fidelity_app, users):
    """The psycopg server-side cursor path must write exactly what the SQLAlchemy path writes."""
    users = [dict(row, id=i + 1, username=f"{i}:{row['username']}", email=f"{i}:{row['email']}")
             for i, row in enumerate(users)]
    with postgres_fidelity_app.app_context():
        table = next(t for t in data_tables() if t.name == "users")
        with db.engine.begin() as conn:
            for each in reversed(data_tables()):
                conn.execute(each.delete())
            if users:
                conn.execute(table.insert(), users)
        with dialect_for(db.engine).snapshot() as snapshot:
            conn, dialect = snapshot.connection, snapshot.dialect
            fast = b",\n".join(b for b, _ in dialect.cursor_batches(conn, table, archive.encode_rows))
            generic = b",\n".join(b for b, _ in dialect.generic_batches(conn, table, archive.encode_rows))
    assert fast == generic


def test_postgresql_batches_follow_the_key_across_many_fetches(postgres_fidelity_app):
    with postgres_fidelity_app.app_context():
        table = next(t for t in data_tables() if t.name == "users")
        with db.engine.begin() as conn:
            for each in reversed(data_tables()):
                conn.execute(each.delete())
            conn.execute(table.insert(), [
                {"id": i * 7, "username": f"u{i}", "email": f"u{i}@example.com", "password_hash": "x" * (i % 250),
                 "is_active": i % 3 == 0, "is_admin": False,
                 "created_at": datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=i, microseconds=i % 2)}
                for i in range(1, 6001)])
        with dialect_for(db.engine).snapshot() as snapshot:
            conn, dialect = snapshot.connection, snapshot.dialect
            batches = list(dialect.cursor_batches(conn, table, archive.encode_rows))
            generic = b",\n".join(b for b, _ in dialect.generic_batches(conn, table, archive.encode_rows))
    assert len(batches) >= 2 and sum(rows for _, rows in batches) == 6000
    assert b",\n".join(b for b, _ in batches) == generic


def test_archives_list_small_tables_first_and_tables_with_only_a_primary_key_last():
    by_name = {str(t.name): t for t in data_tables()}
    counts = {"users": 100, "email_verifications": 5, "password_reset_tokens": 50_000, "login_attempts": 600,
              "contact_submissions": 10}
    order = [str(t.name) for t in restore_order(data_tables(), counts)]
    # email_verifications is the smallest, but users (its parent) comes first; contact_submissions
    # has nothing to index but its primary key, so it comes last however small it is.
    assert order == ["users", "email_verifications", "login_attempts", "password_reset_tokens",
                     "contact_submissions"]
    assert [str(t.name) for t in restore_order([by_name["password_reset_tokens"], by_name["users"]], {})] == \
        ["users", "password_reset_tokens"]
