"""Logging in: credential checks, every attempt recorded, lock-out per account and per network.

Every attempt costs the same (one argon2 check, a dummy hash when no account
matches), so neither the answer nor its timing says whether an account exists.
"""
from __future__ import annotations

import ipaddress
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from ..extensions import db
from ..models import LoginAttempt, User, utcnow
from ..security import dummy_password_hash, verify_password

GENERIC_LOGIN_ERROR = "Invalid username or password, or the account is temporarily locked."
# "xxxx:xxxx:xxxx:xxxx:" of an exploded IPv6 address: its /64, the block one subscriber usually holds.
IPV6_NETWORK_PREFIX_CHARS = 20


def find_user(username_or_email: str) -> User | None:
    """The user with this username, else the one with this e-mail (case-insensitive)."""
    value = username_or_email.strip()
    # first(), not one(): a username may look like someone else's e-mail, and
    # restored data may hold e-mails differing only in case.
    return (
        db.session.execute(select(User).where(User.username == value)).scalars().first()
        or db.session.execute(
            select(User).where(func.lower(User.email) == value.lower()).order_by(User.id)
        ).scalars().first()
    )


def client_address(raw: str | None) -> str | None:
    """The address stored for a login attempt: IPv4 as is, IPv6 written out in full (``exploded``).

    Written out, every address of one /64 network starts with the same 20 characters,
    which is how the per-IP lock-out groups them. Anything unparsable is kept, cut to the column.
    """
    if not raw:
        return None
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        return raw[:45]
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.exploded


def _same_network(ip_address: str):
    """The condition matching attempts from this IPv4 address, or from this IPv6 address's /64."""
    if ":" in ip_address:
        return LoginAttempt.ip_address.like(ip_address[:IPV6_NETWORK_PREFIX_CHARS] + "%")
    return LoginAttempt.ip_address == ip_address


def _account_names(username_or_email: str, user: User | None) -> list[str]:
    """Every name failures of this account are counted under: what was typed, and the account's username and e-mail.

    Switching between them then gives an attacker no extra guesses.
    """
    names = {username_or_email.strip().lower()[:255]}
    if user is not None:
        names |= {user.username.lower(), user.email.lower()}
    return sorted(names)


def _over_failure_limits(account_names: list[str], ip_address: str | None, *, allowed_extra: int = 1) -> bool:
    """True when recent failures for this account or this network reach the limits plus ``allowed_extra``.

    ``allowed_extra=1`` asks about an attempt just recorded (it may be the last allowed
    one); ``0`` asks whether the next attempt would be refused. The attempts live in
    the database, so the lock holds across processes.
    """
    config = current_app.config
    since = utcnow() - timedelta(minutes=config["LOGIN_LOCKOUT_MINUTES"])
    recent_failures = select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.success.is_(False), LoginAttempt.attempted_at >= since
    )
    account_failures = db.session.execute(
        recent_failures.where(func.lower(LoginAttempt.username_or_email).in_(account_names))
    ).scalar_one()
    if account_failures >= config["LOGIN_MAX_FAILURES_PER_ACCOUNT"] + allowed_extra:
        return True
    if ip_address:
        ip_failures = db.session.execute(recent_failures.where(_same_network(ip_address))).scalar_one()
        if ip_failures >= config["LOGIN_MAX_FAILURES_PER_IP"] + allowed_extra:
            return True
    return False


def is_locked_out(username_or_email: str, ip_address: str | None) -> bool:
    """True when the next attempt for this account or from this network would be refused by the lock-out."""
    return _over_failure_limits(_account_names(username_or_email, find_user(username_or_email)),
                                client_address(ip_address), allowed_extra=0)


def authenticate(username_or_email: str, password: str, ip_address: str | None, user_agent: str | None,
                 *, logs_in: bool = True) -> User | None:
    """Check credentials, record the attempt, and return the user on success.

    Wrong password, unknown user, inactive and locked-out accounts all return None
    after the same work (one argon2 check), so neither the message nor the time
    taken tells them apart. ``logs_in=False`` (a password re-entered to confirm an
    action) leaves ``last_login`` as it was.
    """
    candidate = find_user(username_or_email)
    # All read before the commit below expires them: reloading for known accounts only would show in the timing.
    password_hash = candidate.password_hash if candidate is not None else dummy_password_hash()
    usable = candidate is not None and candidate.is_active
    typed, address = username_or_email.strip()[:255], client_address(ip_address)
    names = _account_names(username_or_email, candidate)
    attempt = LoginAttempt(ip_address=address, username_or_email=typed, success=False,
                           user_agent=(user_agent or "")[:1000] or None)
    # Recorded as a failure, and committed, before the lock-out is counted: guesses arriving
    # together each see the others, so however many there are, no more than the limit get checked.
    db.session.add(attempt)
    db.session.commit()
    locked = _over_failure_limits(names, address)
    matches = verify_password(password_hash, password)
    if locked:
        current_app.logger.warning("login as %r from %s refused: too many recent failures", typed, address)
        return None
    if not (matches and usable):
        return None
    attempt.success = True
    if logs_in:
        candidate.last_login = utcnow()
    db.session.commit()
    return candidate
