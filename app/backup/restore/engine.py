"""Writing an archive's rows into a database: merge or replace, in one transaction.

``restore_archive`` streams the archive's rows (``reader.Archive.events``),
checks each one against this instance's schema (unknown columns, types,
lengths, nulls, foreign keys) and writes them in bulk batches through the raw
DBAPI connection, all inside one transaction. Anything wrong rolls the whole
transaction back, so a rejected or failed restore leaves the database exactly as
it was; a dry run does all the work and rolls back on purpose, so its Result is
the real one.

Replace deletes the restored tables in reverse foreign-key order and inserts in
foreign-key order. Merge matches rows by primary key (``on_conflict`` = skip or
overwrite) and skips, with a reason, rows that collide on another unique column
and rows whose parent was skipped. Sequences are moved past the restored ids.

Bulk loads (replace) work like ``sqlite3 < dump.sql`` and ``pg_restore``: a large
table's non-unique indexes are dropped and built again once every table's rows
are in (inside the same transaction, so a rollback restores them), and on
PostgreSQL each table streams through a single COPY. The statements and COPY data
of a PostgreSQL replace are sent by a helper thread (``pg_sender``), so the server
stores one table while this process reads the next.

Nothing here knows about HTTP, jobs or where the archive came from.
"""
from __future__ import annotations

import base64
import binascii
import keyword
import logging
import re
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Annotated, Callable, Iterable, Optional, Sequence

import msgspec
import orjson
from psycopg import Copy
from sqlalchemy import types
from sqlalchemy.engine import Engine

from ...models import ApiToken, AuditLog, data_tables
from ..errors import ArchiveError, BackupError, BadRequestError, RestoreError
from ..malloc_tuning import give_back_freed_memory, keep_freed_buffers
from ..dialects.pg_sender import ConnectionHelper, ErrorExplainer
from ..archive.layout import END, ROWS, TABLE, VALUES, LayoutMismatch
from ..archive.reader import Archive
from ..dialects.sqlite_worker import SQLiteWorker

log = logging.getLogger(__name__)

MODES = ("merge", "replace")
CONFLICT_POLICIES = ("skip", "overwrite")
BATCH_ROWS = 2000
# Replacing a table with at least this many rows drops its non-unique indexes (on PostgreSQL
# also its keys, where nothing points at them) and builds them again once the rows are in,
# inside the same transaction: one sort instead of a B-tree insert per row (what sqlite3
# .dump and pg_restore do too).
INDEX_REBUILD_MIN_ROWS = 20_000
SQLITE_CACHE_KIB = 16 * 1024
REASON_SAMPLE_IDS = 20
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# PostgreSQL types psycopg writes in binary COPY from the values TableCodec gives each kind of column.
# Integers only where the type holds the whole range the codec lets through: psycopg's binary
# int dumpers wrap a value that does not fit, where text COPY has the server refuse it.
_BINARY_COPY_TYPES = {("int", *INT32): {"int4", "int8"}, ("int", *INT64): {"int8"}, ("bool",): {"bool"},
                      ("str",): {"text", "varchar"}, ("datetime",): {"timestamp"}}

# What msgspec reads a date and time as for a PostgreSQL binary COPY: an offset is required
# (the careful path reads a missing one as UTC), and the datetime keeps it.
_AWARE_DATETIME = Annotated[datetime, msgspec.Meta(tz=True)]

ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class RestoreOptions:
    """What the user asked for; ``validate`` turns a bad request into ``BadRequestError``."""

    mode: str
    tables: tuple[str, ...] | None = None
    on_conflict: str = "skip"
    dry_run: bool = False
    trust_unsigned: bool = False

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


# --- Values: from JSON to what the driver stores ------------------------------------------

class _Invalid(Exception):
    """A value does not fit its column; the message completes "column X …"."""


