"""Writing one table: rows are converted, queued and handed on in batches to a strategy.

``TableWriter`` does what both strategies share: conversion (``TableCodec``),
batching, and finding the foreign keys whose parent rows are missing. The
strategies are ``replace.ReplaceWriter`` (bulk load into emptied tables) and
``merge.MergeWriter`` (rows matched by primary key).
"""
from __future__ import annotations

BATCH_ROWS = 2000


class TableWriter:
    """Collects one table's converted rows and writes them in batches (``_write``, per strategy).

    ``restore`` is the ``engine.Restore`` the table belongs to: its connection, plan,
    codecs, counts and the ids written or skipped so far.
    """

    def __init__(self, restore, table):
        self.restore = restore
        self.target = restore.target
        self.table = table
        self.name = str(table.name)
        self.codec = restore.codecs[table.name]
        self.counts = restore.counts[table.name]
        self.values: list[list] = []
        self.rows_seen = 0
        self.fks = [(self.codec.names.index(fk.parent.name), fk.parent.name, fk.column.table.name, fk.column.name)
                    for fk in table.foreign_keys]
        self.tracks_skips = restore.plan.is_parent(self.name)
        # Rows of a mailed-link table from an archive not signed here are stored as already used.
        self.neutralise = restore.neutralisers.get(self.name)

    def add_rows(self, rows: list) -> None:
        """Convert and queue rows (numbered from 1 in the order they come); writes full batches."""
        values = self.codec.convert_many(rows, self.rows_seen + 1)
        self.values.extend(values if self.neutralise is None else self.neutralise(values))
        self.rows_seen += len(rows)
        if len(self.values) >= BATCH_ROWS:
            self.flush()

    def add_values(self, values: list) -> None:
        """Queue rows that ``TableCodec.decode_json`` already checked and converted; writes full batches."""
        self.values.extend(values if self.neutralise is None else self.neutralise(values))
        self.rows_seen += len(values)
        if len(self.values) >= BATCH_ROWS:
            self.flush()

    def finish(self) -> None:
        """Write what is queued."""
        self.flush()

    def abort(self) -> None:
        """Give up the table after a failure elsewhere (the transaction is rolled back next)."""

    def flush(self) -> None:
        if not self.values:
            return
        values, self.values = self.values, []
        self._write(values, self.rows_seen - len(values) + 1)
        self.restore.report(f"Restoring {self.name} ({self.rows_seen:,} rows read)")

    def _write(self, values: list, first: int) -> None:
        """Write a batch of converted rows, the first of which is row number ``first``."""
        raise NotImplementedError

    def _missing_parents(self, values: list) -> list:
        """``(index, column, parent, parent key, missing ids)`` for each foreign key whose parent lacks values."""
        found = []
        for index, column, parent, parent_key in self.fks:
            wanted = {row[index] for row in values}
            wanted.discard(None)
            if not wanted:
                continue
            known = self.restore.parent_ids(parent, parent_key)
            if known is None:
                known = self.target.existing_keys(parent, parent_key, wanted)
            missing = wanted - known
            if missing:
                found.append((index, column, parent, parent_key, missing))
        return found

    def _where(self, number: int, values: list) -> str:
        if self.codec.pk_index is not None:
            return f"Table {self.name}, row {number} ({self.codec.pk} {values[self.codec.pk_index]})"
        return f"Table {self.name}, row {number}"
