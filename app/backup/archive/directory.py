"""The ZIP's end-of-central-directory record, read before ``zipfile`` parses anything.

``zipfile`` reads the whole central directory the record points at and builds an
object per entry it finds there, however many there are. A backup holds three
members, so ``check_directory`` reads only the file's tail, finds the record
exactly as ``zipfile`` will (its ZIP64 form too), and refuses at once an archive
whose directory lists more than a handful of entries or spans more than a few
kilobytes: a crafted file costs a read of at most 64 KiB.
"""
from __future__ import annotations

import os
import struct
from typing import BinaryIO

from ..errors import ArchiveError
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


def directory_extent(fh: BinaryIO) -> tuple[int, int]:
    """``(entries, bytes)`` of the central directory the file's end record declares (ZIP64 values if given).

    ``ArchiveError`` when the file has no end record.
    """
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    tail_start = max(0, size - _END.size - _COMMENT_WINDOW)
    fh.seek(tail_start)
    tail = fh.read(size - tail_start)
    at = _end_record(tail)
    if at < 0:
        raise ArchiveError("The file is not a valid ZIP archive (it has no end-of-central-directory record).")
    fields = _END.unpack_from(tail, at)
    entries, directory_bytes = fields[4], fields[5]
    locator_at = tail_start + at - _LOCATOR.size
    if locator_at >= 0:
        fh.seek(locator_at)
        locator = fh.read(_LOCATOR.size)
        if len(locator) == _LOCATOR.size and locator[:4] == _LOCATOR_SIGNATURE and locator_at >= _END64.size:
            # zipfile takes the ZIP64 record to sit right before its locator.
            fh.seek(locator_at - _END64.size)
            record = fh.read(_END64.size)
            if record[:4] == _END64_SIGNATURE:
                values = _END64.unpack(record)
                entries, directory_bytes = values[7], values[8]
    fh.seek(0)
    return entries, directory_bytes


def check_directory(fh: BinaryIO) -> None:
    """Refuse (``ArchiveError``, 422) an archive whose central directory is too large for a backup's members."""
    entries, directory_bytes = directory_extent(fh)
    if entries > MAX_ENTRIES:
        raise ArchiveError(f"The archive's central directory lists {entries:,} entries; a backup holds 3 "
                           "members. It was not read further.")
    if directory_bytes > MAX_DIRECTORY_BYTES:
        raise ArchiveError(f"The archive's central directory is {human_size(directory_bytes)}, far more than a "
                           "backup's three members need. It was not read further.")
