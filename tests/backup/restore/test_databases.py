"""Round trips on SQLite, PostgreSQL and MariaDB, and archives moving between them."""
from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
import sqlalchemy as sa

from app.backup.archive import format
from app.backup.service import BackupService
from app.backup.provenance import schema_revision
from app.cli import create_account
from app.extensions import db
from app.models import ContactSubmission, User
from app.security import issue_api_token
from support.app import build_app
from support.archives import as_archive_rows, build_archive, data_bytes, expected_rows, generated_tables
from support.restoring import restore_listed, restore_upload


def make_app(tmp_path, url, label):
    directory = tmp_path / label
    directory.mkdir()
    app = build_app(directory, url, BACKUP_DIRECTORY=str(tmp_path / "shared-backups"))
    with app.app_context():
        admin = create_account("admin", "admin@example.com", "admin-password-1", is_admin=True)
        headers = {"Authorization": "Bearer " + issue_api_token(admin)}
    return app, headers


@pytest.fixture
def target(tmp_path, any_database_url):
    app, headers = make_app(tmp_path, any_database_url, "target")
    yield app, headers
    with app.app_context():
        db.engine.dispose()


def test_replace_and_merge_round_trips_are_exact(tmp_path, target):
    app, headers = target
    client = app.test_client()
    tables = generated_tables(users=300, attempts=11_000)
    with app.app_context():
        key, revision = format.signing_key(app.config), schema_revision(app)
    archive = build_archive(tmp_path / "a.zip", tables, key=key, schema_revision=revision)
    response = restore_upload(client, headers, archive)
    assert response.status_code == 200, response.get_json()
    assert as_archive_rows(app) == expected_rows(tables)

    # The app's own backup of that data restores to exactly the same rows, by replace and by merge.
    with app.app_context():
        filename = BackupService().create("manual", "admin")["filename"]
        db.session.query(ContactSubmission).filter(ContactSubmission.id > 100).delete()
        db.session.commit()
    response = restore_listed(client, headers, filename, mode="merge")
    assert response.status_code == 200, response.get_json()
    merged = response.get_json()["restore"]
    assert merged["tables"]["contact_submissions"] == {"inserted": 200, "updated": 0, "skipped": 100, "deleted": 0}
    assert as_archive_rows(app) == expected_rows(tables)
    replaced = restore_listed(client, headers, filename).get_json()["restore"]
    assert replaced["tables"]["login_attempts"]["inserted"] == 11_000
    assert as_archive_rows(app) == expected_rows(tables)


def test_an_archive_that_leaves_the_line_layout_midway_restores_exactly(tmp_path, target):
    """The fast line parser gives up thousands of rows into a table; the restore starts again with the
    general parser, on a connection whose first attempt (a COPY half sent, on PostgreSQL) was rolled back."""
    app, _headers = target
    tables = generated_tables(users=300, attempts=40_000)
    data = data_bytes(tables, "lines")
    # The parser takes the archive in megabytes. The first two hold rows as the app writes them,
    # which go to the database; from 2.1 MB on the rows are pretty-printed, and the third megabyte
    # ends inside one of them.
    position = 0
    for first_pretty, row in enumerate(tables["login_attempts"]):
        position = data.index(orjson.dumps(row), position)
        if position > 2_100_000:
            break
    head, tail = data.split(orjson.dumps(tables["login_attempts"][first_pretty]), 1)
    _rows, rest = tail.split(b"\n]", 1)
    pretty = b",\n".join(orjson.dumps(row, option=orjson.OPT_INDENT_2)
                          for row in tables["login_attempts"][first_pretty:])
    data = head + pretty + b"\n]" + rest
    with app.app_context():
        key, revision = format.signing_key(app.config), schema_revision(app)
    archive = build_archive(tmp_path / "a.zip", tables, key=key, schema_revision=revision, data=data)
    # By the CLI: Werkzeug's test client leaves the temporary file of a large upload open.
    outcome = app.test_cli_runner().invoke(args=["backup", "restore", str(archive), "--mode", "replace", "--yes",
                                                 "--json"])
    assert outcome.exit_code == 0, outcome.output
    assert orjson.loads(outcome.output)["restore"]["tables"]["login_attempts"]["inserted"] == 40_000
    assert as_archive_rows(app) == expected_rows(tables)


SPELLINGS = {  # how an archive may write a date and time -> the moment every restore stores
    "2025-01-02T05:04:05.1234567+02:00": "2025-01-02T03:04:05.123457+00:00",  # another offset, a 7th digit
    "2025-03-01t10:00:00z": "2025-03-01T10:00:00+00:00",
    "2025-04-01T10:00:00": "2025-04-01T10:00:00+00:00",  # no offset: UTC
    "2025-05-01 10:00:00.5Z": "2025-05-01T10:00:00.500000+00:00",
}


