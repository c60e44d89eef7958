"""Archives in an S3 bucket (AWS or any S3-compatible store), behind the ``Storage`` interface.

Objects live at ``<prefix>/<name>``; like ``LocalStorage`` this store knows names
and byte streams only. A writer streams straight into S3 with bounded memory
(``s3_stream``): parts of a few MB go up, while the archive is written, to a
multipart upload under the backup's own key, never to local disk. Publishing is
atomic: S3 shows the object only once the final CompleteMultipartUpload has
succeeded, whole; an archive smaller than one part goes up in one PUT. A crash
therefore never leaves a listed object, only an unfinished upload, which
``cleanup_partials()`` aborts once its writer is gone (an empty hidden upload
beside it names the writer). ``replacing_writer`` (rekey) fills a local temporary
file and uploads it over an existing object (without ``If-None-Match``): S3 swaps
an object whole, so a reader gets the old one or the new one.

Names are never overwritten. ``head_object`` skips candidates (``_2``, ``_3`` …)
already taken, and every PUT and CompleteMultipartUpload carries ``If-None-Match: *``:
a name taken between the check and the publication makes S3 refuse it (412). A small
archive then tries the next name; a streamed one cannot (its parts belong to their
key) and fails, saying so: only a writer outside this app can cause that, as backups
are serialised by the database lock. A store that rejects conditional writes as not
implemented gets unconditional ones after a warning.

Credentials come from boto3's default chain (environment, shared files, SSO,
container or instance role); the region from the usual boto3 settings
(``AWS_DEFAULT_REGION``, the profile), else ``us-east-1``. What S3's errors mean to
the operator is in ``s3_errors``; ``open_parts`` reads through ``ranges.RangedReader``.
"""
from __future__ import annotations

import functools
import io
import logging
import os
import re
import tempfile
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import BinaryIO, Callable, Iterable, Iterator

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import BackupNotFoundError, StorageError
from .base import PendingFile, Storage, StoredFile, is_plain_name
from ..ranges import RangedReader
from .s3_stream import PART_SIZE, PartStream
from .s3_cleanup import remove_abandoned, writer_key
from .s3_client import DEFAULT_TIMEOUT, conditional_puts, prepare_client, replacing_keys, shared_client
from .s3_errors import CLASH_CODES, NOT_FOUND_CODES, error_code, storage_error

log = logging.getLogger(__name__)

STALE_UPLOAD_AGE = timedelta(hours=1)
# What one ranged GET of ``open_parts`` fetches at least: a ZIP's directory and a small
# member near its end usually take three.
RANGE_READ_BYTES = 64 * 1024

def normalise_prefix(prefix: str | None) -> str:
    """``"/a//b/"`` → ``"a/b"``; empty or None → ``""`` (objects at the bucket's top level)."""
    return "/".join(part for part in re.split(r"/+", prefix or "") if part)