def _describe(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the text {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _sqlite_datetime(moment: datetime) -> str:
    # SQLAlchemy's SQLite DateTime stores exactly this text; comparisons in SQL are textual.
    return moment.isoformat(" ", "microseconds")


def _parse_datetime(value: str) -> datetime:
    """``value`` as msgspec reads an RFC 3339 date and time, else as ``datetime.fromisoformat`` does.

    msgspec first, because the fast paths of a PostgreSQL replace decode dates with
    msgspec: every path then gives the same moment for the same text (msgspec rounds
    a seventh fractional digit where fromisoformat drops it, and takes a lowercase
    "t" or "z"). fromisoformat takes what RFC 3339 does not: no offset, no seconds.
    """
    try:
        return msgspec.convert(value, datetime)
    except msgspec.ValidationError:
        return datetime.fromisoformat(value)


def _datetime_checker(spelling: str):
    """Checks a date and time and gives it as ``spelling`` says (see ``TableCodec``): naive UTC by default."""
    utc = timezone.utc

    def check(value):
        if type(value) is not str:
            raise _Invalid(f"must be an ISO 8601 date and time, not {_describe(value)}")
        try:
            moment = _parse_datetime(value)
            if moment.tzinfo is not None:
                moment = moment.astimezone(utc).replace(tzinfo=None)
        except ValueError:
            raise _Invalid(f"must be an ISO 8601 date and time, not {_describe(value)}") from None
        except OverflowError:  # its offset moves it past the year 9999 (or before the year 1) in UTC
            raise _Invalid(f"is {_describe(value)}, outside the years 1 to 9999 in UTC") from None
        if spelling == "sqlite":
            return _sqlite_datetime(moment)
        return moment.replace(tzinfo=utc) if spelling == "aware" else moment

    return check


def _date_checker(sqlite: bool):
    def check(value):
        if type(value) is not str:
            raise _Invalid(f"must be a date (YYYY-MM-DD), not {_describe(value)}")
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise _Invalid(f"must be a date (YYYY-MM-DD), not {_describe(value)}") from None
        return day.isoformat() if sqlite else day

    return check


def _int_checker(low: int, high: int):
    def check(value):
        if type(value) is not int:
            raise _Invalid(f"must be a whole number, not {_describe(value)}")
        if not low <= value <= high:
            raise _Invalid(f"is {value}, outside the column's range")
        return value

    return check


def _str_checker(max_length: int | None):
    def check(value):
        if type(value) is not str:
            raise _Invalid(f"must be text, not {_describe(value)}")
        if max_length is not None and len(value) > max_length:
            raise _Invalid(f"is {len(value)} characters long; the limit is {max_length}")
        if "\x00" in value:
            raise _Invalid("contains a NUL character, which databases cannot store in text")
        return value

    return check


def _bool_check(value):
    if type(value) is not bool:
        raise _Invalid(f"must be true or false, not {_describe(value)}")
    return value


def _sqlite_bool_check(value):
    # SQLite stores booleans as 0 and 1. Handed a bool, Python's sqlite3 first looks for
    # an adapter and fails (a microsecond per value, in the process that writes).
    return 1 if _bool_check(value) else 0


def _float_check(value):
    if type(value) not in (int, float):
        raise _Invalid(f"must be a number, not {_describe(value)}")
    return float(value)


def _decimal_check(value):
    if type(value) not in (str, int):
        raise _Invalid(f"must be a decimal number written as text, not {_describe(value)}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _Invalid(f"must be a decimal number, not {_describe(value)}") from None
    if not number.is_finite():
        raise _Invalid("must be a finite decimal number")
    return number


def _bytes_check(value):
    if type(value) is not str:
        raise _Invalid(f"must be base64 text, not {_describe(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Invalid("is not valid base64") from None


def _any_check(value):
    return value


def _column_kind(column, sqlite: bool) -> tuple:
    """``("int", low, high)``, ``("str", max_length)``, ``("bool",)``, ``("datetime",)`` or ``("other",)``."""
    kind = column.type
    if isinstance(kind, types.TypeDecorator):
        kind = kind.impl_instance
    if isinstance(kind, types.Boolean):
        return ("bool",)
    if isinstance(kind, types.BigInteger):
        return ("int", *INT64)
    if isinstance(kind, types.Integer):
        return ("int", *(INT64 if sqlite else INT32))
    if isinstance(kind, types.DateTime):
        return ("datetime",)
    if isinstance(kind, types.String) and not isinstance(kind, types.Enum):
        return ("str", kind.length)
    return ("other",)


def _binary_kind(column) -> tuple:
    """A column's key in ``_BINARY_COPY_TYPES``: its PostgreSQL kind, a string's length aside (the server checks it)."""
    kind = _column_kind(column, False)
    return kind[:1] if kind[0] == "str" else kind


def _value_checker(column, sqlite: bool, date_spelling: str):
    kind = column.type
    if isinstance(kind, types.TypeDecorator):
        kind = kind.impl_instance
    if isinstance(kind, types.Boolean):
        return _sqlite_bool_check if sqlite else _bool_check
    if isinstance(kind, types.BigInteger):
        return _int_checker(*INT64)
    if isinstance(kind, types.Integer):
        return _int_checker(*(INT64 if sqlite else INT32))
    if isinstance(kind, types.DateTime):
        return _datetime_checker(date_spelling)
    if isinstance(kind, types.Date):
        return _date_checker(sqlite)
    if isinstance(kind, types.Float):
        return _float_check
    if isinstance(kind, types.Numeric):
        return _decimal_check
    if isinstance(kind, types.String):
        return _str_checker(kind.length)
    if isinstance(kind, types.LargeBinary):
        return _bytes_check
    return _any_check


def _datetime_lines(v: str, i: int, pad: str, spelling: str) -> list[str]:
    """Generated code converting ``v`` (column ``i``) from the writer's UTC shapes.

    "YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00" is validated by fromisoformat, then becomes
    what the driver wants: ``"sqlite"`` re-spells it as SQLite stores dates (slicing is
    much cheaper than isoformat()), ``"object"`` makes a naive UTC datetime, ``"aware"``
    an aware one. Any other shape goes to ``_check{i}``.
    """
    shape = f"{v}[4] == '-' and {v}[7] == '-' and {v}[10] == 'T' and {v}[13] == ':' and {v}[16] == ':'"
    with_micros = {"sqlite": f"_parse({v})\n{pad}    {v} = {v}[:10] + ' ' + {v}[11:26]",
                   "object": f"{v} = _parse({v}[:26])", "aware": f"{v} = _parse({v})"}[spelling]
    without = {"sqlite": f"_parse({v})\n{pad}    {v} = {v}[:10] + ' ' + {v}[11:19] + '.000000'",
               "object": f"{v} = _parse({v}[:19])", "aware": f"{v} = _parse({v})"}[spelling]
    return [
        f"{pad}if {v}.__class__ is str and len({v}) == 32 and {v}[19] == '.' and {v}[26:] == '+00:00' and {shape}:",
        f"{pad}    {with_micros}",
        f"{pad}elif {v}.__class__ is str and len({v}) == 25 and {v}[19:] == '+00:00' and {shape}:",
        f"{pad}    {without}",
        f"{pad}else:",
        f"{pad}    {v} = _check{i}({v})",
    ]


def _nullable(check):
    def nullable_check(value):
        return None if value is None else check(value)

    return nullable_check


def _not_null(check):
    def not_null_check(value):
        if value is None:
            raise _Invalid("must not be null")
        return check(value)

    return not_null_check


_MISSING = object()


def _within_utc_years(rows: list, columns: list[int]) -> bool:
    """Whether the aware datetimes in ``columns`` of ``rows`` all stay within the years 1 to 9999 in UTC.

    msgspec takes "9999-12-31T23:30:00-01:00", which the careful path refuses:
    in UTC it is in the year 10000. Only the earliest and the latest moment of a
    column can be out (an offset is less than a day), so only they are converted.
    """
    utc = timezone.utc
    for i in columns:
        moments = [moment for row in rows if (moment := row[i]) is not None]
        if moments:
            try:
                min(moments).astimezone(utc)
                max(moments).astimezone(utc)
            except OverflowError:
                return False
    return True


class TableCodec:
    """Turns a table's row objects from the archive into value lists in column order.

    Dates and times come as SQLite stores them (text), as naive UTC datetimes, or,
    with ``aware_datetimes`` (PostgreSQL binary COPY only, see ``_Target.copy_later``),
    as aware ones: msgspec then makes them in C, with no Python per value.
    """

    def __init__(self, table, dialect: str, aware_datetimes: bool = False):
        self.table = table
        self.name = str(table.name)
        self.columns = list(table.columns)
        self.names = [str(column.name) for column in self.columns]
        self.name_set = frozenset(self.names)
        self.width = len(self.names)
        sqlite = dialect == "sqlite"
        self._sqlite = sqlite
        self._date_spelling = "sqlite" if sqlite else "aware" if aware_datetimes else "object"
        self.checks = [(_nullable if c.nullable else _not_null)(_value_checker(c, sqlite, self._date_spelling))
                       for c in self.columns]
        primary = list(table.primary_key.columns)
        self.pk = str(primary[0].name) if len(primary) == 1 else None
        self.pk_index = self.names.index(self.pk) if self.pk else None
        self._fast = self._compile_fast_path(sqlite)
        self.decode_json = self._compile_json_decoder(dialect)

    def convert(self, row: dict, number: int) -> list:
        """The row's values in column order, ready for the driver; ``ArchiveError`` names what is wrong."""
        try:
            return self._fast(row)
        except Exception:  # anything unusual: the careful path says exactly what, or copes (defaults)
            return self._convert_carefully(row, number)

    def convert_many(self, rows: list, first: int) -> list[list]:
        """``convert`` for consecutive rows, the first of which is row number ``first``."""
        fast = self._fast
        try:
            return [fast(row) for row in rows]
        except Exception:  # find the row that is unusual, and say what is wrong with it
            return [self.convert(row, number) for number, row in enumerate(rows, first)]

    def _compile_fast_path(self, sqlite: bool):
        """A converter specialised to this table's columns, for rows that are exactly as expected.

        A million rows pass through here, so the checks are written out as straight-line
        code (as ``dataclasses`` and ``namedtuple`` do) instead of a call per column. It
        raises on anything it does not expect; ``_convert_carefully`` then handles the row.
        """
        lines = ["def fast(row):", f"    if len(row) != {self.width}:", "        raise _Unexpected"]
        for i, (column, name) in enumerate(zip(self.columns, self.names)):
            kind = _column_kind(column, sqlite)
            v = f"v{i}"
            lines.append(f"    {v} = row[{name!r}]")
            pad = "    "
            if column.nullable:
                lines.append(f"    if {v} is not None:")
                pad = "        "
            if kind[0] == "int":
                lines.append(f"{pad}if {v}.__class__ is not int or {v} < {kind[1]} or {v} > {kind[2]}:")
                lines.append(f"{pad}    raise _Unexpected")
            elif kind[0] == "bool":
                lines.append(f"{pad}if {v}.__class__ is not bool:")
                lines.append(f"{pad}    raise _Unexpected")
                if sqlite:
                    lines.append(f"{pad}{v} = 1 if {v} else 0")
            elif kind[0] == "str":
                limit = f" or len({v}) > {kind[1]}" if kind[1] else ""
                lines.append(f"{pad}if {v}.__class__ is not str{limit} or '\\x00' in {v}:")
                lines.append(f"{pad}    raise _Unexpected")
            elif kind[0] == "datetime":
                lines += _datetime_lines(v, i, pad, self._date_spelling)
            else:
                lines.append(f"{pad}{v} = _check{i}({v})")
            if not column.nullable:
                lines.append(f"    if {v} is None:")
                lines.append("        raise _Unexpected")
        lines.append("    return [" + ", ".join(f"v{i}" for i in range(self.width)) + "]")
        namespace = {"_Unexpected": _Invalid, "_parse": datetime.fromisoformat}
        namespace.update({f"_check{i}": check for i, check in enumerate(self.checks)})
        exec(compile("\n".join(lines), f"<restore codec {self.name}>", "exec"), namespace)
        return namespace["fast"]

    def _compile_json_decoder(self, dialect: str):
        """``decode_json(array_bytes)``: a whole run of rows checked and converted in C by msgspec.

        msgspec validates types, integer ranges, string lengths, nulls, missing and
        unknown columns while it parses, which is several times faster than parsing to
        dicts and checking in Python. It only takes tables whose columns it can check
        exactly as ``_compile_fast_path`` does (dates are checked by that same code
        afterwards, or made by msgspec when they are to be aware). It returns None for
        anything unusual, so those rows take the careful path and its precise messages.
        None when the table does not qualify.
        """
        if dialect not in ("sqlite", "postgresql"):
            return None
        sqlite = dialect == "sqlite"
        fields, dates, bools, aware_dates = [], [], [], []
        for i, (column, name) in enumerate(zip(self.columns, self.names)):
            if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
                return None
            kind = _column_kind(column, sqlite)
            if kind[0] == "int":
                kind_type = Annotated[int, msgspec.Meta(ge=kind[1], le=kind[2])]
            elif kind[0] == "bool":
                kind_type = bool
                if sqlite:
                    bools.append(i)
            elif kind[0] == "str":
                kind_type = Annotated[str, msgspec.Meta(max_length=kind[1])] if kind[1] else str
            elif kind[0] == "datetime" and self._date_spelling == "aware":
                kind_type = _AWARE_DATETIME
                aware_dates.append(i)
            elif kind[0] == "datetime":
                kind_type = str
                dates.append(i)
            else:
                return None
            fields.append((name, Optional[kind_type] if column.nullable else kind_type))
        row_type = msgspec.defstruct(f"{self.name}_row", fields, forbid_unknown_fields=True, gc=False)
        decode = msgspec.json.Decoder(list[row_type]).decode
        astuple = msgspec.structs.astuple
        if dates or bools:
            # Only dates (and SQLite's booleans) need Python: each is checked and re-spelled
            # in place, then msgspec turns the rows into tuples.
            lines = ["def convert(objects):", "    for o in objects:"]
            for i in sorted(dates + bools):
                lines.append(f"        v{i} = o.{self.names[i]}")
                pad = "        "
                if self.columns[i].nullable:
                    lines.append(f"        if v{i} is not None:")
                    pad += "    "
                if i in dates:
                    lines += _datetime_lines(f"v{i}", i, pad, self._date_spelling)
                else:
                    lines.append(f"{pad}v{i} = 1 if v{i} else 0")
                lines.append(f"{pad}o.{self.names[i]} = v{i}")
            lines.append("    return [_astuple(o) for o in objects]")
            namespace = {"_astuple": astuple, "_parse": datetime.fromisoformat}
            namespace.update({f"_check{i}": self.checks[i] for i in dates})
            exec(compile("\n".join(lines), f"<restore decoder {self.name}>", "exec"), namespace)
            convert = namespace["convert"]
        else:
            def convert(objects):
                return [astuple(o) for o in objects]

        def decode_json(blob: bytes):
            # A NUL can only be spelled \u0000 in JSON; the careful path refuses it with a message.
            # (Looking for any backslash first is several times faster, and most runs have none.)
            if b"\\" in blob and b"\\u0000" in blob:
                return None
            try:
                rows = convert(decode(blob))
                return rows if _within_utc_years(rows, aware_dates) else None
            except Exception:
                return None

        return decode_json

    def _convert_carefully(self, row: dict, number: int) -> list:
        if row.__class__ is not dict:
            raise ArchiveError(f"Table {self.name}, row {number}: the row is not a JSON object.")
        where = self.where(row, number)
        for key in row:
            if key not in self.name_set:
                raise ArchiveError(f"{where}: unknown column {key!r} (this instance's {self.name} table has "
                                   "no such column).")
        values = []
        for column, name, check in zip(self.columns, self.names, self.checks):
            value = row.get(name, _MISSING)
            if value is _MISSING:
                value = self._default(column, where)
                values.append(value)
                continue
            try:
                values.append(check(value))
            except _Invalid as exc:
                raise ArchiveError(f"{where}: column {name} {exc}.") from None
        return values

    def _default(self, column, where: str):
        # Archives from an older schema lack newer columns: they get the model's default.
        default = column.default
        if default is not None and getattr(default, "is_scalar", False):
            value = default.arg
        elif default is not None and getattr(default, "is_callable", False):
            value = default.arg(None)
        elif column.nullable:
            return None
        else:
            raise ArchiveError(f"{where}: column {column.name} is missing and has no default.")
        return self.storable(column, value)

    def storable(self, column, value):
        """A Python value (a model default) as the driver stores it in ``column``."""
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(timezone.utc).replace(tzinfo=None)
            if self._date_spelling == "aware":
                return value.replace(tzinfo=timezone.utc)
            return _sqlite_datetime(value) if self._sqlite else value
        if isinstance(value, date) and self._sqlite:
            return value.isoformat()
        if isinstance(value, bool) and self._sqlite:
            return int(value)
        return value

    def where(self, row, number: int) -> str:
        """``Table users, row 3 (id 17)`` for messages."""
        ident = row.get(self.pk) if isinstance(row, dict) and self.pk else None
        suffix = f" ({self.pk} {ident})" if isinstance(ident, (int, str)) and not isinstance(ident, bool) else ""
        return f"Table {self.name}, row {number}{suffix}"


# --- The database side: one raw connection, one transaction ------------------------------------

class _Target:
    """The raw DBAPI connection a restore writes through, with each dialect's SQL spelled out.

    The raw connection bypasses SQLAlchemy's per-value type processing (values
    are already converted by ``TableCodec``), which is most of the cost of a
    million-row restore.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect = engine.dialect.name
        self.sqlite = self.dialect == "sqlite"
        self.postgres = self.dialect == "postgresql"
        self.mysql = self.dialect in ("mysql", "mariadb")
        self.quote = engine.dialect.identifier_preparer.quote
        self.placeholder = "?" if engine.dialect.paramstyle in ("qmark",) else "%s"
        dbapi = engine.dialect.loaded_dbapi
        self.data_errors = (dbapi.IntegrityError, dbapi.DataError)
        database = _sqlite_file(engine)
        # SQLite files are written by a child process, so writing overlaps reading the archive.
        self.pipelined = database is not None and SQLiteWorker.can_start()
        self.raw = SQLiteWorker(database) if self.pipelined else engine.raw_connection()
        self._cursor = self.raw.cursor()
        # PostgreSQL: ``execute_later`` and ``copy_later`` hand their work to a helper thread.
        self._later = ConnectionHelper(self._cursor) if self.postgres else None
        self._packing_cursor = self.raw.cursor() if self.postgres else None
        self._savepoints = 0
        self._broken = False
        self._sqlite_cache = None
        self.may_skip_fk_triggers = False
        self._copy_types: dict[str, list[str] | None] = {}

    @property
    def cursor(self):
        """The connection's cursor, once the work given to ``execute_later`` and ``copy_later`` is done.

        Raises the error of the first of them that failed.
        """
        if self._later is not None:
            self._later.wait()
        return self._cursor

    # transaction

    def begin(self, replacing: bool = False) -> None:
        if self.sqlite:
            if self._sqlite_cache is None:
                # A bigger page cache for this connection while it restores: index pages
                # otherwise spill to the WAL and are written there again and again.
                self._sqlite_cache = self.scalar("PRAGMA cache_size")
                self.cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            if self.pipelined and replacing:
                # The child's connection ends with the restore. A replace checks every
                # foreign key itself (``_missing_parents``, ``_refuse_orphaning_children``),
                # so SQLite need not look each parent up again, as ``sqlite3 < dump.sql`` does not.
                self.cursor.execute("PRAGMA foreign_keys = OFF")
            # IMMEDIATE takes the write lock now: no other writer can slip in between
            # our reads (existing ids) and our writes.
            self.cursor.execute("BEGIN IMMEDIATE")
        elif self.mysql:
            self.cursor.execute("START TRANSACTION")
        if self.postgres:
            # Lets an operator (or a test) find this connection in pg_stat_activity.
            self.cursor.execute("SET LOCAL application_name = 'cyberquest-restore'")
            # Rebuilding the indexes of a bulk-loaded table sorts in memory up to this much.
            self.cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
            self.may_skip_fk_triggers = replacing and self._may_set_replication_role()

    def _may_set_replication_role(self) -> bool:
        """PostgreSQL: whether this role may set ``session_replication_role`` (a superuser, or granted SET).

        Asked, not tried: a refused SET would leave an error in the server's log at every restore.
        """
        if self.scalar("SELECT current_setting('is_superuser')") == "on":
            return True
        if self.engine.dialect.server_version_info < (15,):  # GRANT SET ON PARAMETER came in 15
            return False
        return bool(self.scalar("SELECT has_parameter_privilege('session_replication_role', 'SET')"))

    def foreign_key_triggers(self, enabled: bool) -> None:
        """PostgreSQL: fire (or not) the foreign-key checks of the rows this transaction writes next.

        Only for rows whose every reference the restore has checked against parent
        rows it wrote itself in this transaction, which no other session can see,
        let alone delete. Reset at the transaction's end whatever happens.
        """
        self.execute_later(f"SET LOCAL session_replication_role = {'origin' if enabled else 'replica'}")

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        if self._later is not None:
            self._later.stop()  # being rolled back: what it has not done is not needed
        try:
            self.raw.rollback()
        except Exception as exc:  # the connection may be gone; the server rolls back on its own
            log.info("rollback of the restore transaction failed (%s); the server discards it", exc)
            self._broken = True

    def close(self) -> None:
        if self._later is not None:
            self._later.stop()
        try:
            if self._sqlite_cache is not None and not self._broken and not self.pipelined:
                self.cursor.execute(f"PRAGMA cache_size = {int(self._sqlite_cache)}")
            self.cursor.close()
            if self._packing_cursor is not None:
                self._packing_cursor.close()
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

    def execute_later(self, sql: str, on_error: ErrorExplainer | None = None) -> None:
        """Run a statement whose result nobody needs; PostgreSQL and a pipelined SQLite target do not wait for it.

        On PostgreSQL its error is raised by the next use of ``cursor``, as
        ``on_error(error)`` when that gives an exception; elsewhere at once or,
        pipelined, from a later call.
        """
        if self._later is not None:
            self._later.execute(sql, on_error)
        elif self.pipelined:
            self.raw.submit(sql)
        else:
            try:
                self.cursor.execute(sql)
            except Exception as exc:
                mapped = on_error(exc) if on_error is not None else None
                if mapped is None:
                    raise
                raise mapped from exc

    def insert_later(self, table: str, names: Sequence[str], rows: list,
                     on_error: Callable[[int, Exception], Exception]) -> None:
        """Pipelined targets: insert without waiting; a failing row raises ``on_error(index, error)`` later."""
        columns = ", ".join(self.q(n) for n in names)
        self.raw.insert_later(f"INSERT OR FAIL INTO {self.q(table)} ({columns})", rows, on_error)

    def _insert_sql(self, table: str, names: Sequence[str]) -> str:
        columns = ", ".join(self.q(n) for n in names)
        marks = ", ".join([self.placeholder] * len(names))
        return f"INSERT INTO {self.q(table)} ({columns}) VALUES ({marks})"

    def savepoint(self) -> str:
        self._savepoints += 1
        name = f"cq_restore_{self._savepoints}"
        self.cursor.execute(f"SAVEPOINT {name}")
        return name

    def rollback_to(self, name: str) -> None:
        self.cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")

    def release(self, name: str) -> None:
        self.cursor.execute(f"RELEASE SAVEPOINT {name}")

    # statements

    def q(self, name: str) -> str:
        return self.quote(name)

    def scalar(self, sql: str, params: Sequence = ()):
        self.cursor.execute(sql, params)
        row = self.cursor.fetchone()
        return row[0] if row else None

    def count(self, table: str) -> int:
        return int(self.scalar(f"SELECT COUNT(*) FROM {self.q(table)}"))

    def delete_all(self, table: str) -> int:
        self.cursor.execute(f"DELETE FROM {self.q(table)}")
        return max(self.cursor.rowcount, 0)

    def copy_later(self, table, on_error: ErrorExplainer) -> Copy:
        """PostgreSQL: a psycopg ``Copy`` of the model ``table`` whose rows the helper thread sends in turn.

        ``write_row`` packs a row at once; the COPY runs after the work handed
        over before it. Finish it (``finish(None)``) after the last row, or stop it
        (``finish(error)``). A failure is raised by a later call, as ``on_error(error)``
        when that gives an exception. ``prepare_copies`` must have been called for
        the table: this call must not wait for the connection.
        """
        types = self._copy_types[str(table.name)]
        data = self._later.copy(self._copy_statement(table, binary=bool(types)), on_error)
        packer = Copy(self._packing_cursor, binary=bool(types), writer=data)
        if types:
            # Binary COPY takes dates as aware datetimes (``binary_copy``): psycopg's timestamptz
            # dumper packs microseconds since 2000 in UTC, which is what a timestamp column stores.
            packer.set_types(["timestamptz" if name == "timestamp" else name for name in types])
        return packer

    def binary_copy(self, table) -> bool:
        """Whether ``copy_later`` sends ``table`` in binary; its rows must then carry aware datetimes.

        Only for tables given to ``prepare_copies``. (Text COPY must not get them: a
        timestamp column ignores the offset it spells.)
        """
        return bool(self._copy_types.get(str(table.name)))

    def prepare_copies(self, tables) -> None:
        """Learn now what ``copy_later`` needs from the database for each of ``tables``."""
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
        """Insert ``rows`` (value lists for every column of the model ``table``) and wait for the database."""
        if not rows:
            return
        if self.postgres:
            types = self._binary_copy_types(table)
            with self.cursor.copy(self._copy_statement(table, binary=bool(types))) as copy:
                if types:
                    copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
            return
        self.cursor.executemany(self._insert_sql(str(table.name), [str(c.name) for c in table.columns]), rows)

    def update(self, table: str, names: Sequence[str], pk: str, rows: list) -> None:
        """``rows`` hold the values of ``names`` followed by the primary key."""
        if not rows:
            return
        sets = ", ".join(f"{self.q(n)} = {self.placeholder}" for n in names)
        self.cursor.executemany(f"UPDATE {self.q(table)} SET {sets} WHERE {self.q(pk)} = {self.placeholder}", rows)

    def _in_chunks(self, values: list, size: int = 2000) -> Iterable[list]:
        for start in range(0, len(values), size):
            yield values[start:start + size]

    def select_where_in(self, table: str, columns: Sequence[str], key: str, values: Iterable) -> list[tuple]:
        """Rows (``columns``) of ``table`` whose ``key`` is one of ``values``."""
        values = list(values)
        found: list[tuple] = []
        selected = ", ".join(self.q(c) for c in columns)
        for chunk in self._in_chunks(values):
            if self.postgres:
                self.cursor.execute(f"SELECT {selected} FROM {self.q(table)} WHERE {self.q(key)} = ANY(%s)",
                                    (chunk,))
            else:
                marks = ", ".join([self.placeholder] * len(chunk))
                self.cursor.execute(f"SELECT {selected} FROM {self.q(table)} WHERE {self.q(key)} IN ({marks})",
                                    chunk)
            found.extend(tuple(row) for row in self.cursor.fetchall())
        return found

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

    def rebuildable_indexes(self, table: str) -> list[tuple[str, str]]:
        """``(DROP statement, CREATE statement)`` of the indexes a bulk load of ``table`` can build afterwards.

        Non-unique indexes, everywhere but MariaDB (DDL there would commit the
        restore's transaction half-way). On PostgreSQL, when there is one, also the
        primary key and unique constraints, unless a foreign key points at the table:
        dropping an index already locks the table against every other session until
        the commit, so dropping its keys too makes nobody wait longer; but dropping a
        key another table's foreign key needs would lock that table as well. SQLite
        cannot drop a key, so its unique indexes stay and refuse duplicates row by row.
        """
        if self.sqlite:
            self.cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                                "AND sql IS NOT NULL", (table,))
            return [(f"DROP INDEX {self.q(name)}", sql) for name, sql in self.cursor.fetchall()
                    if not sql.lstrip().upper().startswith("CREATE UNIQUE")]
        if not self.postgres:
            return []
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
        """Make the next generated id of each table larger than every id it now holds."""
        if self.postgres:
            for table in tables:
                pk = _integer_pk(table)
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
        elif self.sqlite:
            # Only tables declared AUTOINCREMENT have a counter (none of ours today).
            if self.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_sequence'"):
                for table in tables:
                    pk = _integer_pk(table)
                    if pk is None:
                        continue
                    highest = self.scalar(f"SELECT COALESCE(MAX({self.q(pk)}), 0) FROM {self.q(table.name)}")
                    self.cursor.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?",
                                        (highest, table.name))
        # MariaDB/MySQL: InnoDB moves AUTO_INCREMENT past every explicit id inserted, and
        # ALTER TABLE ... AUTO_INCREMENT would commit the restore's transaction half-way.


def _sqlite_file(engine: Engine) -> str | None:
    """The path of a plain SQLite database file (not memory, not a URI with options)."""
    url = engine.url
    if engine.dialect.name != "sqlite" or url.query or not url.database:
        return None
    if url.database == ":memory:" or url.database.startswith("file:"):
        return None
    return url.database


def _integer_pk(table) -> str | None:
    primary = list(table.primary_key.columns)
    if len(primary) == 1 and isinstance(primary[0].type, types.Integer):
        return primary[0].name
    return None


# --- The Result ----------------------------------------------------------------------------------

@dataclass
class _Counts:
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    deleted: int = 0

    def as_dict(self) -> dict:
        return {"inserted": self.inserted, "updated": self.updated, "skipped": self.skipped,
                "deleted": self.deleted}


class _Reasons:
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
        return list(self._groups.values())


# --- The plan ----------------------------------------------------------------------------------------

@dataclass
class _Plan:
    tables: list                     # the tables to restore, parents first
    names: set
    known: dict                      # every data table by name
    parents: dict = field(default_factory=dict)   # table name -> names of its parents being restored


def _plan(archive: Archive, options: RestoreOptions) -> _Plan:
    known = {str(table.name): table for table in data_tables()}
    in_archive = archive.declared_tables
    if in_archive is None:
        in_archive = archive.table_names()
    unknown = [name for name in in_archive if name not in known]
    if unknown:
        raise ArchiveError(f"The archive holds unknown table(s) {', '.join(unknown)}; this instance has "
                           f"{', '.join(known)}.")
    if options.tables is not None:
        absent = [name for name in options.tables if name not in in_archive]
        if absent:
            raise ArchiveError(f"The archive holds no table {', '.join(absent)}; it holds "
                               f"{', '.join(in_archive) or 'no tables'}.")
        wanted = set(options.tables)
    else:
        wanted = set(in_archive)
    ordered = [table for table in data_tables() if table.name in wanted]
    plan = _Plan(tables=ordered, names=wanted, known=known)
    for table in ordered:
        plan.parents[table.name] = {fk.column.table.name for fk in table.foreign_keys
                                    if fk.column.table.name in wanted and fk.column.table.name != table.name}
    return plan


def check_archive_against_schema(archive: Archive, options: RestoreOptions, schema_revisions: set[str] | None):
    """The checks that need the schema but not the rows: revision, tables, the ``tables`` option.

    ``schema_revisions`` are the Alembic revisions this instance knows (its head
    and every ancestor); an archive from any other revision was made by a newer
    (or foreign) schema and is refused.
    """
    revision = archive.schema_revision
    if revision and schema_revisions is not None:
        unknown = [part for part in revision.split(",") if part not in schema_revisions]
        if unknown:
            raise ArchiveError(f"The archive was made with schema revision {revision}, which this instance does "
                               "not know (it is newer than this instance's schema); upgrade the app first.")
    _plan(archive, options)


# --- Writing one table ----------------------------------------------------------------------------------

class _TableWriter:
    """Collects one table's converted rows and writes them in batches."""

    def __init__(self, restore: "_Restore", table):
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
        self.unique_columns = [self.codec.names.index(c.name) for c in _unique_columns(table)]
        self.tracks_skips = restore.is_parent.get(self.name, False)
        self.skipped_ids: set = restore.skipped_ids.setdefault(self.name, set())
        self.dropped_indexes: list[tuple[str, str]] = []
        self.replacing = restore.options.mode == "replace"
        # Replace on PostgreSQL streams the whole table through one COPY, so the server
        # stores rows while this process reads the next ones (no queries in between).
        self.streaming = self.replacing and self.target.postgres
        self._copy = None  # PostgreSQL replace: the table's COPY (``_Target.copy_later``) once it started
        self.written_ids: set | None = None
        # Every reference checked against parent rows written by this restore: the server
        # need not look each parent up again (pg_restore --disable-triggers, in effect).
        self.skip_fk_triggers = (self.streaming and self.target.may_skip_fk_triggers and bool(self.fks)
                                 and all(parent in restore.written_ids for _i, _c, parent, _k in self.fks))
        if self.replacing:
            if self.tracks_skips:  # children check their parent ids against this set
                self.written_ids = restore.written_ids[self.name] = set()
            for _index, _column, parent, parent_key in self.fks:
                restore.parent_ids(parent, parent_key)  # loaded now: no query can run during a COPY
            expected = (restore.archive.record_counts or {}).get(self.name, 0)
            if expected >= INDEX_REBUILD_MIN_ROWS:
                self.drop_rebuildable_indexes()

    def add_rows(self, rows: list) -> None:
        """Convert and queue rows (numbered from 1 in the order they come); writes full batches."""
        self.values.extend(self.codec.convert_many(rows, self.rows_seen + 1))
        self.rows_seen += len(rows)
        if len(self.values) >= BATCH_ROWS:
            self.flush()

    def add_values(self, values: list) -> None:
        """Queue rows that ``TableCodec.decode_json`` already checked and converted; writes full batches."""
        self.values.extend(values)
        self.rows_seen += len(values)
        if len(self.values) >= BATCH_ROWS:
            self.flush()

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

    def _explained(self, message: Callable[[Exception], str]) -> ErrorExplainer:
        """For work done later (``execute_later``, ``copy_later``): the database's refusal as an ``ArchiveError``."""
        def explain(exc: Exception) -> ArchiveError | None:
            return ArchiveError(message(exc)) if isinstance(exc, self.target.data_errors) else None

        return explain

    def abort(self) -> None:
        """End an unfinished COPY after a failure elsewhere (the transaction is rolled back next)."""
        if self._copy is not None:
            copy, self._copy = self._copy, None
            copy.writer.finish(ArchiveError("The restore stopped."))

    def _copy_failure(self, exc) -> str:
        diag = getattr(exc, "diag", None)
        context = getattr(diag, "context", None) or ""
        line = re.search(r"line (\d+)", context)
        where = f"Table {self.name}, row {line.group(1)}" if line else f"Table {self.name}"
        detail = " ".join(part for part in (getattr(diag, "message_primary", None),
                                            getattr(diag, "message_detail", None)) if part)
        return f"{where} cannot be stored: {(detail or _db_message(exc)).rstrip('.')}."

    def _duplicate_failure(self, exc) -> str:
        detail = getattr(getattr(exc, "diag", None), "message_detail", None) or ""
        key = re.fullmatch(r"Key \((.+)\)=\((.*)\) is duplicated\.", detail)
        if key:
            return f"Table {self.name} cannot be stored: more than one row has {key.group(1)} {key.group(2)}."
        return f"Table {self.name} cannot be stored: {_db_message(exc)}."

    def drop_rebuildable_indexes(self) -> None:
        for drop, create in self.restore.rebuildable_indexes[self.name]:
            self.target.execute_later(drop)
            self.dropped_indexes.append((drop, create))

    def flush(self) -> None:
        if not self.values:
            return
        values, self.values = self.values, []
        first = self.rows_seen - len(values) + 1
        if self.replacing:
            missing = self._missing_parents(values)
            if missing:
                self._refuse_broken_foreign_key(values, first, missing)
            if self.streaming:
                self._stream(values)
            else:
                self._insert_or_explain(values, first)
            if self.written_ids is not None:
                pk_index = self.codec.pk_index
                self.written_ids.update(row[pk_index] for row in values)
            self.counts.inserted += len(values)
        else:
            batch = list(zip(range(first, first + len(values)), values))
            self._merge(self._without_orphans(batch))
        self.restore.report(f"Restoring {self.name} ({self.rows_seen:,} rows read)")

    # foreign keys

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

    def _refuse_broken_foreign_key(self, values: list, first: int, missing: list) -> None:
        for offset, row in enumerate(values):
            for index, column, parent, _key, absent in missing:
                if row[index] in absent:
                    raise ArchiveError(f"{self._where(first + offset, row)}: {column} {row[index]} refers to a "
                                       f"{parent} row that does not exist (a broken foreign key).")

    def _without_orphans(self, batch: list) -> list:
        """Merge: skip rows whose parent was skipped; refuse rows whose parent does not exist at all."""
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

    # replace

    def _stream(self, values: list) -> None:
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

    def _insert_or_explain(self, values: list, first: int) -> None:
        target = self.target
        if target.pipelined:
            # Only the keys are kept for the message: the batch itself may be megabytes.
            pk_index = self.codec.pk_index
            keys = [row[pk_index] for row in values] if pk_index is not None else None

            def explain(offset: int, exc: Exception) -> ArchiveError:
                where = f"Table {self.name}, row {first + offset}" + \
                    (f" ({self.codec.pk} {keys[offset]})" if keys is not None else "")
                return ArchiveError(f"{where} cannot be stored: {_db_message(exc)}.")

            target.insert_later(self.name, self.codec.names, values, explain)
            return
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
                raise ArchiveError(f"{self._where(first + offset, row)} cannot be stored: {_db_message(exc)}.") \
                    from exc
            target.release(savepoint)

    # merge

    def _merge(self, batch: list) -> None:
        pk_index = self.codec.pk_index
        if pk_index is None:
            raise RestoreError(f"Table {self.name} has no single-column primary key; it cannot be merged.")
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

    def _key(self, value):
        # MariaDB's default collation compares case- and trailing-space-insensitively.
        if self.target.mysql and isinstance(value, str):
            return value.casefold().rstrip(" ")
        return value

    def _without_unique_collisions(self, rows: list) -> list:
        pk_index = self.codec.pk_index
        for index in self.unique_columns:
            if not rows:
                break
            column = self.codec.names[index]
            values = {values[index] for _, values in rows if values[index] is not None}
            owners = {self._key(value): owner for owner, value in
                      self.target.select_where_in(self.name, [self.codec.pk, column], column, values)} \
                if values else {}
            kept, claimed = [], {}
            for number, values in rows:
                value = values[index]
                key = self._key(value)
                ident = values[pk_index]
                owner = owners.get(key) if value is not None else None
                if value is not None and ((owner is not None and owner != ident) or
                                          (key in claimed and claimed[key] != ident)):
                    other = owner if owner is not None and owner != ident else claimed[key]
                    self._skip(values, f"{column} already belongs to another {self.name} row", other=other)
                    continue
                if value is not None:
                    claimed[key] = ident
                kept.append((number, values))
            rows = kept
        return rows

    def _skip(self, values: list, reason: str, other=None) -> None:
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
            lambda values: self._skip(values, "collides with an existing row on a unique column"))

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
                    raise ArchiveError(f"{self._where(number, values)} cannot be stored: {_db_message(exc)}.") \
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
            self.restore.reasons.add(self.name, "collides with an existing row on a unique column", values[pk_index])

        self.counts.updated += self._write_sifting(
            changed, lambda batch: target.update(self.name, names, codec.pk, [params(values) for values in batch]),
            skip)

    def _where(self, number: int, values: list) -> str:
        if self.codec.pk_index is not None:
            return f"Table {self.name}, row {number} ({self.codec.pk} {values[self.codec.pk_index]})"
        return f"Table {self.name}, row {number}"


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


def _db_message(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300].rstrip(".")


# --- One restore ------------------------------------------------------------------------------------------

class _Restore:
    """The state of one pass over the archive inside one transaction."""

    def __init__(self, archive: Archive, target: _Target, plan: _Plan, options: RestoreOptions,
                 progress: ProgressCallback | None):
        self.archive = archive
        self.target = target
        self.plan = plan
        self.options = options
        self._progress = progress
        if options.mode == "replace" and target.postgres:
            target.prepare_copies(plan.tables)
        self.codecs = {table.name: TableCodec(table, target.dialect, aware_datetimes=target.binary_copy(table))
                       for table in plan.tables}
        self.counts = {table.name: _Counts() for table in plan.tables}
        self.reasons = _Reasons()
        self.skipped_ids: dict[str, set] = {}
        # Replace only: ids written so far per parent table, and ids of parents left as they are.
        self.written_ids: dict[str, set] = {}
        self._kept_ids: dict[str, set] = {}
        # (table, CREATE statements, error explainer) of the indexes a bulk load dropped.
        self.index_builds: list[tuple[str, list[str], ErrorExplainer]] = []
        self.is_parent = {name: any(name in parents for parents in plan.parents.values()) for name in plan.names}
        # Read up front: a pipelined target would otherwise wait for the work queued before the query.
        self.rebuildable_indexes = {name: target.rebuildable_indexes(name) for name in plan.names} \
            if options.mode == "replace" else {}

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

    def parent_ids(self, parent: str, key: str) -> set | None:
        """Replace: every id the parent table will hold (None in a merge, which asks the database)."""
        if self.options.mode != "replace":
            return None
        if parent in self.written_ids:
            return self.written_ids[parent]
        if parent not in self._kept_ids:  # a parent outside the restore keeps its rows
            q = self.target.q
            self.target.cursor.execute(f"SELECT {q(key)} FROM {q(parent)}")
            self._kept_ids[parent] = {row[0] for row in self.target.cursor.fetchall()}
        return self._kept_ids[parent]

    def report(self, message: str) -> None:
        if self._progress is not None:
            self._progress(self.archive.fraction_read, message)

    def run(self, fast: bool) -> dict:
        target, plan = self.target, self.plan
        target.begin(replacing=self.options.mode == "replace")
        token_owners = None
        if self.options.mode == "replace":
            self._refuse_orphaning_children()
            if "users" in plan.names:
                token_owners = self._token_owners()
            for table in reversed(plan.tables):
                self.counts[table.name].deleted = target.delete_all(table.name)
            self.report("Deleted the current rows")
        done: set[str] = set()
        spooled: dict[str, tempfile.SpooledTemporaryFile] = {}
        try:
            writer = None
            spool = None
            skipping = False
            def decode(table: str, blob: bytes):
                if writer is None or writer.name != table or writer.codec.decode_json is None:
                    return None
                return writer.codec.decode_json(blob)

            for kind, value in self.archive.events(fast, decode):
                if kind is VALUES:
                    writer.add_values(value)
                elif kind is ROWS:
                    if writer is not None:
                        writer.add_rows(value)
                    elif spool is not None:
                        spool.write(b"".join(orjson.dumps(row) + b"\n" for row in value))
                    elif not skipping:
                        raise ArchiveError("The archive's rows appear outside a table.")
                elif kind is TABLE:
                    writer, spool, skipping = None, None, False
                    if value not in plan.known:
                        raise ArchiveError(f"The archive holds an unknown table {value!r}; this instance has "
                                           f"{', '.join(plan.known)}.")
                    if value not in plan.names:
                        skipping = True
                    elif plan.parents[value] <= done:
                        writer = _TableWriter(self, plan.known[value])
                    else:
                        # A child listed before its parent: keep its rows aside until the parent is in.
                        spool = spooled[value] = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)
                elif kind is END:
                    if writer is not None:
                        writer.finish()
                        done.add(value)
                    writer, spool, skipping = None, None, False
            for table in plan.tables:
                if table.name in spooled:
                    writer = _TableWriter(self, table)
                    spool = spooled[table.name]
                    spool.seek(0)
                    rows = []
                    for line in spool:
                        rows.append(orjson.loads(line))
                        if len(rows) >= BATCH_ROWS:
                            writer.add_rows(rows)
                            rows = []
                    writer.add_rows(rows)
                    writer.finish()
                    done.add(table.name)
            writer = None
            self._build_indexes()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            for spool in spooled.values():
                spool.close()
        if token_owners is not None:
            self._forget_operational_rows_of_removed_users(token_owners)
        return {
            "mode": self.options.mode,
            "tables": {str(table.name): self.counts[table.name].as_dict() for table in plan.tables},
            "skipped_reasons": self.reasons.as_list(),
            "safety_backup": None,
        }

    def _refuse_orphaning_children(self) -> None:
        for table in data_tables():
            if table.name in self.plan.names:
                continue
            parents = sorted({fk.column.table.name for fk in table.foreign_keys} & self.plan.names)
            if parents and self.target.count(table.name):
                raise BadRequestError(
                    f"Replacing {', '.join(parents)} would leave rows of {table.name} pointing at deleted rows; "
                    f"add {table.name} to tables, or restore in merge mode.")

    def _token_owners(self) -> dict[int, tuple[int, str | None]]:
        """API tokens and the username of their owner, before the users are replaced."""
        tokens = ApiToken.__table__
        q = self.target.q
        self.target.cursor.execute(
            f"SELECT t.{q('id')}, t.{q('user_id')}, u.{q('username')} FROM {q(tokens.name)} t "
            f"LEFT JOIN {q('users')} u ON u.{q('id')} = t.{q('user_id')}")
        return {row[0]: (row[1], row[2]) for row in self.target.cursor.fetchall()}

    def _forget_operational_rows_of_removed_users(self, token_owners: dict) -> None:
        """Keep API tokens and audit entries of accounts still present (same id and username), drop the rest.

        An id alone is not enough: after a replace the id may belong to someone
        else, and a token must never start authenticating another person.
        """
        target, q = self.target, self.target.q
        owner_ids = {user_id for user_id, _ in token_owners.values()}
        now = dict(target.select_where_in("users", ["id", "username"], "id", owner_ids)) if owner_ids else {}
        doomed = [token_id for token_id, (user_id, username) in token_owners.items()
                  if user_id not in now or now[user_id] != username]
        for chunk in target._in_chunks(doomed):
            marks = ", ".join([target.placeholder] * len(chunk))
            target.cursor.execute(f"DELETE FROM {q(ApiToken.__tablename__)} WHERE {q('id')} IN ({marks})", chunk)
        audit = q(AuditLog.__tablename__)
        target.cursor.execute(
            f"DELETE FROM {audit} WHERE {q('actor_id')} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {q('users')} u "
            f"WHERE u.{q('id')} = {audit}.{q('actor_id')} AND ({audit}.{q('actor')} IS NULL "
            f"OR {audit}.{q('actor')} = u.{q('username')}))")


def restore_archive(archive: Archive, engine: Engine, options: RestoreOptions, *,
                    progress: ProgressCallback | None = None) -> dict:
    """Restore ``archive`` into ``engine``'s database in one transaction and return the Result.

    A dry run does everything and rolls back. Raises ``ArchiveError`` (bad
    data, nothing written), ``BadRequestError`` (the request cannot be honoured,
    nothing written) or ``RestoreError`` (the database failed; rolled back).
    """
    options.validate()
    plan = _plan(archive, options)
    keep_freed_buffers()
    target = _Target(engine)
    try:
        try:
            try:
                result = _Restore(archive, target, plan, options, progress).run(fast=True)
            except LayoutMismatch:
                # Not the one-row-per-line layout: start again with the general parser.
                target.rollback()
                result = _Restore(archive, target, plan, options, progress).run(fast=False)
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
                               f"({type(exc).__name__}: {_db_message(exc)}).") from exc
    finally:
        target.close()
    return result