def test_dates_in_any_spelling_are_stored_as_the_same_utc_moment(tmp_path, target):
    """A PostgreSQL replace has msgspec make aware dates for its binary COPY; a merge and the other
    databases take the careful path. Each stores the same moment."""
    app, headers = target
    client = app.test_client()
    tables = generated_tables(users=30, attempts=10)
    for user, spelling in zip(tables["users"][1:], SPELLINGS):
        user["created_at"] = user["last_login"] = spelling
    with app.app_context():
        key, revision = format.signing_key(app.config), schema_revision(app)
    archive = build_archive(tmp_path / "a.zip", tables, key=key, schema_revision=revision)

    def stored() -> list[tuple[str, str]]:
        with app.app_context():
            return [(db.session.get(User, user_id).created_at.isoformat(),
                     db.session.get(User, user_id).last_login.isoformat()) for user_id in range(2, 6)]

    expected = [(moment, moment) for moment in SPELLINGS.values()]
    response = restore_upload(client, headers, archive)
    assert response.status_code == 200, response.get_json()
    assert stored() == expected
    with app.app_context():
        for user_id in range(2, 6):
            user = db.session.get(User, user_id)
            user.created_at = user.last_login = datetime(2000, 1, 1, tzinfo=timezone.utc)
        db.session.commit()
    response = restore_upload(client, headers, archive, name="b.zip", mode="merge", on_conflict="overwrite")
    assert response.status_code == 200, response.get_json()
    assert stored() == expected


def test_after_a_restore_new_rows_get_fresh_ids(tmp_path, target):
    app, headers = target
    tables = generated_tables(users=40, attempts=10)
    with app.app_context():
        key, revision = format.signing_key(app.config), schema_revision(app)
    archive = build_archive(tmp_path / "a.zip", tables, key=key, schema_revision=revision)
    # A dry run must not move anything either.
    assert restore_upload(app.test_client(), headers, archive, dry_run="1").status_code == 200
    assert restore_upload(app.test_client(), headers, archive).status_code == 200
    with app.app_context():
        user = create_account("newcomer", "new@example.com", "newcomer-password", is_admin=False)
        assert user.id == 41
        db.session.add(ContactSubmission(name="n", email="n@example.com", message="m"))
        db.session.commit()
        assert db.session.query(sa.func.max(ContactSubmission.id)).scalar() == 41


def test_merge_skips_unique_collisions_the_way_the_database_compares(tmp_path, target):
    app, headers = target
    with app.app_context():
        db.session.add(User(id=70, username="USER3", email="other3@example.com", password_hash="x"))
        db.session.commit()
        key, revision = format.signing_key(app.config), schema_revision(app)
        mariadb = db.engine.dialect.name == "mysql"
    tables = generated_tables(users=5, attempts=0)
    archive = build_archive(tmp_path / "a.zip", tables, key=key, schema_revision=revision)
    result = restore_upload(app.test_client(), headers, archive, mode="merge").get_json()["restore"]
    # MariaDB's collation is case-insensitive: "user3" collides with "USER3" there, and only there.
    assert result["tables"]["users"]["skipped"] == (2 if mariadb else 1)
    assert result["tables"]["users"]["inserted"] == (3 if mariadb else 4)


@pytest.mark.parametrize("kind, index", [
    ("sqlite", "CREATE UNIQUE INDEX ux_users_username_nocase ON users (username COLLATE NOCASE)"),
    ("postgresql", "CREATE UNIQUE INDEX ux_users_username_lower ON users (lower(username))"),
])
def test_merge_skips_a_row_only_the_database_knows_collides(tmp_path, request, kind, index):
    """A unique index the models do not declare (added by a DBA): the database refuses the row, the merge skips it."""
    url = f"sqlite:///{tmp_path / 'merge.db'}" if kind == "sqlite" else request.getfixturevalue("postgres_url")
    app, headers = make_app(tmp_path, url, "target")
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(sa.text(index))
        db.session.add(User(id=70, username="USER3", email="other3@example.com", password_hash="x"))
        db.session.commit()
        key, revision = format.signing_key(app.config), schema_revision(app)
    tables = generated_tables(users=5, attempts=0)
    archive = build_archive(tmp_path / "a.zip", tables, key=key, schema_revision=revision)
    client = app.test_client()
    preview = restore_upload(client, headers, archive, mode="merge", dry_run="1").get_json()["preview"]
    response = restore_upload(client, headers, archive, mode="merge")
    assert response.status_code == 200, response.get_json()
    result = response.get_json()["restore"]
    assert {k: v for k, v in preview.items() if k != "safety_backup"} == \
        {k: v for k, v in result.items() if k != "safety_backup"}
    assert result["tables"]["users"] == {"inserted": 3, "updated": 0, "skipped": 2, "deleted": 0}
    assert {"table": "users", "reason": "collides with an existing row on a unique column", "count": 1,
            "ids": [3]} in result["skipped_reasons"]
    with app.app_context():
        assert sorted(db.session.scalars(sa.select(User.username))) == ["USER3", "admin", "user2", "user4", "user5"]
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("source_kind", ["sqlite", "postgresql", "mysql"])
def test_an_archive_made_on_one_database_restores_on_the_others(tmp_path, request, source_kind, target):
    app, headers = target
    if source_kind == "sqlite":
        source_url = f"sqlite:///{tmp_path / 'source.db'}"
    else:  # a database of its own, even when the target runs on the same server
        source_url = request.getfixturevalue({"postgresql": "postgres_databases",
                                              "mysql": "mysql_databases"}[source_kind]).create()
    source, source_headers = make_app(tmp_path, source_url, "source")
    tables = generated_tables(users=60, attempts=300, seed=11)
    archive = build_archive(tmp_path / "seed.zip", tables, key=format.signing_key(source.config),
                            schema_revision=schema_revision(source))
    assert restore_upload(source.test_client(), source_headers, archive).status_code == 200
    with source.app_context():
        filename = BackupService().create("manual", "admin")["filename"]
    with source.app_context():
        db.session.remove()
        db.engine.dispose()
    response = restore_listed(app.test_client(), headers, filename)
    assert response.status_code == 200, response.get_json()
    assert as_archive_rows(app) == expected_rows(tables)


