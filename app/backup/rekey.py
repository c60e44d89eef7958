"""Key rotation: every listed archive re-encrypted to the current ``BACKUP_ENCRYPTION_KEY`` (``flask backup rekey``).

Each listed archive not yet under the current key (clear ones included) must be
the file recorded (its SHA-256); it is opened with the keyring, so its
authentication codes, CRCs and checksums are checked as it is read; written again beside itself under the current key
(``archive.rewrite``); and swapped in by ``Storage.replacing_writer`` in one
atomic step. A crash at any moment leaves the old file whole and listed. The
members' content is unchanged, so the checksums and the signature still hold;
the new file's SHA-256 is recorded on the backup (so verify and restore accept the
new file) and goes into the ``backup.rekey`` audit entry. Each archive
is rewritten holding the one-at-a-time lock, so no backup, restore or prune
touches it meanwhile.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Iterator

from . import audit
from .archive.encryption import Keyring
from .archive.limits import Limits
from .archive.reader import Archive
from .archive.rewrite import rewrite_archive
from .errors import BackupError, BadRequestError
from .jobs.lock import acquire_exclusive, release_exclusive
from .restore_service import listed_source
from .service import BackupService

log = logging.getLogger(__name__)

REKEYED, ENCRYPTED, CURRENT, FAILED = "re-encrypted", "encrypted", "already current", "failed"


@dataclass(frozen=True)
class RekeyOutcome:
    """What the rekey did to one archive (``action``), or in a dry run would do (``dry_run``)."""

    filename: str
    action: str
    detail: str = ""
    dry_run: bool = False


def rekey_archives(app, *, dry_run: bool = False, actor: str = "cli") -> Iterator[RekeyOutcome]:
    """Re-encrypt every listed archive to the current key, oldest first, yielding one outcome per archive.

    An archive that cannot be read (encrypted with an unknown passphrase, damaged)
    is left as it is and reported ``failed``. Raises ``BadRequestError`` when no
    ``BACKUP_ENCRYPTION_KEY`` is set, and ``ConflictError`` when a backup or restore
    holds the lock (the archives done so far stay done).
    """
    keyring = Keyring.from_config(app.config)
    if keyring.current is None:
        raise BadRequestError("BACKUP_ENCRYPTION_KEY is not set, so there is no key to re-encrypt the archives to.")
    service = BackupService(app)
    for backup in reversed(service.list()):
        yield _rekey(service, backup["filename"], keyring, dry_run, actor)


def _rekey(service: BackupService, filename: str, keyring: Keyring, dry_run: bool, actor: str) -> RekeyOutcome:
    lock_id = str(uuid.uuid4())
    if not dry_run:
        # Before the file is opened: a prune must not delete it while its replacement is written.
        acquire_exclusive(lock_id)
    try:
        with service.storage.open_read(filename) as fh:
            # A file changed in the store is refused, not re-encrypted and recorded as if it were the backup.
            listed_source(filename).check_recorded_hash(fh)
            with Archive.open(fh, limits=Limits.from_config(service.app.config), signing_key=service.signing_key,
                              trust_unsigned=True, keyring=keyring) as archive:
                if archive.passphrase == keyring.current:
                    return RekeyOutcome(filename, CURRENT, dry_run=dry_run)
                action = REKEYED if archive.encrypted else ENCRYPTED
                if dry_run:
                    return RekeyOutcome(filename, action, dry_run=True)
                with service.storage.replacing_writer(filename) as pending:
                    rewrite_archive(archive, pending.file, keyring.current)
                    sha256 = pending.sha256()
                # Right after the swap, still holding the lock: from now on the new file is the one recorded.
                service.record_rewritten(filename, sha256)
    except BackupError as exc:
        log.info("could not re-encrypt %s: %s", filename, exc)
        return RekeyOutcome(filename, FAILED, exc.message, dry_run=dry_run)
    finally:
        if not dry_run:
            release_exclusive(lock_id)
    audit.record(actor, "backup.rekey", filename, {"action": action, "sha256": sha256})
    log.info("backup %s %s to the current key", filename, action)
    return RekeyOutcome(filename, action)
