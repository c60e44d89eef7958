"""Streaming an archive into S3 as it is written: a multipart upload with bounded memory.

``PartStream`` is the file a backup writes to. Bytes are copied once, into one of two
part buffers; each full part goes up on a pool of two threads while the other
buffer fills, so at most two parts are in flight and memory stays at two parts
whatever the archive's size. A writer that gets ahead of the store waits for the
older part. Buffers are reused, never sliced or joined.

The upload goes straight to the object's own key, which ``open_key()`` names when
the first part is full; S3 shows nothing under that key until the caller's final
``complete()`` (CompleteMultipartUpload), and then the whole object at once. An
archive smaller than one part never starts an upload: its bytes stay in memory for
a single PUT. The stream hashes what passes (``hexdigest``): the SHA-256 the backup's
record keeps, with no read back.

The stream is not seekable: ``zipfile`` then writes each member's sizes and CRC
after its data (a data descriptor), which every ZIP reader understands.
"""
from __future__ import annotations

import hashlib
import io
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

MiB = 1024 * 1024
PART_SIZE = 5 * MiB  # S3's smallest part (except the last)
PARTS_IN_FLIGHT = 2
MAX_PARTS = 10_000  # S3's limit on the parts of one upload


class PartStream(io.RawIOBase):
    """A write-only, non-seekable file whose bytes go up to S3 as a multipart upload.

    ``open_key()`` is called once, when the first part is full, and returns the key to
    upload to. ``on_error(exc)`` turns a botocore error into the ``StorageError`` to
    raise. After ``finish`` every part is up (``key`` is set) and ``complete()``
    publishes the object, or, for a small archive, ``small_body`` holds every byte and
    nothing was uploaded. ``abort()`` gives the upload up.
    """

    def __init__(self, client, bucket: str, open_key: Callable[[], str], on_error: Callable[[Exception], Exception],
                 part_size: int = PART_SIZE):
        super().__init__()
        self.client, self.bucket, self.open_key, self.on_error = client, bucket, open_key, on_error
        self.part_size = max(part_size, PART_SIZE)
        self.key: str | None = None
        self._part = bytearray(self.part_size)  # the buffer being filled
        self._filled = 0
        self._spare: list[bytearray] = []  # buffers whose upload has finished
        self._position = 0
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: deque[tuple[Future, bytearray]] = deque()
        self._parts: list[dict] = []
        self.small_body: bytearray | None = None
        self._digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        """Bytes written so far (zipfile asks for offsets, never seeks)."""
        return self._position

    def hexdigest(self) -> str:
        """The hex SHA-256 of every byte written so far."""
        return self._digest.hexdigest()

    def write(self, data) -> int:
        """Take ``data``; each full part is handed to the upload threads (waiting while two are in flight)."""
        view = memoryview(data).cast("B")
        size = len(view)
        self._digest.update(view)
        self._position += size
        while view:
            take = min(len(view), self.part_size - self._filled)
            self._part[self._filled:self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == self.part_size:
                self._send(self._part)
                self._part = self._free_buffer()
                self._filled = 0
        return size

    def _free_buffer(self) -> bytearray:
        # Two buffers in all: with both in flight, the older one's upload is waited for.
        if self._spare:
            return self._spare.pop()
        if len(self._in_flight) < PARTS_IN_FLIGHT:
            return bytearray(self.part_size)
        self._collect()
        return self._spare.pop()

    def _send(self, part: bytearray) -> None:
        if self._upload_id is None:
            self.key = self.open_key()
            try:
                self._upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
            except Exception as exc:
                raise self.on_error(exc) from exc
            self._pool = ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="s3-part")
        if len(self._parts) + len(self._in_flight) >= MAX_PARTS:
            raise self.on_error(ValueError(f"the archive needs more than {MAX_PARTS} parts"))
        while len(self._in_flight) >= PARTS_IN_FLIGHT:
            self._collect()
        number = len(self._parts) + len(self._in_flight) + 1
        self._in_flight.append((self._pool.submit(self._upload_part, number, part), part))

    def _upload_part(self, number: int, part: bytearray) -> dict:
        response = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                           PartNumber=number, Body=part)
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _collect(self) -> None:
        """Wait for the oldest part in flight; its buffer becomes spare."""
        future, part = self._in_flight.popleft()
        try:
            self._parts.append(future.result())
        except Exception as exc:
            raise self.on_error(exc) from exc
        self._spare.append(part)

    def finish(self) -> None:
        """Send the last part and wait for every part (or keep a small archive in memory)."""
        del self._part[self._filled:]  # the last part (or the small body) is what was filled, in place
        if self._upload_id is None:
            self.small_body = self._part
            return
        if self._part:
            self._send(self._part)
        self._part = bytearray()
        self._spare.clear()
        while self._in_flight:
            self._collect()
        self._spare.clear()
        self._shut_pool()

    def complete(self) -> None:
        """Publish the uploaded parts as the object (CompleteMultipartUpload, with the client's conditions).

        The client's error is raised as it is, so the caller can tell a refused
        condition from other failures; the upload stays open for ``abort()`` then.
        """
        self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                              MultipartUpload={"Parts": sorted(self._parts,
                                                                               key=lambda part: part["PartNumber"])})
        self._upload_id = None

    def abort(self) -> None:
        """Give up: wait for the parts in flight, then abort the upload so none of its parts are kept."""
        for future, _ in self._in_flight:
            future.exception()
        self._in_flight.clear()
        self._shut_pool()
        if self._upload_id is not None:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            except Exception:  # best effort: cleanup_partials aborts what is left
                pass
            self._upload_id = None
        self._part, self._spare = bytearray(), []

    def _shut_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
