"""`flask seed-demo`: split, determinism, realistic field shapes, appending, all three databases."""
from __future__ import annotations

import hashlib
import ipaddress
import re

import argon2
import pytest
import sqlalchemy as sa

from app import create_app
from app.cli import create_account
from app.extensions import db
from app.models import data_tables
from app.seed.rows import REFERENCE, START
from app.seed.writer import seed_demo, split_rows
from support.app import build_app, count_rows, test_settings

EXPECTED_1000 = {"users": 100, "login_attempts": 600, "email_verifications": 100,
                 "contact_submissions": 100, "password_reset_tokens": 100}


def seed(app, *args):
    result = app.test_cli_runner().invoke(args=["seed-demo", *args])
    assert result.exit_code == 0, result.output
    return result.output


def digest(app) -> str:
    """A hash of every row of every data table, in id order."""
    sha = hashlib.sha256()
    with app.app_context(), db.engine.connect() as conn:
        for table in data_tables():
            sha.update(table.name.encode())
            for row in conn.execute(sa.select(table).order_by(table.c.id)):
                sha.update(repr(tuple(row)).encode())
    return sha.hexdigest()


def rows(app, table_name: str) -> list[dict]:
    with app.app_context(), db.engine.connect() as conn:
        table = db.metadata.tables[table_name]
        return [dict(row._mapping) for row in conn.execute(sa.select(table).order_by(table.c.id))]


def dispose(app):
    with app.app_context():
        db.engine.dispose()


# --- The split -------------------------------------------------------------------

def test_split_of_1000_is_exact():
    assert split_rows(1000) == EXPECTED_1000


@pytest.mark.parametrize("total", [1, 2, 3, 5, 7, 9, 15, 999, 1001, 12345, 1_000_001])
def test_split_of_any_total_sums_exactly_and_keeps_users_for_foreign_keys(total):
    counts = split_rows(total)
    assert sum(counts.values()) == total
    assert all(count >= 0 for count in counts.values())
    for name, percent in [("users", 10), ("login_attempts", 60), ("contact_submissions", 10)]:
        assert abs(counts[name] - total * percent / 100) < 1
    assert counts["users"] >= max(counts["email_verifications"], counts["password_reset_tokens"])


def test_cli_seeds_exactly_n_rows_and_prints_a_summary(app):
    output = seed(app, "--rows", "1000")
    assert count_rows(app) == EXPECTED_1000
    assert ("Seeded 1000 rows: users=100, login_attempts=600, email_verifications=100, "
            "contact_submissions=100, password_reset_tokens=100") in output
    assert "login_attempts: 600/600" in output


def test_cli_seeds_an_odd_n_exactly(app):
    seed(app, "--rows", "1003")
    counts = count_rows(app)
    assert sum(counts.values()) == 1003
    # 100.3 / 601.8 / 100.3 ...: the two rows left over go to the largest
    # remainder (login_attempts), then to the first of the tied tables (users).
    assert counts == {"users": 101, "login_attempts": 602, "email_verifications": 100,
                      "contact_submissions": 100, "password_reset_tokens": 100}


def test_a_tiny_seed_still_has_valid_foreign_keys(app):
    seed(app, "--rows", "5")
    counts = count_rows(app)
    assert sum(counts.values()) == 5 and counts["users"] >= 1
    user_ids = {row["id"] for row in rows(app, "users")}
    assert {row["user_id"] for row in rows(app, "email_verifications")} <= user_ids


def test_rows_must_be_positive(app):
    result = app.test_cli_runner().invoke(args=["seed-demo", "--rows", "0"])
    assert result.exit_code == 2
    assert count_rows(app) == dict.fromkeys(EXPECTED_1000, 0)


def test_an_unmigrated_database_fails_with_one_clear_line(tmp_path):
    app = create_app(test_settings(tmp_path))
    result = app.test_cli_runner().invoke(args=["seed-demo", "--rows", "10"])
    assert result.exit_code == 1
    assert "Seeding failed, nothing was written" in result.output
    assert "Traceback" not in result.output
    dispose(app)


def test_a_failure_part_way_writes_nothing(app, monkeypatch):
    monkeypatch.setattr("app.seed.rows._token", lambda rng: "0" * 64)  # the second token clashes
    result = app.test_cli_runner().invoke(args=["seed-demo", "--rows", "100"])
    assert result.exit_code == 1
    assert "Seeding failed, nothing was written" in result.output and "UNIQUE" in result.output
    assert "Traceback" not in result.output
    assert count_rows(app) == dict.fromkeys(EXPECTED_1000, 0)


def test_the_sqlite_page_cache_is_put_back(app):
    with app.app_context(), db.engine.connect() as conn:
        before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    with app.app_context():
        seed_demo(10)
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == before


# --- Determinism -------------------------------------------------------------------

def test_same_rows_and_seed_give_identical_tables(tmp_path):
    first, second, other = (build_app(tmp_path / name) for name in ("first", "second", "other"))
    seed(first, "--rows", "1000")
    seed(second, "--rows", "1000", "--seed", "42")
    seed(other, "--rows", "1000", "--seed", "7")
    assert digest(first) == digest(second)
    assert digest(first) != digest(other)
    for app in (first, second, other):
        dispose(app)


# --- Field shapes ------------------------------------------------------------------

def in_year(value) -> bool:
    return START <= value.replace(tzinfo=None) < REFERENCE


