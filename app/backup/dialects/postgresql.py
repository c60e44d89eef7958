"""PostgreSQL: rows read through psycopg's own server-side cursor, replaces streamed through COPY.

Reading: a table of plain columns skips SQLAlchemy's row processing. Writing: a
replace sends each table through one COPY (binary where every column allows),
and ``pg_sender``'s helper thread sends the statements and COPY data, so the
server stores one table while this process reads the next. The only module
besides ``pg_sender`` that imports psycopg.
"""
from __future__ import annotations

import re
import uuid
from typing import Iterator, Sequence

from psycopg import Copy
from sqlalchemy.engine import Connection

from ..schema import INT32, INT64, column_kind, integer_key, read_exactly
from .base import FAST_BATCH_FIRST_ROWS, Dialect, RowEncoder
from .deferred import ErrorExplainer
from .pg_sender import ConnectionHelper

# PostgreSQL types psycopg writes in binary COPY from the values TableCodec gives each kind of column.
# Integers only where the type holds the whole range the codec lets through: psycopg's binary
# int dumpers wrap a value that does not fit, where text COPY has the server refuse it.
_BINARY_COPY_TYPES = {("int", *INT32): {"int4", "int8"}, ("int", *INT64): {"int8"}, ("bool",): {"bool"},
                      ("str",): {"text", "varchar"}, ("datetime",): {"timestamp"}}


def _binary_kind(column) -> tuple:
    """A column's key in ``_BINARY_COPY_TYPES``: its kind, a string's length aside (the server checks it)."""
    kind = column_kind(column, wide_integers=False)
    return kind[:1] if kind[0] == "str" else kind


