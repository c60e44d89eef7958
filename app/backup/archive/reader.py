"""Reading a backup archive without trusting it: structure, limits, metadata, signature, rows.

``Archive.open`` checks everything that can be checked without reading the rows:
the file's size, the ZIP's members and their names, the declared sizes and
compression ratios, the metadata (format version, checksums, signature) and the
small ``app_info.json`` member. ``Archive.events`` then streams
``database_backup.json`` as ``(kind, value)`` events while enforcing the
decompression limits, hashing what it decompresses and, once the member ends,
comparing the hash and the row counts with the metadata.

Two parsers produce the same events. The fast one reads the one-row-per-line
layout that ``archive.write_archive`` produces and hands each run of row lines
(about a megabyte) to one orjson call; on anything else it raises
``LayoutMismatch`` and the caller starts again with the general one, an ijson
event stream that accepts any valid JSON layout (key order, whitespace and line
breaks anywhere, like the original CyberQuest's ``json.dumps(indent=2)``).
Memory is bounded either way: a few megabytes of text and the rows parsed from it.
Reading, inflating and hashing run on a helper thread (``_Prefetch``).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import queue
import re
import struct
import threading
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

import ijson
import orjson

try:  # zlib-ng inflates the same deflate streams about twice as fast, and CRCs them 5x as fast
    from zlib_ng import zlib_ng as inflate_impl
except ImportError:  # pragma: no cover - the stdlib zlib is the fallback
    inflate_impl = zlib

from . import format
from ..errors import ArchiveError, BackupError, TooLargeError
from ..units import human_size

TABLE, ROWS, END = "table", "rows", "end"
# Rows a consumer's decoder already checked and converted to value tuples (see ``events``).
VALUES = "values"
# Rows are handed over in lists of up to this many, to keep per-row overhead low.
ROWS_PER_EVENT = 1000

# ``decode(table, json_array_bytes)``: value tuples, or None to have the rows parsed as dicts.
RowsDecoder = Callable[[str, bytes], "list | None"]

# Original CyberQuest archives carry "version" instead of "format_version".
LEGACY_VERSIONS = ("1.0", "2.0")
SMALL_MEMBER_MAX = 1024 * 1024
READ_CHUNK = 256 * 1024
INFLATE_CHUNK = 1024 * 1024
# Below this many output bytes the ratio is not judged: tiny members compress oddly.
RATIO_GRACE_BYTES = 1024 * 1024
MAX_LINE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_RATIO = 100
DEFAULT_DECOMPRESSED_FACTOR = 16
_CHECKSUM = re.compile(r"sha256:[0-9a-f]{64}")
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_LOCAL_HEADER_MAGIC = b"PK\x03\x04"


class LayoutMismatch(Exception):
    """The data member is not in the one-row-per-line layout; parse it again with ijson."""


@dataclass(frozen=True)
class Limits:
    """How large an archive may be, and how far it may decompress."""

    max_size: int
    max_decompressed: int
    max_ratio: float

    @classmethod
    def from_config(cls, config) -> "Limits":
        """``MAX_BACKUP_SIZE``, plus ``BACKUP_MAX_DECOMPRESSED_SIZE`` and ``BACKUP_MAX_COMPRESSION_RATIO``.

        By default an archive may decompress to 16 times ``MAX_BACKUP_SIZE`` at a
        ratio of at most 100:1 (JSON rows deflate about 5:1; bombs reach 1000:1).
        """
        max_size = int(config.get("MAX_BACKUP_SIZE") or 512 * 1024 * 1024)
        max_decompressed = int(config.get("BACKUP_MAX_DECOMPRESSED_SIZE")
                               or max(max_size * DEFAULT_DECOMPRESSED_FACTOR, 64 * 1024 * 1024))
        max_ratio = float(config.get("BACKUP_MAX_COMPRESSION_RATIO") or DEFAULT_MAX_RATIO)
        return cls(max_size, max_decompressed, max_ratio)


class _MemberStream:
    """Inflates one member straight from the archive file, enforcing the limits while it goes.

    zipfile's own reader cannot say how many compressed bytes it consumed, and
    the ratio must be judged on those, so the member is inflated here. The sizes
    and CRC come from the central directory and are checked at the end.
    """

    def __init__(self, fh: BinaryIO, info: zipfile.ZipInfo, limits: Limits, *, digest: bool):
        self.fh = fh
        self.info = info
        self.limits = limits
        self.hasher = hashlib.sha256() if digest else None
        self.consumed = 0
        self.produced = 0
        self.crc = 0
        self.finished = False
        self._data_offset = self._find_data(fh, info)
        self._position = self._data_offset
        self._pending = b""
        if info.compress_type == zipfile.ZIP_DEFLATED:
            self._inflater = inflate_impl.decompressobj(-15)
        else:
            self._inflater = None

    @staticmethod
    def _find_data(fh: BinaryIO, info: zipfile.ZipInfo) -> int:
        fh.seek(info.header_offset)
        header = fh.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_HEADER_MAGIC:
            raise ArchiveError(f"The ZIP entry for {info.filename} is damaged (no local header).")
        fields = _LOCAL_HEADER.unpack(header)
        name_length, extra_length = fields[10], fields[11]
        local_name = fh.read(name_length)
        if local_name.decode("utf-8", "replace") != info.filename and \
                local_name.decode("cp437", "replace") != info.filename:
            raise ArchiveError(f"The ZIP entry for {info.filename} is damaged (its local name differs).")
        return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length

    @property
    def fraction(self) -> float:
        """How much of the member has been read (0..1), for progress."""
        return min(1.0, self.consumed / self.info.compress_size) if self.info.compress_size else 1.0

    def _account(self, data: bytes) -> None:
        self.produced += len(data)
        name = self.info.filename
        if self.produced > self.limits.max_decompressed:
            raise TooLargeError(f"{name} decompresses past the limit of {human_size(self.limits.max_decompressed)}.")
        if self.produced > RATIO_GRACE_BYTES and self.produced > self.limits.max_ratio * max(self.consumed, 1):
            raise TooLargeError(f"{name} decompresses at more than {self.limits.max_ratio:.0f}:1, "
                                "which looks like a zip bomb; it was not unpacked.")
        if self.produced > self.info.file_size:
            raise ArchiveError(f"{name} decompresses to more than the size its ZIP entry declares; "
                               "the archive is damaged or forged.")
        self.crc = inflate_impl.crc32(data, self.crc)
        if self.hasher is not None:
            self.hasher.update(data)

    def chunks(self) -> Iterator[bytes]:
        """The decompressed bytes, chunk by chunk; checks size and CRC at the end.

        Calling it again continues where the last call stopped (see ``drain``).
        """
        inflater = self._inflater
        while not self.finished:
            if inflater is not None and self._pending:
                data = self._pending
                try:
                    out = inflater.decompress(data, INFLATE_CHUNK)
                except (zlib.error, inflate_impl.error) as exc:
                    raise ArchiveError(f"{self.info.filename} is not valid deflate data ({exc}).") from exc
                self._pending = inflater.unconsumed_tail
                self.consumed += len(data) - len(self._pending)
                if out:
                    self._account(out)
                    yield out
                if inflater.eof:
                    self._finish()
                continue
            remaining = self.info.compress_size - (self._position - self._data_offset)
            if remaining <= 0:
                if inflater is not None:
                    out = inflater.decompress(b"", INFLATE_CHUNK)
                    if out:
                        self._account(out)
                        yield out
                        continue
                    if not inflater.eof:
                        raise ArchiveError(f"{self.info.filename} is truncated (its deflate stream does not end).")
                self._finish()
                continue
            self.fh.seek(self._position)
            raw = self.fh.read(min(READ_CHUNK, remaining))
            if not raw:
                raise ArchiveError(f"The archive ends inside {self.info.filename}; it is truncated.")
            self._position += len(raw)
            if inflater is None:
                self.consumed += len(raw)
                self._account(raw)
                yield raw
            else:
                self._pending = raw

    def _finish(self) -> None:
        if self.produced != self.info.file_size or (self.crc & 0xFFFFFFFF) != self.info.CRC:
            raise ArchiveError(f"{self.info.filename} is damaged (its size or CRC does not match the ZIP entry).")
        self.finished = True

    def read_all(self) -> bytes:
        return b"".join(self.chunks())

    def drain(self) -> None:
        """Read the rest of the member (limits still apply), so the hash covers all of it."""
        for _ in self.chunks():
            pass

    def hexdigest(self) -> str:
        return self.hasher.hexdigest() if self.hasher is not None else ""


class _Prefetch:
    """Runs a chunk iterator on a helper thread, a few chunks ahead of its consumer.

    Reading, inflating, CRC and SHA-256 release the GIL, so they proceed on the
    second core while the consumer parses and writes rows. Errors are re-raised in
    the consumer. ``close`` stops the helper between two chunks, so the stream it
    read stays consistent (every chunk it produced was hashed exactly once).
    """

    _END = object()

    def __init__(self, chunks: Iterator[bytes], depth: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(chunks,), name="restore-read", daemon=True)
        self._thread.start()

    def _offer(self, item) -> bool:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                if not self._offer(chunk):
                    return
            self._offer(self._END)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._offer(exc)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()


class Archive:
    """A backup archive opened for reading; every check short of the rows has passed.

    Attributes: ``metadata``, ``app_info``, ``legacy`` (an original CyberQuest
    archive), ``signed`` (by this instance's key), ``declared_tables`` (the
    metadata's table list, or None), ``record_counts`` (or None),
    ``schema_revision`` (or None).
    """

    def __init__(self, fh: BinaryIO, *, limits: Limits, signing_key: bytes, trust_unsigned: bool,
                 owns_file: bool, label: str = "the archive"):
        self.fh = fh
        self.limits = limits
        self.label = label
        self._owns_file = owns_file
        self._data_stream: _MemberStream | None = None
        self._prefetch: _Prefetch | None = None
        try:
            self._check(signing_key, trust_unsigned)
        except BaseException:
            self.close()
            raise

    # --- opening --------------------------------------------------------------------

    @classmethod
    def open(cls, source, *, limits: Limits, signing_key: bytes, trust_unsigned: bool = False) -> "Archive":
        """Open ``source`` (a path or a seekable binary file) and validate it up to the rows.

        Raises ``TooLargeError`` (413) or ``ArchiveError`` (422) naming what is wrong.
        """
        if isinstance(source, (str, os.PathLike)):
            try:
                fh = open(source, "rb")
            except OSError as exc:
                raise ArchiveError(f"The file {os.fspath(source)} cannot be read ({exc.strerror}).") from exc
            return cls(fh, limits=limits, signing_key=signing_key, trust_unsigned=trust_unsigned, owns_file=True,
                       label=os.path.basename(os.fspath(source)))
        return cls(source, limits=limits, signing_key=signing_key, trust_unsigned=trust_unsigned, owns_file=False)

    def close(self) -> None:
        self._stop_prefetch()
        if self._owns_file:
            self.fh.close()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check(self, signing_key: bytes, trust_unsigned: bool) -> None:
        self.fh.seek(0, os.SEEK_END)
        self.size = self.fh.tell()
        self.fh.seek(0)
        if self.size == 0:
            raise ArchiveError("The file is empty, not a backup archive.")
        if self.size > self.limits.max_size:
            raise TooLargeError(f"The archive is {human_size(self.size)}, larger than MAX_BACKUP_SIZE "
                                f"({human_size(self.limits.max_size)}).")
        self.members = self._check_members()
        self.metadata = self._read_json_member(format.METADATA_MEMBER)
        app_info_bytes = _MemberStream(self.fh, self.members[format.APP_INFO_MEMBER], self.limits,
                                       digest=False).read_all() if self._small(format.APP_INFO_MEMBER) else b""
        self.app_info = format.parse_json_object(format.APP_INFO_MEMBER, app_info_bytes)
        self._check_metadata(app_info_bytes)
        self._check_signature(signing_key, trust_unsigned)

    def _check_members(self) -> dict[str, zipfile.ZipInfo]:
        try:
            with zipfile.ZipFile(self.fh) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as exc:
            raise ArchiveError(f"The file is not a valid ZIP archive ({exc}).") from exc
        except OSError as exc:
            raise ArchiveError(f"The file is not a readable ZIP archive ({exc}).") from exc
        names = [info.filename for info in infos]
        for name in names:
            normalized = name.replace("\\", "/")
            if normalized.startswith("/") or re.match(r"[A-Za-z]:", normalized) or \
                    ".." in normalized.split("/"):
                raise ArchiveError(f"The archive holds a member with an unsafe path: {name!r}.")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ArchiveError(f"The archive holds {', '.join(duplicates)} more than once.")
        unexpected = [name for name in names if name not in format.MEMBERS]
        missing = [name for name in format.MEMBERS if name not in names]
        if unexpected or missing:
            parts = []
            if missing:
                parts.append("it lacks " + ", ".join(missing))
            if unexpected:
                parts.append("it holds unexpected members " + ", ".join(repr(n) for n in unexpected))
            raise ArchiveError("The archive is not a CyberQuest backup: " + "; ".join(parts) + ".")
        members = {info.filename: info for info in infos}
        for info in infos:
            if info.flag_bits & 0x1:
                raise ArchiveError(f"{info.filename} is encrypted; backups are never encrypted inside the ZIP.")
            if info.compress_type not in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
                raise ArchiveError(f"{info.filename} uses an unsupported compression method "
                                   f"({info.compress_type}); backups use deflate.")
            if info.file_size > self.limits.max_decompressed:
                raise TooLargeError(f"{info.filename} would decompress to {human_size(info.file_size)}, past the "
                                    f"limit of {human_size(self.limits.max_decompressed)}.")
            if info.file_size > RATIO_GRACE_BYTES and \
                    info.file_size > self.limits.max_ratio * max(info.compress_size, 1):
                raise TooLargeError(f"{info.filename} declares a compression ratio above "
                                    f"{self.limits.max_ratio:.0f}:1, which looks like a zip bomb.")
            if info.header_offset + info.compress_size > self.size:
                raise ArchiveError(f"The archive is truncated: {info.filename} runs past the end of the file.")
        return members

    def _small(self, name: str) -> bool:
        if self.members[name].file_size > SMALL_MEMBER_MAX:
            raise ArchiveError(f"{name} is implausibly large ({human_size(self.members[name].file_size)}).")
        return True

    def _read_json_member(self, name: str) -> dict:
        self._small(name)
        raw = _MemberStream(self.fh, self.members[name], self.limits, digest=False).read_all()
        return format.parse_json_object(name, raw)

    def _check_metadata(self, app_info_bytes: bytes) -> None:
        meta = self.metadata
        app_name = self.app_info.get("app_name")
        if app_name is not None and app_name != format.APP_NAME:
            raise ArchiveError(f"The archive was made by {app_name!r}, not by {format.APP_NAME}.")
        if "format_version" in meta:
            version = meta["format_version"]
            if type(version) is not int or version != format.FORMAT_VERSION:
                raise ArchiveError(f"The archive's format_version {version!r} is not supported; this instance "
                                   f"reads format_version {format.FORMAT_VERSION} and original CyberQuest archives.")
            self.legacy = False
        elif meta.get("version", "2.0") in LEGACY_VERSIONS:
            self.legacy = True
        else:
            raise ArchiveError(f"The archive's metadata version {meta.get('version')!r} is not supported; this "
                               f"instance reads format_version {format.FORMAT_VERSION} and original CyberQuest "
                               f"archives (version {' or '.join(LEGACY_VERSIONS)}).")

        tables = meta.get("tables") if not self.legacy else meta.get("tables_included", meta.get("tables"))
        if tables is not None:
            if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables) \
                    or len(set(tables)) != len(tables):
                raise ArchiveError("The metadata's table list is not a list of distinct table names.")
        elif not self.legacy:
            raise ArchiveError("The archive's metadata has no table list.")
        self.declared_tables = tables

        counts = meta.get("record_counts")
        if counts is not None:
            if not isinstance(counts, dict) or not all(type(v) is int and v >= 0 for v in counts.values()):
                raise ArchiveError("The metadata's record_counts is not a map of table names to row counts.")
            if tables is not None and set(counts) != set(tables):
                raise ArchiveError("The metadata's record_counts does not name the same tables as its table list.")
            total = meta.get("total_records")
            if total is not None and total != sum(counts.values()):
                raise ArchiveError("The metadata's total_records does not equal the sum of its record_counts.")
        elif not self.legacy:
            raise ArchiveError("The archive's metadata has no record_counts.")
        self.record_counts = counts

        revision = meta.get("schema_revision")
        if revision is not None and not isinstance(revision, str):
            raise ArchiveError("The metadata's schema_revision is not a string.")
        self.schema_revision = revision

        checksums = meta.get("checksums")
        if checksums is None and not self.legacy:
            raise ArchiveError("The archive's metadata has no checksums.")
        if checksums is not None:
            expected = {format.DATA_MEMBER, format.APP_INFO_MEMBER}
            if not isinstance(checksums, dict) or set(checksums) != expected or \
                    not all(isinstance(v, str) and _CHECKSUM.fullmatch(v) for v in checksums.values()):
                raise ArchiveError("The metadata's checksums must give sha256:<hex> for "
                                   f"{format.DATA_MEMBER} and {format.APP_INFO_MEMBER}.")
            actual = "sha256:" + hashlib.sha256(app_info_bytes).hexdigest()
            if not hmac.compare_digest(actual, checksums[format.APP_INFO_MEMBER]):
                raise ArchiveError(f"{format.APP_INFO_MEMBER} fails its checksum: the archive was changed or "
                                   "damaged after it was made.")
        self.checksums = checksums

    def _check_signature(self, signing_key: bytes, trust_unsigned: bool) -> None:
        self.signed = not self.legacy and format.signature_is_valid(self.metadata, signing_key)
        if self.signed or trust_unsigned:
            return
        if self.legacy:
            raise ArchiveError("The archive is an original CyberQuest backup and carries no signature; "
                               "restore it with trust_unsigned=1 if you trust where it came from.")
        if "signature" not in self.metadata:
            raise ArchiveError("The archive is not signed; restore it with trust_unsigned=1 if you trust "
                               "where it came from.")
        raise ArchiveError("The archive's signature does not match this instance's key: it was made by another "
                           "installation or changed since; restore it with trust_unsigned=1 if you trust it.")

    # --- the rows ------------------------------------------------------------------

    @property
    def data_size(self) -> int:
        """Uncompressed size of ``database_backup.json`` as the ZIP declares it."""
        return self.members[format.DATA_MEMBER].file_size

    @property
    def fraction_read(self) -> float:
        """How much of the data member the current ``events`` pass has read (0..1)."""
        return self._data_stream.fraction if self._data_stream is not None else 0.0

    def events(self, fast: bool = True, decode: RowsDecoder | None = None) -> Iterator[tuple[str, object]]:
        """Stream the data member as ``(TABLE, name)``, ``(ROWS, [row, …])``…, ``(END, name)`` events.

        Each call starts from the beginning. When the member has been read to
        its end, its checksum and the metadata's row counts are compared, so a
        consumer must exhaust the iterator before trusting what it read.
        ``fast`` tries the one-row-per-line layout and raises ``LayoutMismatch``
        when the member is laid out otherwise.

        ``decode(table, json_array_bytes)`` (fast layout only) may turn a run of
        rows straight into value tuples, yielded as ``(VALUES, [tuple, …])``; when it
        returns None the rows are parsed here and yielded as ``ROWS`` as usual.
        """
        self._stop_prefetch()
        stream = _MemberStream(self.fh, self.members[format.DATA_MEMBER], self.limits, digest=True)
        self._data_stream = stream
        self._prefetch = _Prefetch(stream.chunks())
        try:
            parser = _fast_events(self._prefetch, decode) if fast else _json_events(self._prefetch)
            yield from self._counted(parser, stream)
        finally:
            self._stop_prefetch()

    def _stop_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None

    def _counted(self, parser, stream: _MemberStream) -> Iterator[tuple[str, object]]:
        counts: dict[str, int] = {}
        current = None
        for kind, value in parser:
            if kind is TABLE:
                if value in counts:
                    raise ArchiveError(f"{format.DATA_MEMBER} holds the table {value!r} twice.")
                if self.declared_tables is not None and value not in self.declared_tables:
                    raise ArchiveError(f"{format.DATA_MEMBER} holds the table {value!r}, which its metadata "
                                       "does not list.")
                current, counts[value] = value, 0
            elif kind is ROWS or kind is VALUES:
                counts[current] += len(value)
            else:
                expected = (self.record_counts or {}).get(value)
                if expected is not None and expected != counts[value]:
                    self._raise_if_checksum_fails()
                    raise ArchiveError(f"{format.DATA_MEMBER} holds {counts[value]} rows of {value}, but the "
                                       f"metadata says {expected}.")
            yield kind, value
        self._verify_checksum(stream)
        if self.declared_tables is not None:
            absent = [t for t in self.declared_tables if t not in counts]
            if absent:
                raise ArchiveError(f"{format.DATA_MEMBER} lacks the table(s) {', '.join(absent)} that its "
                                   "metadata lists.")

    def table_names(self) -> list[str]:
        """The tables in the data member, in document order (reads the whole member; for archives without a list)."""
        try:
            return [value for kind, value in self.events(fast=True) if kind is TABLE]
        except LayoutMismatch:
            return [value for kind, value in self.events(fast=False) if kind is TABLE]

    def _verify_checksum(self, stream: _MemberStream) -> None:
        if self.checksums is None:
            return
        actual = "sha256:" + stream.hexdigest()
        if not hmac.compare_digest(actual, self.checksums[format.DATA_MEMBER]):
            raise ArchiveError(f"{format.DATA_MEMBER} fails its checksum: the archive was changed or damaged "
                               "after it was made.")

    def _raise_if_checksum_fails(self) -> None:
        stream = self._data_stream
        if stream is None or self.checksums is None:
            return
        self._stop_prefetch()
        if not stream.finished:
            stream.drain()
        self._verify_checksum(stream)

    def explain(self, error: ArchiveError) -> BackupError:
        """The error to report for a data problem found mid-stream: damage takes precedence.

        A changed or damaged file usually shows up first as a bad row; telling the
        user that the file fails its checksum (or its CRC) says what really happened.
        """
        try:
            self._raise_if_checksum_fails()
        except BackupError as deeper:
            return deeper
        return error


# --- The fast parser: one row per line -------------------------------------------------

_TOKEN = re.compile(rb'\s*(?:([{}\[\],:])|("(?:[^"\\\x00-\x1f]|\\.)*"))')
# States of the line parser.
_DOC, _KEY_OR_CLOSE, _KEY, _COLON, _OPEN, _ROW_OR_END, _ROW, _AFTER_ROW, _AFTER_TABLE, _DONE = range(10)


def _fast_events(chunks: Iterator[bytes], decode: RowsDecoder | None = None) -> Iterator[tuple[str, object]]:
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


def _json_events(chunks: Iterator[bytes]) -> Iterator[tuple[str, object]]:
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
            _prefix, event, value = next(events)
            if event != "start_array":
                raise ArchiveError(f"The value of {table!r} in {name} is not a list of rows.")
            yield TABLE, table
            number = 0
            rows: list = []
            for _prefix, event, value in events:
                if event == "end_array":
                    break
                number += 1
                if event != "start_map":
                    raise ArchiveError(f"Table {table}, row {number}: the row is not a JSON object.")
                builder = ijson.ObjectBuilder()
                builder.event(event, value)
                depth = 1
                for _prefix, event, value in events:
                    builder.event(event, value)
                    if event in ("start_map", "start_array"):
                        depth += 1
                    elif event in ("end_map", "end_array"):
                        depth -= 1
                        if depth == 0:
                            break
                rows.append(builder.value)
                if len(rows) >= ROWS_PER_EVENT:
                    yield ROWS, rows
                    rows = []
            if rows:
                yield ROWS, rows
            yield END, table
        for _ in events:  # ijson reports trailing garbage here
            pass
    except ijson.JSONError as exc:
        detail = str(exc).strip().splitlines()[0]
        raise ArchiveError(f"{name} is not valid JSON ({detail}).") from exc
