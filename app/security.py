"""Who is asking: password hashing, sessions, Bearer tokens, CSRF, admin guard, headers."""
from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import abort, current_app, g, redirect, request, url_for
from flask_login import current_user
from sqlalchemy.exc import OperationalError

from .extensions import csrf, db
from .models import ApiToken, User, password_fingerprint, utcnow
from .sqlite_pragmas import lock_waits_skipped

TOKEN_USE_RECORD_INTERVAL = timedelta(hours=1)
_DEFAULT_HASHER = PasswordHasher()
# Tests trade strength for speed; production uses argon2-cffi's defaults.
_FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def _hasher() -> PasswordHasher:
    return _FAST_HASHER if current_app.config.get("ARGON2_FAST") else _DEFAULT_HASHER


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash`` (any argon2 variant and parameters)."""
    try:
        return _DEFAULT_HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_dummy_hashes: dict[int, str] = {}


def dummy_password_hash() -> str:
    """A hash no password is known for, made with the current parameters: checking it takes as long as a real one.

    Used when no account matches a login, so the answer's timing does not tell.
    """
    hasher = _hasher()
    if id(hasher) not in _dummy_hashes:
        _dummy_hashes[id(hasher)] = hasher.hash(secrets.token_urlsafe(32))
    return _dummy_hashes[id(hasher)]


# --- Sessions and Bearer tokens ---------------------------------------------------

def init_login_manager(login_manager) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(session_id: str):
        # Sessions name the user and a fingerprint of their password hash: a user
        # deleted, deactivated or given a new password (e.g. by a restore) is logged out.
        user_id, _, fingerprint = session_id.partition(":")
        if not user_id.isdigit():
            return None
        user = db.session.get(User, int(user_id))
        if user is None or not user.is_active:
            return None
        if password_fingerprint(user.password_hash) != fingerprint:
            return None
        return user

    @login_manager.request_loader
    def load_user_from_token(_request):
        return g.get("api_user")

    @login_manager.unauthorized_handler
    def unauthorized():
        if wants_json():
            abort(401, "Authentication required: log in or send an admin API token.")
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_api_token(user: User, name: str = "cli") -> str:
    """Create a token for ``user``; returns the plain token, which is stored only hashed."""
    token = "cq_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user_id=user.id, name=name, token_hash=hash_token(token), prefix=token[:10]))
    db.session.commit()
    return token


def user_for_token(token: str) -> User | None:
    """The active admin owning an unrevoked token, or None."""
    row = db.session.execute(
        db.select(ApiToken).filter_by(token_hash=hash_token(token), revoked_at=None)
    ).scalar_one_or_none()
    if row is None:
        return None
    user = db.session.get(User, row.user_id)
    if user is None or not user.is_active or not user.is_admin:
        return None
    now = utcnow()
    # Recorded at most hourly and best effort: a restore holding SQLite's write lock
    # must not make any API request (job polling included) wait for it.
    if row.last_used_at is None or now - row.last_used_at > TOKEN_USE_RECORD_INTERVAL:
        row.last_used_at = now
        try:
            with lock_waits_skipped(db.session.connection()):
                db.session.commit()
        except OperationalError:
            db.session.rollback()
    return user


def revoke_api_tokens(user: User) -> int:
    """Revoke every active token of ``user``; returns how many."""
    rows = db.session.execute(db.select(ApiToken).filter_by(user_id=user.id, revoked_at=None)).scalars().all()
    for row in rows:
        row.revoked_at = utcnow()
    db.session.commit()
    return len(rows)


def authenticate_bearer_and_check_csrf():
    """Before each request: a Bearer token authenticates (or 401s); otherwise forms need CSRF."""
    token = bearer_token()
    if token is not None:
        user = user_for_token(token)
        if user is None:
            abort(401, "The API token is invalid or revoked.")
        g.api_user = user
        return
    # Browsers cannot attach an Authorization header cross-site, so only
    # cookie-authenticated requests need the CSRF token.
    csrf.protect()


def wants_json() -> bool:
    """True for Bearer-token requests and clients preferring JSON over HTML."""
    if bearer_token() is not None:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def admin_required(view):
    """Anonymous: 302 to login (HTML) or 401 (JSON); signed in but not admin: 403."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()
        if not current_user.is_admin:
            abort(403, "Administrator access is required.")
        return view(*args, **kwargs)

    return wrapped


def is_safe_next(target: str | None) -> bool:
    """Only same-site relative paths are followed after login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


HSTS = "max-age=31536000"


def add_security_headers(response):
    """Every response: CSP and friends; over an https ``PUBLIC_URL``, HSTS; under /admin, never cached."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if current_app.config["PUBLIC_URL"].startswith("https://"):
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    if request.path == "/admin" or request.path.startswith("/admin/"):
        # Backups, tokens and account lists must not stay in a browser's or a proxy's cache.
        response.headers["Cache-Control"] = "no-store, private"
    return response
