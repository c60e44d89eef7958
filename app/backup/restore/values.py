"""Checking one value from the archive against its column, and the code generated to do it fast.

Each checker takes a JSON value and gives what the driver stores, or raises
``Invalid`` with the end of a sentence ("column X must be …"). ``datetime_lines``
writes the straight-line Python the codec compiles for a date and time column.
"""
from __future__ import annotations

import base64
import binascii
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation

import msgspec

from ..schema import INT32, INT64, stored_type, type_family


class Invalid(Exception):
    """A value does not fit its column; the message completes "column X …"."""


def _spelled(number) -> str:
    """A number as a message shows it; a whole number too long to spell (Python refuses past 4300
    digits, and no column holds more than 20) by its length."""
    if isinstance(number, int) and number.bit_length() > 128:
        return f"a whole number of about {int(number.bit_length() * 0.30103) + 1:,} digits"
    return repr(number)


def _describe(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() > 128:
        return _spelled(value)
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


def sqlite_datetime(moment: datetime) -> str:
    """``moment`` (naive UTC) as SQLAlchemy's SQLite DateTime stores it; comparisons in SQL are textual."""
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
            raise Invalid(f"must be an ISO 8601 date and time, not {_describe(value)}")
        try:
            moment = _parse_datetime(value)
            if moment.tzinfo is not None:
                moment = moment.astimezone(utc).replace(tzinfo=None)
        except ValueError:
            raise Invalid(f"must be an ISO 8601 date and time, not {_describe(value)}") from None
        except OverflowError:  # its offset moves it past the year 9999 (or before the year 1) in UTC
            raise Invalid(f"is {_describe(value)}, outside the years 1 to 9999 in UTC") from None
        if spelling == "text":
            return sqlite_datetime(moment)
        return moment.replace(tzinfo=utc) if spelling == "aware" else moment

    return check


def _date_checker(as_text: bool):
    def check(value):
        if type(value) is not str:
            raise Invalid(f"must be a date (YYYY-MM-DD), not {_describe(value)}")
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise Invalid(f"must be a date (YYYY-MM-DD), not {_describe(value)}") from None
        return day.isoformat() if as_text else day

    return check


def _int_checker(low: int, high: int):
    def check(value):
        if type(value) is not int:
            raise Invalid(f"must be a whole number, not {_describe(value)}")
        if not low <= value <= high:
            raise Invalid(f"is {_spelled(value)}, outside the column's range")
        return value

    return check


def _str_checker(max_length: int | None):
    def check(value):
        if type(value) is not str:
            raise Invalid(f"must be text, not {_describe(value)}")
        if max_length is not None and len(value) > max_length:
            raise Invalid(f"is {len(value)} characters long; the limit is {max_length}")
        if "\x00" in value:
            raise Invalid("contains a NUL character, which databases cannot store in text")
        return value

    return check


def _bool_check(value):
    if type(value) is not bool:
        raise Invalid(f"must be true or false, not {_describe(value)}")
    return value


def _sqlite_bool_check(value):
    # SQLite stores booleans as 0 and 1. Handed a bool, Python's sqlite3 first looks for
    # an adapter and fails (a microsecond per value, in the process that writes).
    return 1 if _bool_check(value) else 0


def _float_check(value):
    if type(value) not in (int, float):
        raise Invalid(f"must be a number, not {_describe(value)}")
    return float(value)


def _decimal_check(value):
    if type(value) not in (str, int):
        raise Invalid(f"must be a decimal number written as text, not {_describe(value)}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise Invalid(f"must be a decimal number, not {_describe(value)}") from None
    if not number.is_finite():
        raise Invalid("must be a finite decimal number")
    return number


def _bytes_check(value):
    if type(value) is not str:
        raise Invalid(f"must be base64 text, not {_describe(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("is not valid base64") from None


def _any_check(value):
    return value


_CHECKERS = {"float": _float_check, "decimal": _decimal_check, "bytes": _bytes_check}


def value_checker(column, type_affinity: bool, date_spelling: str):
    """The checker of ``column``'s non-null values. ``type_affinity``: SQLite's storage (see ``Dialect``);
    ``date_spelling``: how dates and times come out (``TableCodec``)."""
    family = type_family(column)
    if family == "bool":
        return _sqlite_bool_check if type_affinity else _bool_check
    if family == "bigint":
        return _int_checker(*INT64)
    if family == "int":
        return _int_checker(*(INT64 if type_affinity else INT32))
    if family == "datetime":
        return _datetime_checker(date_spelling)
    if family == "date":
        return _date_checker(type_affinity)
    if family in ("str", "enum"):
        return _str_checker(stored_type(column).length)
    return _CHECKERS.get(family, _any_check)


def datetime_lines(v: str, i: int, pad: str, spelling: str) -> list[str]:
    """Generated code converting ``v`` (column ``i``) from the writer's UTC shapes.

    "YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00" is validated by fromisoformat, then becomes
    what the driver wants: ``"text"`` re-spells it as SQLite stores dates (slicing is
    much cheaper than isoformat()), ``"object"`` makes a naive UTC datetime, ``"aware"``
    an aware one. Any other shape goes to ``_check{i}``.
    """
    shape = f"{v}[4] == '-' and {v}[7] == '-' and {v}[10] == 'T' and {v}[13] == ':' and {v}[16] == ':'"
    with_micros = {"text": f"_parse({v})\n{pad}    {v} = {v}[:10] + ' ' + {v}[11:26]",
                   "object": f"{v} = _parse({v}[:26])", "aware": f"{v} = _parse({v})"}[spelling]
    without = {"text": f"_parse({v})\n{pad}    {v} = {v}[:10] + ' ' + {v}[11:19] + '.000000'",
               "object": f"{v} = _parse({v}[:19])", "aware": f"{v} = _parse({v})"}[spelling]
    return [
        f"{pad}if {v}.__class__ is str and len({v}) == 32 and {v}[19] == '.' and {v}[26:] == '+00:00' and {shape}:",
        f"{pad}    {with_micros}",
        f"{pad}elif {v}.__class__ is str and len({v}) == 25 and {v}[19:] == '+00:00' and {shape}:",
        f"{pad}    {without}",
        f"{pad}else:",
        f"{pad}    {v} = _check{i}({v})",
    ]


def nullable(check):
    """``check`` for a column that takes null."""
    def nullable_check(value):
        return None if value is None else check(value)

    return nullable_check


def not_null(check):
    """``check`` for a column that refuses null."""
    def not_null_check(value):
        if value is None:
            raise Invalid("must not be null")
        return check(value)

    return not_null_check


def within_utc_years(rows: list, columns: list[int]) -> bool:
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

