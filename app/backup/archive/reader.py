"""Reading a backup archive without trusting it: structure, limits, metadata, signature, rows.

``Archive.open`` checks everything that can be checked without reading the rows:
the file's size, the ZIP's end record (``directory``: before zipfile parses the
central directory), the ZIP's members and their names, the declared sizes and
compression ratios, the metadata (format version, checksums, signature) and the
small ``app_info.json`` member. ``Archive.events`` then streams
``database_backup.json`` as ``(kind, value)`` events (see ``layout``) while the
``inflater`` enforces the decompression limits and hashes what it decompresses;
once the member ends, the hash and the row counts are compared with the metadata.
Reading, inflating and hashing run on a helper thread (``pipeline.Handoff``).

An encrypted archive (every member AES, ``encryption``) is opened with the
``Keyring``: the small metadata member is decrypted and authenticated whole
before anything in it is used. The data member is authenticated as it ends,
before its last event: a restore runs in one transaction that commits only once
``events`` is exhausted, so no row of a changed member is ever committed.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import zipfile
from collections import Counter
from typing import BinaryIO, Iterator

from . import format
from ..errors import ArchiveError, BackupError, TooLargeError
from ..units import human_size
from .directory import checked
from .encryption import NO_KEYS, Keyring, Unlocker, member_encryption
from .inflater import MemberInflater
from .layout import ROWS, TABLE, VALUES, LayoutMismatch, RowsDecoder, fast_events, json_events
from .limits import Limits
from .pipeline import Handoff

# Original CyberQuest archives carry "version" instead of "format_version".
LEGACY_VERSIONS = ("1.0", "2.0")
SMALL_MEMBER_MAX = 1024 * 1024
_CHECKSUM = re.compile(r"sha256:[0-9a-f]{64}")


def _names(tables: list[str]) -> str:
    """Table names for a message, quoted (they come from the archive), at most ten."""
    shown = ", ".join(repr(name[:80]) for name in tables[:10])
    return shown + (f" and {len(tables) - 10} more" if len(tables) > 10 else "")


class Archive:
    """A backup archive opened for reading; every check short of the rows has passed.

    Attributes: ``metadata``, ``app_info``, ``legacy`` (an original CyberQuest
    archive), ``signed`` (by this instance's key), ``declared_tables`` (the
    metadata's table list, or None), ``record_counts`` (or None),
    ``schema_revision`` (or None), ``encrypted``.
    """

    def __init__(self, fh: BinaryIO, *, limits: Limits, signing_key: bytes, trust_unsigned: bool,
                 owns_file: bool, label: str = "the archive", keyring: Keyring = NO_KEYS):
        self.fh = fh
        self.limits = limits
        self.label = label
        self._owns_file = owns_file
        self._unlocker = Unlocker(keyring)
        self._data_stream: MemberInflater | None = None
        self._prefetch: Handoff | None = None
        try:
            self._check(signing_key, trust_unsigned)
        except BaseException:
            self.close()
            raise

    # --- opening --------------------------------------------------------------------

    @classmethod
    def open(cls, source, *, limits: Limits, signing_key: bytes, trust_unsigned: bool = False,
             keyring: Keyring = NO_KEYS) -> "Archive":
        """Open ``source`` (a path or a seekable binary file) and validate it up to the rows.

        Raises ``TooLargeError`` (413) or ``ArchiveError`` (422) naming what is wrong;
        ``UnknownPassphraseError`` (422) when it is encrypted with no passphrase of ``keyring``.
        """
        if isinstance(source, (str, os.PathLike)):
            try:
                fh = open(source, "rb")
            except OSError as exc:
                raise ArchiveError(f"The file {os.fspath(source)} cannot be read ({exc.strerror}).") from exc
            return cls(fh, limits=limits, signing_key=signing_key, trust_unsigned=trust_unsigned, owns_file=True,
                       label=os.path.basename(os.fspath(source)), keyring=keyring)
        return cls(source, limits=limits, signing_key=signing_key, trust_unsigned=trust_unsigned, owns_file=False,
                   keyring=keyring)

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
        app_info_bytes = MemberInflater(
            self.fh, self.members[format.APP_INFO_MEMBER], self.limits, digest=False,
            unlocker=self._unlocker).read_all() if self._small(format.APP_INFO_MEMBER) else b""
        self.app_info = format.parse_json_object(format.APP_INFO_MEMBER, app_info_bytes)
        self._check_metadata(app_info_bytes)
        self._check_signature(signing_key, trust_unsigned)

    def _check_members(self) -> dict[str, zipfile.ZipInfo]:
        try:
            with zipfile.ZipFile(checked(self.fh)) as zf:
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
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
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
        encryption = {info.filename: member_encryption(info) for info in infos}
        clear = [name for name, field in encryption.items() if field is None]
        if clear and len(clear) < len(infos):
            raise ArchiveError(f"The archive mixes encrypted and clear members ({', '.join(clear)} in clear); "
                               "a backup is encrypted whole or not at all.")
        self.encrypted = not clear
        for info in infos:
            field = encryption[info.filename]
            method = field.method if field is not None else info.compress_type
            if method not in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
                raise ArchiveError(f"{info.filename} uses an unsupported compression method "
                                   f"({method}); backups use deflate.")
            if info.file_size > self.limits.max_decompressed:
                raise TooLargeError(f"{info.filename} would decompress to {human_size(info.file_size)}, past the "
                                    f"limit of {human_size(self.limits.max_decompressed)}.")
            if self.limits.ratio_exceeded(info.file_size, info.compress_size):
                raise TooLargeError(f"{info.filename} declares a compression ratio above "
                                    f"{self.limits.max_ratio:.0f}:1, which looks like a zip bomb.")
            # zipfile shifts every offset by what it takes for bytes prepended to the archive, so a damaged
            # directory can put an entry before the file's start: seeking there would fail with an OSError.
            if info.header_offset < 0:
                raise ArchiveError(f"The ZIP entry for {info.filename} is damaged (it points before the start "
                                   "of the file).")
            if info.header_offset + info.compress_size > self.size:
                raise ArchiveError(f"The archive is truncated: {info.filename} runs past the end of the file.")
        return members

    def _small(self, name: str) -> bool:
        if self.members[name].file_size > SMALL_MEMBER_MAX:
            raise ArchiveError(f"{name} is implausibly large ({human_size(self.members[name].file_size)}).")
        return True

    def _read_json_member(self, name: str) -> dict:
        self._small(name)
        raw = MemberInflater(self.fh, self.members[name], self.limits, digest=False, unlocker=self._unlocker).read_all()
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
            if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables):
                raise ArchiveError("The metadata's table list is not a list of table names.")
            repeated = sorted(name for name, count in Counter(tables).items() if count > 1)
            if repeated:
                raise ArchiveError(f"The metadata's table list names {_names(repeated)} more than once.")
        elif not self.legacy:
            raise ArchiveError("The archive's metadata has no table list.")
        self.declared_tables = tables

        counts = meta.get("record_counts")
        if counts is not None:
            if not isinstance(counts, dict) or not all(type(v) is int and v >= 0 for v in counts.values()):
                raise ArchiveError("The metadata's record_counts is not a map of table names to row counts.")
            if tables is not None and set(counts) != set(tables):
                # Name the tables: the one the metadata disagrees about is what the user must look at.
                unlisted = sorted(set(counts) - set(tables))
                uncounted = [name for name in tables if name not in counts]
                parts = ([f"its record_counts names {_names(unlisted)}, which its table list lacks"] if unlisted
                         else []) + ([f"its table list names {_names(uncounted)}, which its record_counts lacks"]
                                     if uncounted else [])
                raise ArchiveError("The archive's metadata disagrees with itself: " + "; ".join(parts) + ".")
            total = meta.get("total_records")
            if total is not None and total != sum(counts.values()):
                raise ArchiveError(f"The metadata's total_records ({total!r}) does not equal the sum of its "
                                   f"record_counts ({sum(counts.values())}).")
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
        stream = MemberInflater(self.fh, self.members[format.DATA_MEMBER], self.limits, digest=True,
                                unlocker=self._unlocker)
        self._data_stream = stream
        self._prefetch = Handoff.reading_ahead(stream.chunks(), name="restore-read")
        try:
            parser = fast_events(self._prefetch, decode) if fast else json_events(self._prefetch)
            yield from self._counted(parser, stream)
        finally:
            self._stop_prefetch()

    def _stop_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None

    def _counted(self, parser, stream: MemberInflater) -> Iterator[tuple[str, object]]:
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

    def _verify_checksum(self, stream: MemberInflater) -> None:
        name = stream.info.filename
        expected = (self.checksums or {}).get(name)
        if expected is None:
            return
        actual = "sha256:" + stream.hexdigest()
        if not hmac.compare_digest(actual, expected):
            raise ArchiveError(f"{name} fails its checksum: the archive was changed or damaged "
                               "after it was made.")

    @property
    def passphrase(self) -> str | None:
        """The passphrase that opened this encrypted archive (None for a clear one)."""
        return self._unlocker.passphrase

    def member_chunks(self, name: str) -> Iterator[bytes]:
        """One member's content, checked as every read is (limits, CRC, authentication code), then its checksum."""
        stream = MemberInflater(self.fh, self.members[name], self.limits, digest=True, unlocker=self._unlocker)
        yield from stream.chunks()
        self._verify_checksum(stream)

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
