"""The ZIP's end-of-central-directory record, read before ``zipfile`` parses anything.

``zipfile`` reads the whole central directory the record points at and builds an
object per entry it finds there, however many there are. A backup holds three
members, so ``checked`` reads only the file's tail, finds the record exactly as
``zipfile`` will (its ZIP64 form too), and refuses at once an archive whose
directory lists more than a handful of entries or spans more than a few
kilobytes: a crafted file costs a read of at most 64 KiB. ``zipfile`` then opens
the file through ``checked``'s answer, which serves that tail from memory.
"""
from __future__ import annotations

import os
import struct
from typing import BinaryIO

from ..errors import ArchiveError
from ..ranges import RangedReader
from ..units import human_size

MAX_ENTRIES = 8
MAX_DIRECTORY_BYTES = 4096

_END = struct.Struct("<4s4H2LH")        # signature, disks, entries here, entries, size, offset, comment length
_END_SIGNATURE = b"PK\x05\x06"
_COMMENT_WINDOW = 1 << 16  # how far back zipfile looks for the record behind a comment
_LOCATOR = struct.Struct("<4sLQL")      # signature, disk of the ZIP64 record, its offset, disks
_LOCATOR_SIGNATURE = b"PK\x06\x07"
_END64 = struct.Struct("<4sQ2H2L4Q")    # signature, size, versions, disks, entries here, entries, size, offset
_END64_SIGNATURE = b"PK\x06\x06"


def _end_record(tail: bytes) -> int:
    """Where the end record starts in ``tail`` (the file's last bytes), found as ``zipfile`` finds it; -1: none."""
    last = len(tail) - _END.size
    if last >= 0 and tail[last:last + 4] == _END_SIGNATURE and tail[-2:] == b"\0\0":
        return last  # no archive comment: the usual case
    return tail.rfind(_END_SIGNATURE, 0, max(last + 1, 0))


def _tail_cached(fh: BinaryIO, size: int, tail_start: int, tail: bytes) -> RangedReader:
    """``fh`` as zipfile reads it, its last bytes (already read) served from memory: zipfile's own look
    at the end record and the directory then costs no second read (a ranged GET, on S3)."""

    def fetch(first: int, last: int) -> bytes:
        if first >= tail_start:
            return tail[first - tail_start:last - tail_start + 1]
        fh.seek(first)
        return fh.read(last - first + 1)

    return RangedReader(size, fetch)


def checked(fh: BinaryIO) -> BinaryIO:
    """``fh`` for zipfile to open, once its end record shows a central directory a backup can have.

    Refuses (``ArchiveError``, 422) more than ``MAX_ENTRIES`` entries or a directory
    over ``MAX_DIRECTORY_BYTES``, and a file with no end record. Reads the file's last
    64 KiB once; zipfile reads them again from memory.
    """
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    tail_start = max(0, size - _END.size - _COMMENT_WINDOW)
    fh.seek(tail_start)
    tail = fh.read(size - tail_start)
    entries, directory_bytes = _directory_extent(fh, tail_start, tail)
    if entries > MAX_ENTRIES:
        raise ArchiveError(f"The archive's central directory lists {entries:,} entries; a backup holds 3 "
                           "members. It was not read further.")
    if directory_bytes > MAX_DIRECTORY_BYTES:
        raise ArchiveError(f"The archive's central directory is {human_size(directory_bytes)}, far more than a "
                           "backup's three members need. It was not read further.")
    return _tail_cached(fh, size, tail_start, tail)


def _directory_extent(fh: BinaryIO, tail_start: int, tail: bytes) -> tuple[int, int]:
    """``(entries, bytes)`` of the central directory the end record declares (its ZIP64 values if given)."""
    at = _end_record(tail)
    if at < 0:
        raise ArchiveError("The file is not a valid ZIP archive (it has no end-of-central-directory record).")
    fields = _END.unpack_from(tail, at)
    entries, directory_bytes = fields[4], fields[5]
    # zipfile takes a ZIP64 locator right before the end record, and the ZIP64 record right before that.
    locator_at, record_at = tail_start + at - _LOCATOR.size, tail_start + at - _LOCATOR.size - _END64.size
    if record_at >= 0:
        if record_at >= tail_start:
            before = tail[record_at - tail_start:at]
        else:
            fh.seek(record_at)
            before = fh.read(locator_at + _LOCATOR.size - record_at)
        record, locator = before[:_END64.size], before[_END64.size:]
        if locator[:4] == _LOCATOR_SIGNATURE and record[:4] == _END64_SIGNATURE:
            values = _END64.unpack(record)
            entries, directory_bytes = values[7], values[8]
    return entries, directory_bytes
