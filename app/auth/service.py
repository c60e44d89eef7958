"""Account rules: credential checks and lock-out, registration with e-mail
verification, and password reset.

Links mailed to users carry a random 64-hex token (``secrets.token_hex(32)``);
the database keeps only its SHA-256, so a leaked database or backup holds no
usable link. Each link works once and expires.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app, url_for
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..mail import MailError, send_template_mail
from ..models import EmailVerification, LoginAttempt, PasswordResetToken, User, utcnow
from ..security import hash_password, verify_password

GENERIC_LOGIN_ERROR = "Invalid username or password, or the account is temporarily locked."

VERIFICATION_LIFETIME = timedelta(hours=24)
RESET_LIFETIME = timedelta(hours=1)
# A stranger may type someone else's address into the forms; this caps the mail they can cause.
MAX_LINK_MAILS_PER_HOUR = 3


class AccountTaken(Exception):
    """The username or e-mail address already belongs to an account."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class LinkProblem(Exception):
    """A mailed link that cannot be used; ``message`` tells the user what happened."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind  # "invalid", "expired" or "used"
        self.message = message


# --- Login ------------------------------------------------------------------------

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


def is_locked_out(username_or_email: str, ip_address: str | None, user: User | None = None) -> bool:
    """True when recent failures for this account or this IP passed the limits.

    Failures count against the account whichever name was typed (its username or
    its e-mail), so switching between them gives an attacker no extra guesses.
    The attempts live in the database, so the lock holds across processes.
    """
    config = current_app.config
    since = utcnow() - timedelta(minutes=config["LOGIN_LOCKOUT_MINUTES"])
    recent_failures = select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.success.is_(False), LoginAttempt.attempted_at >= since
    )
    names = {username_or_email.strip().lower()[:255]}
    if user is not None:
        names |= {user.username.lower(), user.email.lower()}
    account_failures = db.session.execute(
        recent_failures.where(func.lower(LoginAttempt.username_or_email).in_(sorted(names)))
    ).scalar_one()
    if account_failures >= config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]:
        return True
    if ip_address:
        ip_failures = db.session.execute(recent_failures.where(LoginAttempt.ip_address == ip_address)).scalar_one()
        if ip_failures >= config["LOGIN_MAX_FAILURES_PER_IP"]:
            return True
    return False


def authenticate(username_or_email: str, password: str, ip_address: str | None, user_agent: str | None,
                 *, logs_in: bool = True) -> User | None:
    """Check credentials, record the attempt, and return the user on success.

    Wrong password, unknown user, inactive and locked-out accounts all return None,
    so callers show the same generic message for each. ``logs_in=False`` (a
    password re-entered to confirm an action) leaves ``last_login`` as it was.
    """
    candidate = find_user(username_or_email)
    user = None
    if (not is_locked_out(username_or_email, ip_address, candidate) and candidate is not None
            and candidate.is_active and verify_password(candidate.password_hash, password)):
        user = candidate
    db.session.add(LoginAttempt(
        ip_address=(ip_address or "")[:45] or None,
        username_or_email=username_or_email.strip()[:255],
        success=user is not None,
        user_agent=(user_agent or "")[:1000] or None,
    ))
    if user is not None and logs_in:
        user.last_login = utcnow()
    db.session.commit()
    return user


# --- Tokens -----------------------------------------------------------------------

def _new_token() -> tuple[str, str]:
    """A fresh token for the link, and the digest stored in the database."""
    token = secrets.token_hex(32)
    return token, _digest(token)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _recent_count(model, user_id: int) -> int:
    since = utcnow() - timedelta(hours=1)
    return db.session.execute(
        select(func.count()).select_from(model).where(model.user_id == user_id, model.created_at >= since)
    ).scalar_one()


# --- Registration and e-mail verification -------------------------------------------

def username_taken(username: str) -> bool:
    """True when an account has this username, ignoring case."""
    return db.session.execute(
        select(User.id).where(func.lower(User.username) == username.strip().lower())
    ).first() is not None


def email_taken(email: str) -> bool:
    """True when an account has this e-mail address, ignoring case."""
    return db.session.execute(
        select(User.id).where(func.lower(User.email) == email.strip().lower())
    ).first() is not None


def register_user(username: str, email: str, password: str) -> User:
    """Create an inactive account and mail it a verification link valid for 24 hours.

    Raises ``AccountTaken`` when the username or e-mail is in use, and ``MailError``
    when the mail could not be sent; then no account is left behind, so the
    person can simply try again.
    """
    username, email = username.strip(), email.strip()
    if username_taken(username):
        raise AccountTaken("username", "That username is already taken.")
    if email_taken(email):
        raise AccountTaken("email", "An account with that e-mail address already exists.")
    user = User(username=username, email=email, password_hash=hash_password(password),
                is_active=False, is_admin=False)
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        # Someone registered the same name between our check and the insert.
        db.session.rollback()
        raise AccountTaken("username", "That username or e-mail address is already taken.") from None
    token = _issue_verification(user)
    db.session.commit()
    try:
        _mail_verification(user, token)
    except MailError:
        current_app.logger.exception("verification mail for new user %s failed", username)
        db.session.execute(EmailVerification.__table__.delete().where(EmailVerification.user_id == user.id))
        db.session.delete(user)
        db.session.commit()
        raise
    return user


def _issue_verification(user: User) -> str:
    token, digest = _new_token()
    now = utcnow()
    db.session.add(EmailVerification(user_id=user.id, email=user.email, token=digest,
                                     created_at=now, expires_at=now + VERIFICATION_LIFETIME))
    return token


def _mail_verification(user: User, token: str) -> None:
    send_template_mail(user.email, "Confirm your CyberQuest e-mail address", "verify_email.txt",
                       user=user, link=url_for("auth.verify_email", token=token, _external=True),
                       hours=int(VERIFICATION_LIFETIME.total_seconds() // 3600))


def verify_email(token: str) -> User:
    """Use a verification link: mark it verified and activate its account.

    Raises ``LinkProblem`` for an unknown, expired or already used link.
    """
    row = db.session.execute(
        select(EmailVerification).where(EmailVerification.token == _digest(token))
    ).scalar_one_or_none()
    if row is None:
        raise LinkProblem("invalid", "This verification link is not valid. "
                                     "Check that you opened the whole link from the e-mail.")
    if row.is_verified:
        raise LinkProblem("used", "This verification link has already been used, "
                                  "so your e-mail address is confirmed. You can log in.")
    now = utcnow()
    if row.expires_at <= now:
        raise LinkProblem("expired", "This verification link has expired: links are valid for 24 hours. "
                                     "Ask for a new one below.")
    # A conditional update, so two clicks racing each other cannot both succeed.
    claimed = db.session.execute(
        update(EmailVerification)
        .where(EmailVerification.id == row.id, EmailVerification.is_verified.is_(False))
        .values(is_verified=True, verified_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        raise LinkProblem("used", "This verification link has already been used, "
                                  "so your e-mail address is confirmed. You can log in.")
    user = db.session.get(User, row.user_id)
    if user is None:
        db.session.rollback()
        raise LinkProblem("invalid", "This verification link belongs to an account that no longer exists.")
    user.is_active = True
    db.session.commit()
    return user


def _user_by_email(email: str) -> User | None:
    return db.session.execute(
        select(User).where(func.lower(User.email) == email.strip().lower()).order_by(User.id)
    ).scalars().first()


def resend_verification(email: str) -> None:
    """Mail a new verification link when ``email`` belongs to an account never verified.

    Says nothing about whether it did (no account enumeration). Mail failures are
    logged, not raised, for the same reason.
    """
    user = _user_by_email(email)
    if user is None or user.is_active:
        return
    ever_verified = db.session.execute(
        select(EmailVerification.id).where(EmailVerification.user_id == user.id,
                                           EmailVerification.is_verified.is_(True))
    ).first()
    # An inactive account that did verify was switched off by an admin: a link must not revive it.
    if ever_verified or _recent_count(EmailVerification, user.id) >= MAX_LINK_MAILS_PER_HOUR:
        return
    token = _issue_verification(user)
    db.session.commit()
    try:
        _mail_verification(user, token)
    except MailError:
        current_app.logger.exception("verification mail for user %s failed", user.username)


# --- Password reset -------------------------------------------------------------------

def request_password_reset(email: str) -> None:
    """Mail a single-use reset link, valid for one hour, when ``email`` belongs to an active account.

    Says nothing about whether it did (no account enumeration). Mail failures are
    logged, not raised, for the same reason.
    """
    user = _user_by_email(email)
    if user is None or not user.is_active:
        return
    if _recent_count(PasswordResetToken, user.id) >= MAX_LINK_MAILS_PER_HOUR:
        return
    token, digest = _new_token()
    now = utcnow()
    db.session.add(PasswordResetToken(user_id=user.id, token=digest, created_at=now,
                                      expires_at=now + RESET_LIFETIME, is_active=True))
    db.session.commit()
    try:
        send_template_mail(user.email, "Reset your CyberQuest password", "reset_password.txt",
                           user=user, link=url_for("auth.reset_password", token=token, _external=True),
                           minutes=int(RESET_LIFETIME.total_seconds() // 60))
    except MailError:
        current_app.logger.exception("password reset mail for user %s failed", user.username)


def usable_reset_token(token: str) -> PasswordResetToken:
    """The reset token row for a link that can still be used.

    Raises ``LinkProblem`` for an unknown, expired or already used link.
    """
    row = db.session.execute(
        select(PasswordResetToken).where(PasswordResetToken.token == _digest(token))
    ).scalar_one_or_none()
    if row is None:
        raise LinkProblem("invalid", "This password reset link is not valid. "
                                     "Check that you opened the whole link from the e-mail.")
    if row.used_at is None and not row.is_active:
        raise LinkProblem("used", "This password reset link no longer works: the password was reset "
                                  "with another link since. Ask for a new one if you need it.")
    if row.used_at is not None:
        raise LinkProblem("used", "This password reset link has already been used; each link works once. "
                                  "Ask for a new one if you still need to reset your password.")
    if row.expires_at <= utcnow():
        raise LinkProblem("expired", "This password reset link has expired: links are valid for one hour. "
                                     "Ask for a new one below.")
    user = db.session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise LinkProblem("invalid", "This password reset link is not valid for any active account.")
    return row


def reset_password(token: str, new_password: str) -> User:
    """Set a new password through a reset link, then spend the link and any other open ones.

    Existing sessions of the account end (they remember the old password's fingerprint).
    Raises ``LinkProblem`` like ``usable_reset_token``.
    """
    row = usable_reset_token(token)
    now = utcnow()
    claimed = db.session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.id == row.id, PasswordResetToken.is_active.is_(True),
               PasswordResetToken.used_at.is_(None))
        .values(is_active=False, used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        raise LinkProblem("used", "This password reset link has already been used; each link works once. "
                                  "Ask for a new one if you still need to reset your password.")
    db.session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == row.user_id, PasswordResetToken.is_active.is_(True))
        .values(is_active=False)
        .execution_options(synchronize_session=False)
    )
    user = db.session.get(User, row.user_id)
    user.password_hash = hash_password(new_password)
    db.session.commit()
    return user
