"""Authentication rules: credential checks, login attempts and lock-out."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import func, or_, select

from ..extensions import db
from ..models import LoginAttempt, User, utcnow
from ..security import verify_password

GENERIC_LOGIN_ERROR = "Invalid username or password, or the account is temporarily locked."


def find_user(username_or_email: str) -> User | None:
    """The user whose username or e-mail (case-insensitive) is given."""
    value = username_or_email.strip()
    return db.session.execute(
        select(User).where(or_(User.username == value, func.lower(User.email) == value.lower()))
    ).scalar_one_or_none()


def is_locked_out(username_or_email: str, ip_address: str | None) -> bool:
    """True when recent failures for this account or this IP passed the limits.

    The attempts live in the database, so the lock holds across processes.
    """
    config = current_app.config
    since = utcnow() - timedelta(minutes=config["LOGIN_LOCKOUT_MINUTES"])
    recent_failures = select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.success.is_(False), LoginAttempt.attempted_at >= since
    )
    account_failures = db.session.execute(
        recent_failures.where(func.lower(LoginAttempt.username_or_email) == username_or_email.strip().lower())
    ).scalar_one()
    if account_failures >= config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]:
        return True
    if ip_address:
        ip_failures = db.session.execute(recent_failures.where(LoginAttempt.ip_address == ip_address)).scalar_one()
        if ip_failures >= config["LOGIN_MAX_FAILURES_PER_IP"]:
            return True
    return False


def authenticate(username_or_email: str, password: str, ip_address: str | None, user_agent: str | None) -> User | None:
    """Check credentials, record the attempt, and return the user on success.

    Wrong password, unknown user, inactive and locked-out accounts all return None,
    so callers show the same generic message for each.
    """
    user = None
    if not is_locked_out(username_or_email, ip_address):
        candidate = find_user(username_or_email)
        if candidate is not None and candidate.is_active and verify_password(candidate.password_hash, password):
            user = candidate
    db.session.add(LoginAttempt(
        ip_address=(ip_address or "")[:45] or None,
        username_or_email=username_or_email.strip()[:255],
        success=user is not None,
        user_agent=(user_agent or "")[:1000] or None,
    ))
    if user is not None:
        user.last_login = utcnow()
    db.session.commit()
    return user
