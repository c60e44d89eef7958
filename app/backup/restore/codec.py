"""From the archive's JSON rows to the value lists a driver stores, checked against the schema.

``TableCodec`` has three ways for one table's rows, each giving the same values:
a msgspec decoder that checks and converts a whole run of rows in C
(``decode_json``), a converter generated for the table's columns (``convert``'s
fast path), and the careful path, which says exactly what is wrong with a row or
fills in a missing column's default.
"""
from __future__ import annotations

import keyword
from datetime import date, datetime, timezone
from typing import Annotated, Optional

import msgspec

from ..errors import ArchiveError
from ..schema import column_kind
from .values import Invalid, datetime_lines, not_null, nullable, sqlite_datetime, value_checker, within_utc_years

# What msgspec reads a date and time as for a PostgreSQL binary COPY: an offset is required
# (the careful path reads a missing one as UTC), and the datetime keeps it.
_AWARE_DATETIME = Annotated[datetime, msgspec.Meta(tz=True)]
_MISSING = object()


class TableCodec:
    """Turns a table's row objects from the archive into value lists in column order.

    ``dialect`` (a ``dialects.Dialect`` or its class) says how values are stored:
    with ``type_affinity``, dates and times as SQLite stores them (text); else as
    naive UTC datetimes or, with ``aware_datetimes`` (PostgreSQL binary COPY only, see
    ``PostgreSQLDialect.copy_later``), as aware ones: msgspec then makes them in C,
    with no Python per value.
    """

    def __init__(self, table, dialect, aware_datetimes: bool = False):
        self.table = table
        self.name = str(table.name)
        self.columns = list(table.columns)
        self.names = [str(column.name) for column in self.columns]
        self.name_set = frozenset(self.names)
        self.width = len(self.names)
        self._affinity = dialect.type_affinity
        self._date_spelling = "text" if self._affinity else "aware" if aware_datetimes else "object"
        self.checks = [(nullable if c.nullable else not_null)(value_checker(c, self._affinity, self._date_spelling))
                       for c in self.columns]
        primary = list(table.primary_key.columns)
        self.pk = str(primary[0].name) if len(primary) == 1 else None
        self.pk_index = self.names.index(self.pk) if self.pk else None
        self._fast = self._compile_fast_path()
        self.decode_json = self._compile_json_decoder() if dialect.decodes_json_rows else None

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

    def _compile_fast_path(self):
        """A converter specialised to this table's columns, for rows that are exactly as expected.

        A million rows pass through here, so the checks are written out as straight-line
        code (as ``dataclasses`` and ``namedtuple`` do) instead of a call per column. It
        raises on anything it does not expect; ``_convert_carefully`` then handles the row.
        """
        lines = ["def fast(row):", f"    if len(row) != {self.width}:", "        raise _Unexpected"]
        for i, (column, name) in enumerate(zip(self.columns, self.names)):
            kind = column_kind(column, self._affinity)
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
                if self._affinity:
                    lines.append(f"{pad}{v} = 1 if {v} else 0")
            elif kind[0] == "str":
                limit = f" or len({v}) > {kind[1]}" if kind[1] else ""
                lines.append(f"{pad}if {v}.__class__ is not str{limit} or '\\x00' in {v}:")
                lines.append(f"{pad}    raise _Unexpected")
            elif kind[0] == "datetime":
                lines += datetime_lines(v, i, pad, self._date_spelling)
            else:
                lines.append(f"{pad}{v} = _check{i}({v})")
            if not column.nullable:
                lines.append(f"    if {v} is None:")
                lines.append("        raise _Unexpected")
        lines.append("    return [" + ", ".join(f"v{i}" for i in range(self.width)) + "]")
        namespace = {"_Unexpected": Invalid, "_parse": datetime.fromisoformat}
        namespace.update({f"_check{i}": check for i, check in enumerate(self.checks)})
        exec(compile("\n".join(lines), f"<restore codec {self.name}>", "exec"), namespace)
        return namespace["fast"]

    def _compile_json_decoder(self):
        """``decode_json(array_bytes)``: a whole run of rows checked and converted in C by msgspec.

        msgspec validates types, integer ranges, string lengths, nulls, missing and
        unknown columns while it parses, which is several times faster than parsing to
        dicts and checking in Python. It only takes tables whose columns it can check
        exactly as ``_compile_fast_path`` does (dates are checked by that same code
        afterwards, or made by msgspec when they are to be aware). It returns None for
        anything unusual, so those rows take the careful path and its precise messages.
        None when the table does not qualify.
        """
        fields, dates, bools, aware_dates = [], [], [], []
        for i, (column, name) in enumerate(zip(self.columns, self.names)):
            if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
                return None
            kind = column_kind(column, self._affinity)
            if kind[0] == "int":
                kind_type = Annotated[int, msgspec.Meta(ge=kind[1], le=kind[2])]
            elif kind[0] == "bool":
                kind_type = bool
                if self._affinity:
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
        convert = self._compile_struct_converter(dates, bools)

        def decode_json(blob: bytes):
            # A NUL can only be spelled \u0000 in JSON; the careful path refuses it with a message.
            # (Looking for any backslash first is several times faster, and most runs have none.)
            if b"\\" in blob and b"\\u0000" in blob:
                return None
            try:
                rows = convert(decode(blob))
                return rows if within_utc_years(rows, aware_dates) else None
            except Exception:
                return None

        return decode_json

    def _compile_struct_converter(self, dates: list[int], bools: list[int]):
        """``convert(structs)``: msgspec's row structs as tuples, with dates (and SQLite's booleans) re-spelled.

        Only those columns need Python: each is checked and re-spelled in place by
        generated code, then msgspec turns the rows into tuples.
        """
        astuple = msgspec.structs.astuple
        if not (dates or bools):
            def convert(objects):
                return [astuple(o) for o in objects]

            return convert
        lines = ["def convert(objects):", "    for o in objects:"]
        for i in sorted(dates + bools):
            lines.append(f"        v{i} = o.{self.names[i]}")
            pad = "        "
            if self.columns[i].nullable:
                lines.append(f"        if v{i} is not None:")
                pad += "    "
            if i in dates:
                lines += datetime_lines(f"v{i}", i, pad, self._date_spelling)
            else:
                lines.append(f"{pad}v{i} = 1 if v{i} else 0")
            lines.append(f"{pad}o.{self.names[i]} = v{i}")
        lines.append("    return [_astuple(o) for o in objects]")
        namespace = {"_astuple": astuple, "_parse": datetime.fromisoformat}
        namespace.update({f"_check{i}": self.checks[i] for i in dates})
        exec(compile("\n".join(lines), f"<restore decoder {self.name}>", "exec"), namespace)
        return namespace["convert"]

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
            except Invalid as exc:
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
            return sqlite_datetime(value) if self._affinity else value
        if isinstance(value, date) and self._affinity:
            return value.isoformat()
        if isinstance(value, bool) and self._affinity:
            return int(value)
        return value

    def where(self, row, number: int) -> str:
        """``Table users, row 3 (id 17)`` for messages."""
        ident = row.get(self.pk) if isinstance(row, dict) and self.pk else None
        shown = (isinstance(ident, str) and len(ident) <= 80) or (
            isinstance(ident, int) and not isinstance(ident, bool) and ident.bit_length() <= 128)
        suffix = f" ({self.pk} {ident})" if shown else ""
        return f"Table {self.name}, row {number}{suffix}"
