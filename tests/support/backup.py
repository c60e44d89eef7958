"""Helpers shared by the backup tests: sample rows, reading archives, the database as plain rows."""
from __future__ import annotations

import io
import zipfile
from datetime import datetime, timedelta, timezone

import orjson
import sqlalchemy as sa

from app.backup.archive import format
from app.extensions import db
from app.models import User, UTCDateTime, data_tables

T0 = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone.utc)

TRICKY_TEXT = "Zoë ✓ 🛡️🔐 „quotes“ \"double\" \\ back\\slash\nnew line\ttab \u2028 end"
LARGE_TEXT = ("Lorem ipsum dolor sit amet, 🔒 " * 2000)[:50_000]  # MariaDB TEXT holds 64 KiB


def seed_sample_rows(app) -> None:
    """A few rows in every data table, with unicode, emoji, large text, NULLs and booleans."""
    with app.app_context():
        t = {table.name: table for table in data_tables()}
        with db.engine.begin() as conn:
            conn.execute(t["users"].insert(), [
                {"id": 101, "username": "ann", "email": "ann@example.com", "password_hash": "h1",
                 "is_active": True, "is_admin": True, "created_at": T0, "last_login": T0 + timedelta(days=1)},
                {"id": 102, "username": "zoë🛡️", "email": "zoe@example.com", "password_hash": "h2",
                 "is_active": False, "is_admin": False, "created_at": T0 - timedelta(days=400), "last_login": None},
                {"id": 103, "username": "carl", "email": "carl@example.com", "password_hash": "h3",
                 "is_active": True, "is_admin": False, "created_at": T0, "last_login": None},
            ])
            conn.execute(t["login_attempts"].insert(), [
                {"ip_address": "203.0.113.7", "username_or_email": "ann", "success": True,
                 "attempted_at": T0, "user_agent": TRICKY_TEXT},
                {"ip_address": "2001:db8::1", "username_or_email": None, "success": False,
                 "attempted_at": T0 + timedelta(seconds=1), "user_agent": None},
            ])
            conn.execute(t["email_verifications"].insert(), [
                {"user_id": 102, "email": "zoe@example.com", "token": "tok-ev-1", "created_at": T0,
                 "expires_at": T0 + timedelta(days=1), "verified_at": None, "is_verified": False},
            ])
            conn.execute(t["contact_submissions"].insert(), [
                {"name": "Zoë", "email": "zoe@example.com", "subject": None, "message": LARGE_TEXT,
                 "created_at": T0, "is_read": False},
                {"name": "Ann", "email": "ann@example.com", "subject": "Hi 👋", "message": TRICKY_TEXT,
                 "created_at": T0, "is_read": True},
            ])
            conn.execute(t["password_reset_tokens"].insert(), [
                {"user_id": 101, "token": "tok-pr-1", "created_at": T0, "expires_at": T0 + timedelta(hours=1),
                 "is_active": True, "used_at": None},
            ])


def archive_members(source) -> dict[str, bytes]:
    """Every member of an archive (path or bytes) by name."""
    fileobj = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    with fileobj, zipfile.ZipFile(fileobj) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _datetime_columns(table) -> set[str]:
    return {c.name for c in table.columns if isinstance(c.type, (UTCDateTime, sa.DateTime))}


def parse_rows(data: bytes) -> dict[str, list[dict]]:
    """database_backup.json with its ISO datetimes turned back into aware datetimes."""
    document = orjson.loads(data)
    tables = {table.name: table for table in data_tables()}
    for name, rows in document.items():
        stamps = _datetime_columns(tables[name])
        for row in rows:
            for column in stamps:
                if row[column] is not None:
                    row[column] = datetime.fromisoformat(row[column])
    return document


def database_rows(app) -> dict[str, list[dict]]:
    """Every data table's rows, ordered by primary key, as plain dicts."""
    with app.app_context(), db.engine.connect() as conn:
        return {table.name: [dict(row._mapping) for row in conn.execute(
            sa.select(table).order_by(*table.primary_key.columns))] for table in data_tables()}


def user_ids(app) -> list[int]:
    """The ids of the users in the database, in order."""
    with app.app_context():
        return list(db.session.execute(sa.select(User.id).order_by(User.id)).scalars())


def resign(members: dict[str, bytes], key: bytes, **changes) -> dict[str, bytes]:
    """The same archive with metadata fields changed and signed with ``key``."""
    metadata = orjson.loads(members[format.METADATA_MEMBER])
    metadata.update(changes)
    metadata["signature"] = format.sign_metadata(metadata, key)
    return {**members, format.METADATA_MEMBER: orjson.dumps(metadata)}
