"""The replace strategy: bulk-load a table emptied by the restore, as ``pg_restore`` and ``sqlite3 < dump.sql`` do.

Every row is new, so nothing is looked up per row: foreign keys are checked
against the ids this restore wrote (or the rows a parent left out keeps), and the
batches go to the database by the fastest way it has, chosen once per table: one
COPY streamed by a helper thread (PostgreSQL), inserts the SQLite writer process
does without this process waiting, or savepointed batch inserts. A large table's
non-unique indexes are dropped and built again once every table is in.
"""
from __future__ import annotations

from typing import Callable

from ..dialects.deferred import ErrorExplainer
from ..errors import ArchiveError, database_message
from .writer import TableWriter

# Replacing a table with at least this many rows drops its non-unique indexes (on PostgreSQL
# also its keys, where nothing points at them) and builds them again once the rows are in,
# inside the same transaction: one sort instead of a B-tree insert per row (what sqlite3
# .dump and pg_restore do too).
INDEX_REBUILD_MIN_ROWS = 20_000


class ReplaceWriter(TableWriter):
    """Loads one emptied table; its rows' parents must be among the rows the parent tables will hold."""

    def __init__(self, restore, table):
        super().__init__(restore, table)
        target = self.target
        self.dropped_indexes: list[tuple[str, str]] = []
        self._copy = None  # streaming: the table's COPY (``copy_later``) once it started
        self.written_ids: set | None = None
        # Every reference checked against parent rows written by this restore: the server
        # need not look each parent up again (pg_restore --disable-triggers, in effect).
        self.skip_fk_triggers = (target.streams_replace and target.may_skip_fk_triggers and bool(self.fks)
                                 and all(parent in restore.written_ids for _i, _c, parent, _k in self.fks))
        # Streaming sends the whole table through one COPY, so the server stores rows while
        # this process reads the next ones (no queries in between).
        self._store: Callable[[list, int], None] = (
            self._stream if target.streams_replace else self._insert_later if target.pipelined
            else self._insert_or_explain)
        if self.tracks_skips:  # children check their parent ids against this set
            self.written_ids = restore.written_ids[self.name] = set()
        for _index, _column, parent, parent_key in self.fks:
            restore.parent_ids(parent, parent_key)  # loaded now: no query can run during a COPY
        expected = (restore.archive.record_counts or {}).get(self.name, 0)
        if expected >= INDEX_REBUILD_MIN_ROWS:
            self._drop_rebuildable_indexes()

    def finish(self) -> None:
        """Write what is queued; any index dropped for the bulk load is built once every table is in."""
        self.flush()
        if self._copy is not None:
            copy, self._copy = self._copy, None
            copy.finish(None)
            if self.skip_fk_triggers:
                self.target.foreign_key_triggers(enabled=True)
        if self.dropped_indexes:
            creates = [create for _drop, create in self.dropped_indexes]
            self.restore.index_builds.append((self.name, creates, self._explained(self._duplicate_failure)))
        self.dropped_indexes = []

    def abort(self) -> None:
        """End an unfinished COPY after a failure elsewhere (the transaction is rolled back next)."""
        if self._copy is not None:
            copy, self._copy = self._copy, None
            copy.writer.finish(ArchiveError("The restore stopped."))

    def _write(self, values: list, first: int) -> None:
        missing = self._missing_parents(values)
        if missing:
            self._refuse_broken_foreign_key(values, first, missing)
        self._store(values, first)
        if self.written_ids is not None:
            pk_index = self.codec.pk_index
            self.written_ids.update(row[pk_index] for row in values)
        self.counts.inserted += len(values)

    def _refuse_broken_foreign_key(self, values: list, first: int, missing: list) -> None:
        for offset, row in enumerate(values):
            for index, column, parent, _key, absent in missing:
                if row[index] in absent:
                    raise ArchiveError(f"{self._where(first + offset, row)}: {column} {row[index]} refers to a "
                                       f"{parent} row that does not exist (a broken foreign key).")

    def _drop_rebuildable_indexes(self) -> None:
        for drop, create in self.restore.rebuildable_indexes[self.name]:
            self.target.execute_later(drop)
            self.dropped_indexes.append((drop, create))

    # the ways to the database

    def _stream(self, values: list, first: int) -> None:
        if self._copy is None:
            if self.skip_fk_triggers:
                self.target.foreign_key_triggers(enabled=False)
            self._copy = self.target.copy_later(self.table, self._explained(self._copy_failure))
        write = self._copy.write_row
        try:
            for row in values:
                write(row)
        except self.target.data_errors as exc:  # a value psycopg cannot pack for its column
            raise ArchiveError(self._copy_failure(exc)) from exc

    def _insert_later(self, values: list, first: int) -> None:
        # Only the keys are kept for the message: the batch itself may be megabytes.
        pk_index = self.codec.pk_index
        keys = [row[pk_index] for row in values] if pk_index is not None else None

        def explain(offset: int, exc: Exception) -> ArchiveError:
            where = f"Table {self.name}, row {first + offset}" + \
                (f" ({self.codec.pk} {keys[offset]})" if keys is not None else "")
            return ArchiveError(f"{where} cannot be stored: {database_message(exc)}.")

        self.target.insert_later(self.name, self.codec.names, values, explain)

    def _insert_or_explain(self, values: list, first: int) -> None:
        target = self.target
        savepoint = target.savepoint()
        try:
            target.insert(self.table, values)
        except target.data_errors:
            target.rollback_to(savepoint)
            self._explain_failed_insert(values, first)
            raise
        target.release(savepoint)

    def _explain_failed_insert(self, values: list, first: int) -> None:
        target = self.target
        for offset, row in enumerate(values):
            savepoint = target.savepoint()
            try:
                target.insert(self.table, [row])
            except target.data_errors as exc:
                target.rollback_to(savepoint)
                raise ArchiveError(f"{self._where(first + offset, row)} cannot be stored: "
                                   f"{database_message(exc)}.") from exc
            target.release(savepoint)

    # the database's refusals, explained

    def _explained(self, message: Callable[[Exception], str]) -> ErrorExplainer:
        """For work done later (``execute_later``, ``copy_later``): the database's refusal as an ``ArchiveError``."""
        def explain(exc: Exception) -> ArchiveError | None:
            return ArchiveError(message(exc)) if isinstance(exc, self.target.data_errors) else None

        return explain

    def _copy_failure(self, exc) -> str:
        line = self.target.refused_line(exc)
        where = f"Table {self.name}, row {line}" if line else f"Table {self.name}"
        detail = self.target.refusal_detail(exc)
        return f"{where} cannot be stored: {(detail or database_message(exc)).rstrip('.')}."

    def _duplicate_failure(self, exc) -> str:
        key = self.target.duplicated_key(exc)
        if key:
            return f"Table {self.name} cannot be stored: more than one row has {key[0]} {key[1]}."
        return f"Table {self.name} cannot be stored: {database_message(exc)}."
