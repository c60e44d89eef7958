"""The helper thread that sends a PostgreSQL restore's statements and COPY data (real PostgreSQL).

The restore hands work over and goes on reading; these tests pin what that
must never cost: the order of the work, rows kept aside while the server is
busy, a failure that stops the restore at once instead of hanging it, and a
rollback that can always abandon an unfinished COPY.
"""
from __future__ import annotations

import threading

import psycopg
import pytest
import sqlalchemy as sa

from app.backup.dialects.pg_sender import MEMORY_BYTES, ConnectionHelper

pytestmark = pytest.mark.postgres

LOCK_KEY = 7_340_001
BODY = "x" * 1000


def libpq_url(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def conn(postgres_url):
    with psycopg.connect(libpq_url(postgres_url)) as connection:
        connection.execute("CREATE TABLE items (id int PRIMARY KEY CHECK (id <= 10000000), body text NOT NULL)")
        connection.commit()
        yield connection


def packer(conn, data):
    """A psycopg Copy that packs binary rows into ``data``, as ``PostgreSQLDialect.copy_later`` makes it."""
    copy = psycopg.Copy(conn.cursor(), binary=True, writer=data)
    copy.set_types(["int4", "text"])
    return copy


def in_thread(work, timeout: float = 60) -> list:
    """Run ``work`` on a thread; fail (instead of hanging the suite) if it does not end in time."""
    outcome: list = []

    def run():
        try:
            outcome.append(("ok", work()))
        except BaseException as exc:  # handed to the test
            outcome.append(("error", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{work.__name__} did not finish within {timeout} s"
    return outcome[0]


def test_rows_written_while_the_server_is_busy_arrive_whole_and_in_order(conn, postgres_url):
    rows = 3 * MEMORY_BYTES // len(BODY)  # more than is kept in memory: the rest waits in a file
    helper = ConnectionHelper(conn.cursor())
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as blocker:
        blocker.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        helper.execute(f"SELECT pg_advisory_lock({LOCK_KEY})")  # busy until the blocker lets go
        helper.execute("INSERT INTO items VALUES (0, 'before the copy')")
        copy = packer(conn, helper.copy("COPY items (id, body) FROM STDIN (FORMAT BINARY)"))

        def write_everything():
            for ident in range(1, rows + 1):
                copy.write_row((ident, f"{ident}:{BODY}"))
            copy.finish(None)

        status, _ = in_thread(write_everything)
        assert status == "ok"
        assert helper.running, "the helper was still waiting for the lock, yet every row was taken"
        blocker.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    helper.execute("UPDATE items SET body = 'after the copy' WHERE id = 0")
    helper.wait()
    stored = conn.execute("SELECT id, body FROM items ORDER BY id").fetchall()
    assert stored[0] == (0, "after the copy")
    assert stored[1:] == [(ident, f"{ident}:{BODY}") for ident in range(1, rows + 1)]


class Refused(Exception):
    pass


def test_a_table_the_server_refuses_stops_the_writer_of_the_next_one_with_the_explained_error(conn):
    helper = ConnectionHelper(conn.cursor())
    refused = packer(conn, helper.copy("COPY items (id, body) FROM STDIN (FORMAT BINARY)",
                                       on_error=lambda exc: Refused(f"refused: {exc.diag.message_primary}")))
    for ident in range(9_999_001, 10_000_101):  # the last hundred break the CHECK constraint
        refused.write_row((ident, BODY))
    refused.finish(None)  # the server says no when the COPY ends
    following = packer(conn, helper.copy("COPY items (id, body) FROM STDIN (FORMAT BINARY)"))

    def write_forever():
        ident = 0
        while True:
            ident += 1
            following.write_row((ident, BODY))

    status, error = in_thread(write_forever)
    assert status == "error" and isinstance(error, Refused), error
    assert "violates check constraint" in str(error)
    with pytest.raises(Refused):
        helper.wait()
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 0


def test_stop_abandons_an_unfinished_copy_and_what_was_queued_after_it(conn):
    helper = ConnectionHelper(conn.cursor())
    copy = packer(conn, helper.copy("COPY items (id, body) FROM STDIN (FORMAT BINARY)"))
    for ident in range(1, 101):
        copy.write_row((ident, BODY))
    helper.execute("INSERT INTO items VALUES (0, 'queued after the copy')")
    status, _ = in_thread(helper.stop)  # the copy is never finished: stop must not wait for it
    assert status == "ok"
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 0
