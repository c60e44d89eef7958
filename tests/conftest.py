"""Layered fixtures: databases → app → client → users and auth helpers → real servers.

PostgreSQL and MariaDB tests run against the machine's servers, each in a
throwaway database created here and dropped afterwards. With REQUIRE_SERVICES=1
(CI) an unreachable server fails the run; elsewhere those tests skip loudly.
"""
from __future__ import annotations

import email
import email.policy
import html
import os
import re
import socket
import sys
import uuid
from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from app import create_app
from app.cli import create_account
from app.extensions import db
from app.mail import wait_for_background_mail
from app.models import data_tables
from app.security import issue_api_token

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"

ADMIN_PASSWORD = "admin-password-1"
USER_PASSWORD = "user-password-1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (servers here cannot take port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_unavailable(what: str, error: Exception):
    message = f"{what} is not reachable ({error}); set it up or unset REQUIRE_SERVICES"
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {message}")
    # Not warnings.warn: filterwarnings=error would turn the skip into an error.
    print(f"\n*** SKIPPING: {message} ***", file=sys.stderr)
    pytest.skip(f"SKIPPED LOUDLY: {message}")


class ThrowawayDatabases:
    """Creates databases named cq_test_<hex> on a server and drops them at the end."""

    def __init__(self, server_url: str, label: str):
        self.server_url = sa.make_url(server_url)
        self.label = label
        self.admin_engine = sa.create_engine(self.server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        self.created: list[str] = []

    def check(self):
        try:
            with self.admin_engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # any driver error means the server is not usable
            service_unavailable(self.label, exc)

    def create(self) -> str:
        name = f"cq_test_{uuid.uuid4().hex[:12]}"
        assert re.fullmatch(r"cq_test_[0-9a-f]{12}", name)
        with self.admin_engine.connect() as conn:
            if self.server_url.get_backend_name() == "mysql":
                conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
            else:
                conn.execute(sa.text(f"CREATE DATABASE {name}"))
        self.created.append(name)
        return self.server_url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self):
        with self.admin_engine.connect() as conn:
            for name in self.created:
                if self.server_url.get_backend_name() == "postgresql":
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                else:
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        self.admin_engine.dispose()


@pytest.fixture(scope="session")
def postgres_databases():
    servers = ThrowawayDatabases(POSTGRES_URL, "PostgreSQL at " + POSTGRES_URL)
    servers.check()
    yield servers
    servers.drop_all()


@pytest.fixture(scope="session")
def mysql_databases():
    servers = ThrowawayDatabases(MYSQL_URL, "MariaDB at " + MYSQL_URL)
    servers.check()
    yield servers
    servers.drop_all()


@pytest.fixture
def postgres_url(postgres_databases):
    """A new, empty PostgreSQL database for this test."""
    return postgres_databases.create()


