"""What a backup store is: a flat store of named byte streams, replaced only whole (it knows nothing of ZIP or JSON).

``Storage`` is the interface the service uses; ``StoredFile`` describes one
complete file and ``PendingFile`` is what an atomic writer yields. A file appears
under its final name only once it is complete, so a crash at any point leaves
nothing that ``list()`` shows. ``is_plain_name`` is the one rule for the names a
store accepts. The stores themselves are ``local.LocalStorage`` and
``s3.S3Storage``; ``get_storage`` in this package chooses one by ``BACKUP_STORAGE``.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import BinaryIO, Iterable

HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredFile:
    """One complete file in a store."""

    name: str
    size: int
    mtime_ns: int

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9


class PendingFile:
    """What an atomic writer yields: ``file`` to write to; ``name`` is set once committed."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.name: str | None = None

    def sha256(self) -> str:
        """The hex SHA-256 of everything written: read back from a seekable file, else the
        digest a streaming file kept as it was written (its ``hexdigest``)."""
        if self.file.seekable():
            return sha256_of(self.file)
        return self.file.hexdigest()


class Storage(ABC):
    """A flat store of named byte streams, each written once and replaced only whole."""

    #: Identifies the store's location, e.g. for caches keyed by it.
    location: str
    #: True when each call is a network round trip that may wait up to a timeout (start-up does not wait on it).
    remote: bool = False

    @abstractmethod
    def list(self) -> list[StoredFile]:
        """Every complete file (never partials or hidden files), in no particular order."""

    @abstractmethod
    def stat(self, name: str) -> StoredFile:
        """The file's size and mtime; ``BackupNotFoundError`` if there is none by that name."""

    @abstractmethod
    def open_read(self, name: str) -> BinaryIO:
        """A seekable binary file open for reading; the caller closes it."""

    def open_parts(self, entry: StoredFile) -> BinaryIO:
        """Like ``open_read``, for reading a few parts of a large file (a ZIP's directory and one member).

        A remote store fetches only the bytes read instead of the whole file.
        """
        return self.open_read(entry.name)

    def download_url(self, name: str, expires_in: int) -> str | None:
        """A URL that serves ``name`` as an attachment for ``expires_in`` seconds, without this app.

        None (the default) when the store has no such URL: the app streams the file itself.
        """
        return None

    @abstractmethod
    def atomic_writer(self, candidate_names: Iterable[str]):
        """Context manager yielding a ``PendingFile``.

        On a clean exit the data is made durable and published under the first of
        ``candidate_names`` not taken yet (``PendingFile.name``); on an exception
        nothing is published and nothing is left behind.
        """

    @abstractmethod
    def replacing_writer(self, name: str):
        """Context manager yielding a ``PendingFile`` whose content replaces the existing file ``name``.

        The new file is written beside the old one; on a clean exit it is made
        durable and takes the name in one atomic step, so a reader sees the whole
        old file or the whole new one. On an exception, or a crash at any point,
        the old file stays as it was. ``BackupNotFoundError`` if there is no ``name``.
        """

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove a file; ``BackupNotFoundError`` if there is none by that name."""

    @abstractmethod
    def cleanup_partials(self) -> int:
        """Remove partial files whose writer is gone; returns how many."""


def is_plain_name(name: object) -> bool:
    """True when ``name`` can name a file in a store: one non-empty path component, not hidden.

    Refused: anything not a string, ``.``/``..`` and every other name starting with
    a dot (partials and other hidden files), and names holding ``/``, ``\\`` or NUL.
    """
    return (isinstance(name, str) and bool(name) and not name.startswith(".")
            and "/" not in name and "\\" not in name and "\0" not in name)


def sha256_of(fh: BinaryIO) -> str:
    """The hex SHA-256 of a seekable file's whole content; the file is left positioned at its start."""
    digest = hashlib.sha256()
    fh.seek(0)
    while chunk := fh.read(HASH_CHUNK):
        digest.update(chunk)
    fh.seek(0)
    return digest.hexdigest()
