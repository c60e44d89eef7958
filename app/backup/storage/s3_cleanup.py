"""Unfinished S3 uploads: whose they are, and which ``S3Storage.cleanup_partials`` removes.

A streamed backup's multipart upload, under the backup's own key, has a hidden empty
twin, ``<prefix>/.partial-<host:pid>-<name>``: S3 lists no metadata of an upload, so
the twin's key is how a later process learns who wrote the upload it sees. A writer
is gone when it was a process of this host that no longer exists, or, on any host,
once its upload is older than the age limit. An upload under a plain name goes with
its twins (once all of them are gone), or, without any, follows the age rule alone.
Staging objects and uploads that earlier versions left (``.partial-<host:pid>-<hex>``,
copied into place once complete) match the same pattern and follow the writer rule.
"""
from __future__ import annotations

import re
from datetime import datetime

from botocore.exceptions import ClientError

from ..jobs.lock import current_owner, owner_is_dead
from .base import is_plain_name
from .s3_errors import error_code

WRITER_MARKER = ".partial-"  # hidden: never a plain name, never listed
_WRITER_KEY = re.compile(re.escape(WRITER_MARKER) + r"(?P<owner>[^/]+?:\d+)-(?P<name>[^/]+)")


def writer_key(list_prefix: str, name: str) -> str:
    """The key of the empty upload naming this process as the writer of ``name``."""
    return f"{list_prefix}{WRITER_MARKER}{current_owner()}-{name}"


def remove_abandoned(client, bucket: str, list_prefix: str, cutoff: datetime) -> int:
    """Abort the uploads (and delete the staging objects) under ``list_prefix`` whose writer is gone.

    ``cutoff``: an upload started then or earlier is old. Returns how many uploads and
    objects were removed; the client's errors are raised as they are.
    """
    pages = client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=list_prefix)
    uploads = [upload for page in pages for upload in page.get("Uploads", ())]
    writers: dict[str, list[bool]] = {}  # name -> whether each of its writers is gone
    for upload in uploads:
        writer = _WRITER_KEY.fullmatch(upload["Key"][len(list_prefix):])
        if writer is not None:
            writers.setdefault(writer.group("name"), []).append(
                _writer_is_gone(writer.group("owner"), upload["Initiated"], cutoff))
    removed = 0
    for upload in uploads:
        if not _abandoned(upload["Key"][len(list_prefix):], upload["Initiated"], writers, cutoff):
            continue
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            removed += 1
        except ClientError as exc:
            if error_code(exc) != "NoSuchUpload":  # finished or aborted by someone else meanwhile
                raise
    staged = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=list_prefix + WRITER_MARKER)
    for obj in (obj for page in staged for obj in page.get("Contents", ())):
        if _abandoned(obj["Key"][len(list_prefix):], obj["LastModified"], {}, cutoff):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
            removed += 1
    return removed


def _abandoned(name: str, started: datetime, writers: dict[str, list[bool]], cutoff: datetime) -> bool:
    writer = _WRITER_KEY.fullmatch(name)
    if writer is not None:
        return _writer_is_gone(writer.group("owner"), started, cutoff)
    if not is_plain_name(name):
        return False  # deeper "folders" are not ours
    if name in writers:
        return all(writers[name])
    return started <= cutoff


def _writer_is_gone(owner: str, started: datetime, cutoff: datetime) -> bool:
    return owner_is_dead(owner) or started <= cutoff
