"""The backup archive: a streaming ZIP writer and a cheap metadata reader.

The writer reads each table in bounded batches from a server-side cursor,
encodes rows with orjson and streams them into the deflated
``database_backup.json`` member while hashing them, so memory stays flat
however large the database is.

``database_backup.json`` layout (one JSON document; the restore side may rely
on it for archives this module wrote, and falls back to a streaming JSON parser
for any other layout)::

    {"users":[
    {"id":1,"username":"ann",...},
    {"id":2,"username":"bob",...}
    ],
    "login_attempts":[
    ],
    "email_verifications":[
    {"id":1,...}
    ]}

Lines are separated by ``\\n`` (0x0A) only. Each table opens with a line
``<json string name>:[`` (the first one prefixed by ``{``), then one row object
per line, each but the last followed by ``,``; the table closes with a line
``],`` or, for the last table, ``]}``. Row objects are compact orjson output, so
they never contain a raw newline (but may contain raw U+2028/U+2029: split on
the byte ``\\n``, not on ``str.splitlines``). A database with no tables is ``{}``.
"""
from __future__ import annotations

import hashlib
import queue
import threading
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO, Callable, Sequence

import orjson
from sqlalchemy import Table, func, select
from sqlalchemy.engine import Connection

from . import format
from .errors import ArchiveError

ProgressCallback = Callable[[float, str], None]

BATCH_ROWS = 2000
COMPRESS_LEVEL = 6
METADATA_MAX_BYTES = 1024 * 1024
ROW_OPTIONS = orjson.OPT_NAIVE_UTC  # a naive datetime is UTC; aware ones keep their "+00:00"


@dataclass
class WriteResult:
    """What ``write_archive`` wrote: the signed metadata (as stored)."""

    metadata: dict


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _member_writer(zf: zipfile.ZipFile, name: str):
    # A name (not a ZipInfo) makes zipfile apply the archive's deflate level.
    return zf.open(name, "w", force_zip64=True)