class S3Storage(Storage):
    """Objects ``<prefix>/<name>`` in one bucket."""

    remote = True

    def __init__(self, bucket: str | None, prefix: str | None = "", endpoint_url: str | None = None, *,
                 client=None, transfer_config: TransferConfig | None = None, temp_dir: str | None = None,
                 list_page_size: int = 1000, stale_upload_age: timedelta = STALE_UPLOAD_AGE,
                 timeout: int = DEFAULT_TIMEOUT):
        """``timeout``: seconds each request may wait for the store (``BACKUP_S3_TIMEOUT``);
        ``client``, ``transfer_config``, ``temp_dir`` and the sizes are for tests and tuning."""
        if not bucket:
            raise StorageError("BACKUP_S3_BUCKET is not set; set it to the bucket that holds the backups.")
        self.bucket = bucket
        self.prefix = normalise_prefix(prefix)
        self.endpoint_url = endpoint_url or None
        self.location = f"s3:{self.endpoint_url or 'aws'}/{bucket}/{self.prefix}"
        self.client = client if client is not None else shared_client(self.endpoint_url, timeout)
        prepare_client(self.client)
        # "classic" keeps uploads on the botocore client, where the If-None-Match hook lives.
        self.transfer_config = transfer_config or TransferConfig(preferred_transfer_client="classic")
        # Parts of the streamed uploads: the transfer config's chunks when one is given.
        self.part_size = transfer_config.multipart_chunksize if transfer_config else PART_SIZE
        self.temp_dir = temp_dir
        self.list_page_size = list_page_size
        self.stale_upload_age = stale_upload_age

    # --- names -------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        if not is_plain_name(name):
            raise BackupNotFoundError(f"No backup is named {name!r}.")
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def _list_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def _name_of(self, key: str) -> str | None:
        name = key[len(self._list_prefix):]
        if not is_plain_name(name):
            return None  # deeper "folders" and hidden objects are not ours
        return name

    # --- reading -----------------------------------------------------------------------

    def list(self) -> list[StoredFile]:
        """Every object directly under the prefix, with its size and LastModified."""
        entries = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._list_prefix,
                PaginationConfig={"PageSize": self.list_page_size})
            for page in pages:
                for obj in page.get("Contents", ()):
                    name = self._name_of(obj["Key"])
                    if name is not None:
                        entries.append(StoredFile(name, obj["Size"], _mtime_ns(obj["LastModified"])))
        except (ClientError, BotoCoreError) as exc:
            raise self._error("list", exc) from exc
        return entries

    @contextmanager
    def _reading(self, name: str) -> Iterator[None]:
        """S3's errors while reading ``name`` as ours: not found, or what to fix."""
        try:
            yield
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND_CODES:
                self._not_found(name)
            raise self._error("read", exc) from exc
        except BotoCoreError as exc:
            raise self._error("read", exc) from exc

    def stat(self, name: str) -> StoredFile:
        """Size and LastModified of one object (``head_object``)."""
        key = self._key(name)
        with self._reading(name):
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        return StoredFile(name, head["ContentLength"], _mtime_ns(head["LastModified"]))

    def open_read(self, name: str) -> BinaryIO:
        """The object downloaded into an anonymous local temporary file (seekable; gone once closed)."""
        key = self._key(name)
        fh = self._temporary_file("download")
        try:
            self.client.download_fileobj(self.bucket, key, fh, Config=self.transfer_config)
            fh.seek(0)
            return fh
        except BaseException as exc:
            fh.close()
            if isinstance(exc, ClientError) and error_code(exc) in NOT_FOUND_CODES:
                self._not_found(name)
            if isinstance(exc, (ClientError, BotoCoreError)):
                raise self._error("read", exc) from exc
            if isinstance(exc, OSError):
                raise self._temp_error("download", exc) from exc
            raise

    def open_parts(self, entry: StoredFile) -> BinaryIO:
        """A seekable reader of the object that fetches only what is read, with ranged GETs."""
        fetch = functools.partial(self._get_range, entry.name)
        return io.BufferedReader(RangedReader(entry.size, fetch), buffer_size=RANGE_READ_BYTES)

    def download_url(self, name: str, expires_in: int) -> str:
        """A presigned GET of the object, valid ``expires_in`` seconds, served as an attachment named ``name``.

        Presigning is local (no request to S3): whether the object exists is the caller's to check.
        """
        key = self._key(name)
        try:
            return self.client.generate_presigned_url(
                "get_object", ExpiresIn=expires_in,
                Params={"Bucket": self.bucket, "Key": key, "ResponseContentType": "application/zip",
                        "ResponseContentDisposition": f'attachment; filename="{name}"'})
        except (ClientError, BotoCoreError) as exc:
            raise self._error("read", exc) from exc

    def _get_range(self, name: str, first: int, last: int) -> bytes:
        key = self._key(name)
        with self._reading(name):
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={first}-{last}")
            data = response["Body"].read()
        # A store that ignores Range answers with the whole object.
        return data if "ContentRange" in response else data[first:last + 1]

    # --- writing -----------------------------------------------------------------------

    @contextmanager
    def atomic_writer(self, candidate_names: Iterable[str]) -> Iterator[PendingFile]:
        """Yield a stream into a multipart upload under the first free name; publish it on a clean exit.

        Memory stays at two parts whatever the size (``s3_stream``). The name is chosen
        when the first part goes up, and nothing is listed until the final
        CompleteMultipartUpload. That request is conditional: if another writer stores
        the same name meanwhile, its object is left as it is and this backup fails,
        saying so. Any failure aborts the upload.
        """
        candidates = iter(candidate_names)
        chosen: list[str] = []
        writer_upload: list[tuple[str, str]] = []

        def open_key() -> str:
            chosen.append(self._first_free(candidates))
            writer_upload.append(self._writer_upload(chosen[0]))
            return self._key(chosen[0])

        stream = PartStream(self.client, self.bucket, open_key, lambda exc: self._error("write", exc),
                            part_size=self.part_size)
        pending = PendingFile(stream)
        try:
            try:
                yield pending
                stream.finish()
                if stream.key is None:
                    body = stream.small_body
                    pending.name = self._publish(candidates, lambda key: self.client.put_object(
                        Bucket=self.bucket, Key=key, Body=body))
                else:
                    self._complete(stream, chosen[0])
                    pending.name = chosen[0]
            except BaseException:
                stream.abort()
                raise
        finally:
            for key, upload_id in writer_upload:
                self._abort_quietly(key, upload_id)

    def _writer_upload(self, name: str) -> tuple[str, str]:
        """An empty, hidden multipart upload whose key names this process as the writer of ``name`` (``s3_cleanup``)."""
        key = writer_key(self._list_prefix, name)
        try:
            return key, self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            raise self._error("write", exc) from exc

    def _complete(self, stream: PartStream, name: str) -> None:
        try:
            self._conditionally(stream.complete)
        except _NameTaken:
            raise StorageError(f"Another writer stored {name} in the bucket '{self.bucket}' while this backup "
                               "was uploading; that object was left as it is and this backup was not kept. "
                               "Run the backup again.") from None

    @contextmanager
    def replacing_writer(self, name: str) -> Iterator[PendingFile]:
        """Yield a local temporary file; on a clean exit upload it over ``name`` (a PUT replaces an object whole)."""
        key = self._key(name)
        self.stat(name)
        fh = self._temporary_file("upload")
        with fh:
            pending = PendingFile(fh)
            try:
                yield pending
                fh.flush()
            except OSError as exc:
                raise self._temp_error("upload", exc) from exc
            replacing = replacing_keys.setdefault(self.client, set())
            replacing.add(key)
            try:
                self._upload(fh, key)
            except ClientError as exc:
                raise self._error("write", exc) from exc
            finally:
                replacing.discard(key)
            pending.name = name

    def _upload(self, fh: BinaryIO, key: str) -> None:
        # The transfer manager closes the file it is given; a duplicate descriptor
        # keeps ours open (for the next name, say). It shares the offset, so rewind first.
        fh.seek(0)
        try:
            with os.fdopen(os.dup(fh.fileno()), "rb") as body:
                self.client.upload_fileobj(body, self.bucket, key, Config=self.transfer_config)
        except (BotoCoreError, S3UploadFailedError) as exc:
            raise self._error("write", exc) from exc
        except OSError as exc:
            raise self._temp_error("upload", exc) from exc

    def _first_free(self, candidates: Iterator[str]) -> str:
        """The next candidate under which the bucket holds no object."""
        for name in candidates:
            if not self._exists(self._key(name)):
                return name
        raise StorageError("No free backup file name is left for this second; try again.")

    def _publish(self, candidates: Iterator[str], send: Callable[[str], object]) -> str:
        """``send(key)`` under the first free candidate name; a name taken meanwhile (412) moves to the next."""
        while True:
            name = self._first_free(candidates)
            try:
                self._conditionally(lambda: send(self._key(name)))
                return name
            except _NameTaken:
                continue

    def _conditionally(self, write: Callable[[], object]) -> None:
        """``write()``, a request that carries If-None-Match; ``_NameTaken`` when S3 refuses it for that.

        A store that cannot evaluate the condition gets the request again without it, after a warning.
        """
        while True:
            try:
                write()
                return
            except ClientError as exc:
                code = error_code(exc)
                if code in CLASH_CODES:
                    raise _NameTaken() from exc
                if code == "NotImplemented" and conditional_puts.get(self.client):
                    log.warning("the S3 store %s does not support conditional writes (If-None-Match); "
                                "backup names are now reserved by the existence check alone",
                                self.endpoint_url or "aws")
                    conditional_puts[self.client] = False
                    continue
                raise self._error("write", exc) from exc
            except BotoCoreError as exc:
                raise self._error("write", exc) from exc

    def _abort_quietly(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError):  # cleanup_partials aborts it once this process is gone
            log.warning("could not abort the upload s3://%s/%s", self.bucket, key, exc_info=True)

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND_CODES:
                return False
            raise self._error("write", exc) from exc
        except BotoCoreError as exc:
            raise self._error("write", exc) from exc

    def delete(self, name: str) -> None:
        """Delete the object; ``BackupNotFoundError`` if there is none (S3 itself would not say)."""
        self.stat(name)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except (ClientError, BotoCoreError) as exc:
            raise self._error("delete", exc) from exc

    def cleanup_partials(self) -> int:
        """Abort the unfinished uploads whose writer is gone (``s3_cleanup``); returns how many uploads
        (and objects) it removed. A writer is gone when it was a process of this host that no longer
        exists, or, on any host, once its upload is older than ``stale_upload_age`` (an hour)."""
        cutoff = datetime.now(timezone.utc) - self.stale_upload_age
        try:
            removed = remove_abandoned(self.client, self.bucket, self._list_prefix, cutoff)
        except (ClientError, BotoCoreError) as exc:
            raise self._error("clean up", exc) from exc
        if removed:
            log.info("removed %d unfinished upload(s) from s3://%s/%s", removed, self.bucket, self._list_prefix)
        return removed

    # --- errors ------------------------------------------------------------------------

    def _temporary_file(self, purpose: str) -> BinaryIO:
        # Disk-backed, never spooled in memory (archives can be gigabytes), and anonymous
        # on Linux (O_TMPFILE): a killed process leaves no temporary file behind.
        try:
            return tempfile.TemporaryFile(dir=self.temp_dir, prefix="cyberquest-s3-")
        except OSError as exc:
            raise self._temp_error(purpose, exc) from exc

    def _temp_error(self, purpose: str, exc: OSError) -> StorageError:
        where = self.temp_dir or tempfile.gettempdir()
        return StorageError(f"The local temporary file for the S3 {purpose} in {where} failed "
                            f"({exc.strerror or exc}); free space there or point TMPDIR at a larger disk.")

    def _not_found(self, name: str):
        """Raise the right error for a 404: the bucket may be what is missing, not the object."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise self._error("read", exc) from exc
        except BotoCoreError as exc:
            raise self._error("read", exc) from exc
        raise BackupNotFoundError(f"No backup is named {name!r}.")

    def _error(self, action: str, exc: Exception) -> StorageError:
        return storage_error(action, exc, self.bucket, self.endpoint_url)


class _NameTaken(Exception):
    """A conditional write refused because the name was taken meanwhile."""


def _mtime_ns(value: datetime) -> int:
    # Whole seconds: HEAD answers with an HTTP date, LIST with milliseconds, and the
    # service's metadata cache compares the two.
    return int(value.timestamp()) * 1_000_000_000

