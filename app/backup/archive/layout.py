"""Parsing ``database_backup.json`` into ``(kind, value)`` events, from a stream of chunks.

Two parsers produce the same events. The fast one reads the one-row-per-line
layout that ``writer.write_archive`` produces (described in ``writer``) and
hands each run of row lines (about a megabyte) to one orjson call; on anything
else it raises ``LayoutMismatch`` and the caller starts again with the general
one, an ijson event stream that accepts any valid JSON layout (key order,
whitespace and line breaks anywhere, like the original CyberQuest's
``json.dumps(indent=2)``), each row, value, name and nesting within a cap. Memory
is bounded either way: a few megabytes of text and the rows parsed from it.
"""
from __future__ import annotations

import re
from typing import Callable, Iterator

import ijson
import orjson

from . import format
from ..errors import ArchiveError

TABLE, ROWS, END = "table", "rows", "end"
# Rows a consumer's decoder already checked and converted to value tuples (see ``fast_events``).
VALUES = "values"
# Rows are handed over in lists of up to this many, to keep per-row overhead low.
ROWS_PER_EVENT = 1000
MAX_LINE_BYTES = 16 * 1024 * 1024
# The general parser's caps (the fast layout holds a row to MAX_LINE_BYTES): no row longer
# than that line, no value longer than a quarter of it, names of identifier length, nesting
# no deeper than any column type could want; rows handed over once they hold about
# EVENT_TEXT_CHARS, so a batch of long rows stays a few megabytes.
MAX_ROW_CHARS = MAX_LINE_BYTES
MAX_VALUE_CHARS = MAX_ROW_CHARS // 4
MAX_NAME_CHARS = 255
MAX_DEPTH = 16
EVENT_TEXT_CHARS = 4 * 1024 * 1024

# ``decode(table, json_array_bytes)``: value tuples, or None to have the rows parsed as dicts.
RowsDecoder = Callable[[str, bytes], "list | None"]


class LayoutMismatch(Exception):
    """The data member is not in the one-row-per-line layout; parse it again with ijson."""


# --- The fast parser: one row per line -------------------------------------------------

_TOKEN = re.compile(rb'\s*(?:([{}\[\],:])|("(?:[^"\\\x00-\x1f]|\\.)*"))')
# States of the line parser.
_DOC, _KEY_OR_CLOSE, _KEY, _COLON, _OPEN, _ROW_OR_END, _ROW, _AFTER_ROW, _AFTER_TABLE, _DONE = range(10)


def fast_events(chunks: Iterator[bytes], decode: RowsDecoder | None = None) -> Iterator[tuple[str, object]]:
    """Events from the writer's layout: runs of row lines are parsed by one call each (``decode`` or orjson).

    JSON strings cannot hold a raw newline, so a line starting with ``]`` can only
    close the table's list (or a nested list, which then fails to parse and sends
    the member to the general parser).
    """
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    state = _DOC
    name = None
    buffer = b""
    chunks = iter(chunks)
    at_end = False
    while True:
        if state in (_ROW_OR_END, _ROW, _AFTER_ROW) and buffer[:1] != b"]":
            # Up to the line closing the table, else up to the last whole line.
            end = _table_end(buffer)
            region, buffer = _cut(buffer, end if end >= 0 else buffer.rfind(b"\n"), at_end)
            if region is not None:
                region = region.strip()
                if region:
                    if state == _AFTER_ROW:
                        raise LayoutMismatch("two rows without a comma between them")
                    trailing_comma = region[-1:] == b","
                    blob = b"[" + (region[:-1] if trailing_comma else region) + b"]"
                    values = decode(name, blob) if decode is not None else None
                    if values is not None:
                        yield VALUES, values
                    else:
                        try:
                            rows = loads(blob)
                        except decode_error:
                            raise LayoutMismatch("rows that are not one compact object per line") from None
                        yield ROWS, rows
                    state = _ROW if trailing_comma else _AFTER_ROW
                if end < 0 and at_end:
                    break
                continue
        else:
            line, buffer = _cut(buffer, buffer.find(b"\n"), at_end)
            if line is not None:
                for event in _structure(line, state, name):
                    if event[0] == "state":
                        state, name = event[1], event[2]
                    else:
                        yield event
                if at_end and not buffer:
                    break
                continue
        if at_end:
            break
        chunk = next(chunks, None)
        if chunk is None:
            at_end = True
        else:
            buffer = buffer + chunk if buffer else chunk
            if len(buffer) > MAX_LINE_BYTES and buffer.find(b"\n") < 0:
                raise LayoutMismatch("a line is too long for the line layout")
    if state != _DONE:
        raise LayoutMismatch("the document does not end where the line layout ends")


def _table_end(buffer: bytes) -> int:
    """``buffer.find(b"\\n]")``: where the table's list closes, or -1.

    A search for the one byte ``]`` runs at memchr speed and finds a handful in a
    whole archive; searching for the two bytes directly is about twenty times slower.
    """
    at = buffer.find(b"]", 1)
    while at > 0 and buffer[at - 1] != 0x0A:
        at = buffer.find(b"]", at + 1)
    return at - 1 if at > 0 else -1


