"""The restore's plan: which tables it writes and in what order, checked before anything is written.

``plan_restore`` makes the plan once per restore, from the archive's metadata and
this instance's schema; the service checks the request with it and hands the same
plan to the restore. ``refuse_orphaning_children`` is the one precondition that
reads the database; it runs before the safety backup and again inside the
restore's transaction, where nobody else can add rows in between.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ...models import data_tables
from ..archive.reader import Archive
from ..errors import ArchiveError, BadRequestError, RestoreError
from ..schema import parent_tables, parents_among
from .accounts import LINK_TABLES
from .options import RestoreOptions


@dataclass
class RestorePlan:
    """The tables a restore writes (parents first) and how they depend on one another."""

    tables: list                     # the tables to restore, parents first
    names: set
    known: dict                      # every data table by name
    parents: dict = field(default_factory=dict)   # table name -> names of its parents being restored
    # Mailed-link tables of an archive not signed by this instance: their rows are stored as already used.
    neutralise: frozenset = frozenset()

    def is_parent(self, name: str) -> bool:
        """Whether another table being restored points at ``name``."""
        return any(name in parents for parents in self.parents.values())


def _check_revision(archive: Archive, schema_revisions: set[str] | None) -> None:
    revision = archive.schema_revision
    if revision and schema_revisions is not None:
        unknown = [part for part in revision.split(",") if part not in schema_revisions]
        if unknown:
            raise ArchiveError(f"The archive was made with schema revision {revision}, which this instance does "
                               "not know (it is newer than this instance's schema); upgrade the app first.")


def _wanted_tables(archive: Archive, options: RestoreOptions, known: dict) -> set:
    in_archive = archive.declared_tables
    if in_archive is None:
        in_archive = archive.table_names()
    unknown = [name for name in in_archive if name not in known]
    if unknown:
        raise ArchiveError(f"The archive holds unknown table(s) {', '.join(unknown)}; this instance has "
                           f"{', '.join(known)}.")
    if options.tables is None:
        return set(in_archive)
    absent = [name for name in options.tables if name not in in_archive]
    if absent:
        raise ArchiveError(f"The archive holds no table {', '.join(absent)}; it holds "
                           f"{', '.join(in_archive) or 'no tables'}.")
    return set(options.tables)


def plan_restore(archive: Archive, options: RestoreOptions, schema_revisions: set[str] | None = None) -> RestorePlan:
    """The checks that need the schema but not the rows (revision, tables, the ``tables`` option), and the plan.

    An archive not signed by this instance gets its mailed links disarmed (``neutralise``).

    ``schema_revisions`` are the Alembic revisions this instance knows (its head
    and every ancestor); an archive from any other revision was made by a newer
    (or foreign) schema and is refused. None skips that check.
    """
    _check_revision(archive, schema_revisions)
    known = {str(table.name): table for table in data_tables()}
    wanted = _wanted_tables(archive, options, known)
    ordered = [table for table in data_tables() if table.name in wanted]
    if options.mode == "merge":
        for table in ordered:
            if len(table.primary_key.columns) != 1:
                raise RestoreError(f"Table {table.name} has no single-column primary key; it cannot be merged.")
    return RestorePlan(tables=ordered, names=wanted, known=known, parents=parents_among(ordered),
                       neutralise=frozenset() if archive.signed else LINK_TABLES & wanted)


def refuse_orphaning_children(plan: RestorePlan, has_rows: Callable[[str], bool]) -> None:
    """Replace: refuse (``BadRequestError``) when a table left out holds rows pointing at a table being replaced.

    ``has_rows(table_name)`` tells whether a table holds any row.
    """
    for table in data_tables():
        if table.name in plan.names:
            continue
        parents = sorted(parent_tables(table) & plan.names)
        if parents and has_rows(table.name):
            raise BadRequestError(
                f"Replacing {', '.join(parents)} would leave rows of {table.name} pointing at deleted rows; "
                f"add {table.name} to tables, or restore in merge mode.")
