"""The msgspec decoder is only a faster way to the careful path's answer.

``TableCodec.decode_json`` checks and converts a run of rows in C. Whatever it
accepts must be accepted by the careful, per-row path with exactly the same
values; whatever is unusual must make it step aside (None), so the careful path
can give its precise message. Hypothesis throws valid and broken rows at both.
"""
import json
from datetime import datetime, timezone
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.backup.errors import ArchiveError
from app.backup.dialects.postgresql import PostgreSQLDialect
from app.backup.dialects.sqlite import SQLiteDialect
from app.backup.restore.codec import TableCodec
from app.backup.schema import column_kind as _column_kind
from app.models import data_tables

TABLES = {table.name: table for table in data_tables()}
# "aware": PostgreSQL's binary COPY, whose dates msgspec makes as aware datetimes.
FLAVOURS = {"sqlite": (SQLiteDialect, False), "postgresql": (PostgreSQLDialect, False),
            "aware": (PostgreSQLDialect, True)}
CODECS = {(name, flavour): TableCodec(table, dialect, aware_datetimes=aware) for name, table in TABLES.items()
          for flavour, (dialect, aware) in FLAVOURS.items()}


def dumps(rows) -> bytes:
    return json.dumps(rows, separators=(",", ":")).encode()

dates = st.datetimes().map(lambda moment: moment.isoformat() + "+00:00") | st.sampled_from([
    "2025-12-23T01:57:51+00:00", "2025-12-23T01:57:51.123456+00:00", "2025-02-30T01:57:51+00:00",
    "2025-12-23T01:57:51Z", "2025-12-23T03:57:51+02:00", "2025-12-23 01:57:51", "not a date",
    "2025-12-23T01:57:51.123+00:00", "2025-12-23t01:57:51.1234567z", "2025-12-23T01:57:51.9999999+00:00",
    "9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59.999999+00:00"])
anything = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | \
    st.text(max_size=5) | st.just("a\x00b") | st.lists(st.integers(), max_size=2)


def good_value(column, sqlite: bool):
    """Values the careful path accepts, right up to each limit and (for strings) just past it."""
    kind = _column_kind(column, sqlite)
    if kind[0] == "int":
        good = st.integers(-1000, 10**6) | st.sampled_from([kind[1], kind[2]])
    elif kind[0] == "bool":
        good = st.booleans()
    elif kind[0] == "str":
        limit = kind[1] or 300
        good = st.text(max_size=20) | st.text(min_size=limit - 1, max_size=limit)
    else:
        good = dates
    return good | st.none() if column.nullable else good


def bad_value(column, sqlite: bool):
    """Near misses: one past a limit, the wrong type, null where null is refused."""
    kind = _column_kind(column, sqlite)
    if kind[0] == "int":
        return st.sampled_from([kind[1] - 1, kind[2] + 1, 1.0, True, "1"]) | anything
    if kind[0] == "str":
        limit = kind[1] or 300
        return st.text(min_size=limit + 1, max_size=limit + 2) | st.just("a\x00b") | anything
    return anything


def row_for(table, sqlite: bool):
    """A valid row, or one with a single flaw: a near-miss value, a missing or an unknown column."""
    names = [column.name for column in table.columns]
    valid = st.fixed_dictionaries({column.name: good_value(column, sqlite) for column in table.columns})
    flawed_value = st.sampled_from(list(table.columns)).flatmap(
        lambda column: st.tuples(st.just(column.name), bad_value(column, sqlite)))
    with_bad_value = st.tuples(valid, flawed_value).map(lambda pair: {**pair[0], pair[1][0]: pair[1][1]})
    without_column = st.tuples(valid, st.sampled_from(names)).map(
        lambda pair: {k: v for k, v in pair[0].items() if k != pair[1]})
    with_unknown = valid.map(lambda row: {**row, "surprise": 1})
    return st.one_of(valid, valid, with_bad_value, with_bad_value, without_column, with_unknown)


WRITER_SHAPE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00")


