"""BackupService: the one place routes, CLI, scheduler and restore go to for backups.

Orchestration only: the archive format lives in ``archive``, the database's side
in ``dialects``, bytes and names in ``storage``, the one-at-a-time lock and
progress in ``jobs``.

Changes made for an ``actor`` (a person, the CLI, the scheduler) are audited as
theirs; the app's own clean-up (an unused safety backup) and set-up pass none.

Which files are listed backups is ``catalogue``'s rule (signed by this instance,
or accepted: a ``BackupRecord`` with ``accepted=True``); anything else in the store
is neither listed nor served. The record also keeps the SHA-256 of the whole file
as it was made or accepted (as stored: encrypted or not): verify and restore of a
listed backup refuse a file that differs.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from datetime import datetime, timezone
from typing import BinaryIO, Iterator

import orjson
from flask import current_app
from sqlalchemy import inspect, select
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import BackupJob, BackupRecord, data_tables, utcnow
from . import audit
from .archive import writer as archive, format
from .archive.encryption import Keyring
from .archive.summary import Summary
from .catalogue import NAME, Catalogue, backup_dict
from .dialects import dialect_for
from .provenance import app_info, schema_revision
from .jobs.runner import (JobHandle, JobWork, get_job, job_body, latest_active_job, live_job_dict,
                          recover_interrupted_jobs, run_job)
from .errors import BackupError, BackupNotFoundError, BadRequestError, database_message
from .malloc_tuning import keep_freed_buffers
from .storage import get_storage
from .storage.base import Storage, sha256_of

log = logging.getLogger(__name__)

def backup_name_candidates(created_at: datetime) -> Iterator[str]:
    """``cyberquest_backup_YYYYMMDD_HHMMSS.zip``, then ``…_2.zip``, ``…_3.zip`` … (UTC)."""
    stamp = created_at.astimezone(timezone.utc).strftime("%Y%m%d_%H%M%S")
    yield f"{format.FILENAME_PREFIX}{stamp}.zip"
    for n in range(2, 1000):
        yield f"{format.FILENAME_PREFIX}{stamp}_{n}.zip"


def _database_error(exc: SQLAlchemyError) -> BackupError:
    return BackupError(f"The database could not be read for the backup ({database_message(exc)}); "
                       "check that it is reachable and migrated (flask db upgrade), then try again.")


class BackupService:
    """Create, list, fetch, delete, pin and mark verified the backups of one app."""

    def __init__(self, app=None, storage: Storage | None = None):
        self.app = app or current_app._get_current_object()
        self._storage = storage

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = get_storage(self.app)
        return self._storage

    @property
    def signing_key(self) -> bytes:
        return format.signing_key(self.app.config)

    @property
    def keyring(self) -> Keyring:
        """``BACKUP_ENCRYPTION_KEY`` (new archives) and ``BACKUP_ENCRYPTION_OLD_KEYS`` (still read)."""
        return Keyring.from_config(self.app.config)

    @property
    def catalogue(self) -> Catalogue:
        """Which files of the store are listed backups, as this instance's keys see them."""
        return Catalogue(self.storage, self.signing_key, self.keyring)

    # --- creating ------------------------------------------------------------------

    def start_create(self, trigger: str, created_by: str | None, *, wait: bool = False,
                     actor: audit.Actor | None = None, progress=None) -> BackupJob:
        """Run ``create`` as a recorded job holding the one-at-a-time lock; the new backup is ``actor``'s to audit.

        Raises ``ConflictError`` at once when another backup or restore runs. With
        ``wait`` it returns the finished job (``result`` is the Backup) or raises the
        backup's error; otherwise it returns the queued job while the work goes on.
        ``progress(fraction, message)`` hears the job's progress reports (the CLI's lines).
        """
        self._check_trigger(trigger)
        work = JobWork("backup", {"trigger": trigger, "created_by": created_by,
                                  "actor": None if actor is None else asdict(actor)})
        return run_job("backup", created_by, work, exclusive=True, background=not wait, progress=progress)

    def create(self, trigger: str, created_by: str | None, progress=None) -> dict:
        """Write a new signed archive of every data table and return its Backup dict.

        Does not take the lock: callers outside a job use ``start_create``.
        ``progress(fraction, message)`` is called as tables are written. On any
        failure no archive is published and a ``BackupError`` says what to fix.
        """
        self._check_trigger(trigger)
        report = progress or (lambda fraction, message: None)
        report(0.0, "Starting the backup")
        keep_freed_buffers()
        created_at = utcnow()
        database = dialect_for(db.engine)
        storage = self.storage
        try:
            with storage.atomic_writer(backup_name_candidates(created_at)) as pending:
                with database.snapshot() as snapshot:
                    written = archive.write_archive(
                        pending.file, snapshot, data_tables(), created_at=created_at, created_by=created_by,
                        trigger=trigger, schema_revision=schema_revision(self.app),
                        app_info=app_info(database.name), signing_key=self.signing_key,
                        passphrase=self.keyring.current, progress=report)
                digest = pending.sha256()
        except SQLAlchemyError as exc:
            log.exception("backup failed while reading the database")
            raise _database_error(exc) from exc
        filename = pending.name
        entry = storage.stat(filename)
        summary = Summary(written.metadata, self.keyring.current is not None)
        self.catalogue.remember(entry, summary)
        record = self._record_archive(filename, digest)
        report(1.0, f"Created {filename}")
        log.info("backup %s created (%s records, trigger %s)", filename, written.metadata["total_records"], trigger)
        return backup_dict(entry, summary, True, record)

    def _record_archive(self, filename: str, sha256: str) -> BackupRecord | None:
        # The record keeps the archive listed even if the signing key changes later;
        # the archive is complete and signed without it, so a failure here is logged, not fatal.
        try:
            record = db.session.get(BackupRecord, filename) or BackupRecord(filename=filename)
            record.accepted = True
            record.sha256 = sha256
            db.session.add(record)
            db.session.commit()
            return record
        except SQLAlchemyError:
            db.session.rollback()
            log.warning("could not record backup %s in backup_records", filename, exc_info=True)
            return None

    @staticmethod
    def _check_trigger(trigger: str) -> None:
        if trigger not in format.TRIGGERS:
            raise BadRequestError(f"Unknown backup trigger {trigger!r}; use one of {', '.join(format.TRIGGERS)}.")

    # --- reading ---------------------------------------------------------------------

    def list(self) -> list[dict]:
        """Every listed backup, newest first."""
        records = {r.filename: r for r in db.session.execute(select(BackupRecord)).scalars()}
        return self.catalogue.listing(records)

    def get(self, filename: str) -> dict:
        """The listed backup named ``filename``; ``BackupNotFoundError`` for any other name."""
        if not isinstance(filename, str) or not NAME.fullmatch(filename):
            raise BackupNotFoundError(f"No backup is named {filename!r}.")
        backup = self.catalogue.backup(self.storage.stat(filename), db.session.get(BackupRecord, filename))
        if backup is None:
            raise BackupNotFoundError(f"No backup is named {filename!r}.")
        return backup

    def recorded_sha256(self, filename: str) -> str | None:
        """The hex SHA-256 recorded for a listed backup when it was made or accepted (None: not recorded)."""
        self.get(filename)
        record = db.session.get(BackupRecord, filename)
        return record.sha256 if record is not None else None

    def metadata(self, filename: str) -> dict:
        """The stored ``backup_metadata.json`` of a listed backup ({} when no known passphrase opens it)."""
        self.get(filename)
        summary = self.catalogue.summary(self.storage.stat(filename), fresh={})
        return (summary.metadata if summary is not None else None) or {}

    def open_for_download(self, filename: str, *, actor: audit.Actor) -> tuple[BinaryIO | str, dict]:
        """The listed backup to serve, and its Backup dict: an open binary file (the caller closes it),
        or, with ``BACKUP_S3_PRESIGNED_DOWNLOADS`` on a store that offers one, a short-lived URL
        (``BACKUP_S3_PRESIGNED_EXPIRY`` seconds) to redirect the client to.

        The download is audited before any byte is served or any URL handed out: an
        archive holds every password hash.
        """
        backup = self.get(filename)
        url = None
        if self.app.config.get("BACKUP_S3_PRESIGNED_DOWNLOADS"):
            url = self.storage.download_url(filename, self.app.config.get("BACKUP_S3_PRESIGNED_EXPIRY", 300))
        audit.record(actor, "backup.download", filename,
                     {"size_bytes": backup["size_bytes"], **({"presigned": True} if url else {})})
        return url or self.storage.open_read(filename), backup

    # --- changing --------------------------------------------------------------------

    def delete(self, filename: str, actor: audit.Actor | None = None, *, prune_reason: dict | None = None) -> str:
        """Delete a listed backup and what the app recorded about it; returns its name.

        Audited as ``actor``'s ``backup.delete``, or with a ``prune_reason`` (the
        retention rule's details) as ``backup.prune``.
        """
        backup = self.get(filename)
        self.storage.delete(filename)
        self.catalogue.forget(filename)
        record = db.session.get(BackupRecord, filename)
        if record is not None:
            db.session.delete(record)
            db.session.commit()
        if actor is not None:
            audit.record(actor, "backup.prune" if prune_reason is not None else "backup.delete", filename, {
                "created_at": backup["created_at"], "trigger": backup["trigger"], "size_bytes": backup["size_bytes"],
                **(prune_reason or {})})
        log.info("backup %s deleted", filename)
        return filename

    def toggle_pin(self, filename: str, actor: audit.Actor | None = None) -> dict:
        """Flip keep-forever on a listed backup (retention never deletes a pinned one); ``actor``'s pin or unpin."""
        self.get(filename)
        record = self._record_for(filename)
        record.pinned = not record.pinned
        db.session.commit()
        if actor is not None:
            audit.record(actor, "backup.pin" if record.pinned else "backup.unpin", filename)
        return self.get(filename)

    def record_verification(self, filename: str, ok: bool, details: dict | None = None,
                            sha256: str | None = None) -> dict:
        """Remember the outcome of verifying a listed backup (``verified`` in its Backup dict).

        ``sha256`` is the hash of the file as verified: recorded when the backup had
        none yet (one listed before hashes were recorded) and it verified.
        """
        self.get(filename)
        record = self._record_for(filename, sha256)
        if record.sha256 is None and ok and sha256:
            record.sha256 = sha256
        record.verified = bool(ok)
        record.verified_at = utcnow()
        record.verification = orjson.dumps(details, default=str).decode() if details is not None else None
        db.session.commit()
        return self.get(filename)

    def record_rewritten(self, filename: str, sha256: str) -> None:
        """Record the SHA-256 of a listed backup's file after it was rewritten in place (``rekey``)."""
        self._record_for(filename, sha256).sha256 = sha256
        db.session.commit()

    def _record_for(self, filename: str, sha256: str | None = None) -> BackupRecord:
        record = db.session.get(BackupRecord, filename)
        if record is None:
            # Only listed backups get here (signed by this instance): accepting one records its hash.
            if sha256 is None:
                with self.storage.open_read(filename) as fh:
                    sha256 = sha256_of(fh)
            record = BackupRecord(filename=filename, accepted=True, pinned=False, sha256=sha256)
            db.session.add(record)
        return record

    # --- jobs --------------------------------------------------------------------------

    @staticmethod
    def active_job() -> dict | None:
        """The queued or running backup/restore/verify job, with live progress, or None."""
        job = latest_active_job()
        return live_job_dict(job) if job is not None else None

    @staticmethod
    def recent_jobs(limit: int = 10) -> list[dict]:
        """The latest jobs of any kind, newest first (the page's history)."""
        rows = db.session.execute(select(BackupJob).order_by(BackupJob.created_at.desc()).limit(limit)).scalars()
        return [live_job_dict(job) for job in rows]

    @staticmethod
    def job(job_id: str) -> dict | None:
        """One job by id, with live progress, or None."""
        job = get_job(job_id)
        return live_job_dict(job) if job is not None else None


