"""One way to record an action in the audit log."""
from __future__ import annotations

import orjson

from ..extensions import db
from ..models import AuditLog


def _fit(text: str | None, column) -> str | None:
    """Cut a label to its column, so a long name can never make an audit write fail."""
    if text is None:
        return None
    limit = column.type.length
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def record(actor: str | None, action: str, target: str | None = None, details: dict | None = None) -> AuditLog:
    """Add one audit entry and commit it; ``details`` is stored as JSON (dates as text)."""
    entry = AuditLog(actor=_fit(actor, AuditLog.__table__.c.actor), action=action,
                     target=_fit(target, AuditLog.__table__.c.target),
                     details=None if details is None else orjson.dumps(details, default=str).decode())
    db.session.add(entry)
    db.session.commit()
    return entry