def plain(codec, row, flavour: str) -> bool:
    """Exactly the table's columns, dates in the shapes our writer produces.

    Aware dates on the first or last day step aside (an offset could move them
    outside the years 1 to 9999), even from our writer.
    """
    def plain_date(value) -> bool:
        text = str(value)
        return bool(WRITER_SHAPE.fullmatch(text)) and not (
            flavour == "aware" and text.startswith(("9999-12-31", "0001-01-01")))

    return set(row) == set(codec.names) and all(
        row[column.name] is None or plain_date(row[column.name])
        for column in codec.columns if _column_kind(column, True)[0] == "datetime")


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("table_name", sorted(TABLES))
@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_decoder_agrees_with_the_careful_path(flavour, table_name, data):
    table = TABLES[table_name]
    codec = CODECS[(table_name, flavour)]
    assert codec.decode_json is not None, "every data table qualifies for the fast decoder"
    rows = data.draw(st.lists(row_for(table, flavour == "sqlite"), min_size=1, max_size=3))
    decoded = codec.decode_json(dumps(rows))
    try:
        careful = [tuple(codec.convert(row, number)) for number, row in enumerate(rows, 1)]
    except ArchiveError:
        careful = None
    if decoded is None:
        # Stepped aside, which is only right for something unusual: the careful path answers.
        assert careful is None or not all(plain(codec, row, flavour) for row in rows), \
            "the fast decoder gave up on plain valid rows"
        return
    assert careful is not None, "the fast decoder accepted rows the careful path refuses"
    assert [tuple(values) for values in decoded] == careful


def test_the_fast_decoder_steps_aside_for_a_nul_and_for_unknown_columns():
    codec = CODECS[("contact_submissions", "sqlite")]
    row = {"id": 1, "name": "A", "email": "a@example.org", "subject": None, "message": "hi",
           "created_at": "2025-12-23T01:57:51+00:00", "is_read": False}
    assert codec.decode_json(dumps([row])) == [(1, "A", "a@example.org", None, "hi",
                                                       "2025-12-23 01:57:51.000000", False)]
    assert codec.decode_json(dumps([{**row, "message": "a\x00b"}])) is None
    assert codec.decode_json(dumps([{**row, "colour": "red"}])) is None
    with pytest.raises(ArchiveError, match="unknown column 'colour'"):
        codec.convert({**row, "colour": "red"}, 1)


def test_aware_dates_are_made_by_msgspec_and_agree_with_the_careful_path():
    codec = CODECS[("users", "aware")]
    row = {"id": 1, "username": "ada", "email": "ada@example.org", "password_hash": "x", "is_active": True,
           "is_admin": False, "created_at": "2025-01-02T05:04:05.1234567+02:00", "last_login": "2025-03-01t10:00:00z"}
    expected = (datetime(2025, 1, 2, 3, 4, 5, 123457, tzinfo=timezone.utc),
                datetime(2025, 3, 1, 10, tzinfo=timezone.utc))
    decoded = codec.decode_json(dumps([row]))
    assert decoded is not None and [value.astimezone(timezone.utc) for value in decoded[0][-2:]] == list(expected)
    assert tuple(codec.convert(row, 1)[-2:]) == expected
    # The same text gives the same moment, naive, where dates are not aware.
    assert tuple(CODECS[("users", "postgresql")].convert(row, 1)[-2:]) == tuple(
        moment.replace(tzinfo=None) for moment in expected)


@pytest.mark.parametrize("column", ["created_at", "last_login"])
@pytest.mark.parametrize("edge", ["9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00"])
def test_an_offset_past_the_last_or_first_day_steps_aside_to_be_refused(edge, column):
    codec = CODECS[("users", "aware")]
    rows = [{"id": i, "username": f"u{i}", "email": f"u{i}@example.org", "password_hash": "x", "is_active": True,
             "is_admin": False, "created_at": "2025-01-02T05:04:05+00:00", "last_login": None} for i in (1, 2, 3)]
    rows[1][column] = edge
    assert codec.decode_json(dumps(rows)) is None
    assert codec.decode_json(dumps(rows[:1] + rows[2:])) is not None
    with pytest.raises(ArchiveError, match="row 2 .*outside the years 1 to 9999 in UTC"):
        codec.convert_many(rows, 1)


@pytest.mark.parametrize("column", ["id", "is_active"])
def test_a_whole_number_too_long_to_spell_is_refused_naming_its_length(column):
    # Python refuses to spell an int past 4300 digits: the message must not need to.
    row = {"id": 1, "username": "u", "email": "u@example.org", "password_hash": "x", "is_active": True,
           "is_admin": False, "created_at": "2025-01-02T05:04:05+00:00", "last_login": None, column: 10**5000}
    with pytest.raises(ArchiveError, match=f"column {column} .*a whole number of about 5,001 digits"):
        CODECS[("users", "sqlite")].convert_many([row], 1)
