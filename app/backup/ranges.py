"""A remote object of known size read as a seekable file, fetching only the bytes read.

Used by stores whose ``open_parts`` must not download a whole archive to read its
directory and one member (S3's ranged GETs), and by the archive's directory check,
which serves the tail it already read from memory.
"""
from __future__ import annotations

import io
from typing import Callable

#: ``fetch(first, last)``: the bytes ``first..last`` of the object, both included.
RangeFetcher = Callable[[int, int], bytes]


class RangedReader(io.RawIOBase):
    """A seekable raw stream over an object of ``size`` bytes; each read is one ``fetch``."""

    def __init__(self, size: int, fetch: RangeFetcher):
        super().__init__()
        self._size, self._fetch, self._position = size, fetch, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer) -> int:
        if self._position >= self._size or not len(buffer):
            return 0
        data = self._fetch(self._position, min(self._position + len(buffer), self._size) - 1)
        buffer[:len(data)] = data
        self._position += len(data)
        return len(data)
