"""Database models.

Two kinds of tables live here:

* the five CyberQuest data tables (users, login_attempts, email_verifications,
  contact_submissions, password_reset_tokens). Backups hold exactly these,
  found from the metadata: every table not marked operational.
* the app's own operational tables (API tokens, audit log, jobs, locks, backup
  catalogue, schedule, scheduled runs), marked with ``info={"operational": True}``.
  They describe this instance's operation, not the CyberQuest data, so backups
  leave them out and a restore never overwrites them. They hold no foreign keys
  into the data tables (only plain ids) so that a replace restore can delete and
  re-insert users without cascading into tokens or audit history.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from flask_login import UserMixin
from sqlalchemy import types
from sqlalchemy.dialects import mysql

from .extensions import db


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(types.TypeDecorator):
    """A timestamp stored as naive UTC on every dialect, returned timezone-aware.

    Naive values given to it are taken to be UTC already.
    """

    impl = types.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        # MariaDB's DATETIME drops microseconds unless asked for them; backups must round-trip.
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(types.DateTime())

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


OPERATIONAL = {"info": {"operational": True}}


# --- The CyberQuest data tables -------------------------------------------------

class User(UserMixin, db.Model):
    __tablename__ = "users"

    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(80), unique=True, nullable=False)
    email = db.Column(db.String(255), unique=True, nullable=False)
    password_hash = db.Column(db.String(255), nullable=False)
    is_active = db.Column(db.Boolean, nullable=False, default=True)
    is_admin = db.Column(db.Boolean, nullable=False, default=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    last_login = db.Column(UTCDateTime, nullable=True)

    def get_id(self) -> str:
        # The session remembers a fingerprint of the password hash too, so a
        # password change (or a restore that changes it) ends old sessions.
        return f"{self.id}:{password_fingerprint(self.password_hash)}"


def password_fingerprint(password_hash: str) -> str:
    """A short digest of a password hash, kept in sessions to detect changes."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


class LoginAttempt(db.Model):
    __tablename__ = "login_attempts"

    id = db.Column(db.Integer, primary_key=True)
    ip_address = db.Column(db.String(45), nullable=True, index=True)
    username_or_email = db.Column(db.String(255), nullable=True, index=True)
    success = db.Column(db.Boolean, nullable=False, default=False)
    attempted_at = db.Column(UTCDateTime, nullable=False, default=utcnow, index=True)
    user_agent = db.Column(db.Text, nullable=True)


class EmailVerification(db.Model):
    __tablename__ = "email_verifications"

    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=False, index=True)
    email = db.Column(db.String(255), nullable=False)
    token = db.Column(db.String(64), unique=True, nullable=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    expires_at = db.Column(UTCDateTime, nullable=False)
    verified_at = db.Column(UTCDateTime, nullable=True)
    is_verified = db.Column(db.Boolean, nullable=False, default=False)


class ContactSubmission(db.Model):
    __tablename__ = "contact_submissions"

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(100), nullable=False)
    email = db.Column(db.String(255), nullable=False)
    subject = db.Column(db.String(200), nullable=True)
    message = db.Column(db.Text, nullable=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    is_read = db.Column(db.Boolean, nullable=False, default=False)


class PasswordResetToken(db.Model):
    __tablename__ = "password_reset_tokens"

    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=False, index=True)
    token = db.Column(db.String(64), unique=True, nullable=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    expires_at = db.Column(UTCDateTime, nullable=False)
    is_active = db.Column(db.Boolean, nullable=False, default=True)
    used_at = db.Column(UTCDateTime, nullable=True)


# --- The app's own operational tables --------------------------------------------

class ApiToken(db.Model):
    """A secret for scripts (stored as its SHA-256), with scopes, an optional expiry and revocation."""

    __tablename__ = "api_tokens"
    __table_args__ = OPERATIONAL

    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, nullable=False, index=True)
    name = db.Column(db.String(100), nullable=False, default="cli")
    token_hash = db.Column(db.String(64), unique=True, nullable=False)
    prefix = db.Column(db.String(12), nullable=False)
    # Space-separated names from app.security.SCOPES; tokens made before scopes existed were all-powerful.
    scopes = db.Column(db.String(64), nullable=False, default="admin", server_default="admin")
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    last_used_at = db.Column(UTCDateTime, nullable=True)
    expires_at = db.Column(UTCDateTime, nullable=True)
    revoked_at = db.Column(UTCDateTime, nullable=True)


class AuditLog(db.Model):
    """One audited action: who (``actor``, from ``ip``), what (``action``), on what (``target``), and its details."""

    __tablename__ = "audit_log"
    __table_args__ = OPERATIONAL

    id = db.Column(db.Integer, primary_key=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow, index=True)
    actor_id = db.Column(db.Integer, nullable=True)
    actor = db.Column(db.String(80), nullable=True)
    action = db.Column(db.String(64), nullable=False, index=True)
    target = db.Column(db.String(255), nullable=True)
    ip = db.Column(db.String(45), nullable=True)
    details = db.Column(db.Text, nullable=True)