class _HashingSink:
    """Writes chunks into a ZIP member on a worker thread, hashing them on the way.

    Compression (zlib), CRC and SHA-256 release the GIL, so they run on the
    second core while the caller encodes the next rows. The queue is bounded,
    which bounds memory.
    """

    def __init__(self, member, depth: int = 4):
        self.member = member
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="backup-compress", daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self._error is not None:
                continue  # drain so the producer never blocks on a dead consumer
            try:
                self.sha256.update(chunk)
                self.member.write(chunk)
            except BaseException as exc:  # re-raised in the producer's thread
                self._error = exc

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            self._raise()
        self.size += len(chunk)
        self._queue.put(chunk)

    def close(self) -> None:
        """Wait for every chunk to be written; re-raise a failure of the worker."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            self._raise()

    def abort(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _raise(self):
        error = self._error
        raise error.with_traceback(error.__traceback__)


def table_batches(conn: Connection, table: Table, batch_rows: int = BATCH_ROWS):
    """Yield the table's rows as lists of tuples, ordered by primary key, ``batch_rows`` at a time.

    Uses a server-side cursor (PostgreSQL named cursor, MariaDB SSCursor), so
    only one batch is in memory.
    """
    order = list(table.primary_key.columns) or list(table.columns)
    result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(
        select(table).order_by(*order))
    try:
        for partition in result.partitions():
            yield partition
    finally:
        result.close()


def _encode_table(sink: _HashingSink, conn: Connection, table: Table, first: bool,
                  on_batch: Callable[[int], None]) -> int:
    names = [str(column.name) for column in table.columns]
    dumps = orjson.dumps
    default = format.json_default
    sink.write((b"{" if first else b",\n") + dumps(table.name) + b":[")
    separator = b"\n"
    count = 0
    for batch in table_batches(conn, table):
        encoded = b",\n".join([dumps(dict(zip(names, row)), default=default, option=ROW_OPTIONS)
                               for row in batch])
        sink.write(separator + encoded)
        separator = b",\n"
        count += len(batch)
        on_batch(len(batch))
    sink.write(b"\n]")
    return count


def write_archive(fileobj: BinaryIO, conn: Connection, tables: Sequence[Table], *, created_at: datetime,
                  created_by: str | None, trigger: str, schema_revision: str | None, app_info: dict,
                  signing_key: bytes, progress: ProgressCallback | None = None) -> WriteResult:
    """Write a complete, signed archive of ``tables`` (in that order) read through ``conn``.

    ``tables`` is the restore order (parents first). ``conn`` should hold a
    snapshot transaction so the tables agree with each other. Returns the metadata
    as stored in ``backup_metadata.json``.
    """
    started = time.monotonic()
    report = progress or (lambda fraction, message: None)
    dialect = conn.dialect.name
    totals = {str(t.name): conn.execute(select(func.count()).select_from(t)).scalar_one() for t in tables}
    grand_total = max(1, sum(totals.values()))
    done = 0
    record_counts: dict[str, int] = {}
    app_info_bytes = orjson.dumps(app_info, option=orjson.OPT_INDENT_2)

    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL,
                         allowZip64=True) as zf:
        with _member_writer(zf, format.DATA_MEMBER) as member:
            sink = _HashingSink(member)
            try:
                for index, table in enumerate(tables):
                    report(done / grand_total * 0.98, f"Backing up {table.name}")

                    def on_batch(rows: int, name=table.name):
                        nonlocal done
                        done += rows
                        report(done / grand_total * 0.98, f"Backing up {name} ({done:,} of {grand_total:,} rows)")

                    record_counts[str(table.name)] = _encode_table(sink, conn, table, index == 0, on_batch)
                sink.write(b"}\n" if tables else b"{}\n")
                sink.close()
            except BaseException:
                sink.abort()
                raise
        data_checksum = "sha256:" + sink.sha256.hexdigest()

        metadata = {
            "format_version": format.FORMAT_VERSION,
            "created_at": _iso_utc(created_at),
            "created_by": created_by,
            "trigger": trigger,
            "tables": [str(t.name) for t in tables],
            "record_counts": record_counts,
            "total_records": sum(record_counts.values()),
            "schema_revision": schema_revision,
            "database_dialect": dialect,
            "duration_seconds": round(time.monotonic() - started, 3),
            "checksums": {
                format.DATA_MEMBER: data_checksum,
                format.APP_INFO_MEMBER: "sha256:" + hashlib.sha256(app_info_bytes).hexdigest(),
            },
        }
        metadata["signature"] = format.sign_metadata(metadata, signing_key)
        report(0.99, "Writing metadata")
        with _member_writer(zf, format.METADATA_MEMBER) as member:
            member.write(orjson.dumps(metadata, option=orjson.OPT_INDENT_2))
        with _member_writer(zf, format.APP_INFO_MEMBER) as member:
            member.write(app_info_bytes)
    return WriteResult(metadata)


def read_metadata(fileobj: BinaryIO) -> dict:
    """The parsed ``backup_metadata.json`` of an archive, reading only the ZIP directory and that member.

    Raises ``ArchiveError`` when the file is not a ZIP, lacks the member, or the
    member is not a JSON object.
    """
    try:
        with zipfile.ZipFile(fileobj) as zf:
            try:
                info = zf.getinfo(format.METADATA_MEMBER)
            except KeyError:
                raise ArchiveError(f"The archive has no {format.METADATA_MEMBER}.") from None
            if info.file_size > METADATA_MAX_BYTES:
                raise ArchiveError(f"The archive's {format.METADATA_MEMBER} is implausibly large.")
            with zf.open(info) as member:
                raw = member.read(METADATA_MAX_BYTES + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise ArchiveError(f"The file is not a readable ZIP archive ({exc}).") from exc
    try:
        metadata = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ArchiveError(f"The archive's {format.METADATA_MEMBER} is not valid JSON.") from exc
    if not isinstance(metadata, dict):
        raise ArchiveError(f"The archive's {format.METADATA_MEMBER} is not a JSON object.")
    return metadata