class PostgreSQLDialect(Dialect):
    """PostgreSQL: snapshots in REPEATABLE READ, COPY for replaces, keys and indexes rebuilt after bulk loads."""

    streams_replace = True
    decodes_json_rows = True

    # --- reading ------------------------------------------------------------------------

    def _begin_snapshot(self, conn: Connection) -> Connection:
        return conn.execution_options(isolation_level="REPEATABLE READ")

    def row_batches(self, conn: Connection, table, encode: RowEncoder) -> Iterator[tuple[bytes, int]]:
        """psycopg's server-side cursor when every column is read exactly by the driver, else the generic path."""
        if all(read_exactly(column) for column in table.columns):
            return self.cursor_batches(conn, table, encode)
        return self.generic_batches(conn, table, encode)

    def cursor_batches(self, conn: Connection, table, encode: RowEncoder) -> Iterator[tuple[bytes, int]]:
        """The generic encoding, read through psycopg's own server-side cursor.

        For plain column types the driver's values are exactly what SQLAlchemy would
        hand over (naive UTC datetimes become "+00:00" through orjson's OPT_NAIVE_UTC),
        without the cost of Row objects and per-value result processing.
        """
        q = self.q
        names = [str(c.name) for c in table.columns]
        order = ", ".join(q(c.name) for c in (list(table.primary_key.columns) or list(table.columns)))
        cursor = conn.connection.driver_connection.cursor(name=f"cq_backup_{uuid.uuid4().hex[:12]}")
        try:
            cursor.execute(f"SELECT {', '.join(q(n) for n in names)} FROM {q(table.name)} ORDER BY {order}")
            batch = FAST_BATCH_FIRST_ROWS
            while rows := cursor.fetchmany(batch):
                encoded = encode(names, rows)
                yield encoded, len(rows)
                batch = self.next_batch_rows(len(rows), len(encoded))
        finally:
            cursor.close()

    # --- writing ------------------------------------------------------------------------

    def connect(self) -> "PostgreSQLDialect":
        super().connect()
        self._packing_cursor = self.raw.cursor()
        self._copy_types: dict[str, list[str] | None] = {}
        return self

    def _deferred_executor(self):
        # ``execute_later`` and ``copy_later`` hand their work to a helper thread.
        return ConnectionHelper(self._cursor)

    def _close_cursors(self) -> None:
        super()._close_cursors()
        self._packing_cursor.close()

    def begin(self, replacing: bool = False) -> None:
        # Lets an operator (or a test) find this connection in pg_stat_activity.
        self.cursor.execute("SET LOCAL application_name = 'cyberquest-restore'")
        # Rebuilding the indexes of a bulk-loaded table sorts in memory up to this much.
        self.cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        self.may_skip_fk_triggers = replacing and self._may_set_replication_role()

    def _may_set_replication_role(self) -> bool:
        """Whether this role may set ``session_replication_role`` (a superuser, or granted SET).

        Asked, not tried: a refused SET would leave an error in the server's log at every restore.
        """
        if self.scalar("SELECT current_setting('is_superuser')") == "on":
            return True
        if self.engine.dialect.server_version_info < (15,):  # GRANT SET ON PARAMETER came in 15
            return False
        return bool(self.scalar("SELECT has_parameter_privilege('session_replication_role', 'SET')"))

    def foreign_key_triggers(self, enabled: bool) -> None:
        """Fire (or not) the foreign-key checks of the rows this transaction writes next.

        Only for rows whose every reference the restore has checked against parent
        rows it wrote itself in this transaction, which no other session can see,
        let alone delete. Reset at the transaction's end whatever happens.
        """
        self.execute_later(f"SET LOCAL session_replication_role = {'origin' if enabled else 'replica'}")

    def refused_line(self, exc: Exception) -> str | None:
        line = re.search(r"line (\d+)", getattr(getattr(exc, "diag", None), "context", None) or "")
        return line.group(1) if line else None

    def refusal_detail(self, exc: Exception) -> str | None:
        diag = getattr(exc, "diag", None)
        return " ".join(part for part in (getattr(diag, "message_primary", None),
                                          getattr(diag, "message_detail", None)) if part) or None

    def duplicated_key(self, exc: Exception) -> tuple[str, str] | None:
        detail = getattr(getattr(exc, "diag", None), "message_detail", None) or ""
        key = re.fullmatch(r"Key \((.+)\)=\((.*)\) is duplicated\.", detail)
        return (key.group(1), key.group(2)) if key else None

    def copy_later(self, table, on_error: ErrorExplainer) -> Copy:
        """A psycopg ``Copy`` of the model ``table`` whose rows the helper thread sends in turn.

        ``write_row`` packs a row at once; the COPY runs after the work handed
        over before it. Finish it (``finish(None)``) after the last row, or stop it
        (``finish(error)``). A failure is raised by a later call, as ``on_error(error)``
        when that gives an exception. ``prepare_copies`` must have been called for
        the table: this call must not wait for the connection.
        """
        types = self._copy_types[str(table.name)]
        data = self._deferred.copy(self._copy_statement(table, binary=bool(types)), on_error)
        packer = Copy(self._packing_cursor, binary=bool(types), writer=data)
        if types:
            # Binary COPY takes dates as aware datetimes (``binary_copy``): psycopg's timestamptz
            # dumper packs microseconds since 2000 in UTC, which is what a timestamp column stores.
            packer.set_types(["timestamptz" if name == "timestamp" else name for name in types])
        return packer

    def binary_copy(self, table) -> bool:
        """Only for tables given to ``prepare_copies``. (Text COPY must not get aware datetimes: a
        timestamp column ignores the offset it spells.)"""
        return bool(self._copy_types.get(str(table.name)))

    def prepare_copies(self, tables) -> None:
        for table in tables:
            self._binary_copy_types(table)

    def _copy_statement(self, table, binary: bool) -> str:
        columns = ", ".join(self.q(str(column.name)) for column in table.columns)
        return f"COPY {self.q(table.name)} ({columns}) FROM STDIN{' (FORMAT BINARY)' if binary else ''}"

    def _binary_copy_types(self, table) -> list[str] | None:
        """The database's type of each column of the model ``table``, or None unless each fits the column's values.

        COPY is binary when psycopg can write every column's type from the values
        ``TableCodec`` gives: the server then parses no text (dates above all),
        which took a sixth off its share of a million-row restore, and psycopg
        packs values faster than it spells them. A column altered by hand (a
        domain, another type) gets text COPY, which the server converts from
        whatever psycopg writes.
        """
        name = str(table.name)
        if name not in self._copy_types:
            self.cursor.execute("SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                                (self.q(name),))
            actual = dict(self.cursor.fetchall())
            types = [actual.get(str(column.name)) for column in table.columns]
            fits = all(typname in _BINARY_COPY_TYPES.get(_binary_kind(column), ())
                       for typname, column in zip(types, table.columns))
            self._copy_types[name] = types if fits else None
        return self._copy_types[name]

    def insert(self, table, rows: list) -> None:
        """Insert ``rows`` through one COPY and wait for the database."""
        if not rows:
            return
        types = self._binary_copy_types(table)
        with self.cursor.copy(self._copy_statement(table, binary=bool(types))) as copy:
            if types:
                copy.set_types(types)
            for row in rows:
                copy.write_row(row)

    def keep_copy(self, name: str, select: str, key: str) -> None:
        """No index: joins with the copy hash it (sorting text by the database's collation costs far more)."""
        self.cursor.execute(f"CREATE TEMPORARY TABLE {self.q(name)} AS {select}")

    def _select_chunk(self, select_where: str, chunk: list) -> None:
        self.cursor.execute(f"{select_where} = ANY(%s)", (chunk,))

    def rebuildable_indexes(self, table: str) -> list[tuple[str, str]]:
        """Non-unique indexes and, when there is one, also the primary key and unique constraints,
        unless a foreign key points at the table.

        Dropping an index already locks the table against every other session until
        the commit, so dropping its keys too makes nobody wait longer; but dropping a
        key another table's foreign key needs would lock that table as well.
        """
        self.cursor.execute(
            "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass "
            "AND NOT x.indisunique AND NOT x.indisprimary", (self.q(table),))
        found = [(f"DROP INDEX {self.q(name)}", sql) for name, sql in self.cursor.fetchall()]
        if found:
            self.cursor.execute(
                "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "WHERE c.conrelid = %s::regclass AND c.contype IN ('p', 'u') AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = c.conrelid)",
                (self.q(table),))
            found += [(f"ALTER TABLE {self.q(table)} DROP CONSTRAINT {self.q(name)}",
                       f"ALTER TABLE {self.q(table)} ADD CONSTRAINT {self.q(name)} {definition}")
                      for name, definition in self.cursor.fetchall()]
        return found

    def move_sequences_past(self, tables: Sequence) -> None:
        for table in tables:
            pk = integer_key(table)
            if pk is None:
                continue
            sequence = self.scalar("SELECT pg_get_serial_sequence(%s, %s)", (self.q(table.name), pk))
            if not sequence:
                continue
            highest = self.scalar(f"SELECT COALESCE(MAX({self.q(pk)}), 0) FROM {self.q(table.name)}")
            self.cursor.execute(f"SELECT last_value, is_called FROM {sequence}")
            last_value, is_called = self.cursor.fetchone()
            next_value = last_value + 1 if is_called else last_value
            # Never moved backwards: setval is not transactional, so a lower value
            # left behind by a rolled-back restore could collide with kept rows.
            if highest >= next_value:
                self.cursor.execute("SELECT setval(%s, %s)", (sequence, highest))
