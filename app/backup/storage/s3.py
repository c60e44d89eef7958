"""Archives in an S3 bucket (AWS or any S3-compatible store), behind the ``Storage`` interface.

Objects live at ``<prefix>/<name>``; like ``LocalStorage`` this store knows names
and byte streams only. A writer streams straight into S3 with bounded memory
(``s3_stream``): parts of a few MB go up to a hidden staging key while the archive
is written, never to local disk. Publishing is atomic: only a complete staging
object is copied under its name (a server-side multipart copy, invisible until its
final CompleteMultipartUpload); an archive smaller than one part goes up in one PUT.
A crash therefore never leaves a listed object; at worst an unfinished upload or a
staging object, which ``cleanup_partials()`` removes once its writer is gone.
``replacing_writer`` (rekey) fills a local temporary file and uploads it over an
existing object (without ``If-None-Match``): S3 swaps an object whole, so a reader
gets the old one or the new one.

Name clashes (``_2``, ``_3`` …) are settled in two steps: ``head_object`` skips
names already taken without uploading anything, and every PUT and
CompleteMultipartUpload carries ``If-None-Match: *`` so a name taken between the
check and the publication makes S3 refuse it (412) and the next name is tried.
A store that rejects conditional writes as not implemented gets unconditional
ones after a warning; the remaining race is harmless because backups are
serialised by the database lock.

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
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import BinaryIO, Callable, Iterable, Iterator

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import BackupNotFoundError, StorageError
from ..jobs.lock import current_owner, owner_is_dead
from .base import PendingFile, Storage, StoredFile, is_plain_name
from ..ranges import RangedReader
from .s3_stream import PART_SIZE, PartStream, copy_in_parts
from .s3_client import DEFAULT_TIMEOUT, conditional_puts, prepare_client, replacing_keys, shared_client
from .s3_errors import CLASH_CODES, NOT_FOUND_CODES, error_code, storage_error

log = logging.getLogger(__name__)

STALE_UPLOAD_AGE = timedelta(hours=1)
# Hidden (never listed) keys that uploads stream to before they are published: .partial-<host:pid>-<hex>.
STAGING_MARKER = ".partial-"
_STAGING_NAME = re.compile(re.escape(STAGING_MARKER) + r"(?P<owner>[^/]+:\d+)-[0-9a-f]{32}")
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
        """Yield a stream into a hidden staging upload; publish it under the first free name on a clean exit.

        Memory stays at a few parts whatever the size (``s3_stream``); a failure aborts
        the upload, and nothing is listed until the publication's final request.
        """
        staging_key = self._key_of_hidden(f"{STAGING_MARKER}{current_owner()}-{uuid.uuid4().hex}")
        stream = PartStream(self.client, self.bucket, staging_key, lambda exc: self._error("write", exc),
                            part_size=self.part_size)
        pending = PendingFile(stream)
        try:
            yield pending
            stream.finish()
        except BaseException:
            stream.abort()
            raise
        try:
            if stream.small_body is not None:
                body = stream.small_body
                pending.name = self._publish(candidate_names, lambda key: self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=body))
            else:
                pending.name = self._publish(candidate_names, lambda key: copy_in_parts(
                    self.client, self.bucket, staging_key, stream.staged_size, key, self.part_size))
        finally:
            if stream.small_body is None:
                self._delete_quietly(staging_key)

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

    def _publish(self, candidate_names: Iterable[str], send: Callable[[str], object]) -> str:
        """``send(key)`` under the first free candidate name; a name taken meanwhile (412) moves to the next."""
        for name in candidate_names:
            key = self._key(name)
            if self._exists(key):
                continue
            while True:
                try:
                    send(key)
                    return name
                except ClientError as exc:
                    code = error_code(exc)
                    if code in CLASH_CODES:
                        break  # taken since the check: try the next name
                    if code == "NotImplemented" and conditional_puts.get(self.client):
                        log.warning("the S3 store %s does not support conditional writes (If-None-Match); "
                                    "backup names are now reserved by the existence check alone",
                                    self.endpoint_url or "aws")
                        conditional_puts[self.client] = False
                        continue
                    raise self._error("write", exc) from exc
                except BotoCoreError as exc:
                    raise self._error("write", exc) from exc
        raise StorageError("No free backup file name is left for this second; try again.")

    def _key_of_hidden(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _delete_quietly(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError):  # a leftover staging object is removed by cleanup_partials
            log.warning("could not delete the staging object s3://%s/%s", self.bucket, key, exc_info=True)

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
        """Abort the unfinished uploads and delete the staging objects whose writer is gone; returns how many.

        A staging key names its writer (``host:pid``): it is gone when it was a process
        of this host that no longer exists, or, on any host, once the upload is older
        than ``stale_upload_age`` (an hour). Uploads under plain names follow the age rule.
        """
        cutoff = datetime.now(timezone.utc) - self.stale_upload_age
        removed = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self._list_prefix)
            for upload in (upload for page in pages for upload in page.get("Uploads", ())):
                if not self._writer_is_gone(upload["Key"], upload["Initiated"], cutoff):
                    continue
                try:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    removed += 1
                except ClientError as exc:
                    if error_code(exc) != "NoSuchUpload":  # finished or aborted by someone else meanwhile
                        raise
            staged = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._list_prefix + STAGING_MARKER)
            for obj in (obj for page in staged for obj in page.get("Contents", ())):
                if self._writer_is_gone(obj["Key"], obj["LastModified"], cutoff):
                    self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])
                    removed += 1
        except (ClientError, BotoCoreError) as exc:
            raise self._error("clean up", exc) from exc
        if removed:
            log.info("removed %d unfinished upload(s) from s3://%s/%s", removed, self.bucket, self._list_prefix)
        return removed

    def _writer_is_gone(self, key: str, started: datetime, cutoff: datetime) -> bool:
        name = key[len(self._list_prefix):]
        staging = _STAGING_NAME.fullmatch(name)
        if staging is not None:
            return owner_is_dead(staging.group("owner")) or started <= cutoff
        return is_plain_name(name) and started <= cutoff

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


def _mtime_ns(value: datetime) -> int:
    # Whole seconds: HEAD answers with an HTTP date, LIST with milliseconds, and the
    # service's metadata cache compares the two.
    return int(value.timestamp()) * 1_000_000_000

