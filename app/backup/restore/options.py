"""What a restore is asked to do: the mode, the tables, the conflict policy, a dry run."""
from __future__ import annotations

from dataclasses import dataclass

from ...models import data_tables
from ..errors import BadRequestError

MODES = ("merge", "replace")
CONFLICT_POLICIES = ("skip", "overwrite")


@dataclass(frozen=True)
class RestoreOptions:
    """What the user asked for; ``validate`` turns a bad request into ``BadRequestError``."""

    mode: str
    tables: tuple[str, ...] | None = None
    on_conflict: str = "skip"
    dry_run: bool = False
    trust_unsigned: bool = False

    @property
    def replacing(self) -> bool:
        """A replace: the restored tables are emptied first."""
        return self.mode == "replace"

    def validate(self) -> "RestoreOptions":
        if self.mode not in MODES:
            raise BadRequestError(f"Unknown restore mode {self.mode!r}; use merge or replace.")
        if self.on_conflict not in CONFLICT_POLICIES:
            raise BadRequestError(f"Unknown on_conflict {self.on_conflict!r}; use skip or overwrite.")
        if self.on_conflict != "skip" and self.mode != "merge":
            raise BadRequestError("on_conflict applies to merge restores only.")
        if self.tables is not None:
            known = {t.name for t in data_tables()}
            unknown = [name for name in self.tables if name not in known]
            if unknown:
                raise BadRequestError(f"Unknown table(s) in tables: {', '.join(unknown)}; the tables are "
                                      f"{', '.join(t.name for t in data_tables())}.")
        return self


def parse_tables(text) -> tuple[str, ...] | None:
    """``"users, login_attempts"`` (or a list) as a tuple of names; empty means every table."""
    if text is None:
        return None
    parts = text if isinstance(text, (list, tuple)) else str(text).split(",")
    names = tuple(dict.fromkeys(str(part).strip() for part in parts if str(part).strip()))
    return names or None
