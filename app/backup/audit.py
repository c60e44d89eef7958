"""The audit log: one way to record an action (``record``) and one way to read entries back (``entries``).

An entry says who acted (a username, or ``scheduler`` / ``cli``), from which
address, what they did (one of ``ACTIONS``), to what, and what matters for that
action (``details``, stored as JSON; the API token's id as ``token_id`` when a
token acted). A face describes who acts as an ``Actor`` made of plain values (read
from the request, or the fixed ``CLI`` and ``SCHEDULER``) and the service layer
records the action with it, so every face is audited alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import select

from ..extensions import db
from ..models import AuditLog

ACTIONS = ("backup.create", "backup.download", "backup.delete", "backup.pin", "backup.unpin", "backup.verify",
           "backup.restore", "backup.prune", "schedule.save", "token.create", "token.revoke")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class Actor:
    """Who does an action: ``name`` (a username, or ``scheduler`` / ``cli``), the client's ``ip``, and the id of
    the API token the request authenticated with (``token_id``).

    ``person`` is false for the machine actors: their ``username`` (what a backup's
    ``created_by`` records) is None.
    """

    name: str | None
    ip: str | None = None
    token_id: int | None = None
    person: bool = True

    @property
    def username(self) -> str | None:
        """The acting person's username; None for the scheduler and the CLI."""
        return self.name if self.person else None


SCHEDULER = Actor("scheduler", person=False)
CLI = Actor("cli", person=False)


def _fit(text: str | None, column) -> str | None:
    """Cut a label to its column, so a long name can never make an audit write fail."""
    if text is None:
        return None
    limit = column.type.length
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def record(actor: Actor | str | None, action: str, target: str | None = None, details: dict | None = None, *,
           ip: str | None = None) -> AuditLog:
    """Add one audit entry and commit it; ``details`` is stored as JSON (dates as text).

    ``actor`` is an ``Actor`` (its name, IP and token id are recorded) or a bare name
    with the client's ``ip``. Labels longer than their column are cut to fit.
    """
    if isinstance(actor, Actor):
        if actor.token_id is not None:
            details = {**(details or {}), "token_id": actor.token_id}
        actor, ip = actor.name, actor.ip
    columns = AuditLog.__table__.c
    entry = AuditLog(actor=_fit(actor, columns.actor), action=_fit(action, columns.action),
                     target=_fit(target, columns.target), ip=_fit(ip, columns.ip),
                     details=None if details is None else orjson.dumps(details, default=str).decode())
    db.session.add(entry)
    db.session.commit()
    return entry


def entries(before: int | None = None, action: str | None = None,
            limit: int = PAGE_SIZE) -> tuple[list[dict], int | None]:
    """One page of entries, newest first: those older than entry ``before``, of ``action`` only if given.

    Returns the entries (the contract's AuditEntry) and the id to pass as ``before``
    for the next page, or None on the last page.
    """
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(AuditLog.id < before)
    if action:
        query = query.where(AuditLog.action == action)
    rows = db.session.execute(query).scalars().all()
    page = [_entry(row) for row in rows[:limit]]
    return page, (page[-1]["id"] if len(rows) > limit else None)


def recorded_actions() -> list[str]:
    """Every action the log can be filtered by: the contract's, then any other found in the log, sorted."""
    found = db.session.execute(select(AuditLog.action).distinct()).scalars()
    return [*ACTIONS, *sorted(set(found) - set(ACTIONS))]


def _entry(row: AuditLog) -> dict:
    return {"id": row.id, "at": row.created_at.isoformat(), "actor": row.actor, "action": row.action,
            "target": row.target, "ip": row.ip, "details": orjson.loads(row.details) if row.details else None}