@job_body("backup")
def run_backup(app, handle: JobHandle, *, trigger: str, created_by: str | None, actor: dict | None = None) -> dict:
    """The backup job's body, in whichever process runs the job: a new archive, progress reported to the job.

    ``actor`` (an ``audit.Actor`` as plain data) is whom the new backup's audit entry names; None records none.
    """
    backup = BackupService(app).create(trigger, created_by, handle.progress)
    if actor is not None:
        audit.record(audit.Actor(**actor), "backup.create", backup["filename"], {
            "trigger": trigger, "size_bytes": backup["size_bytes"], "total_records": backup["total_records"]})
    return backup


def recover_after_crash(app) -> None:
    """At start-up: fail jobs whose process died and remove unfinished archive files.

    Does nothing (quietly) while the database is not migrated yet or not reachable,
    e.g. during ``flask db upgrade``.
    """
    with app.app_context():
        try:
            if inspect(db.engine).has_table(BackupJob.__tablename__):
                recover_interrupted_jobs()
        except SQLAlchemyError as exc:
            db.session.rollback()
            log.warning("could not check for interrupted jobs at start-up: %s", database_message(exc))
        try:
            storage = get_storage(app)
        except BackupError as exc:
            log.warning("could not clean up the backup store at start-up: %s", exc)
            return
    if storage.remote:
        # A store that has stopped answering would hold every command and worker start for its timeout.
        threading.Thread(target=_clean_up_store, args=(storage,), name="store-cleanup", daemon=True).start()
    else:
        _clean_up_store(storage)


def _clean_up_store(storage) -> None:
    try:
        storage.cleanup_partials()
    except BackupError as exc:
        log.warning("could not clean up the backup store at start-up: %s", exc)
