"""Deflating one ZIP member on several threads, as pigz does, into one ordinary raw deflate stream; opening members."""
from __future__ import annotations

import os
import zipfile
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor

try:  # zlib-ng: the same deflate format, 2-3x faster at the same ratio
    from zlib_ng import zlib_ng as deflate_impl
except ImportError:  # pragma: no cover - the stdlib zlib is the fallback
    deflate_impl = zlib

COMPRESS_LEVEL = 5  # zlib-ng 5: within 1% of level 6 in size, ~10% less CPU
DEFLATE_CHUNK = 1 << 20
DEFLATE_WINDOW = 32 * 1024


def _deflate_chunk(chunk: bytes, dictionary: bytes, level: int) -> bytes:
    compressor = (deflate_impl.compressobj(level, zlib.DEFLATED, -15, zdict=dictionary) if dictionary
                  else deflate_impl.compressobj(level, zlib.DEFLATED, -15))
    return compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)


# An empty final deflate block: what ends a stream of sync-flushed chunks.
_FINAL_BLOCK = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -15).flush()


class ParallelDeflater:
    """A ``compress()``/``flush()`` object like zlib's that deflates chunks on several threads (as pigz does).

    Each chunk is compressed independently, primed with the previous chunk's last
    32 KiB as dictionary (so the ratio stays that of one stream) and ended with a
    sync flush; spliced in order and closed with an empty final block they form
    one ordinary raw deflate stream. zlib releases the GIL while compressing.
    """

    def __init__(self, level: int = COMPRESS_LEVEL, workers: int | None = None, chunk_size: int = DEFLATE_CHUNK):
        self.level = level
        self.chunk_size = chunk_size
        workers = workers or max(2, min(4, os.cpu_count() or 1))
        self._max_pending = workers * 2
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="backup-deflate")
        self._pending: deque = deque()
        self._buffer = bytearray()
        self._dictionary = b""

    def _submit(self, chunk: bytes) -> None:
        self._pending.append(self._pool.submit(_deflate_chunk, chunk, self._dictionary, self.level))
        self._dictionary = chunk[-DEFLATE_WINDOW:]

    def compress(self, data) -> bytes:
        """Take ``data``; return the compressed bytes finished so far, in order (possibly none)."""
        self._buffer += data
        while len(self._buffer) >= self.chunk_size:
            self._submit(bytes(self._buffer[:self.chunk_size]))
            del self._buffer[:self.chunk_size]
        out = []
        # Hand back what is finished, in order; wait only to bound memory.
        while self._pending and (self._pending[0].done() or len(self._pending) > self._max_pending):
            out.append(self._pending.popleft().result())
        return b"".join(out)

    def flush(self, mode: int = zlib.Z_FINISH) -> bytes:
        """The rest of the stream, ending it (``mode`` is accepted for zipfile and ignored); stops the threads."""
        if self._buffer:
            self._submit(bytes(self._buffer))
            self._buffer.clear()
        try:
            out = [future.result() for future in self._pending]
        finally:
            self._pending.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)
        out.append(_FINAL_BLOCK)
        return b"".join(out)


def open_member(zf: zipfile.ZipFile, name: str, parallel: bool = False):
    """A writable member ``name`` of ``zf`` (ZIP64, the archive's deflate level); ``parallel``: on threads."""
    # A name (not a ZipInfo) makes zipfile apply the archive's deflate level.
    member = zf.open(name, "w", force_zip64=True)
    if parallel and hasattr(member, "_compressor"):
        # zipfile (and pyzipper's copy of it) has no public hook for the compressor; it
        # only calls compress()/flush() on it, CRCs the uncompressed bytes itself and
        # hands what comes out to the encrypter, if any.
        member._compressor = ParallelDeflater()
    return member
