"""API tokens for scripts, as the CLI and the /admin/api-tokens page manage them.

Create (the secret is returned once), list, revoke one, revoke all of a user's.
Every creation and revocation is written to the audit log (``token.create``,
``token.revoke``). Authenticating with a token and its scopes is ``app.security``'s.
"""
from __future__ import annotations

from sqlalchemy import select

from ..backup import audit
from ..extensions import db
from ..models import ApiToken, User, utcnow
from ..security import find_api_token, issue_api_token

MAX_EXPIRY_DAYS = 3650


class TokenError(Exception):
    """A token request that cannot be carried out; ``message`` says why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def describe(row: ApiToken, owner: str | None) -> dict:
    """A token as the list shows it: never its secret, only the first characters to recognise it."""
    return {"id": row.id, "name": row.name, "owner": owner, "prefix": row.prefix, "scopes": row.scopes.split(),
            "created_at": _iso(row.created_at), "last_used_at": _iso(row.last_used_at),
            "expires_at": _iso(row.expires_at), "revoked_at": _iso(row.revoked_at)}


def list_tokens() -> list[dict]:
    """Every token, newest first, with its owner's username."""
    rows = db.session.execute(
        select(ApiToken, User.username).outerjoin(User, User.id == ApiToken.user_id).order_by(ApiToken.id.desc())
    ).all()
    return [describe(row, owner) for row, owner in rows]


def create_token(owner: User, *, name: str, scopes, expires_in_days: int | None,
                 actor: audit.Actor | str) -> tuple[dict, str]:
    """A new token for ``owner`` (an active admin): its description and its secret, shown only this once.

    ``actor`` is audited as ``audit.record`` takes it: a request's Actor brings its IP and token id.

    Raises ``TokenError`` for an owner who is not an active admin, an unknown scope or a bad expiry.
    """
    if not owner.is_admin or not owner.is_active:
        raise TokenError(f"{owner.username!r} is not an active admin; API tokens are for admins.")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise TokenError(f"The expiry must be between 1 and {MAX_EXPIRY_DAYS} days.")
    try:
        secret = issue_api_token(owner, name, scopes, expires_in_days)
    except ValueError as exc:
        raise TokenError(str(exc)) from None
    token = describe(find_api_token(secret), owner.username)
    audit.record(actor, "token.create", f"api-token:{token['id']}", _details(token))
    return token, secret


def revoke_token(token_id: int, *, actor: audit.Actor | str) -> dict:
    """Revoke one token (revoking a revoked one changes nothing); raises ``TokenError`` (404) for an unknown id."""
    row = db.session.get(ApiToken, token_id)
    if row is None:
        raise TokenError(f"No API token has the id {token_id}.", status=404)
    owner = db.session.get(User, row.user_id)
    token = describe(row, owner.username if owner else None)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.session.commit()
        token = describe(row, token["owner"])
        audit.record(actor, "token.revoke", f"api-token:{row.id}", _details(token))
    return token


def revoke_user_tokens(user: User, *, actor: audit.Actor | str) -> int:
    """Revoke every active token of ``user``; returns how many."""
    ids = db.session.execute(
        select(ApiToken.id).filter_by(user_id=user.id, revoked_at=None).order_by(ApiToken.id)
    ).scalars().all()
    for token_id in ids:
        revoke_token(token_id, actor=actor)
    return len(ids)


def _details(token: dict) -> dict:
    return {key: token[key] for key in ("id", "name", "owner", "scopes", "expires_at")}
