"""PostgreSQL: a large replace builds indexes and keys after the load, and foreign keys stay checked.

From ``INDEX_REBUILD_MIN_ROWS`` rows on, a replace drops a table's non-unique
indexes, and its keys where no foreign key points at it, and builds them again
once the rows are in. When the database role may set
``session_replication_role``, the server's own foreign-key lookups are skipped for
rows whose references the restore checked itself. These tests show that a user
sees none of this: the schema afterwards is the schema before, a duplicate or a
broken reference is still refused with nothing changed, and a role without
that privilege restores the same rows.
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager, nullcontext

import orjson
import pytest
import sqlalchemy as sa

from app.backup.archive import format
from app.backup.restore.replace import INDEX_REBUILD_MIN_ROWS
from app.backup.provenance import schema_revision
from app.cli import create_account
from app.extensions import db
from app.security import issue_api_token
from support.app import build_app
from support.services import POSTGRES_URL
from support.archives import as_archive_rows, build_archive, expected_rows, generated_tables, snapshot

pytestmark = pytest.mark.postgres

# Enough users that users, email_verifications and contact_submissions pass the threshold too.
USERS = INDEX_REBUILD_MIN_ROWS + 500
ATTEMPTS = INDEX_REBUILD_MIN_ROWS + 1_000


def schema_of(app) -> dict:
    """Every index and constraint of the app's tables, by name, as PostgreSQL spells them."""
    with app.app_context(), db.engine.connect() as conn:
        indexes = conn.execute(sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")).all()
        constraints = conn.execute(sa.text(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = current_schema()::regnamespace")).all()
    return {"indexes": sorted(map(tuple, indexes)), "constraints": sorted(map(tuple, constraints))}


def restore(app, archive):
    """``flask backup restore ARCHIVE --mode replace --yes --json`` (in-process: Werkzeug's test client
    leaves the temporary file of a large upload open)."""
    return app.test_cli_runner().invoke(args=["backup", "restore", str(archive), "--mode", "replace", "--yes",
                                              "--json"])


@contextmanager
def owned_by_a_plain_role(postgres_databases, may_set_replication_role: bool):
    """A new database owned by a role that is not a superuser, granted SET on
    session_replication_role or not; the URL connects as that role."""
    role = f"cq_plain_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    url = postgres_databases.create()
    name = sa.make_url(url).database
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN NOSUPERUSER"))
        conn.execute(sa.text(f"ALTER DATABASE {name} OWNER TO {role}"))
        if may_set_replication_role:
            conn.execute(sa.text(f"GRANT SET ON PARAMETER session_replication_role TO {role}"))
    try:
        yield sa.make_url(url).set(username=role).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            if may_set_replication_role:
                conn.execute(sa.text(f"REVOKE SET ON PARAMETER session_replication_role FROM {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


@contextmanager
def bulk_target(request, tmp_path, role: str):
    """An app on PostgreSQL as ``role`` (superuser, granted role, plain role), and an archive maker."""
    if role == "superuser":
        database = nullcontext(request.getfixturevalue("postgres_url"))
    else:
        database = owned_by_a_plain_role(request.getfixturevalue("postgres_databases"), role == "granted role")
    with database as url:
        app = build_app(tmp_path, url)
        with app.app_context():
            issue_api_token(create_account("admin", "admin@example.com", "admin-password-1", is_admin=True))
            key, revision = format.signing_key(app.config), schema_revision(app)

        def archive(name, tables):
            return build_archive(tmp_path / name, tables, key=key, schema_revision=revision)

        try:
            with app.app_context(), db.engine.connect() as conn:
                superuser = conn.execute(sa.text("SELECT current_setting('is_superuser')")).scalar()
            assert superuser == ("on" if role == "superuser" else "off")
            yield app, archive
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


ROLES = ["superuser", "granted role", "plain role"]


@pytest.mark.parametrize("role", ROLES)
def test_a_large_replace_leaves_every_index_and_key_as_it_was(request, tmp_path, role):
    with bulk_target(request, tmp_path, role) as (app, archive):
        before = schema_of(app)
        tables = generated_tables(users=USERS, attempts=ATTEMPTS, seed=5)
        outcome = restore(app, archive("large.zip", tables))
        assert outcome.exit_code == 0, outcome.output
        assert orjson.loads(outcome.output)["restore"]["tables"]["login_attempts"]["inserted"] == ATTEMPTS
        assert as_archive_rows(app) == expected_rows(tables)
        assert schema_of(app) == before
        # The rebuilt keys refuse what they refused before.
        with app.app_context(), db.engine.connect() as conn:
            with pytest.raises(sa.exc.IntegrityError, match="pk_login_attempts"):
                conn.execute(sa.text("INSERT INTO login_attempts (id, ip_address, username_or_email, success, "
                                     "attempted_at) VALUES (1, '10.0.0.1', 'x', true, now())"))


def refused(app, archive, change, message):
    tables = generated_tables(users=USERS, attempts=ATTEMPTS, seed=6)
    change(tables)
    before, schema = snapshot(app), schema_of(app)
    outcome = restore(app, archive("bad.zip", tables))
    assert outcome.exit_code == 1, outcome.output
    assert message in outcome.output
    assert snapshot(app) == before
    assert schema_of(app) == schema


@pytest.mark.parametrize("change, message", [
    (lambda t: t["login_attempts"].append(dict(t["login_attempts"][6], user_agent="again")),
     "Table login_attempts cannot be stored: more than one row has id 7."),
    (lambda t: t["email_verifications"][-1].update(token=t["email_verifications"][3]["token"]),
     "Table email_verifications cannot be stored: more than one row has token "),
])
def test_a_large_replace_still_refuses_duplicates(request, tmp_path, change, message):
    with bulk_target(request, tmp_path, "superuser") as (app, archive):
        refused(app, archive, change, message)


@pytest.mark.parametrize("role", ROLES)
def test_a_large_replace_still_refuses_broken_references(request, tmp_path, role):
    with bulk_target(request, tmp_path, role) as (app, archive):
        refused(app, archive, lambda t: t["email_verifications"][-1].update(user_id=USERS + 5),
                f"Table email_verifications, row {USERS} (id {USERS}): user_id {USERS + 5} refers to a users row "
                "that does not exist")
