"""Writing an archive's rows into a database: merge or replace, in one transaction.

``restore_archive`` streams the archive's rows (``reader.Archive.events``),
checks each one against this instance's schema (``codec``: unknown columns,
types, lengths, nulls; the writers: foreign keys) and writes them in bulk batches
through the dialect's raw DBAPI connection, all inside one transaction. Anything
wrong rolls the whole transaction back, so a rejected or failed restore leaves
the database exactly as it was; a dry run does all the work and rolls back on
purpose, so its Result is the real one.

The plan (``plan.plan_restore``) is made once, before anything is written, and
passed in. Replace deletes the restored tables in reverse foreign-key order and
bulk-loads them in foreign-key order (``replace``); merge matches rows by primary
key (``merge``). The app's own policy for its rows beside the data tables runs as
registered hooks (``hooks``), in a replace and in a merge that overwrites. Sequences
are moved past the restored ids. What the restore changed about accounts is
compared before and after (``accounts``: ``security_changes``), and the mailed
links of an archive not signed here are stored as already used
(``neutralised_tokens``).

Nothing here knows about HTTP, jobs, where the archive came from, or which
database it writes to.
"""
from __future__ import annotations

import logging
import tempfile
from typing import Callable, Sequence

import orjson
from sqlalchemy.engine import Engine

from ..archive.layout import END, ROWS, TABLE, VALUES, LayoutMismatch
from ..archive.reader import Archive
from ..dialects import dialect_for
from ..dialects.base import Dialect
from ..errors import ArchiveError, BackupError, RestoreError, database_message
from ..malloc_tuning import give_back_freed_memory, keep_freed_buffers
from ...models import utcnow
from .accounts import USERS, AccountChanges, link_neutraliser, no_security_changes
from .codec import TableCodec
from .hooks import ReplaceHook
from .merge import MergeWriter
from .options import RestoreOptions
from .plan import RestorePlan, plan_restore, refuse_orphaning_children
from .replace import ReplaceWriter
from .result import Counts, Reasons
from .writer import BATCH_ROWS

log = logging.getLogger(__name__)

SPOOL_MEMORY_BYTES = 4 * 1024 * 1024
ProgressCallback = Callable[[float, str], None]


class Restore:
    """The state of one pass over the archive inside one transaction."""

    def __init__(self, archive: Archive, target: Dialect, plan: RestorePlan, options: RestoreOptions,
                 progress: ProgressCallback | None, hooks: Sequence[ReplaceHook] = ()):
        self.archive = archive
        self.target = target
        self.plan = plan
        self.options = options
        self._progress = progress
        self._hooks = hooks
        self._writer_class = ReplaceWriter if options.replacing else MergeWriter
        if options.replacing:
            target.prepare_copies(plan.tables)
        self.codecs = {table.name: TableCodec(table, target, aware_datetimes=target.binary_copy(table))
                       for table in plan.tables}
        self.counts = {table.name: Counts() for table in plan.tables}
        now = utcnow()
        self.neutralisers = {name: link_neutraliser(self.codecs[name], now) for name in plan.neutralise}
        self.reasons = Reasons()
        self.skipped_ids: dict[str, set] = {}
        # Replace only: ids written so far per parent table, and ids of parents left as they are.
        self.written_ids: dict[str, set] = {}
        self._kept_ids: dict[str, set] = {}
        # (table, CREATE statements, error explainer) of the indexes a bulk load dropped.
        self.index_builds: list[tuple[str, list[str], Callable]] = []
        # Read up front: a pipelined target would otherwise wait for the work queued before the query.
        self.rebuildable_indexes = {name: target.rebuildable_indexes(name) for name in plan.names} \
            if options.replacing else {}
        # While reading the archive: the table being written, or spooled, or skipped.
        self._writer = None
        self._spool = None
        self._skipping = False
        self._spooled: dict[str, tempfile.SpooledTemporaryFile] = {}
        self._done: set[str] = set()

    def parent_ids(self, parent: str, key: str) -> set | None:
        """Replace: every id the parent table will hold (None in a merge, which asks the database)."""
        if not self.options.replacing:
            return None
        if parent in self.written_ids:
            return self.written_ids[parent]
        if parent not in self._kept_ids:  # a parent outside the restore keeps its rows
            self._kept_ids[parent] = self.target.column_values(parent, key)
        return self._kept_ids[parent]

    def report(self, message: str) -> None:
        if self._progress is not None:
            self._progress(self.archive.fraction_read, message)

    def run(self, fast: bool) -> dict:
        """Write the archive's rows (``fast``: by its one-row-per-line layout) and return the Result."""
        self.target.begin(replacing=self.options.replacing)
        accounts = AccountChanges(self.target) if USERS in self.plan.names else None
        if accounts is not None:
            accounts.before()
        after_replace = self._empty_replaced_tables() if self.options.replacing else self._before_overwriting()
        try:
            self._read_archive(fast)
            self._write_spooled_tables()
            self._build_indexes()
        except BaseException:
            if self._writer is not None:
                self._writer.abort()
            raise
        finally:
            for spool in self._spooled.values():
                spool.close()
        for finish in after_replace:
            finish()
        return {
            "mode": self.options.mode,
            "tables": {str(table.name): self.counts[table.name].as_dict() for table in self.plan.tables},
            "skipped_reasons": self.reasons.as_list(),
            "safety_backup": None,
            "security_changes": accounts.after() if accounts is not None else no_security_changes(),
            "neutralised_tokens": sum(self.counts[name].inserted + self.counts[name].updated
                                      for name in self.plan.neutralise),
        }

    def _empty_replaced_tables(self) -> list[Callable[[], None]]:
        """Check (again, under the transaction) that nothing is orphaned, call the hooks, delete the rows."""
        refuse_orphaning_children(self.plan, self.target.has_rows)
        replaced = frozenset(self.plan.names)
        after_replace = [finish for hook in self._hooks
                         if (finish := hook(self.target, replaced, frozenset())) is not None]
        for table in reversed(self.plan.tables):
            self.counts[table.name].deleted = self.target.delete_all(table.name)
        self.report("Deleted the current rows")
        return after_replace

    def _before_overwriting(self) -> list[Callable[[], None]]:
        """A merge that overwrites may give an id to another person, as a replace may: the hooks run too."""
        if self.options.on_conflict != "overwrite":
            return []
        overwritten = frozenset(self.plan.names)
        return [finish for hook in self._hooks if (finish := hook(self.target, frozenset(), overwritten)) is not None]

    def _decode(self, table: str, blob: bytes):
        writer = self._writer
        if writer is None or writer.name != table or writer.codec.decode_json is None:
            return None
        return writer.codec.decode_json(blob)

    def _read_archive(self, fast: bool) -> None:
        for kind, value in self.archive.events(fast, self._decode):
            if kind is VALUES:
                self._writer.add_values(value)
            elif kind is ROWS:
                if self._writer is not None:
                    self._writer.add_rows(value)
                elif self._spool is not None:
                    self._spool.write(b"".join(orjson.dumps(row) + b"\n" for row in value))
                elif not self._skipping:
                    raise ArchiveError("The archive's rows appear outside a table.")
            elif kind is TABLE:
                self._open_table(value)
            elif kind is END:
                if self._writer is not None:
                    self._writer.finish()
                    self._done.add(value)
                self._writer, self._spool, self._skipping = None, None, False

    def _open_table(self, name: str) -> None:
        plan = self.plan
        self._writer, self._spool, self._skipping = None, None, False
        if name not in plan.known:
            raise ArchiveError(f"The archive holds an unknown table {name!r}; this instance has "
                               f"{', '.join(plan.known)}.")
        if name not in plan.names:
            self._skipping = True
        elif plan.parents[name] <= self._done:
            self._writer = self._writer_class(self, plan.known[name])
        else:
            # A child listed before its parent: keep its rows aside until the parent is in.
            self._spool = self._spooled[name] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)

    def _write_spooled_tables(self) -> None:
        for table in self.plan.tables:
            spool = self._spooled.get(table.name)
            if spool is None:
                continue
            self._writer = writer = self._writer_class(self, table)
            spool.seek(0)
            rows = []
            for line in spool:
                rows.append(orjson.loads(line))
                if len(rows) >= BATCH_ROWS:
                    writer.add_rows(rows)
                    rows = []
            writer.add_rows(rows)
            writer.finish()
            self._done.add(table.name)
        self._writer = None

    def _build_indexes(self) -> None:
        """Build the indexes dropped for the bulk loads, now that every table is in.

        Last, rather than after each table: the database then stores the next
        table while this process still reads it, and builds the indexes once this
        process has finished, when PostgreSQL's parallel workers have both cores
        to themselves.
        """
        if self.index_builds:
            give_back_freed_memory()
        for name, creates, explain in self.index_builds:
            self.report(f"Indexing {name}")
            for create in creates:
                self.target.execute_later(create, explain)
        self.index_builds = []


