"""Streaming an archive into S3 as it is written: a multipart upload with bounded memory.

``PartStream`` is the file a backup writes to. Bytes gather in one part buffer; each
full part goes up on a pool of two threads while the next fills, so at most two
parts are in flight and memory stays near three parts whatever the archive's size.
The upload goes to a hidden *staging key* that is never listed; the caller
publishes it under its real name with ``copy_in_parts`` (a server-side multipart
copy whose final CompleteMultipartUpload is conditional, so a lost name can be
retried under the next one). An archive smaller than one part never starts an
upload: its bytes stay in memory for a single conditional PUT. The stream hashes
what passes (``hexdigest``): the SHA-256 the backup's record keeps, with no read back.

The stream is not seekable: ``zipfile`` then writes each member's sizes and CRC
after its data (a data descriptor), which every ZIP reader understands.
"""
from __future__ import annotations

import hashlib
import io
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

MiB = 1024 * 1024
PART_SIZE = 5 * MiB  # S3's smallest part (except the last)
PARTS_IN_FLIGHT = 2
MAX_PARTS = 10_000  # S3's limit on the parts of one upload


class PartStream(io.RawIOBase):
    """A write-only, non-seekable file whose bytes go up to ``staging_key`` as a multipart upload.

    ``on_error(exc)`` turns a botocore error into the ``StorageError`` to raise. After
    ``finish`` the upload is complete (``staged_size`` bytes at the staging key), or,
    for a small archive, ``small_body`` holds every byte and nothing was uploaded.
    """

    def __init__(self, client, bucket: str, staging_key: str, on_error: Callable[[Exception], Exception],
                 part_size: int = PART_SIZE):
        super().__init__()
        self.client, self.bucket, self.staging_key, self.on_error = client, bucket, staging_key, on_error
        self.part_size = max(part_size, PART_SIZE)
        self._buffer = bytearray()
        self._position = 0
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: list[Future] = []
        self._parts: list[dict] = []
        self.small_body: bytes | None = None
        self.staged_size = 0
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
        """Take ``data``; full parts are handed to the upload threads (waiting while two are in flight)."""
        view = memoryview(data).cast("B")
        self._digest.update(view)
        self._buffer += view
        self._position += len(view)
        while len(self._buffer) >= self.part_size:
            part = bytes(self._buffer[:self.part_size])
            del self._buffer[:self.part_size]
            self._send(part)
        return len(view)

    def _send(self, part: bytes) -> None:
        if self._upload_id is None:
            try:
                self._upload_id = self.client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.staging_key)["UploadId"]
            except Exception as exc:
                raise self.on_error(exc) from exc
            self._pool = ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="s3-part")
        if len(self._parts) + len(self._in_flight) >= MAX_PARTS:
            raise self.on_error(ValueError(f"the archive needs more than {MAX_PARTS} parts"))
        while len(self._in_flight) >= PARTS_IN_FLIGHT:
            self._collect(self._in_flight.pop(0))
        number = len(self._parts) + len(self._in_flight) + 1
        self._in_flight.append(self._pool.submit(self._upload_part, number, part))

    def _upload_part(self, number: int, part: bytes) -> dict:
        response = self.client.upload_part(Bucket=self.bucket, Key=self.staging_key, UploadId=self._upload_id,
                                           PartNumber=number, Body=part)
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _collect(self, future: Future) -> None:
        try:
            self._parts.append(future.result())
        except Exception as exc:
            raise self.on_error(exc) from exc

    def finish(self) -> None:
        """Send what is left and complete the staging upload (or keep a small archive in memory)."""
        if self._upload_id is None:
            self.small_body = bytes(self._buffer)
            self._buffer.clear()
            return
        if self._buffer:
            self._send(bytes(self._buffer))
            self._buffer.clear()
        while self._in_flight:
            self._collect(self._in_flight.pop(0))
        self._parts.sort(key=lambda part: part["PartNumber"])
        try:
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.staging_key,
                                                  UploadId=self._upload_id, MultipartUpload={"Parts": self._parts})
        except Exception as exc:
            raise self.on_error(exc) from exc
        finally:
            self._shut_pool()
        self._upload_id = None
        self.staged_size = self._position

    def abort(self) -> None:
        """Give up: wait for the parts in flight, then abort the upload so none of its parts are kept."""
        for future in self._in_flight:
            future.exception()
        self._in_flight.clear()
        self._shut_pool()
        if self._upload_id is not None:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.staging_key,
                                                   UploadId=self._upload_id)
            except Exception:  # best effort: cleanup_partials aborts what is left
                pass
            self._upload_id = None
        self._buffer.clear()

    def _shut_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def copy_in_parts(client, bucket: str, source_key: str, size: int, key: str, part_size: int = PART_SIZE) -> None:
    """Copy ``source_key`` to ``key`` inside the bucket (UploadPartCopy), completing it in one request.

    The completion carries the client's conditions (If-None-Match), so a taken ``key``
    raises the ClientError of the refusal; the copy's upload is aborted then.
    """
    part_size = max(part_size, PART_SIZE, -(-size // MAX_PARTS))
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        parts = []
        for number, first in enumerate(range(0, max(size, 1), part_size), start=1):
            last = min(first + part_size, size) - 1
            response = client.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                               CopySource={"Bucket": bucket, "Key": source_key},
                                               CopySourceRange=f"bytes={first}-{last}")
            parts.append({"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]})
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:  # best effort: cleanup_partials aborts what is left
            pass
        raise
