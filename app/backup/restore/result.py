"""What a restore reports: rows inserted, updated, skipped and deleted per table, and why rows were skipped."""
from __future__ import annotations

from dataclasses import dataclass

REASON_SAMPLE_IDS = 20


@dataclass
class Counts:
    """One table's figures in the Result."""

    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    deleted: int = 0

    def as_dict(self) -> dict:
        return {"inserted": self.inserted, "updated": self.updated, "skipped": self.skipped,
                "deleted": self.deleted}


class Reasons:
    """Skipped rows grouped by table and reason, with the first few ids of each group."""

    def __init__(self):
        self._groups: dict[tuple[str, str], dict] = {}

    def add(self, table: str, reason: str, ident) -> None:
        self.add_many(table, reason, [ident])

    def add_many(self, table: str, reason: str, idents: list) -> None:
        group = self._groups.get((table, reason))
        if group is None:
            group = self._groups[(table, reason)] = {"table": table, "reason": reason, "count": 0, "ids": []}
        group["count"] += len(idents)
        room = REASON_SAMPLE_IDS - len(group["ids"])
        if room > 0:
            group["ids"].extend(idents[:room])

    def as_list(self) -> list[dict]:
        """The ``skipped_reasons`` of the Result."""
        return list(self._groups.values())