@pytest.fixture
def mysql_url(mysql_databases):
    """A new, empty MariaDB database for this test."""
    return mysql_databases.create()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def any_database_url(request, tmp_path):
    """The test runs once per supported database, each in a throwaway database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'any.db'}"
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return request.getfixturevalue("mysql_url")


def test_settings(tmp_path, database_url: str | None = None, **extra) -> dict:
    """Settings for a test app: its own database and backup directory under tmp_path."""
    settings = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-of-at-least-32-bytes",
        "SQLALCHEMY_DATABASE_URI": database_url or f"sqlite:///{tmp_path / 'app.db'}",
        "BACKUP_DIRECTORY": str(tmp_path / "backups"),
        "ARGON2_FAST": True,
        "SCHEDULER_ENABLED": False,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": 1,  # nothing listens: a test that sends mail must use the smtp_server fixture
        "MAIL_DEFAULT_SENDER": "cyberquest@test.local",
        "SERVER_NAME": "localhost",
        "PUBLIC_URL": "http://localhost",
    }
    settings.update(extra)
    return settings


# pytest must not collect the helper above as a test.
test_settings.__test__ = False


def build_app(tmp_path, database_url: str | None = None, **extra):
    """A migrated app on ``database_url`` (default: a fresh SQLite file)."""
    from flask_migrate import upgrade

    app = create_app(test_settings(tmp_path, database_url, **extra))
    with app.app_context():
        upgrade()
    return app


@pytest.fixture
def app_settings():
    """Extra settings a test module can override for the ``app`` fixture."""
    return {}


@pytest.fixture
def app(tmp_path, app_settings):
    app = build_app(tmp_path, **app_settings)
    yield app
    wait_for_background_mail()  # no mail task of this test may outlive its database
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin_user(app):
    with app.app_context():
        user = create_account("admin", "admin@example.com", ADMIN_PASSWORD, is_admin=True)
        return {"id": user.id, "username": "admin", "password": ADMIN_PASSWORD}


@pytest.fixture
def plain_user(app):
    with app.app_context():
        user = create_account("alice", "alice@example.com", USER_PASSWORD, is_admin=False)
        return {"id": user.id, "username": "alice", "password": USER_PASSWORD}


@pytest.fixture
def admin_token(app, admin_user):
    with app.app_context():
        from app.models import User

        return issue_api_token(db.session.get(User, admin_user["id"]))


@pytest.fixture
def api_headers(admin_token):
    """Headers of a script authenticated with an admin Bearer token."""
    return {"Authorization": f"Bearer {admin_token}"}


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "no csrf_token in the page"
    return match.group(1)


def login(client, username: str, password: str):
    """Log in through the real form, CSRF token included; returns the response."""
    page = client.get("/auth/login")
    token = csrf_token_from(page.get_data(as_text=True))
    return client.post("/auth/login", data={"username": username, "password": password, "csrf_token": token})


@pytest.fixture
def admin_client(client, admin_user):
    """A browser session logged in as the admin."""
    response = login(client, admin_user["username"], admin_user["password"])
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def user_client(client, plain_user):
    response = login(client, plain_user["username"], plain_user["password"])
    assert response.status_code == 302
    return client


def mail_text(envelope) -> str:
    """The decoded plain-text body of a received message, as the recipient reads it."""
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    return message.get_body(("plain",)).get_content()


def flashes(response) -> list[str]:
    """The flash messages a user sees on the page."""
    return [html.unescape(m) for m in
            re.findall(r'<div class="flash[^"]*" role="alert">(.*?)</div>', response.get_data(as_text=True))]


def count_rows(app) -> dict:
    """Rows per data table: what a test compares to prove nothing changed."""
    with app.app_context():
        with db.engine.connect() as conn:
            return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                    for t in data_tables()}


# --- A real SMTP server ---------------------------------------------------------------

class _CapturingHandler:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture(scope="session")
def smtp_server():
    """An aiosmtpd server on a free port; ``.messages`` holds the envelopes received."""
    from aiosmtpd.controller import Controller

    handler = _CapturingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    controller.messages = handler.messages
    yield controller
    controller.stop()


class DeliveredMail(Sequence):
    """The envelopes the SMTP server received, read only once the app's background mail is all sent."""

    def __init__(self, messages: list):
        self._messages = messages

    def _delivered(self) -> list:
        assert wait_for_background_mail(timeout=30), "the background mail was not sent within 30 s"
        return self._messages

    def __getitem__(self, index):
        return self._delivered()[index]

    def __len__(self):
        return len(self._delivered())

    def __eq__(self, other):
        return list(self._delivered()) == list(other)

    __hash__ = None

    def __repr__(self):
        return repr(self._messages)


@pytest.fixture
def mailbox(smtp_server, app):
    """Points the app's mail at the real SMTP server and returns the received envelopes."""
    wait_for_background_mail()
    smtp_server.messages.clear()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, MAIL_SUPPRESS_SEND=False)
    # Flask-Mail copies its settings when the app is created, and under TESTING it
    # suppresses sending altogether; point the copy at the server and let it send.
    state = app.extensions["mail"]
    state.server, state.port, state.suppress = "127.0.0.1", smtp_server.port, False
    return DeliveredMail(smtp_server.messages)


# --- A real S3 endpoint -----------------------------------------------------------------

@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 served over real HTTP on a free port; ``.endpoint_url`` points at it.

    State is shared by the session: tests reset it with ``POST /moto-api/reset``.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    server.endpoint_url = f"http://{host}:{port}"
    yield server
    server.stop()
