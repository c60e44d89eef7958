"""Migrations build the models' schema from empty on SQLite, PostgreSQL and MariaDB, and back."""
import flask_migrate
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.cli import create_account
from app.extensions import db
from support.app import build_app
from support.web import login


def table_names() -> set[str]:
    return set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}


def columns_by_table() -> dict[str, set[str]]:
    inspector = sa.inspect(db.engine)
    return {name: {c["name"] for c in inspector.get_columns(name)} for name in table_names()}


def model_columns() -> dict[str, set[str]]:
    return {name: {c.name for c in table.columns} for name, table in db.metadata.tables.items()}


def test_upgrade_from_empty_creates_every_table_and_round_trips(any_database_url, tmp_path):
    app = build_app(tmp_path, any_database_url)  # runs flask_migrate.upgrade() on the empty database
    try:
        with app.app_context():
            assert columns_by_table() == model_columns()
            with db.engine.connect() as conn:
                revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
            assert revision == db_head(app)

            flask_migrate.downgrade(revision="base")
            assert table_names() == set()

            flask_migrate.upgrade()
            assert columns_by_table() == model_columns()

            create_account("alice", "alice@example.com", "alice-password-1", is_admin=False)
        # the migrated schema serves the app: a user can log in, and the attempt is recorded
        client = app.test_client()
        assert login(client, "alice", "wrong-password").status_code == 200
        assert login(client, "alice", "alice-password-1").status_code == 302
        with app.app_context(), db.engine.connect() as conn:
            outcomes = conn.execute(sa.text("SELECT success FROM login_attempts ORDER BY id")).scalars().all()
        assert [bool(x) for x in outcomes] == [False, True]
    finally:
        with app.app_context():
            db.engine.dispose()


def db_head(app) -> str:
    from alembic.script import ScriptDirectory

    config = app.extensions["migrate"].migrate.get_config()
    return ScriptDirectory.from_config(config).get_current_head()


def test_models_and_migrations_agree(any_database_url, tmp_path):
    """Autogenerate finds nothing to add: no model change is missing its migration."""
    app = build_app(tmp_path, any_database_url)
    try:
        with app.app_context(), db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, db.metadata) == []
    finally:
        with app.app_context():
            db.engine.dispose()
