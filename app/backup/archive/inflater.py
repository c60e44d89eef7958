"""Inflating one ZIP member straight from the archive file, within the decompression limits.

zipfile's own reader cannot say how many compressed bytes it consumed, and the
compression ratio must be judged on those, so members are inflated here. The
sizes and CRC come from the central directory and are checked at the end.

An AES member (``encryption``) is decrypted chunk by chunk as it is read; its
authentication code is checked once its last byte has been read, before the
stream ends, and first whenever reading it fails (a changed member says so
rather than what the change broke). AE-2 members carry no CRC: the code covers them.
"""
from __future__ import annotations

import hashlib
import struct
import zipfile
import zlib
from typing import BinaryIO, Iterator

try:  # zlib-ng inflates the same deflate streams about twice as fast, and CRCs them 5x as fast
    from zlib_ng import zlib_ng as inflate_impl
except ImportError:  # pragma: no cover - the stdlib zlib is the fallback
    inflate_impl = zlib

from ..errors import ArchiveError, BackupError, TooLargeError
from ..units import human_size
from .encryption import MAC_SIZE, NO_KEYS, Unlocker, member_encryption
from .limits import Limits

READ_CHUNK = 256 * 1024
INFLATE_CHUNK = 1024 * 1024
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_LOCAL_HEADER_MAGIC = b"PK\x03\x04"


class MemberInflater:
    """Inflates one member chunk by chunk, enforcing ``limits`` while it goes, optionally hashing it (SHA-256).

    The member's size, CRC, ratio and declared size are checked as it is read;
    ``ArchiveError`` or ``TooLargeError`` names what is wrong.
    """

    def __init__(self, fh: BinaryIO, info: zipfile.ZipInfo, limits: Limits, *, digest: bool,
                 unlocker: Unlocker | None = None):
        self.fh = fh
        self.info = info
        self.limits = limits
        self.hasher = hashlib.sha256() if digest else None
        self.consumed = 0
        self.produced = 0
        self.crc = 0
        self.finished = False
        self._data_offset = self._find_data(fh, info)
        self._data_size = info.compress_size
        self._cipher = None
        self._authenticated = False
        self._authentication_error: ArchiveError | None = None
        self._check_crc = True
        method = info.compress_type
        field = member_encryption(info)
        if field is not None:
            fh.seek(self._data_offset)
            header = fh.read(field.header_size)
            self._data_size -= field.header_size + MAC_SIZE
            if len(header) != field.header_size or self._data_size < 0:
                raise ArchiveError(f"The archive is truncated inside {info.filename}.")
            self._cipher = (unlocker or Unlocker(NO_KEYS)).cipher(info, field, header)
            self._data_offset += field.header_size
            self._check_crc = field.version == 1
            method = field.method
        self._position = self._data_offset
        self._pending = b""
        if method == zipfile.ZIP_DEFLATED:
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
        return min(1.0, self.consumed / self._data_size) if self._data_size else 1.0

    def _account(self, data: bytes) -> None:
        self.produced += len(data)
        name = self.info.filename
        if self.produced > self.limits.max_decompressed:
            raise TooLargeError(f"{name} decompresses past the limit of {human_size(self.limits.max_decompressed)}.")
        if self.limits.ratio_exceeded(self.produced, self.consumed):
            raise TooLargeError(f"{name} decompresses at more than {self.limits.max_ratio:.0f}:1, "
                                "which looks like a zip bomb; it was not unpacked.")
        if self.produced > self.info.file_size:
            raise ArchiveError(f"{name} decompresses to more than the size its ZIP entry declares; "
                               "the archive is damaged or forged.")
        self.crc = inflate_impl.crc32(data, self.crc)
        if self.hasher is not None:
            self.hasher.update(data)

    def chunks(self) -> Iterator[bytes]:
        """The decompressed bytes, chunk by chunk; checks size, CRC and authentication code at the end.

        Calling it again continues where the last call stopped (see ``drain``).
        """
        try:
            yield from self._inflate()
        except BackupError:
            if self._cipher is not None:
                self._authenticate()
            raise

    def _inflate(self) -> Iterator[bytes]:
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
            remaining = self._data_size - (self._position - self._data_offset)
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
            if self._cipher is not None:
                raw = self._cipher.decrypt(raw)
            if inflater is None:
                self.consumed += len(raw)
                self._account(raw)
                yield raw
            else:
                self._pending = raw

    def _finish(self) -> None:
        if self._cipher is not None:
            self._authenticate()
        if self.produced != self.info.file_size or (self._check_crc and (self.crc & 0xFFFFFFFF) != self.info.CRC):
            raise ArchiveError(f"{self.info.filename} is damaged (its size or CRC does not match the ZIP entry).")
        self.finished = True

    def _authenticate(self) -> None:
        """Run the encrypted bytes not read yet through the cipher, then compare the authentication code.

        Checked once; a failure is raised again by every later call, so reading on
        after it (``drain``) reports the change, not what the change broke.
        """
        if not self._authenticated:
            self._authenticated = True
            try:
                end = self._data_offset + self._data_size
                self.fh.seek(self._position)
                while self._position < end:
                    raw = self.fh.read(min(READ_CHUNK, end - self._position))
                    if not raw:
                        raise ArchiveError(f"The archive ends inside {self.info.filename}; it is truncated.")
                    self._position += len(raw)
                    self._cipher.decrypt(raw)
                code = self.fh.read(MAC_SIZE)
                if len(code) != MAC_SIZE:
                    raise ArchiveError(f"The archive ends inside {self.info.filename}; it is truncated.")
                self._cipher.check(code)
            except ArchiveError as exc:
                self._authentication_error = exc
        if self._authentication_error is not None:
            raise self._authentication_error

    def read_all(self) -> bytes:
        """The whole member (for the small ones), checked like ``chunks``."""
        return b"".join(self.chunks())

    def drain(self) -> None:
        """Read the rest of the member (limits still apply), so the hash covers all of it."""
        for _ in self.chunks():
            pass

    def hexdigest(self) -> str:
        """The SHA-256 of what has been read so far ("" without ``digest``)."""
        return self.hasher.hexdigest() if self.hasher is not None else ""