def test_fields_look_like_real_data(app):
    seed(app, "--rows", "2000")
    users = rows(app, "users")
    attempts = rows(app, "login_attempts")
    verifications = rows(app, "email_verifications")
    contacts = rows(app, "contact_submissions")
    resets = rows(app, "password_reset_tokens")

    # Users: unique names and e-mails, real-length argon2id hashes nobody can log in with.
    assert len({u["username"] for u in users}) == len(users)
    assert len({u["email"].lower() for u in users}) == len(users)
    assert all(len(u["password_hash"]) >= 90 and u["password_hash"].startswith("$argon2id$v=19$m=65536,t=3,p=4$")
               for u in users)
    assert argon2.extract_parameters(users[0]["password_hash"]).memory_cost == 65536
    with pytest.raises(argon2.exceptions.VerifyMismatchError):
        argon2.PasswordHasher().verify(users[0]["password_hash"], "password")
    assert all(u["created_at"].tzinfo is not None for u in users)

    # Login attempts: long browser user agents, IPv4 and IPv6, some of each column null.
    agents = [a["user_agent"] for a in attempts if a["user_agent"] is not None]
    assert agents and all(len(agent) >= 100 for agent in agents)
    addresses = [ipaddress.ip_address(a["ip_address"]) for a in attempts if a["ip_address"] is not None]
    assert {address.version for address in addresses} == {4, 6}
    assert all(len(a["ip_address"]) <= 45 for a in attempts if a["ip_address"])
    assert {a["success"] for a in attempts} == {True, False}

    # Tokens: 64 lowercase hex digits, unique.
    for table in (verifications, resets):
        tokens = [r["token"] for r in table]
        assert all(re.fullmatch(r"[0-9a-f]{64}", token) for token in tokens)
        assert len(set(tokens)) == len(tokens)

    # Contact messages: 200-2,000 characters with unicode, emoji, quotes and newlines.
    messages = [c["message"] for c in contacts]
    assert all(200 <= len(message) <= 2000 for message in messages)
    assert any(re.search("[\U0001F300-\U0001FAFF]", message) for message in messages)
    assert any(re.search("[\u4e00-\u9fff]", message) for message in messages)
    assert any(re.search("[éèçñüöå]", message) for message in messages)
    assert any('"' in message for message in messages)
    assert any("'" in message for message in messages)
    assert all("\n" in message for message in messages)
    assert len(set(messages)) == len(messages)
    assert all(len(c["name"]) <= 100 and (c["subject"] is None or len(c["subject"]) <= 200) for c in contacts)

    # Nullable columns are sometimes null, sometimes not.
    for table, column in [(users, "last_login"), (verifications, "verified_at"), (resets, "used_at"),
                          (contacts, "subject"), (attempts, "user_agent"), (attempts, "ip_address"),
                          (attempts, "username_or_email")]:
        values = [row[column] for row in table]
        assert None in values and any(value is not None for value in values), column

    # Foreign keys point at seeded users.
    user_ids = {u["id"] for u in users}
    assert {r["user_id"] for r in verifications} <= user_ids
    assert {r["user_id"] for r in resets} <= user_ids

    # Timestamps: in the year before the reference date, in a sensible order.
    created = {u["id"]: u["created_at"] for u in users}
    for u in users:
        assert in_year(u["created_at"])
        assert u["last_login"] is None or (in_year(u["last_login"]) and u["last_login"] >= u["created_at"])
    assert all(in_year(a["attempted_at"]) for a in attempts)
    assert all(in_year(c["created_at"]) for c in contacts)
    for r in verifications + resets:
        assert in_year(r["created_at"]) and r["created_at"] >= created[r["user_id"]]
        assert r["expires_at"] > r["created_at"]
    for v in verifications:
        assert v["is_verified"] == (v["verified_at"] is not None)
        assert v["verified_at"] is None or (in_year(v["verified_at"]) and v["verified_at"] >= v["created_at"])
    for r in resets:
        assert r["used_at"] is None or (in_year(r["used_at"]) and r["used_at"] >= r["created_at"])
        assert r["is_active"] == (r["used_at"] is None)


# --- Appending ---------------------------------------------------------------------

def test_seeding_appends_after_existing_rows(app, admin_user):
    seed(app, "--rows", "100")
    seed(app, "--rows", "100")
    counts = count_rows(app)
    assert counts["users"] == 1 + 20 and sum(counts.values()) == 201
    users = rows(app, "users")
    assert [u["id"] for u in users] == list(range(1, 22))
    assert users[0]["username"] == "admin"
    assert len({u["username"] for u in users}) == len(users)
    for table in ("email_verifications", "password_reset_tokens"):
        tokens = [r["token"] for r in rows(app, table)]
        assert len(set(tokens)) == len(tokens) == 20
    with app.app_context():
        assert create_account("bob", "bob@example.com", "bob-password-1", is_admin=False).id == 22


# --- PostgreSQL and MariaDB --------------------------------------------------------

def seeds_like_sqlite(tmp_path, url):
    reference = build_app(tmp_path / "sqlite")
    seed(reference, "--rows", "500")
    app = build_app(tmp_path / "server", url)
    try:
        seed(app, "--rows", "500")
        assert count_rows(app) == split_rows(500)
        assert digest(app) == digest(reference)
        seed(app, "--rows", "10")
        with app.app_context():
            # The app's own inserts still get fresh ids after explicit-id seeding.
            user = create_account("bob", "bob@example.com", "bob-password-1", is_admin=False)
            assert user.id == split_rows(500)["users"] + split_rows(10)["users"] + 1
    finally:
        dispose(app)
        dispose(reference)


@pytest.mark.postgres
def test_postgresql_gets_the_same_rows_as_sqlite(tmp_path, postgres_url):
    seeds_like_sqlite(tmp_path, postgres_url)


@pytest.mark.mysql
def test_mariadb_gets_the_same_rows_as_sqlite(tmp_path, mysql_url):
    seeds_like_sqlite(tmp_path, mysql_url)
