"""What every database does alike, in both directions: read a snapshot's rows, write a restore's.

``Dialect`` speaks standard SQL through SQLAlchemy (reading) and through the raw
DBAPI connection (writing); ``sqlite``, ``postgresql`` and ``mysql`` override what
their database does differently, as methods and class attributes, so nothing
outside this package asks which database it talks to.

A restore writes through the raw DBAPI connection: it bypasses SQLAlchemy's
per-value type processing (the restore's codec has converted every value
already), which is most of the cost of a million-row restore.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Sequence

from sqlalchemy import func, literal_column, select
from sqlalchemy.engine import Connection, Engine

from .deferred import DeferredExecutor, ErrorExplainer

log = logging.getLogger(__name__)

GENERIC_BATCH_ROWS = 1000  # rows as Python objects cost far more memory than their JSON
FAST_BATCH_FIRST_ROWS = 1000
FAST_BATCH_MAX_ROWS = 5000
FAST_BATCH_BYTES = 1 << 20
IN_LIST_VALUES = 2000
# Turns a batch of rows (value sequences in the order of the names) into the archive's JSON.
RowEncoder = Callable[[list[str], Sequence], bytes]


class Snapshot:
    """One consistent read of the database for a backup (``Dialect.snapshot``): what the archive writer reads."""

    def __init__(self, dialect: "Dialect", connection: Connection):
        self.dialect = dialect
        self.connection = connection

    @property
    def dialect_name(self) -> str:
        """SQLAlchemy's name of the database (``database_dialect`` in an archive's metadata)."""
        return self.dialect.name

    def count(self, table) -> int:
        """How many rows ``table`` holds in this snapshot."""
        return self.connection.execute(select(func.count()).select_from(table)).scalar_one()

    def has_rows(self, table) -> bool:
        """Whether ``table`` holds any row in this snapshot."""
        return self.connection.execute(select(literal_column("1")).select_from(table).limit(1)).first() is not None

    def batches(self, table, encode: RowEncoder) -> Iterator[tuple[bytes, int]]:
        """``(JSON objects joined by ",\\n", rows)`` of ``table``, in primary-key order, a batch at a time.

        ``encode(names, rows)`` spells a batch as the archive does; a database that
        can spell the rows itself exactly so does (``Dialect.row_batches``).
        """
        return self.dialect.row_batches(self.connection, table, encode)


class Dialect:
    """One database, both directions: its snapshot and row batches for a backup, its restore connection.

    ``dialect_for(engine)`` picks the subclass. An instance is cheap until
    ``connect`` opens the restore's connection, which ``close`` ends.
    """

    #: A restore holds the database's write lock until it ends: nobody else can write meanwhile,
    #: not even the progress of the restore's own job.
    restore_locks_database = False
    #: Values go in as SQLite's type affinity keeps them: dates as text, booleans as 0 and 1, and a
    #: plain INTEGER holds 64 bits (``restore.codec.TableCodec``).
    type_affinity = False
    #: msgspec may check and convert this database's rows in C (``TableCodec.decode_json``).
    decodes_json_rows = False
    #: A replace streams each table through one COPY (``copy_later``) instead of inserting batches.
    streams_replace = False
    #: Values in a unique column that the database takes for the same one; None: equal values only.
    collation_key: Callable | None = None

    def __init__(self, engine: Engine):
        self.engine = engine
        self.name = engine.dialect.name
        self.quote = engine.dialect.identifier_preparer.quote
        self.placeholder = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        dbapi = engine.dialect.loaded_dbapi
        self.data_errors = (dbapi.IntegrityError, dbapi.DataError)
        #: A replace's every reference was checked by the restore: the database may skip its own checks.
        self.may_skip_fk_triggers = False
        #: The restore's statements and rows go to another process without waiting (``insert_later``).
        self.pipelined = False

    # --- reading, for a backup -------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A read whose tables all show one consistent moment of the database (rolled back after)."""
        with self.engine.connect() as conn:
            conn = self._begin_snapshot(conn)
            try:
                yield Snapshot(self, conn)
            finally:
                conn.rollback()

    def _begin_snapshot(self, conn: Connection) -> Connection:
        return conn

    def row_batches(self, conn: Connection, table, encode: RowEncoder) -> Iterator[tuple[bytes, int]]:
        """``Snapshot.batches``: the generic path here; a database's faster one writes the same bytes."""
        return self.generic_batches(conn, table, encode)

    def generic_batches(self, conn: Connection, table, encode: RowEncoder) -> Iterator[tuple[bytes, int]]:
        """The rows as SQLAlchemy reads them, through a server-side cursor, encoded by ``encode``."""
        names = [str(column.name) for column in table.columns]
        order = list(table.primary_key.columns) or list(table.columns)
        result = conn.execution_options(stream_results=True, yield_per=GENERIC_BATCH_ROWS).execute(
            select(table).order_by(*order))
        try:
            for batch in result.partitions():
                yield encode(names, batch), len(batch)
        finally:
            result.close()

    @staticmethod
    def next_batch_rows(rows: int, size: int) -> int:
        """Rows for a fast path's next batch, so that it holds about ``FAST_BATCH_BYTES`` whatever the row width."""
        return max(100, min(FAST_BATCH_MAX_ROWS, rows * FAST_BATCH_BYTES // max(1, size)))

    # --- the restore's connection and transaction -------------------------------------------

    def connect(self) -> "Dialect":
        """Open the raw DBAPI connection a restore writes through; returns this dialect."""
        self.raw = self._open_raw()
        self._cursor = self.raw.cursor()
        self._deferred: DeferredExecutor | None = self._deferred_executor()
        self._savepoints = 0
        self._broken = False
        return self

    def _open_raw(self):
        return self.engine.raw_connection()

    def _deferred_executor(self) -> DeferredExecutor | None:
        """What runs ``execute_later``'s statements while the restore goes on; None: they run at once."""
        return None

    @property
    def cursor(self):
        """The connection's cursor, once the work given to ``execute_later`` is done (raising its first failure)."""
        if self._deferred is not None:
            self._deferred.wait()
        return self._cursor

    def begin(self, replacing: bool = False) -> None:
        """Start the restore's one transaction (``replacing``: the restore deletes and reloads tables)."""

    def foreign_key_triggers(self, enabled: bool) -> None:
        """Fire (or not) the database's foreign-key checks of the rows written next (where ``may_skip_fk_triggers``)."""

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        """Roll the transaction back; a connection that cannot is not used again (``close`` discards it)."""
        try:
            if self._deferred is not None:
                self._deferred.stop()  # being rolled back: what it has not done is not needed
            self.raw.rollback()
        except Exception as exc:  # the connection may be gone; the server rolls back on its own
            log.info("rollback of the restore transaction failed (%s); the server discards it", exc)
            self._broken = True

    def close(self) -> None:
        """End the restore's connection: back to the pool, or discarded when it broke."""
        try:
            if self._deferred is not None:
                self._deferred.stop()
            self._close_cursors()
        except Exception:
            pass
        try:
            if self._broken:
                # A lost connection must not go back to the pool (its reset would fail noisily).
                self.raw.invalidate()
            else:
                self.raw.close()
        except Exception as exc:
            log.warning("closing the restore connection failed (%s)", exc)

    def _close_cursors(self) -> None:
        self._cursor.close()

    def execute_later(self, sql: str, on_error: ErrorExplainer | None = None) -> None:
        """Run a statement whose result nobody needs, without waiting for it where the database allows.

        Its error is raised at once or by a later use of ``cursor``, as ``on_error(error)``
        when that gives an exception.
        """
        if self._deferred is not None:
            self._deferred.execute(sql, on_error)
            return
        try:
            self._cursor.execute(sql)
        except Exception as exc:
            mapped = on_error(exc) if on_error is not None else None
            if mapped is None:
                raise
            raise mapped from exc

    def savepoint(self) -> str:
        self._savepoints += 1
        name = f"cq_restore_{self._savepoints}"
        self.cursor.execute(f"SAVEPOINT {name}")
        return name

    def rollback_to(self, name: str) -> None:
        self.cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")

    def release(self, name: str) -> None:
        self.cursor.execute(f"RELEASE SAVEPOINT {name}")

    # What the database says of a refused statement or COPY, beyond its message (nothing, here).

    def refused_line(self, exc: Exception) -> str | None:
        """The line of a COPY's data the database refused, when it says so."""
        return None

    def refusal_detail(self, exc: Exception) -> str | None:
        """The database's own words on what it refused (message and detail), when it gives them apart."""
        return None

    def duplicated_key(self, exc: Exception) -> tuple[str, str] | None:
        """``(columns, values)`` a unique index being built found twice, when the database names them."""
        return None

    # --- the restore's statements -----------------------------------------------------------

    def q(self, name: str) -> str:
        """``name`` quoted as an identifier."""
        return self.quote(name)

    def scalar(self, sql: str, params: Sequence = ()):
        self.cursor.execute(sql, params)
        row = self.cursor.fetchone()
        return row[0] if row else None

    def has_rows(self, table: str) -> bool:
        """Whether ``table`` holds any row, as the restore's transaction sees it."""
        return self.scalar(f"SELECT 1 FROM {self.q(table)} LIMIT 1") is not None

    def column_values(self, table: str, column: str) -> set:
        """Every value of ``column`` in ``table``."""
        self.cursor.execute(f"SELECT {self.q(column)} FROM {self.q(table)}")
        return {row[0] for row in self.cursor.fetchall()}

    def delete_all(self, table: str) -> int:
        self.cursor.execute(f"DELETE FROM {self.q(table)}")
        return max(self.cursor.rowcount, 0)

    def delete_where_in(self, table: str, key: str, values: Iterable) -> None:
        """Delete the rows of ``table`` whose ``key`` is one of ``values``."""
        for chunk in self._in_chunks(list(values)):
            marks = ", ".join([self.placeholder] * len(chunk))
            self.cursor.execute(f"DELETE FROM {self.q(table)} WHERE {self.q(key)} IN ({marks})", chunk)

    def prepare_copies(self, tables) -> None:
        """Learn now what ``copy_later`` will need of each of ``tables`` (where ``streams_replace``)."""

    def binary_copy(self, table) -> bool:
        """Whether ``copy_later`` sends ``table`` in binary; its rows must then carry aware datetimes."""
        return False

    def insert(self, table, rows: list) -> None:
        """Insert ``rows`` (value lists for every column of the model ``table``) and wait for the database."""
        if rows:
            self.cursor.executemany(self._insert_sql(str(table.name), [str(c.name) for c in table.columns]), rows)

    def _insert_sql(self, table: str, names: Sequence[str]) -> str:
        columns = ", ".join(self.q(n) for n in names)
        marks = ", ".join([self.placeholder] * len(names))
        return f"INSERT INTO {self.q(table)} ({columns}) VALUES ({marks})"

    def update(self, table: str, names: Sequence[str], pk: str, rows: list) -> None:
        """``rows`` hold the values of ``names`` followed by the primary key."""
        if not rows:
            return
        sets = ", ".join(f"{self.q(n)} = {self.placeholder}" for n in names)
        self.cursor.executemany(f"UPDATE {self.q(table)} SET {sets} WHERE {self.q(pk)} = {self.placeholder}", rows)

    @staticmethod
    def _in_chunks(values: list, size: int = IN_LIST_VALUES) -> Iterable[list]:
        for start in range(0, len(values), size):
            yield values[start:start + size]

    def select_where_in(self, table: str, columns: Sequence[str], key: str, values: Iterable) -> list[tuple]:
        """Rows (``columns``) of ``table`` whose ``key`` is one of ``values``."""
        found: list[tuple] = []
        selected = ", ".join(self.q(c) for c in columns)
        for chunk in self._in_chunks(list(values)):
            self._select_chunk(f"SELECT {selected} FROM {self.q(table)} WHERE {self.q(key)}", chunk)
            found.extend(tuple(row) for row in self.cursor.fetchall())
        return found

    def _select_chunk(self, select_where: str, chunk: list) -> None:
        marks = ", ".join([self.placeholder] * len(chunk))
        self.cursor.execute(f"{select_where} IN ({marks})", chunk)

    def existing_keys(self, table: str, key: str, values: Iterable) -> set:
        """Which of ``values`` are in ``table``'s column ``key``."""
        values = set(values)
        if values and all(value.__class__ is int for value in values):
            low, high = min(values), max(values)
            if high - low < 2 * len(values):
                # Mostly consecutive ids (an archive's batch): one range scan of the index instead
                # of a lookup per id.
                q, mark = self.q, self.placeholder
                self.cursor.execute(f"SELECT {q(key)} FROM {q(table)} WHERE {q(key)} BETWEEN {mark} AND {mark}",
                                    (low, high))
                return {row[0] for row in self.cursor.fetchall()} & values
        return {row[0] for row in self.select_where_in(table, [key], key, values)}

    def keep_copy(self, name: str, select: str, key: str) -> None:
        """Keep the rows of ``select`` in a temporary table ``name``, indexed on ``key``, for later queries
        of this transaction (``drop_copy`` removes it)."""
        self.cursor.execute(f"CREATE TEMPORARY TABLE {self.q(name)} AS {select}")
        self.cursor.execute(f"CREATE INDEX {self.q(name + '_key')} ON {self.q(name)} ({self.q(key)})")

    def drop_copy(self, name: str) -> None:
        """Remove a temporary table ``keep_copy`` made."""
        self.cursor.execute(f"DROP TABLE {self.q(name)}")

    def text_differs(self, left: str, right: str) -> str:
        """SQL true when two text expressions differ in any byte (case included)."""
        return f"{left} <> {right}"

    def rebuildable_indexes(self, table: str) -> list[tuple[str, str]]:
        """``(DROP statement, CREATE statement)`` of the indexes a bulk load of ``table`` can build afterwards.

        None here: DDL may end the transaction half-way where the database does not say otherwise.
        """
        return []

    def move_sequences_past(self, tables: Sequence) -> None:
        """Make the next generated id of each table larger than every id it now holds."""
