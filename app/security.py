"""Who is asking: password hashing, sessions, Bearer tokens and their scopes, CSRF, admin guard, headers."""
from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import abort, current_app, g, jsonify, redirect, request, url_for
from flask_login import current_user
from sqlalchemy import event, inspect, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from .backup.audit import Actor
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


# --- API token scopes -------------------------------------------------------------

# Each scope allows everything the one before it does, and more (the contract's table).
SCOPES = ("health", "read", "backup", "admin")
DEFAULT_SCOPES = ("admin",)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_BACKUP_POSTS = frozenset({"create-backup", "verify-backup", "pin-backup"})


def parse_scopes(values) -> tuple[str, ...]:
    """Scopes from an iterable of names, each possibly comma- or space-separated, in ``SCOPES`` order.

    Nothing given means ``DEFAULT_SCOPES``. Raises ``ValueError`` naming an unknown scope.
    """
    names = {name for value in values for name in str(value).replace(",", " ").split()}
    unknown = sorted(names - set(SCOPES))
    if unknown:
        raise ValueError(f"Unknown scope {unknown[0]!r}: use {', '.join(SCOPES)}.")
    return tuple(scope for scope in SCOPES if scope in names) or DEFAULT_SCOPES


def scope_needed(method: str, rule: str) -> str:
    """The scope a token needs for ``method`` on the URL rule ``rule`` (e.g. ``/admin/pin-backup/<path:filename>``).

    Derived from the method and the path alone, so a route added later is covered at once:
    ``health`` for GET /admin/backup-health, ``read`` for any other GET under /admin but
    downloads, ``backup`` for downloads and POSTs that create, verify or pin, ``admin`` for the rest.
    """
    if rule != "/admin" and not rule.startswith("/admin/"):
        return "admin"
    section = rule.removeprefix("/admin").strip("/").split("/", 1)[0]
    if method in _SAFE_METHODS:
        if section == "backup-health":
            return "health"
        return "backup" if section == "download-backup" else "read"
    return "backup" if method == "POST" and section in _BACKUP_POSTS else "admin"


def token_allows(token: ApiToken, scope: str) -> bool:
    """True when one of ``token``'s scopes is ``scope`` or a wider one."""
    granted = [SCOPES.index(name) for name in token.scopes.split() if name in SCOPES]
    return bool(granted) and max(granted) >= SCOPES.index(scope)


# --- API tokens -------------------------------------------------------------------

def issue_api_token(user: User, name: str = "cli", scopes=DEFAULT_SCOPES, expires_in_days: int | None = None) -> str:
    """Create a token for ``user``; returns the secret, which is stored only hashed (so shown only now).

    ``scopes`` as for ``parse_scopes``; ``expires_in_days`` None means it never expires.
    """
    token = "cq_" + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    db.session.add(ApiToken(user_id=user.id, name=name, token_hash=hash_token(token), prefix=token[:10],
                            scopes=" ".join(parse_scopes(scopes)), expires_at=expires_at))
    db.session.commit()
    return token


def find_api_token(token: str) -> ApiToken | None:
    """The stored token for a secret, revoked or expired ones included."""
    return db.session.execute(db.select(ApiToken).filter_by(token_hash=hash_token(token))).scalar_one_or_none()


def _authenticated_token(token: str) -> tuple[ApiToken, User]:
    """The token and its owner, an active admin; else a 401 saying why."""
    row = find_api_token(token)
    if row is None:
        abort(401, "The API token is invalid.")
    if row.revoked_at is not None:
        abort(401, "The API token has been revoked.")
    now = utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        abort(401, f"The API token expired at {row.expires_at.isoformat()}.")
    user = db.session.get(User, row.user_id)
    if user is None or not user.is_active or not user.is_admin:
        abort(401, "The API token's owner is no longer an active admin.")
    # Recorded at most hourly and best effort: a restore holding SQLite's write lock
    # must not make any API request (job polling included) wait for it.
    if row.last_used_at is None or now - row.last_used_at > TOKEN_USE_RECORD_INTERVAL:
        row.last_used_at = now
        try:
            with lock_waits_skipped(db.session.connection()):
                db.session.commit()
        except OperationalError:
            db.session.rollback()
    return row, user


@event.listens_for(Session, "before_flush")
def _revoke_tokens_of_changed_passwords(session, _flush_context, _instances) -> None:
    """A password change (a reset, an admin's edit, anything through the ORM) revokes that user's API tokens."""
    changed = [obj.id for obj in session.dirty if isinstance(obj, User) and obj.id is not None
               and inspect(obj).attrs.password_hash.history.has_changes()]
    if changed:
        now = utcnow()
        for row in session.scalars(select(ApiToken).where(ApiToken.user_id.in_(changed),
                                                          ApiToken.revoked_at.is_(None))):
            row.revoked_at = now


# --- Request hooks ----------------------------------------------------------------

def authenticate_bearer():
    """Before each request: a Bearer token authenticates, or the request ends.

    401 for an unknown, revoked or expired token; 403 (naming the scope) when its
    scopes do not cover this method on this route. A request that matched no route
    runs no view, so it needs no scope.
    """
    token = bearer_token()
    if token is None:
        return None
    row, user = _authenticated_token(token)
    if request.url_rule is not None:
        needed = scope_needed(request.method, request.url_rule.rule)
        if not token_allows(row, needed):
            return jsonify({"error": f"This API token lacks the {needed!r} scope that this request needs.",
                            "required_scope": needed}), 403
    g.api_user, g.api_token_id = user, row.id
    return None


def check_csrf():
    """Before each request: cookie-authenticated form posts need the CSRF token; Bearer requests do not.

    An anonymous request under /admin gets the anonymous answer here, before any CSRF check.
    """
    # Browsers cannot attach an Authorization header cross-site, so only
    # cookie-authenticated requests need the CSRF token.
    if bearer_token() is not None:
        return None
    if (request.path == "/admin" or request.path.startswith("/admin/")) and not current_user.is_authenticated:
        # Anonymous is refused as anonymous (302 to the login page, or 401), as the contract's table says,
        # not as a bad form (400): there is no session whose CSRF token could be wrong.
        return current_app.login_manager.unauthorized()
    csrf.protect()
    return None


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


def request_actor() -> Actor:
    """Who makes this request, as the audit log records them: username, client IP, the API token's id if any."""
    return Actor(current_user.username if current_user.is_authenticated else None, ip=request.remote_addr,
                 token_id=g.get("api_token_id"))
