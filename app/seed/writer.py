"""``seed_demo``: the demo rows written into the five CyberQuest tables, in one transaction.

How many rows each table gets (``SHARES``, ``split_rows``), where the ids start,
and how they are written (SQLAlchemy Core executemany in batches; a larger SQLite
page cache meanwhile; PostgreSQL's sequences moved past the seeded ids).
"""
from __future__ import annotations

import contextlib
import random
from typing import Callable

import sqlalchemy as sa

from ..extensions import db
from .rows import (
    BATCH_SIZE,
    contact_submission_batches,
    email_verification_batches,
    login_attempt_batches,
    make_users,
    password_reset_token_batches,
    user_batches,
)

SQLITE_CACHE_KIB = 64 * 1024

# Percent of the requested rows per table, in insert (foreign-key) order.
SHARES = (
    ("users", 10),
    ("login_attempts", 60),
    ("email_verifications", 10),
    ("contact_submissions", 10),
    ("password_reset_tokens", 10),
)


def split_rows(total: int) -> dict[str, int]:
    """Rows per table for ``total`` rows in all, by ``SHARES`` (largest remainder, exact sum).

    Ties go to the earlier table, so ``users`` never gets fewer rows than the
    tables that point at it: whenever any of them has rows, there are users.
    """
    counts = {name: total * percent // 100 for name, percent in SHARES}
    remainders = sorted(SHARES, key=lambda share: -(total * share[1] % 100))
    for name, _ in remainders[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def _table_rng(seed: int, table: str, first_id: int) -> random.Random:
    # One stream per table and starting id: an empty database always gets the same
    # rows, and seeding again (ids further on) draws new tokens instead of clashing.
    return random.Random(f"cyberquest-demo:{seed}:{table}:{first_id}")


@contextlib.contextmanager
def _larger_sqlite_cache(conn):
    # SQLite's default 2 MB page cache makes the random-order index inserts
    # (tokens, IPs, names) re-read pages from the OS over and over: a million
    # rows spent a third of their time in system calls. Restored afterwards
    # because the connection goes back to the pool.
    if conn.dialect.name != "sqlite":
        yield
        return
    previous = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    conn.commit()
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(previous)}")
        conn.commit()


Progress = Callable[[str, int, int], None]


def seed_demo(rows: int, seed: int = 42, progress: Progress | None = None,
              batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """Append ``rows`` demo rows in all to the five CyberQuest tables; returns rows per table.

    The split is ``SHARES`` (users 10%, login_attempts 60%, the other three 10%
    each, summing to exactly ``rows``). Ids continue after each table's current
    maximum, and foreign keys point at the users seeded in the same call. On an
    empty database the same ``rows`` and ``seed`` always give identical table
    contents. Everything is written in one transaction with Core executemany in
    batches of ``batch_size``; ``progress(table, done, total)`` is called after
    each batch. Needs an app context. Not meant for a live database: concurrent
    inserts could take the same ids.
    """
    counts = split_rows(rows)
    tables = db.metadata.tables
    done = {name: 0 for name in counts}

    def write(conn, table_name, batches):
        table = tables[table_name]
        for batch in batches:
            conn.execute(table.insert(), batch)
            done[table_name] += len(batch)
            if progress:
                progress(table_name, done[table_name], counts[table_name])

    with db.engine.connect() as conn, _larger_sqlite_cache(conn), conn.begin():
        first_ids = {
            name: (conn.execute(sa.select(sa.func.max(tables[name].c.id))).scalar() or 0) + 1
            for name in counts
        }

        def rng(name):
            return _table_rng(seed, name, first_ids[name])

        users_rng = rng("users")
        users = make_users(users_rng, first_ids["users"], counts["users"])
        write(conn, "users", user_batches(users_rng, users, batch_size))
        write(conn, "login_attempts", login_attempt_batches(
            rng("login_attempts"), first_ids["login_attempts"], counts["login_attempts"], users, batch_size))
        write(conn, "email_verifications", email_verification_batches(
            rng("email_verifications"), first_ids["email_verifications"], counts["email_verifications"],
            users, batch_size))
        write(conn, "contact_submissions", contact_submission_batches(
            rng("contact_submissions"), first_ids["contact_submissions"], counts["contact_submissions"],
            batch_size))
        write(conn, "password_reset_tokens", password_reset_token_batches(
            rng("password_reset_tokens"), first_ids["password_reset_tokens"], counts["password_reset_tokens"],
            users, batch_size))

        if conn.dialect.name == "postgresql":
            # Explicit ids do not move PostgreSQL's sequences; without this the
            # app's next insert would collide with a seeded row.
            for name, count in counts.items():
                if count:
                    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence(:table, 'id'), :last)"),
                                 {"table": name, "last": first_ids[name] + count - 1})
    return counts
