"""What a restore does to the app's own rows beside the data tables: API tokens and audit entries.

The restore engine replaces the CyberQuest tables and knows nothing of the app's
tokens or audit log; ``register`` hands it this policy as a replace hook
(``app.backup.restore.hooks``): after a replace, tokens and audit entries of
accounts still present (same id, same username) are kept, the rest go; after a
merge that overwrites users, the tokens of an id that now belongs to someone else
go, as a replace would drop them. All in the restore's transaction.
"""
from __future__ import annotations

from .backup.restore.hooks import register_replace_hook
from .models import ApiToken, AuditLog, User


def keep_rows_of_accounts_still_present(connection, replaced: frozenset, overwritten: frozenset):
    """Replace hook: note each API token's owner now; once the users are written, drop what lost its account.

    An id alone is not enough: after a replace, or a merge that overwrites users,
    the id may belong to someone else, and a token must never start
    authenticating another person.
    """
    if User.__tablename__ in replaced:
        owners = _token_owners(connection)
        return lambda: _forget_rows_of_removed_accounts(connection, owners)
    if User.__tablename__ in overwritten:
        owners = _token_owners(connection)
        return lambda: _forget_tokens_of_removed_accounts(connection, owners)
    return None


def _token_owners(connection) -> dict[int, tuple[int, str | None]]:
    """API tokens and the username of their owner, before the users are replaced."""
    q = connection.q
    connection.cursor.execute(
        f"SELECT t.{q('id')}, t.{q('user_id')}, u.{q('username')} FROM {q(ApiToken.__tablename__)} t "
        f"LEFT JOIN {q(User.__tablename__)} u ON u.{q('id')} = t.{q('user_id')}")
    return {row[0]: (row[1], row[2]) for row in connection.cursor.fetchall()}


def _forget_tokens_of_removed_accounts(connection, token_owners: dict) -> None:
    owner_ids = {user_id for user_id, _ in token_owners.values()}
    now = dict(connection.select_where_in(User.__tablename__, ["id", "username"], "id", owner_ids)) \
        if owner_ids else {}
    doomed = [token_id for token_id, (user_id, username) in token_owners.items()
              if user_id not in now or now[user_id] != username]
    connection.delete_where_in(ApiToken.__tablename__, "id", doomed)


def _forget_rows_of_removed_accounts(connection, token_owners: dict) -> None:
    q = connection.q
    _forget_tokens_of_removed_accounts(connection, token_owners)
    audit, users = q(AuditLog.__tablename__), q(User.__tablename__)
    connection.cursor.execute(
        f"DELETE FROM {audit} WHERE {q('actor_id')} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {users} u "
        f"WHERE u.{q('id')} = {audit}.{q('actor_id')} AND ({audit}.{q('actor')} IS NULL "
        f"OR {audit}.{q('actor')} = u.{q('username')}))")


def register(app) -> None:
    """Have every replace restore of ``app`` keep (or drop) the app's own rows as this module says."""
    register_replace_hook(app, keep_rows_of_accounts_still_present)