def test_a_postgresql_column_of_a_type_the_models_do_not_name_still_restores_exactly(tmp_path, postgres_url):
    """Binary COPY is for the column types psycopg writes from our values; any other type gets text COPY."""
    app, headers = make_app(tmp_path, postgres_url, "target")
    with app.app_context():
        with db.engine.begin() as conn:  # as a DBA might: a domain over the model's type
            conn.execute(sa.text("CREATE DOMAIN user_name AS varchar(80)"))
            conn.execute(sa.text("ALTER TABLE users ALTER COLUMN username TYPE user_name"))
        key, revision = format.signing_key(app.config), schema_revision(app)
    tables = generated_tables(users=30, attempts=40)
    archive = build_archive(tmp_path / "a.zip", tables, key=key, schema_revision=revision)
    client = app.test_client()
    for mode in ("replace", "merge"):
        response = restore_upload(client, headers, archive, mode=mode)
        assert response.status_code == 200, response.get_json()
        assert as_archive_rows(app) == expected_rows(tables)
    with app.app_context():
        db.engine.dispose()


def test_a_postgresql_integer_column_narrower_than_the_model_refuses_what_it_cannot_hold(tmp_path, postgres_url):
    """psycopg's binary int dumpers wrap a value that does not fit: such a column must get text COPY."""
    app, headers = make_app(tmp_path, postgres_url, "target")
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE login_attempts ALTER COLUMN id TYPE smallint"))
        key, revision = format.signing_key(app.config), schema_revision(app)
    tables = generated_tables(users=5, attempts=3)
    before = as_archive_rows(app)
    tables["login_attempts"][2]["id"] = 40_000
    archive = build_archive(tmp_path / "a.zip", tables, key=key, schema_revision=revision)
    response = restore_upload(app.test_client(), headers, archive)
    assert response.status_code == 422, response.get_json()
    assert "Table login_attempts, row 3 cannot be stored" in response.get_json()["error"]
    assert "out of range for type smallint" in response.get_json()["error"]
    assert as_archive_rows(app) == before
    with app.app_context():
        db.engine.dispose()


def test_a_large_sqlite_replace_leaves_every_index_as_it_was(tmp_path):
    """The indexes a bulk load drops are built again once every table is in (see the PostgreSQL
    twin in tests/backup/dialects/test_postgresql_bulk.py)."""
    from app.backup.restore.replace import INDEX_REBUILD_MIN_ROWS

    app, _headers = make_app(tmp_path, f"sqlite:///{tmp_path / 'large.db'}", "large")

    def indexes() -> list:
        with app.app_context():
            return sorted(map(tuple, db.session.execute(sa.text(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'")).all()))

    before = indexes()
    assert any(name == "ix_login_attempts_ip_address" for name, _table, _sql in before)
    tables = generated_tables(users=50, attempts=INDEX_REBUILD_MIN_ROWS + 1_000)
    with app.app_context():
        key, revision = format.signing_key(app.config), schema_revision(app)
    archive = build_archive(tmp_path / "a.zip", tables, key=key, schema_revision=revision)
    # By the CLI: Werkzeug's test client leaves the temporary file of a large upload open.
    outcome = app.test_cli_runner().invoke(args=["backup", "restore", str(archive), "--mode", "replace", "--yes"])
    assert outcome.exit_code == 0, outcome.output
    assert indexes() == before
    assert as_archive_rows(app) == expected_rows(tables)