def check_before_writing(engine: Engine, plan: RestorePlan, options: RestoreOptions) -> None:
    """The refusals that read the database and write nothing (a replace's orphan check), for ``plan``.

    For the service to run before it takes the safety backup: a request bound to be
    refused then costs no backup. ``restore_archive`` checks again inside its
    transaction, where nobody can add rows in between.
    """
    if not options.replacing:
        return
    with dialect_for(engine).snapshot() as snapshot:
        refuse_orphaning_children(plan, lambda name: snapshot.has_rows(plan.known[name]))


def restore_archive(archive: Archive, engine: Engine, options: RestoreOptions, *, plan: RestorePlan | None = None,
                    hooks: Sequence[ReplaceHook] = (), progress: ProgressCallback | None = None) -> dict:
    """Restore ``archive`` into ``engine``'s database in one transaction and return the Result.

    ``plan`` is the archive's ``plan_restore`` for ``options`` (made here when not
    given); ``hooks`` are the app's ``ReplaceHook``s. A dry run does everything and
    rolls back. Raises ``ArchiveError`` (bad data, nothing written),
    ``BadRequestError`` (the request cannot be honoured, nothing written) or
    ``RestoreError`` (the database failed; rolled back).
    """
    if plan is None:
        plan = plan_restore(archive, options.validate())
    keep_freed_buffers()
    target = dialect_for(engine).connect()
    try:
        try:
            try:
                result = Restore(archive, target, plan, options, progress, hooks).run(fast=True)
            except LayoutMismatch:
                # Not the one-row-per-line layout: start again with the general parser.
                target.rollback()
                result = Restore(archive, target, plan, options, progress, hooks).run(fast=False)
            if options.dry_run:
                target.rollback()
            else:
                if progress:
                    progress(1.0, "Committing")
                target.move_sequences_past(plan.tables)
                target.commit()
        except ArchiveError as exc:
            target.rollback()
            raise archive.explain(exc) from exc
        except BackupError:
            target.rollback()
            raise
        except Exception as exc:
            target.rollback()
            # The chained exception keeps the details; a traceback in the log would end up on the CLI's stderr.
            log.info("restore failed and was rolled back: %s: %s", type(exc).__name__, exc)
            raise RestoreError(f"The restore failed and was rolled back; nothing was changed "
                               f"({type(exc).__name__}: {database_message(exc)}).") from exc
    finally:
        target.close()
    return result
