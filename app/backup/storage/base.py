"""Where archives live: a store of named byte streams (it knows nothing of ZIP or JSON).

``Storage`` is the interface the service uses; ``LocalStorage`` keeps files in
``BACKUP_DIRECTORY``. A file appears under its final name only once it is
complete and on disk: writers fill a hidden partial file in the same directory,
fsync it, then link it under the first free final name (so a crash at any point
leaves nothing that ``list()`` shows). Partials left by a killed writer are
removed by ``cleanup_partials()`` at the next start.

An S3 store slots in by implementing the same methods (multipart upload for the
writer, a conditional put to reserve the name); ``get_storage`` chooses by
``BACKUP_STORAGE``.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import uuid
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from ..errors import BackupNotFoundError, StorageError

log = logging.getLogger(__name__)

PARTIAL_MARKER = ".partial-"
# link() errors meaning "this filesystem has no hard links", not "something is wrong".
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


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


class Storage(ABC):
    """A flat store of named, immutable byte streams."""

    #: Identifies the store's location, e.g. for caches keyed by it.
    location: str

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

    @abstractmethod
    def atomic_writer(self, candidate_names: Iterable[str]):
        """Context manager yielding a ``PendingFile``.

        On a clean exit the data is made durable and published under the first of
        ``candidate_names`` not taken yet (``PendingFile.name``); on an exception
        nothing is published and nothing is left behind.
        """

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove a file; ``BackupNotFoundError`` if there is none by that name."""

    @abstractmethod
    def cleanup_partials(self) -> int:
        """Remove partial files whose writer is gone; returns how many."""


def _is_plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage(Storage):
    """Files in one local directory (created if missing)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.location = f"local:{self.directory.resolve()}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"The backup directory {self.directory} cannot be created ({exc.strerror}); "
                "create it or set BACKUP_DIRECTORY to a writable place."
            ) from exc

    def _path(self, name: str) -> Path:
        if not _is_plain_name(name) or name.startswith("."):
            raise BackupNotFoundError(f"No backup is named {name!r}.")
        return self.directory / name

    def list(self) -> list[StoredFile]:
        entries = []
        try:
            with os.scandir(self.directory) as scan:
                for entry in scan:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # deleted while we looked
                        continue
                    entries.append(StoredFile(entry.name, st.st_size, st.st_mtime_ns))
        except OSError as exc:
            raise self._error("read", exc) from exc
        return entries

    def stat(self, name: str) -> StoredFile:
        path = self._path(name)
        try:
            st = path.lstat()
        except FileNotFoundError:
            raise BackupNotFoundError(f"No backup is named {name!r}.") from None
        except OSError as exc:
            raise self._error("read", exc) from exc
        if not path.is_file() or path.is_symlink():
            raise BackupNotFoundError(f"No backup is named {name!r}.")
        return StoredFile(name, st.st_size, st.st_mtime_ns)

    def open_read(self, name: str) -> BinaryIO:
        path = self._path(name)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise BackupNotFoundError(f"No backup is named {name!r}.") from None
        except OSError as exc:
            raise self._error("read", exc) from exc

    @contextmanager
    def atomic_writer(self, candidate_names: Iterable[str]) -> Iterator[PendingFile]:
        candidates = iter(candidate_names)
        first = next(candidates)
        partial = self.directory / f".{first}{PARTIAL_MARKER}{uuid.uuid4().hex}"
        try:
            fh = open(partial, "xb")
        except OSError as exc:
            raise self._error("write", exc) from exc
        published = False
        try:
            # Held until the file is closed or the process dies: cleanup_partials
            # skips partials whose writer is still alive.
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            pending = PendingFile(fh)
            yield pending
            try:
                fh.flush()
                os.fsync(fh.fileno())
                pending.name = self._publish(partial, first, candidates)
                published = True
                _fsync_directory(self.directory)
            except OSError as exc:
                raise self._error("write", exc) from exc
        except OSError as exc:
            raise self._error("write", exc) from exc
        finally:
            try:
                fh.close()
            except OSError:
                pass  # only unflushed bytes of a failed write are lost, and the file goes anyway
            try:
                partial.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                log.warning("could not remove the partial backup file %s", partial, exc_info=True)
            if not published:
                log.info("discarded the unfinished backup file %s", partial.name)

    def _publish(self, partial: Path, first: str, rest: Iterator[str]) -> str:
        for name in (first, *rest):
            target = self._path(name)
            try:
                # link() never replaces an existing file, so the final name is
                # reserved atomically even against another process.
                os.link(partial, target)
                return name
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                return self._publish_by_rename(partial, name, rest)
        raise StorageError("No free backup file name is left for this second; try again.")

    def _publish_by_rename(self, partial: Path, first: str, rest: Iterator[str]) -> str:
        """For filesystems without hard links (some network and container mounts).

        The name is reserved with an exclusive create, then the complete file is
        renamed over the empty reservation; an empty file is never listed.
        """
        for name in (first, *rest):
            target = self._path(name)
            try:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                continue
            os.replace(partial, target)
            return name
        raise StorageError("No free backup file name is left for this second; try again.")

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            raise BackupNotFoundError(f"No backup is named {name!r}.") from None
        except OSError as exc:
            raise self._error("delete", exc) from exc
        try:
            _fsync_directory(self.directory)
        except OSError:
            log.warning("could not fsync %s after deleting %s", self.directory, name, exc_info=True)

    def cleanup_partials(self) -> int:
        removed = 0
        try:
            names = [entry.name for entry in os.scandir(self.directory)
                     if entry.name.startswith(".") and PARTIAL_MARKER in entry.name]
        except OSError as exc:
            raise self._error("read", exc) from exc
        for name in names:
            path = self.directory / name
            try:
                with open(path, "rb") as fh:
                    try:
                        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # a live writer still owns it
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError:
                log.warning("could not remove the partial backup file %s", path, exc_info=True)
        if removed:
            log.info("removed %d unfinished backup file(s) from %s", removed, self.directory)
        return removed

    def _error(self, action: str, exc: OSError) -> StorageError:
        where = self.directory
        if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
            return StorageError(f"The backup directory {where} is full (no space left on device); "
                                "free some space or set BACKUP_DIRECTORY to a larger disk.")
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return StorageError(f"Cannot {action} in the backup directory {where} ({exc.strerror}); "
                                "make it writable by the app's user or set BACKUP_DIRECTORY.")
        if exc.errno == errno.ENOENT:
            return StorageError(f"The backup directory {where} does not exist; create it or set BACKUP_DIRECTORY.")
        return StorageError(f"Cannot {action} in the backup directory {where}: {exc.strerror or exc}.")


def get_storage(app) -> Storage:
    """The store configured by ``BACKUP_STORAGE``: ``local`` (a directory) or ``s3`` (a bucket)."""
    kind = app.config.get("BACKUP_STORAGE", "local")
    if kind == "local":
        return LocalStorage(app.config["BACKUP_DIRECTORY"])
    if kind == "s3":
        from .s3 import S3Storage  # boto3 is imported only by apps that use S3

        return S3Storage(app.config.get("BACKUP_S3_BUCKET"), app.config.get("BACKUP_S3_PREFIX"),
                         app.config.get("BACKUP_S3_ENDPOINT_URL"))
    raise StorageError(f"Unknown BACKUP_STORAGE {kind!r}; use 'local' or 's3'.")
