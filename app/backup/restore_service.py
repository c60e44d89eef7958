"""Running restores for the routes and the CLI: where the archive comes from, the job, the safety backup.

Orchestration only: the archive is read by ``reader``, written by ``restore``;
backups are made through ``BackupService``; the one-at-a-time lock and progress
come from ``jobs``.

Order of a restore: the request is validated (a listed backup's recorded SHA-256,
options, archive structure, metadata, signature, schema, and a replace's orphan
check) before any job exists, so most mistakes answer at once with
400/404/413/422 and none costs a backup; the plan this makes is the one the
restore follows. Then, as a job holding the lock:
the safety backup (``trigger`` pre-restore), the restore in one transaction, an
audit entry. If the restore is refused or fails, the safety backup it took is
deleted again: the database was rolled back, so the request changed nothing.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import BinaryIO, Callable, Iterator

import orjson
from flask import current_app

from ..extensions import db
from ..models import User, password_fingerprint
from . import audit
from .archive import format
from .audit import Actor
from .jobs.lock import refuse_while_locked
from .jobs.runner import JobHandle, JobWork, job_body, run_job
from .errors import ArchiveError, BackupError, BackupNotFoundError, BadRequestError, TooLargeError
from .archive.encryption import Keyring
from .archive.limits import Limits
from .archive.reader import Archive
from .units import human_size
from .restore.engine import check_before_writing, restore_archive
from .restore.hooks import replace_hooks
from .restore.options import RestoreOptions
from .restore.plan import RestorePlan, plan_restore
from .service import BackupService
from .provenance import known_revisions
from .storage.base import sha256_of

log = logging.getLogger(__name__)

SAFETY_BACKUP_SHARE = 0.3  # of the progress bar, when a safety backup is taken first
COPY_CHUNK = 1024 * 1024


@dataclass
class ArchiveSource:
    """An archive to read: a listed backup (by name) or a local file (maybe a temporary upload).

    A listed backup carries the SHA-256 recorded when it was made or accepted
    (``recorded_sha256``, None for one listed before hashes were recorded) and,
    once opened, the hash of the file as it was read (``opened_sha256``).
    ``sha256`` is the digest (hex) of an upload, computed on the way in.
    """

    label: str
    listed_name: str | None = None
    path: str | None = None
    temporary: bool = False
    sha256: str | None = None
    recorded_sha256: str | None = None
    opened_sha256: str | None = None

    def open(self, app) -> BinaryIO:
        """A seekable binary file of the archive; the caller closes it."""
        if self.listed_name is not None:
            return BackupService(app).storage.open_read(self.listed_name)
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            raise BackupNotFoundError(f"No file named {self.path!r}.") from None
        except OSError as exc:
            raise BackupError(f"The file {self.path} cannot be read ({exc.strerror}).") from exc

    def check_recorded_hash(self, fh: BinaryIO) -> None:
        """A listed backup: hash the open file and refuse it (422) when it is not the file recorded."""
        if self.listed_name is None:
            return
        self.opened_sha256 = sha256_of(fh)
        if self.tampered:
            raise ArchiveError(f"{self.label} is not the file that was recorded when it was made or accepted "
                               "(its SHA-256 differs): it was changed or replaced in the store.")

    @property
    def tampered(self) -> bool:
        """Whether the file last opened differs from the one recorded."""
        return (self.recorded_sha256 is not None and self.opened_sha256 is not None
                and self.opened_sha256 != self.recorded_sha256)

    def discard(self) -> None:
        """Remove the file if it is a temporary upload."""
        if self.temporary and self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def listed_source(filename: str) -> ArchiveSource:
    """A listed backup; ``BackupNotFoundError`` (404) for any other name."""
    service = BackupService()
    backup = service.get(filename)
    return ArchiveSource(label=backup["filename"], listed_name=backup["filename"],
                         recorded_sha256=service.recorded_sha256(filename))


def cli_source(name_or_path: str) -> ArchiveSource:
    """A listed backup by name, or else a file by path (the CLI accepts both)."""
    try:
        return listed_source(name_or_path)
    except BackupNotFoundError:
        pass
    if os.path.isfile(name_or_path):
        return ArchiveSource(label=os.path.basename(name_or_path), path=os.path.abspath(name_or_path))
    raise BackupNotFoundError(f"No listed backup and no file is named {name_or_path!r}.")


def upload_source(stream: BinaryIO, filename: str | None, app=None) -> ArchiveSource:
    """Copy an uploaded archive (its binary stream, and the file name the client gave) to a temporary file, in chunks.

    Raises ``BadRequestError`` for an empty upload and ``TooLargeError`` past
    ``MAX_BACKUP_SIZE``; the temporary file is removed in either case.
    """
    app = app or current_app
    limit = Limits.from_config(app.config).max_size
    directory = app.config.get("BACKUP_UPLOAD_DIRECTORY")
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    # mkstemp creates the file 0600: an upload holds every account's password hash.
    fd, path = tempfile.mkstemp(prefix="cyberquest-restore-", suffix=".zip", dir=directory)
    os.close(fd)
    size = 0
    digest = hashlib.sha256()
    try:
        with open(path, "wb") as out:
            while True:
                chunk = stream.read(COPY_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise TooLargeError(f"The uploaded file is larger than MAX_BACKUP_SIZE ({human_size(limit)}).")
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise BadRequestError("The uploaded backup file is empty.")
    except BaseException:
        os.unlink(path)
        raise
    label = os.path.basename(filename or "") or "uploaded archive"
    return ArchiveSource(label=label, path=path, temporary=True, sha256=digest.hexdigest())


@contextmanager
def open_archive(app, source: ArchiveSource, trust_unsigned: bool) -> Iterator[Archive]:
    """The source opened and validated up to its rows (413/422 otherwise; a listed backup must be the file recorded)."""
    fh = source.open(app)
    try:
        source.check_recorded_hash(fh)
        with Archive.open(fh, limits=Limits.from_config(app.config), signing_key=format.signing_key(app.config),
                          trust_unsigned=trust_unsigned, keyring=Keyring.from_config(app.config)) as archive:
            archive.label = source.label
            yield archive
    finally:
        fh.close()


def check_request(app, source: ArchiveSource, options: RestoreOptions) -> None:
    """Refuse, before any job or write, what can be refused: options, archive, metadata, signature, schema,
    and what the current rows forbid.

    The plan made here is not kept: the job, which may run in a Celery worker, plans once
    again from the same source (``run_restore``).
    """
    options.validate()
    with open_archive(app, source, options.trust_unsigned) as archive:
        plan = plan_restore(archive, options, known_revisions(app))
    check_before_writing(db.engine, plan, options)


def start_restore(source: ArchiveSource, options: RestoreOptions, *, actor: Actor, wait: bool,
                  progress: Callable[[float, str], None] | None = None) -> dict:
    """Validate the request, then restore as a job holding the one-at-a-time lock.

    Returns ``{"preview": Result}`` for a dry run, ``{"restore": Result}`` when
    ``wait``, else ``{"job": Job}`` at once while the restore runs in the
    background. Raises the ``BackupError`` that says why a request was refused
    (a running job gives ``ConflictError`` carrying it). The source is discarded
    when the restore is over. A restore that writes is audited as ``actor``'s.
    """
    app = current_app._get_current_object()
    background = not (wait or options.dry_run)
    handed_off = False
    try:
        # Early, so a locked instance does not first validate a large upload.
        refuse_while_locked()
        check_request(app, source, options)
        work = JobWork("restore", {"source": asdict(source), "options": asdict(options), "actor": asdict(actor),
                                   "discard_source": background})
        job = run_job("restore", actor.username, work, exclusive=True, background=background, progress=progress)
        handed_off = background
    finally:
        if not handed_off:
            source.discard()
    if background:
        return {"job": BackupService.job(job.id)}
    result = orjson.loads(job.result) if job.result else None
    return {"preview": result} if options.dry_run else {"restore": result}


@job_body("restore")
def run_restore(app, handle: JobHandle, *, source: dict, options: dict, actor: dict,
                discard_source: bool) -> dict:
    """The restore job's body, in whichever process runs the job: source, options and actor rebuilt from plain data.

    The plan is made here once and passed along: the one ``check_request`` made for the early
    refusal lives in the requesting process, and a Celery worker is another one.
    """
    archive_source = ArchiveSource(**source)
    tables = options.get("tables")
    restore_options = RestoreOptions(**{**options, "tables": tables and tuple(tables)})
    try:
        with open_archive(app, archive_source, restore_options.trust_unsigned) as archive:
            plan = plan_restore(archive, restore_options, known_revisions(app))
        return perform_restore(app, archive_source, restore_options, plan, actor=Actor(**actor),
                               progress=handle.progress)
    finally:
        if discard_source:
            archive_source.discard()


def perform_restore(app, source: ArchiveSource, options: RestoreOptions, plan: RestorePlan, *, actor: Actor,
                    progress: Callable[[float, str], None]) -> dict:
    """The restore itself (inside a job): safety backup, then the one-transaction restore; returns the Result.

    ``plan`` is the plan of the same source and options (``plan_restore``).
    """
    service = BackupService(app)
    safety = None
    share = 0.0
    if not options.dry_run:
        share = SAFETY_BACKUP_SHARE
        progress(0.0, "Taking the safety backup")
        backup = service.create("pre-restore", actor.username,
                                lambda fraction, message: progress(fraction * share, message))
        safety = backup["filename"]
    try:
        with open_archive(app, source, options.trust_unsigned) as archive:
            signed = archive.signed
            result = restore_archive(archive, db.engine, options, plan=plan, hooks=replace_hooks(app),
                                     progress=lambda fraction, message: progress(share + fraction * (1 - share),
                                                                                 message))
    except BaseException:
        if safety is not None:
            _discard_safety_backup(service, safety)
        raise
    result["safety_backup"] = safety
    if not options.dry_run:
        _audit(actor, source, options, signed, result)
    log.info("restore (%s%s) from %s by %s: %s", options.mode, ", dry run" if options.dry_run else "",
             source.label, actor.name, result["tables"])
    return result


def _discard_safety_backup(service: BackupService, filename: str) -> None:
    # The restore changed nothing, so the backup of the unchanged database is redundant.
    try:
        db.session.rollback()
        service.delete(filename)
    except Exception:  # best effort: a leftover safety backup is harmless
        log.warning("could not delete the unused safety backup %s", filename, exc_info=True)


def _audit(actor: Actor, source: ArchiveSource, options: RestoreOptions, signed: bool, result: dict) -> None:
    try:
        db.session.rollback()
        audit.record(actor, "backup.restore", source.label, {
            "mode": options.mode, "trust_unsigned": options.trust_unsigned, "signed": signed,
            "sha256": source.sha256, "source": "listed" if source.listed_name else "file",
            "on_conflict": options.on_conflict, "tables": result["tables"], "safety_backup": result["safety_backup"],
            "security_changes": result["security_changes"], "neutralised_tokens": result["neutralised_tokens"]})
    except Exception:  # the restore is committed; a missing audit line must not turn it into a failure
        db.session.rollback()
        log.warning("could not write the audit entry of a restore", exc_info=True)



def session_still_valid(user_id: int, fingerprint: str) -> bool:
    """True when a browser session's account survived the restore: same id, same password, still an active admin.

    Takes the session's user id and password fingerprint (``models.password_fingerprint``)
    as read before the restore, which may have deleted the row behind ``current_user``.
    """
    db.session.rollback()
    user = db.session.get(User, user_id, populate_existing=True)
    return (user is not None and user.is_active and user.is_admin
            and password_fingerprint(user.password_hash) == fingerprint)
