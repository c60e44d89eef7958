"""The System Backup's one exception hierarchy.

Each error carries the HTTP status the boundary turns it into; the CLI turns any
of them into one line on stderr and exit status 1.
"""
from __future__ import annotations


class BackupError(Exception):
    """Base of every System Backup failure; ``str(error)`` is one clear sentence."""

    status = 500

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.message = message
        self.extra = extra


class BadRequestError(BackupError):
    """The request itself is malformed: missing field, unknown mode, wrong confirmation."""

    status = 400


class BackupNotFoundError(BackupError):
    """No listed backup has that name."""

    status = 404


class ConflictError(BackupError):
    """Another backup or restore is running; ``extra["job"]`` describes it."""

    status = 409


class TooLargeError(BackupError):
    """The archive is larger than allowed, or decompresses past the limits."""

    status = 413


class ArchiveError(BackupError):
    """The file is not a valid backup: structure, checksums, signature, schema, types."""

    status = 422


class UnknownPassphraseError(ArchiveError):
    """The archive is encrypted with a passphrase that is neither the key nor an old key of this instance."""


class EncryptionError(BackupError):
    """This installation cannot encrypt (a broken crypto library, or a member came out in clear)."""

    status = 500


class RestoreError(BackupError):
    """The restore failed while writing and was rolled back."""

    status = 500


class StorageError(BackupError):
    """The backup store could not be read or written."""

    status = 500


def database_message(exc: BaseException) -> str:
    """The first line of a database error's message, for use inside a sentence.

    The driver's own message when SQLAlchemy wrapped it, at most 300 characters,
    without a final full stop.
    """
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300].rstrip(".")


class QueueUnavailableError(BackupError):
    """The job queue (Celery's broker) could not be reached, so the job was not queued."""

    status = 503
