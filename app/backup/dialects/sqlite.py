"""SQLite: its rows read as JSON by SQLite itself, its restores written by a child process.

Reading: a table of plain columns is encoded by SQLite's own ``json_object``, byte
for byte what orjson writes, without a Python object per row. Writing: a restore
into a database file goes through ``sqlite_worker`` (a child process owning the
connection), so SQLite stores rows while this process reads the next ones.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from ..schema import integer_key, read_exactly, type_family
from .base import FAST_BATCH_FIRST_ROWS, Dialect, RowEncoder
from .sqlite_worker import SQLiteWorker

SQLITE_CACHE_KIB = 16 * 1024
# SQLAlchemy stores datetimes in SQLite as naive UTC text of exactly this shape.
# LIKE (not a digit-checking GLOB, which costs 5x more) is enough: text with
# non-digits there is text SQLAlchemy itself could not read back either.
_DATETIME_SHAPE = "____-__-__ __:__:__.______"


def database_file(engine: Engine) -> str | None:
    """The path of a plain SQLite database file (not memory, not a URI with options)."""
    url = engine.url
    if url.query or not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return None
    return url.database


class SQLiteDialect(Dialect):
    """SQLite: one writer at a time, type affinity, JSON in SQL, and a child process that writes restores."""

    restore_locks_database = True
    type_affinity = True
    decodes_json_rows = True

    # --- reading ------------------------------------------------------------------------

    def _begin_snapshot(self, conn: Connection) -> Connection:
        # pysqlite does not BEGIN before a SELECT; without it each table would be
        # read at a different moment and foreign keys could dangle in the archive.
        conn.exec_driver_sql("BEGIN")
        return conn

    def row_batches(self, conn: Connection, table, encode: RowEncoder) -> Iterator[tuple[bytes, int]]:
        """SQLite's own JSON when it writes exactly what ``encode`` would (``json_expression``), else the generic path."""
        expression = self.json_expression(conn, table)
        if expression is not None:
            return self.json_batches(conn, table, expression)
        return self.generic_batches(conn, table, encode)

    def _json_object(self, table) -> str | None:
        """SQL making SQLite emit each row as the JSON object orjson would, or None if a column needs Python."""
        parts = []
        for column in table.columns:
            if not read_exactly(column):
                return None
            name = self.q(column.name)
            family = type_family(column)
            if family == "bool":
                value = f"CASE WHEN {name} IS NULL THEN NULL WHEN {name} THEN json('true') ELSE json('false') END"
            elif family == "datetime":
                # orjson's ISO form: "T", no ".000000" for whole seconds, explicit UTC offset
                # (the shape check guarantees ".000000" can only be the fraction).
                value = f"replace(replace({name}, '.000000', ''), ' ', 'T') || '+00:00'"
            else:
                value = name
            key = str(column.name).replace("'", "''")
            parts.append(f"'{key}', {value}")
        return "json_object(" + ", ".join(parts) + ")"

    def json_expression(self, conn: Connection, table) -> str | None:
        """The ``json_object`` expression of ``table``'s rows, or None when SQLite cannot write them exactly.

        None for a column type that needs Python, for timestamps some other tool
        stored in another shape, and for an SQLite built without JSON functions.
        """
        expression = self._json_object(table)
        if expression is None:
            return None
        stamps = [self.q(c.name) for c in table.columns if type_family(c) == "datetime"]
        try:
            if stamps:
                odd = " OR ".join(f"({c} IS NOT NULL AND {c} NOT LIKE '{_DATETIME_SHAPE}')" for c in stamps)
                if conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {self.q(table.name)} WHERE {odd})")).scalar():
                    return None
            else:
                conn.execute(text("SELECT json_object('a', 1)"))
        except OperationalError:
            return None
        return expression

    def json_batches(self, conn: Connection, table, expression: str) -> Iterator[tuple[bytes, int]]:
        """``(bytes, rows)`` of ``table`` as SQLite encodes them with ``expression``, in primary-key order."""
        q = self.q
        key = integer_key(table)
        # The driver's cursor on the same (snapshot) connection: building SQLAlchemy Row
        # objects would cost more than SQLite's own JSON encoding, and BLOB skips a
        # decode/encode round trip of every row through Python str.
        cursor = conn.connection.driver_connection.cursor()
        try:
            if key is not None:
                yield from self._keyset_batches(cursor, q(table.name), q(key), expression)
                return
            order = ", ".join(q(c.name) for c in (list(table.primary_key.columns) or list(table.columns)))
            cursor.execute(f"SELECT CAST({expression} AS BLOB) FROM {q(table.name)} ORDER BY {order}")
            batch = FAST_BATCH_FIRST_ROWS
            while rows := cursor.fetchmany(batch):
                encoded = b",\n".join([row[0] for row in rows])
                yield encoded, len(rows)
                batch = self.next_batch_rows(len(rows), len(encoded))
        finally:
            cursor.close()

    def _keyset_batches(self, cursor, table: str, key: str, expression: str) -> Iterator[tuple[bytes, int]]:
        # One statement per batch whose single result is the batch already joined:
        # no Python object per row, and SQLite works the whole batch without the GIL.
        # The subquery runs as a co-routine, so group_concat sees its rows in key order.
        sql = (f"SELECT CAST(group_concat(j, ',\n') AS BLOB), count(*), max(k) FROM "
               f"(SELECT {expression} AS j, {key} AS k FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?)")
        last, batch = None, FAST_BATCH_FIRST_ROWS
        while True:
            if last is None:
                encoded, rows, last = cursor.execute(sql.replace(f"WHERE {key} > ? ", ""), (batch,)).fetchone()
            else:
                encoded, rows, last = cursor.execute(sql, (last, batch)).fetchone()
            if not rows:
                return
            yield encoded, rows
            batch = self.next_batch_rows(rows, len(encoded))

    # --- writing ------------------------------------------------------------------------

    def _open_raw(self):
        database = database_file(self.engine)
        # A database file is written by a child process, so writing overlaps reading the archive.
        self.pipelined = database is not None and SQLiteWorker.can_start()
        self._page_cache = None
        return SQLiteWorker(database) if self.pipelined else self.engine.raw_connection()

    def _deferred_executor(self):
        return self.raw if self.pipelined else None

    def begin(self, replacing: bool = False) -> None:
        if self._page_cache is None:
            # A bigger page cache for this connection while it restores: index pages
            # otherwise spill to the WAL and are written there again and again.
            self._page_cache = self.scalar("PRAGMA cache_size")
            self.cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        if self.pipelined and replacing:
            # The child's connection ends with the restore. A replace checks every
            # foreign key itself (the restore's plan and its table writers), so SQLite
            # need not look each parent up again, as ``sqlite3 < dump.sql`` does not.
            self.cursor.execute("PRAGMA foreign_keys = OFF")
        # IMMEDIATE takes the write lock now: no other writer can slip in between
        # our reads (existing ids) and our writes.
        self.cursor.execute("BEGIN IMMEDIATE")

    def _close_cursors(self) -> None:
        if self._page_cache is not None and not self._broken and not self.pipelined:
            self.cursor.execute(f"PRAGMA cache_size = {int(self._page_cache)}")
        super()._close_cursors()

    def insert_later(self, table: str, names: Sequence[str], rows: list,
                     on_error: Callable[[int, Exception], Exception]) -> None:
        """Pipelined only: insert without waiting; a failing row raises ``on_error(index, error)`` later."""
        columns = ", ".join(self.q(n) for n in names)
        self.raw.insert_later(f"INSERT OR FAIL INTO {self.q(table)} ({columns})", rows, on_error)

    def rebuildable_indexes(self, table: str) -> list[tuple[str, str]]:
        """The non-unique indexes: SQLite cannot drop a key, so its unique indexes stay and refuse duplicates."""
        self.cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                            "AND sql IS NOT NULL", (table,))
        return [(f"DROP INDEX {self.q(name)}", sql) for name, sql in self.cursor.fetchall()
                if not sql.lstrip().upper().startswith("CREATE UNIQUE")]

    def move_sequences_past(self, tables: Sequence) -> None:
        # Only tables declared AUTOINCREMENT have a counter (none of ours today).
        if not self.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_sequence'"):
            return
        for table in tables:
            pk = integer_key(table)
            if pk is None:
                continue
            highest = self.scalar(f"SELECT COALESCE(MAX({self.q(pk)}), 0) FROM {self.q(table.name)}")
            self.cursor.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", (highest, table.name))
