"""What the backup and the restore know of the tables' shape: each column's kind, each table's parents.

One classification of column types (``type_family``, and ``column_kind`` and
``read_exactly`` built on it) serves the restore's codec, the dialects' binary COPY
types and the backup's fast paths; one foreign-key graph (``parent_tables``,
``parents_among``) orders archives and plans restores.
"""
from __future__ import annotations

from sqlalchemy import types

from ..models import UTCDateTime

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

# Subclasses before their bases: BigInteger is an Integer, Float a Numeric, Enum a String.
_FAMILIES = ((types.Boolean, "bool"), (types.BigInteger, "bigint"), (types.Integer, "int"),
             (types.DateTime, "datetime"), (types.Date, "date"), (types.Float, "float"),
             (types.Numeric, "decimal"), (types.Enum, "enum"), (types.String, "str"),
             (types.LargeBinary, "bytes"))


def stored_type(column):
    """The SQLAlchemy type ``column`` stores: a TypeDecorator's own type, else the column's."""
    kind = column.type
    return kind.impl_instance if isinstance(kind, types.TypeDecorator) else kind


def type_family(column) -> str:
    """What ``column`` holds: "bool", "bigint", "int", "datetime", "date", "float", "decimal",
    "enum", "str", "bytes" or "other" (a TypeDecorator counts as the type it stores)."""
    kind = stored_type(column)
    for base, family in _FAMILIES:
        if isinstance(kind, base):
            return family
    return "other"


def column_kind(column, wide_integers: bool) -> tuple:
    """``("int", low, high)``, ``("str", max_length)``, ``("bool",)``, ``("datetime",)`` or ``("other",)``.

    What the restore's fast paths check a value against. ``wide_integers``: a plain
    INTEGER column holds 64 bits (SQLite), not 32.
    """
    family = type_family(column)
    if family == "bool":
        return ("bool",)
    if family == "bigint":
        return ("int", *INT64)
    if family == "int":
        return ("int", *(INT64 if wide_integers else INT32))
    if family == "datetime":
        return ("datetime",)
    if family == "str":
        return ("str", stored_type(column).length)
    return ("other",)


def read_exactly(column) -> bool:
    """Whether a driver's own value of ``column`` is the one SQLAlchemy hands over, and encodes as it does.

    Plain integers, booleans, text (not enums) and naive timestamps. A TypeDecorator
    other than ``UTCDateTime`` (naive UTC in the database) has result processing of
    its own, which only SQLAlchemy runs.
    """
    if isinstance(column.type, types.TypeDecorator) and not isinstance(column.type, UTCDateTime):
        return False
    family = type_family(column)
    if family == "datetime":
        return not stored_type(column).timezone
    return family in ("bool", "int", "bigint", "str")


def integer_key(table) -> str | None:
    """The name of ``table``'s primary key when it is a single integer column, else None."""
    primary = list(table.primary_key.columns)
    if len(primary) == 1 and type_family(primary[0]) in ("int", "bigint"):
        return str(primary[0].name)
    return None


def parent_tables(table) -> set[str]:
    """The names of the tables ``table``'s foreign keys point at, itself excepted."""
    return {str(fk.column.table.name) for fk in table.foreign_keys} - {str(table.name)}


def parents_among(tables) -> dict[str, set[str]]:
    """Each of ``tables`` by name, with the names of its parents among them."""
    names = {str(table.name) for table in tables}
    return {str(table.name): parent_tables(table) & names for table in tables}