def _cut(buffer: bytes, newline: int, at_end: bool) -> tuple[bytes | None, bytes]:
    """What comes before the newline at ``newline``, and what follows it.

    Without a newline (-1): the whole buffer once the input has ended, else None
    (more input is needed) and the buffer as it is.
    """
    if newline >= 0:
        return buffer[:newline], buffer[newline + 1:]
    if at_end:
        return buffer, b""
    return None, buffer


def _structure(line: bytes, state: int, name):
    """The punctuation and table names on a line between rows: events, then ``("state", state, name)``."""
    position, length = 0, len(line)
    while position < length:
        match = _TOKEN.match(line, position)
        if match is None:
            if line[position:].strip():
                raise LayoutMismatch("unexpected text between rows")
            break
        position = match.end()
        punct, string = match.group(1), match.group(2)
        if state == _DOC and punct == b"{":
            state = _KEY_OR_CLOSE
        elif state in (_KEY_OR_CLOSE, _KEY) and string is not None:
            name, state = orjson.loads(string), _COLON
        elif state == _KEY_OR_CLOSE and punct == b"}":
            state = _DONE
        elif state == _COLON and punct == b":":
            state = _OPEN
        elif state == _OPEN and punct == b"[":
            yield TABLE, name
            state = _ROW_OR_END
        elif state in (_ROW_OR_END, _AFTER_ROW) and punct == b"]":
            yield END, name
            state = _AFTER_TABLE
        elif state == _AFTER_TABLE and punct == b",":
            state = _KEY
        elif state == _AFTER_TABLE and punct == b"}":
            state = _DONE
        else:
            raise LayoutMismatch("unexpected token")
    yield "state", state, name


# --- The general parser: ijson ------------------------------------------------------------

class _ChunkReader:
    """A file-like ``read(n)`` over a chunk iterator, for ijson."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def json_events(chunks: Iterator[bytes]) -> Iterator[tuple[str, object]]:
    """Events from any valid JSON layout, ``ROWS_PER_EVENT`` rows (or ``EVENT_TEXT_CHARS``) at a time.

    ``ArchiveError`` when it is not one, or when a table name, a row, a value or its
    nesting passes its cap (a crafted document must not grow memory before a row is checked).
    """
    name = format.DATA_MEMBER
    events = ijson.parse(_ChunkReader(iter(chunks)), use_float=True, buf_size=64 * 1024)
    try:
        first = next(events, None)
        if first is None or first[1] != "start_map":
            raise ArchiveError(f"{name} is not a JSON object keyed by table name.")
        for _prefix, event, value in events:
            if event == "end_map":
                break
            table = value  # a map_key at the top level
            if len(table) > MAX_NAME_CHARS:
                raise ArchiveError(f"{name} holds a table name longer than {MAX_NAME_CHARS} characters.")
            _prefix, event, value = next(events)
            if event != "start_array":
                raise ArchiveError(f"The value of {table!r} in {name} is not a list of rows.")
            yield TABLE, table
            yield from _table_rows(events, table)
            yield END, table
        for _ in events:  # ijson reports trailing garbage here
            pass
    except ijson.JSONError as exc:
        detail = str(exc).strip().splitlines()[0]
        raise ArchiveError(f"{name} is not valid JSON ({detail}).") from exc
    except (ValueError, OverflowError) as exc:  # a number no Python type holds, whatever the ijson backend
        raise ArchiveError(f"{name} holds a number that cannot be read ({type(exc).__name__}).") from exc


def _table_rows(events, table: str) -> Iterator[tuple[str, list]]:
    number, text = 0, 0
    rows: list = []
    for _prefix, event, value in events:
        if event == "end_array":
            break
        number += 1
        if event != "start_map":
            raise ArchiveError(f"Table {table}, row {number}: the row is not a JSON object.")
        row, size = _row(events, table, number)
        rows.append(row)
        text += size
        if len(rows) >= ROWS_PER_EVENT or text >= EVENT_TEXT_CHARS:
            yield ROWS, rows
            rows, text = [], 0
    if rows:
        yield ROWS, rows


def _row(events, table: str, number: int) -> tuple[dict, int]:
    """The row whose ``start_map`` was just read, and about how many characters it holds, within the caps."""
    builder = ijson.ObjectBuilder()
    builder.event("start_map", None)
    depth, size = 1, 2
    for _prefix, event, value in events:
        if event == "start_map" or event == "start_array":
            depth += 1
            if depth > MAX_DEPTH:
                raise ArchiveError(f"Table {table}, row {number}: its values nest deeper than {MAX_DEPTH} levels.")
        elif event == "end_map" or event == "end_array":
            depth -= 1
        elif value.__class__ is str:
            if len(value) > MAX_VALUE_CHARS:
                raise ArchiveError(f"Table {table}, row {number}: a value is longer than {MAX_VALUE_CHARS:,} "
                                   "characters.")
            size += len(value)
        size += 8
        if size > MAX_ROW_CHARS:
            raise ArchiveError(f"Table {table}, row {number} is longer than {MAX_ROW_CHARS:,} characters.")
        builder.event(event, value)
        if depth == 0:
            return builder.value, size
    raise ArchiveError(f"Table {table}, row {number}: the row does not end.")