class BackupJob(db.Model):
    """A background backup, restore or verify run and its progress."""

    __tablename__ = "backup_jobs"
    __table_args__ = OPERATIONAL

    id = db.Column(db.String(36), primary_key=True)
    kind = db.Column(db.String(16), nullable=False)
    status = db.Column(db.String(16), nullable=False, default="queued")
    progress = db.Column(db.Float, nullable=False, default=0.0)
    message = db.Column(db.Text, nullable=True)
    created_by = db.Column(db.String(80), nullable=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    started_at = db.Column(UTCDateTime, nullable=True)
    finished_at = db.Column(UTCDateTime, nullable=True)
    heartbeat_at = db.Column(UTCDateTime, nullable=True)
    owner = db.Column(db.String(255), nullable=True)
    result = db.Column(db.Text, nullable=True)
    # The class of the BackupError a failed job raised, so whoever waits for it in
    # another process (a queued job) raises the same error with the same status.
    error_type = db.Column(db.String(64), nullable=True)


class OperationLock(db.Model):
    """One row per held lock; inserting the row is taking the lock."""

    __tablename__ = "operation_locks"
    __table_args__ = OPERATIONAL

    name = db.Column(db.String(64), primary_key=True)
    job_id = db.Column(db.String(36), nullable=True)
    owner = db.Column(db.String(255), nullable=True)
    acquired_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    expires_at = db.Column(UTCDateTime, nullable=False)


class BackupRecord(db.Model):
    """What the app knows about an archive beyond its own metadata."""

    __tablename__ = "backup_records"
    __table_args__ = OPERATIONAL

    filename = db.Column(db.String(255), primary_key=True)
    accepted = db.Column(db.Boolean, nullable=False, default=True)
    pinned = db.Column(db.Boolean, nullable=False, default=False)
    verified = db.Column(db.Boolean, nullable=True)
    verified_at = db.Column(UTCDateTime, nullable=True)
    verification = db.Column(db.Text, nullable=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    # Hex SHA-256 of the whole file as made or accepted: verify and restore refuse a file that differs.
    sha256 = db.Column(db.String(64), nullable=True)


class BackupSchedule(db.Model):
    __tablename__ = "backup_schedule"
    __table_args__ = OPERATIONAL

    id = db.Column(db.Integer, primary_key=True)
    enabled = db.Column(db.Boolean, nullable=False, default=False)
    frequency = db.Column(db.String(16), nullable=False, default="daily")
    time = db.Column(db.String(5), nullable=False, default="02:00")
    weekday = db.Column(db.Integer, nullable=False, default=0)
    day_of_month = db.Column(db.Integer, nullable=False, default=1)
    retention_days = db.Column(db.Integer, nullable=True)
    keep_last = db.Column(db.Integer, nullable=False, default=7)
    notify_emails = db.Column(db.Text, nullable=False, default="")
    notify_on = db.Column(db.String(16), nullable=False, default="failure")
    webhook_url = db.Column(db.String(2048), nullable=True)
    heartbeat_url = db.Column(db.String(2048), nullable=True)
    updated_at = db.Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    missed_alert_at = db.Column(UTCDateTime, nullable=True)


class ScheduledRun(db.Model):
    """One row per schedule slot; the instance that inserts it runs the slot."""

    __tablename__ = "scheduled_runs"
    __table_args__ = OPERATIONAL

    id = db.Column(db.Integer, primary_key=True)
    slot = db.Column(UTCDateTime, unique=True, nullable=False)
    owner = db.Column(db.String(255), nullable=True)
    status = db.Column(db.String(16), nullable=False, default="running")
    started_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    finished_at = db.Column(UTCDateTime, nullable=True)
    filename = db.Column(db.String(255), nullable=True)
    error = db.Column(db.Text, nullable=True)


class HookDelivery(db.Model):
    """One delivery (after its retries) of a schedule's webhook or heartbeat, kept to show failures."""

    __tablename__ = "hook_deliveries"
    __table_args__ = OPERATIONAL

    id = db.Column(db.Integer, primary_key=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow, index=True)
    target = db.Column(db.String(16), nullable=False)
    event = db.Column(db.String(32), nullable=False)
    url = db.Column(db.String(2048), nullable=False)
    ok = db.Column(db.Boolean, nullable=False)
    attempts = db.Column(db.Integer, nullable=False)
    status_code = db.Column(db.Integer, nullable=True)
    error = db.Column(db.Text, nullable=True)


def data_tables() -> list:
    """The CyberQuest data tables, in foreign-key order (parents first).

    Found from the metadata, so a model added later is included with no other change.
    """
    return [table for table in db.metadata.sorted_tables if not table.info.get("operational")]
