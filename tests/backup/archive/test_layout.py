"""The general (ijson) parser's caps: a row, a value, a name and nesting each have a limit (issue 15, item 6)."""
from __future__ import annotations

import base64
import os

import orjson
import pytest

from app.backup.archive.layout import (MAX_DEPTH, MAX_ROW_CHARS, MAX_VALUE_CHARS, ROWS, json_events)
from app.backup.archive.limits import Limits
from app.backup.archive.reader import Archive
from app.backup.errors import ArchiveError
from support.archives import build_archive, sample_tables


def parsed(document: bytes) -> list:
    return list(json_events(iter([document[i:i + 65536] for i in range(0, len(document), 65536)])))


def contact(row_id: int, message: str) -> dict:
    return {"id": row_id, "name": "n", "email": "e@example.com", "subject": None, "message": message,
            "created_at": "2025-01-01T00:00:00+00:00", "is_read": False}


def test_a_value_longer_than_its_cap_is_refused():
    document = orjson.dumps({"contact_submissions": [contact(1, "x" * (MAX_VALUE_CHARS + 1))]})
    with pytest.raises(ArchiveError, match="Table contact_submissions, row 1: a value is longer than"):
        parsed(document)


def test_a_row_longer_than_its_cap_is_refused_though_each_value_fits():
    part = "x" * (MAX_VALUE_CHARS - 10)
    row = {**contact(1, part), **{f"extra{i}": part for i in range(MAX_ROW_CHARS // MAX_VALUE_CHARS)}}
    with pytest.raises(ArchiveError, match="Table contact_submissions, row 1 is longer than"):
        parsed(orjson.dumps({"contact_submissions": [row]}))


def test_nesting_deeper_than_its_cap_is_refused():
    deep = b"[" * (MAX_DEPTH + 5) + b"1" + b"]" * (MAX_DEPTH + 5)
    document = b'{"users":[{"id":' + deep + b"}]}"
    with pytest.raises(ArchiveError, match=f"row 1: its values nest deeper than {MAX_DEPTH} levels"):
        parsed(document)


def test_a_table_name_longer_than_any_identifier_is_refused():
    with pytest.raises(ArchiveError, match="table name longer than 255 characters"):
        parsed(orjson.dumps({"t" * 100_000: []}))


def test_long_rows_are_handed_over_in_batches_of_a_few_megabytes():
    rows = [contact(i, "y" * (1024 * 1024)) for i in range(1, 11)]
    batches = [value for kind, value in parsed(orjson.dumps({"contact_submissions": rows})) if kind is ROWS]
    assert sum(len(batch) for batch in batches) == 10
    assert max(len(batch) for batch in batches) <= 4


def test_an_archive_in_another_layout_with_an_oversized_value_is_refused_as_not_a_valid_backup(tmp_path):
    tables = sample_tables()
    # Random text: deflate cannot shrink it past the ratio limit, so the parser is what refuses it.
    tables["contact_submissions"][0]["message"] = base64.b64encode(os.urandom(MAX_VALUE_CHARS)).decode()
    archive = build_archive(tmp_path / "a.zip", tables, key=b"k", layout="pretty")
    with Archive.open(archive, limits=Limits(2**30, 2**32, 100), signing_key=b"k") as opened:
        with pytest.raises(ArchiveError, match="Table contact_submissions, row 1: a value is longer than") as refused:
            list(opened.events(fast=False))
    assert refused.value.status == 422
