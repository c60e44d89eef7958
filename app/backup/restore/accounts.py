"""What a restore does to accounts: the ``security_changes`` it reports, and mailed links it disarms.

``AccountChanges`` compares the ``users`` table before and after a restore with a
few set-based queries: a temporary copy of the accounts before (kept by the
dialect), then one outer join for the new and the changed accounts and one for
the removed ones. Accounts are matched by username, the name an admin knows them by.

An archive not signed by this instance may carry password-reset or e-mail
verification rows whose link its maker knows. ``link_neutraliser`` gives, for
those two tables only, a per-batch function storing each row as already used.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from ...models import EmailVerification, PasswordResetToken, User

SECURITY_CHANGE_KINDS = ("new_admins", "admin_granted", "admin_revoked", "password_changed", "deactivated",
                         "removed")
USERS = User.__tablename__
_BEFORE = "cq_restore_accounts_before"
_COLUMNS = ("username", "is_admin", "is_active", "password_hash")
# Per mailed-link table: the column saying the link was used, its value then, and when it was used.
_USED = {PasswordResetToken.__tablename__: ("is_active", False, "used_at"),
         EmailVerification.__tablename__: ("is_verified", True, "verified_at")}
LINK_TABLES = frozenset(_USED)


def no_security_changes() -> dict:
    """``security_changes`` of a restore that leaves the accounts alone."""
    return {kind: [] for kind in SECURITY_CHANGE_KINDS}


class AccountChanges:
    """The accounts before a restore (``before``), compared with those after (``after``), on its connection."""

    def __init__(self, target):
        self.target = target

    def before(self) -> None:
        """Keep a copy of the accounts as they are now, inside the restore's transaction."""
        q = self.target.q
        self.target.keep_copy(_BEFORE, f"SELECT {', '.join(q(c) for c in _COLUMNS)} FROM {q(USERS)}", "username")

    def after(self) -> dict:
        """The ``security_changes`` since ``before``: usernames per kind, sorted; the copy is dropped."""
        target, q = self.target, self.target.q
        users, before, name = q(USERS), q(_BEFORE), q("username")
        admin, active, password = q("is_admin"), q("is_active"), q("password_hash")
        changes = no_security_changes()
        cursor = target.cursor
        new_password = target.text_differs(f"b.{password}", f"u.{password}")
        # One pass over the accounts now: the new ones that are admins, and those that changed.
        cursor.execute(f"SELECT u.{name}, CASE WHEN b.{name} IS NULL THEN 1 ELSE 0 END, b.{admin}, u.{admin}, "
                       f"b.{active}, u.{active}, CASE WHEN {new_password} THEN 1 ELSE 0 END "
                       f"FROM {users} u LEFT JOIN {before} b ON b.{name} = u.{name} "
                       f"WHERE (b.{name} IS NULL AND u.{admin}) OR b.{admin} <> u.{admin} "
                       f"OR b.{active} <> u.{active} OR {new_password}")
        for username, is_new, was_admin, is_admin, was_active, is_active, new_hash in cursor.fetchall():
            if is_new:
                changes["new_admins"].append(username)
                continue
            if is_admin and not was_admin:
                changes["admin_granted"].append(username)
            if was_admin and not is_admin:
                changes["admin_revoked"].append(username)
            if was_active and not is_active:
                changes["deactivated"].append(username)
            if new_hash:
                changes["password_changed"].append(username)
        cursor.execute(f"SELECT b.{name} FROM {before} b LEFT JOIN {users} u ON u.{name} = b.{name} "
                       f"WHERE u.{name} IS NULL")
        changes["removed"] = [row[0] for row in cursor.fetchall()]
        target.drop_copy(_BEFORE)
        return {kind: sorted(names) for kind, names in changes.items()}


def link_neutraliser(codec, now: datetime) -> Callable[[list], list] | None:
    """For a mailed-link table, ``neutralise(values)``: the batch's rows as already used (else None).

    ``codec`` is the table's ``TableCodec`` (values are spelled as it stores them);
    a row keeps the moment it was used, or gets ``now``.
    """
    if codec.name not in _USED:
        return None
    flag_name, used_value, stamp_name = _USED[codec.name]
    flag, stamp = codec.names.index(flag_name), codec.names.index(stamp_name)
    used = codec.storable(codec.columns[flag], used_value)
    moment = codec.storable(codec.columns[stamp], now)

    def neutralise(values: list) -> list:
        rows = []
        for row in values:
            row = list(row)
            row[flag] = used
            if row[stamp] is None:
                row[stamp] = moment
            rows.append(row)
        return rows

    return neutralise


_LABELS = {"new_admins": "new admin accounts", "admin_granted": "made admins", "admin_revoked": "no longer admins",
           "password_changed": "passwords changed", "deactivated": "deactivated", "removed": "removed"}


def describe_security_changes(changes: dict) -> list[str]:
    """``security_changes`` in words, one phrase per kind that names anyone (``made admins: bob, erin``)."""
    return [f"{_LABELS[kind]}: {', '.join(changes[kind])}" for kind in SECURITY_CHANGE_KINDS if changes.get(kind)]
