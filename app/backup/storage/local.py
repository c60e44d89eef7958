"""Archives in one local directory (``BACKUP_DIRECTORY``), behind the ``Storage`` interface.

Writers fill a hidden partial file in the same directory, fsync it, then link it
under the first free final name, or rename it over the file it replaces (so a
crash at any point leaves nothing that ``list()`` shows, and the old file whole).
Partials left by a killed writer are removed by ``cleanup_partials()`` at the next
start. Archives hold every account's password hash, so files are created readable
by the app's user only (0600), and a directory this store creates is 0700.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from ..errors import BackupNotFoundError, StorageError
from .base import PendingFile, Storage, StoredFile, is_plain_name

log = logging.getLogger(__name__)

PARTIAL_MARKER = ".partial-"
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
# link() errors meaning "this filesystem has no hard links", not "something is wrong".
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


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
            self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"The backup directory {self.directory} cannot be created ({exc.strerror}); "
                "create it or set BACKUP_DIRECTORY to a writable place."
            ) from exc

    def _path(self, name: str) -> Path:
        if not is_plain_name(name):
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
        with self._partial_then(first, lambda partial: self._publish(partial, first, candidates)) as pending:
            yield pending

    @contextmanager
    def replacing_writer(self, name: str) -> Iterator[PendingFile]:
        """A partial file beside ``name``, renamed over it on a clean exit (``rename`` replaces atomically)."""
        target = self._path(name)
        self.stat(name)

        def swap(partial: Path) -> str:
            os.replace(partial, target)
            return name

        with self._partial_then(name, swap) as pending:
            yield pending

    @contextmanager
    def _partial_then(self, name: str, publish: Callable[[Path], str]) -> Iterator[PendingFile]:
        """A hidden, locked partial file for ``name``; after a clean block it is fsynced, then ``publish``ed.

        ``publish(partial)`` gives it its final name and returns that name. Whatever
        happens, no partial file is left behind.
        """
        partial = self.directory / f".{name}{PARTIAL_MARKER}{uuid.uuid4().hex}"
        try:
            # Read back too: the service hashes the complete file before it is published.
            fh = os.fdopen(os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE), "w+b")
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
                pending.name = publish(partial)
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
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
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
