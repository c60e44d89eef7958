"""The machine's database servers for tests: throwaway databases, and a loud skip when one is missing.

PostgreSQL and MariaDB tests run against the machine's servers, each in a
throwaway database created here and dropped afterwards. With REQUIRE_SERVICES=1
(CI) an unreachable server fails the run; elsewhere those tests skip loudly.
"""
from __future__ import annotations

import os
import re
import socket
import sys
import uuid

import pytest
import sqlalchemy as sa

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (servers here cannot take port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_unavailable(what: str, error: Exception):
    """Skip the test loudly, or fail it under REQUIRE_SERVICES=1, because ``what`` is not reachable."""
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

    @classmethod
    def for_session(cls, server_url: str, label: str):
        """Yield the server's ThrowawayDatabases once it answers; drop what was created afterwards."""
        servers = cls(server_url, label)
        servers.check()
        yield servers
        servers.drop_all()

    def check(self):
        """Skip loudly (or fail under REQUIRE_SERVICES=1) unless the server answers."""
        try:
            with self.admin_engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # any driver error means the server is not usable
            service_unavailable(self.label, exc)

    def create(self) -> str:
        """A new, empty database on the server; returns its URL."""
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
        """Drop every database this object created."""
        with self.admin_engine.connect() as conn:
            for name in self.created:
                if self.server_url.get_backend_name() == "postgresql":
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                else:
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        self.admin_engine.dispose()
