"""Layered fixtures: databases → app → client → users and auth helpers → real servers (SMTP, S3).

The helpers they use live in the ``support`` package (``tests/support/``); the
backup, browser and schedule fixtures are in the conftest.py of their folders.
"""
from __future__ import annotations

import pytest
import redis

from app.cli import create_account
from app.extensions import db
from app.mail import wait_for_background_mail
from app.security import issue_api_token
from support.app import ADMIN_PASSWORD, USER_PASSWORD, build_app
from support.mail import send_mail_to
from support.services import MYSQL_URL, POSTGRES_URL, ThrowawayDatabases, free_port, service_unavailable
from support.web import login
from support.workers import REDIS_SERVER, RedisDatabase


@pytest.fixture(scope="session")
def postgres_databases():
    yield from ThrowawayDatabases.for_session(POSTGRES_URL, "PostgreSQL at " + POSTGRES_URL)


@pytest.fixture(scope="session")
def mysql_databases():
    yield from ThrowawayDatabases.for_session(MYSQL_URL, "MariaDB at " + MYSQL_URL)


@pytest.fixture(scope="session")
def redis_database():
    """A Redis database number of this test run's own (claimed on the machine's server), flushed at the end."""
    try:
        database = RedisDatabase.claim()
    except redis.ConnectionError as exc:
        service_unavailable(f"Redis at {REDIS_SERVER}", exc)
    yield database
    database.flush(keep_claim=False)


@pytest.fixture
def broker_url(redis_database):
    """The Celery broker URL of this test: the run's Redis database, empty before and after the test."""
    redis_database.flush()
    yield redis_database.url
    redis_database.flush()


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


@pytest.fixture
def mailbox(smtp_server, app):
    """Points the app's mail at the real SMTP server and returns the received envelopes."""
    return send_mail_to(app, smtp_server)


# --- A real S3 endpoint ---------------------------------------------------------------

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
