"""The merge strategy: rows matched by primary key, kept or overwritten, skipped with a reason when they collide.

A row whose id is present is skipped (``on_conflict=skip``) or overwritten when it
differs; a new row that collides with another row on a unique column, or whose
parent row was skipped, is skipped and the Result says why. A row whose parent
exists nowhere stops the restore.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from ..errors import ArchiveError, database_message
from .writer import TableWriter

_COLLIDES = "collides with an existing row on a unique column"


class MergeWriter(TableWriter):
    """Merges one table's rows into the rows it holds."""

    def __init__(self, restore, table):
        super().__init__(restore, table)
        self.unique_columns = [self.codec.names.index(c.name) for c in _unique_columns(table)]
        self.skipped_ids: set = restore.skipped_ids.setdefault(self.name, set())

    def _write(self, values: list, first: int) -> None:
        batch = list(zip(range(first, first + len(values)), values))
        self._merge(self._without_orphans(batch))

    def _without_orphans(self, batch: list) -> list:
        """Skip rows whose parent was skipped; refuse rows whose parent does not exist at all."""
        missing = self._missing_parents([values for _, values in batch])
        if not missing:
            return batch
        kept = []
        for number, values in batch:
            for index, column, parent, parent_key, absent in missing:
                value = values[index]
                if value not in absent:
                    continue
                if value in self.restore.skipped_ids.get(parent, ()):
                    self._skip(values, f"its {parent} row ({parent_key} {value}) was skipped")
                    break
                raise ArchiveError(f"{self._where(number, values)}: {column} {value} refers to a {parent} row "
                                   "that does not exist (a broken foreign key).")
            else:
                kept.append((number, values))
        return kept

    def _merge(self, batch: list) -> None:
        pk_index = self.codec.pk_index
        target = self.target
        ids = [values[pk_index] for _, values in batch]
        existing = target.existing_keys(self.name, self.codec.pk, ids)
        distinct = len(set(ids)) == len(ids)
        if distinct and not existing:
            fresh, present = batch, []
        elif distinct:
            present = [row for row, ident in zip(batch, ids) if ident in existing]
            fresh = [row for row, ident in zip(batch, ids) if ident not in existing]
        else:  # an id repeated within the batch: the first one counts
            fresh, present = [], []
            seen_ids = set()
            for row, ident in zip(batch, ids):
                if ident in existing or ident in seen_ids:
                    present.append(row)
                else:
                    seen_ids.add(ident)
                    fresh.append(row)
        if present:
            if self.restore.options.on_conflict == "overwrite":
                self._overwrite(present)
            else:
                self.counts.skipped += len(present)
                self.restore.reasons.add_many(self.name, "id already present (on_conflict=skip keeps the current row)",
                                              [values[pk_index] for _, values in present])
        fresh = self._without_unique_collisions(fresh)
        self._insert_skipping_failures(fresh)

    def _without_unique_collisions(self, rows: list) -> list:
        pk_index = self.codec.pk_index
        fold = self.target.collation_key
        for index in self.unique_columns:
            if not rows:
                break
            column = self.codec.names[index]
            values = {values[index] for _, values in rows if values[index] is not None}
            owners = {(fold(value) if fold else value): owner for owner, value in
                      self.target.select_where_in(self.name, [self.codec.pk, column], column, values)} \
                if values else {}
            kept, claimed = [], {}
            for number, values in rows:
                value = values[index]
                key = fold(value) if fold else value
                ident = values[pk_index]
                owner = owners.get(key) if value is not None else None
                if value is not None and ((owner is not None and owner != ident) or
                                          (key in claimed and claimed[key] != ident)):
                    self._skip(values, f"{column} already belongs to another {self.name} row")
                    continue
                if value is not None:
                    claimed[key] = ident
                kept.append((number, values))
            rows = kept
        return rows

    def _skip(self, values: list, reason: str) -> None:
        ident = values[self.codec.pk_index] if self.codec.pk_index is not None else None
        self.counts.skipped += 1
        self.restore.reasons.add(self.name, reason, ident)
        if self.tracks_skips and ident is not None:
            self.skipped_ids.add(ident)

    def _insert_skipping_failures(self, rows: list) -> None:
        if not rows:
            return
        self.counts.inserted += self._write_sifting(
            rows, lambda batch: self.target.insert(self.table, batch),
            lambda values: self._skip(values, _COLLIDES))

    def _write_sifting(self, rows: list, write: Callable[[list], None], skip: Callable[[list], None]) -> int:
        """Write ``rows`` (``(number, values)``) in one batch under a savepoint; return how many were written.

        When the database refuses the batch for something the checks above could not
        foresee (e.g. a collation that equates accented letters), the rows are written
        one by one: one that collides on a unique column goes to ``skip``, and any other
        refused value stops the restore with the row named.
        """
        target = self.target
        savepoint = target.savepoint()
        try:
            write([values for _, values in rows])
        except target.data_errors:
            target.rollback_to(savepoint)
        else:
            target.release(savepoint)
            return len(rows)
        written = 0
        for number, values in rows:
            savepoint = target.savepoint()
            try:
                write([values])
            except target.data_errors as exc:
                target.rollback_to(savepoint)
                if isinstance(exc, target.data_errors[1]):
                    raise ArchiveError(f"{self._where(number, values)} cannot be stored: {database_message(exc)}.") \
                        from exc
                skip(values)
                continue
            target.release(savepoint)
            written += 1
        return written

    def _overwrite(self, rows: list) -> None:
        codec, target = self.codec, self.target
        pk_index = codec.pk_index
        current = {row[pk_index]: row for row in
                   target.select_where_in(self.name, codec.names, codec.pk, [v[pk_index] for _, v in rows])}
        changed = []
        for number, values in rows:
            now = current.get(values[pk_index])
            if now is not None and all(_same(a, b) for a, b in zip(now, values)):
                self.counts.skipped += 1
                self.restore.reasons.add(self.name, "identical to the current row", values[pk_index])
            else:
                changed.append((number, values))
        changed = self._without_unique_collisions(changed)
        if not changed:
            return
        names = [n for n in codec.names if n != codec.pk]
        positions = [i for i, n in enumerate(codec.names) if n != codec.pk]

        def params(values):
            return [values[i] for i in positions] + [values[pk_index]]

        def skip(values):
            self.counts.skipped += 1
            self.restore.reasons.add(self.name, _COLLIDES, values[pk_index])

        self.counts.updated += self._write_sifting(
            changed, lambda batch: target.update(self.name, names, codec.pk, [params(values) for values in batch]),
            skip)


def _same(current, restored) -> bool:
    if current == restored:
        return True
    # Drivers hand back datetimes where SQLite stores text, and ints for booleans.
    if isinstance(current, datetime) and isinstance(restored, datetime):
        return current.replace(tzinfo=None) == restored.replace(tzinfo=None)
    return False


def _unique_columns(table) -> list:
    columns = []
    for constraint in table.constraints:
        cols = list(getattr(constraint, "columns", []))
        if constraint.__class__.__name__ == "UniqueConstraint" and len(cols) == 1:
            columns.append(cols[0])
    for index in table.indexes:
        if index.unique and len(index.columns) == 1:
            columns.append(list(index.columns)[0])
    for column in table.columns:
        if column.unique and not column.primary_key and column not in columns:
            columns.append(column)
    return list(dict.fromkeys(columns))
