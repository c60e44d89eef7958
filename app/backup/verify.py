"""Verifying an archive: the recorded hash, structure, checksums, signature, and a test restore.

A listed backup must first be byte for byte the file recorded when it was made or
accepted (its SHA-256). A signature that is present but does not match this
instance's key fails the verification whatever ``trust_unsigned`` says (trust only
excuses an archive that carries none). The test restore is a real replace restore
(the same code path as ``restore_archive``) into a throwaway SQLite file created
from this app's models, so every row is type-checked, every foreign key resolved
and every row count compared with the metadata, without touching the live database.

Verification is a ``verify`` job, one at a time (its own lock, ``VERIFY_LOCK``): a
second one while one runs is refused with 409. The web face runs it in the
background (``start_verify``) and may wait for it; the CLI and the scheduler run it
in their own thread.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import BackupJob, data_tables, utcnow
from . import audit
from .audit import Actor
from .dialects import dialect_for
from .jobs.lock import VERIFY_LOCK, refuse_while_locked
from .jobs.runner import JobHandle, JobWork, job_body, run_job
from .errors import BackupError
from .restore.engine import restore_archive
from .restore.options import RestoreOptions
from .restore.plan import RestorePlan, plan_restore
from .restore_service import ArchiveSource, listed_source, open_archive
from .service import BackupService
from .provenance import known_revisions

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]


def verify_archive(app, source: ArchiveSource, *, trust_unsigned: bool = False,
                   progress: ProgressCallback | None = None) -> dict:
    """Check ``source`` thoroughly and return the verification (never raises for a bad archive).

    ``ok`` is true when a listed backup is the file recorded (``sha256``), the
    archive is well formed, its checksums match, it is signed by this instance (or
    carries no signature and ``trust_unsigned``), and a test restore into a scratch
    database holds exactly the rows its metadata counts. ``restore_seconds`` is how
    long that test restore took (None when it did not run to its end).
    """
    report = progress or (lambda fraction, message: None)
    verification = {
        "ok": False,
        "filename": source.label,
        "checked_at": utcnow().isoformat(),
        "sha256": "not checked" if source.listed_name is not None else "not listed",
        "checksums": "not checked",
        "signature": "not checked",
        "test_restore": None,
        "restore_seconds": None,
        "record_counts": {},
        "error": None,
    }
    problems: list[str] = []
    try:
        report(0.0, "Checking the archive")
        with open_archive(app, source, trust_unsigned=True) as archive:
            if source.listed_name is not None:
                verification["sha256"] = "ok" if source.recorded_sha256 else "not recorded"
            if archive.legacy:
                verification["signature"] = "absent"
            elif archive.signed:
                verification["signature"] = "valid"
            else:
                verification["signature"] = "invalid" if "signature" in archive.metadata else "absent"
            if verification["signature"] == "invalid":
                problems.append("its signature does not match this instance's key")
            elif not archive.signed and not trust_unsigned:
                problems.append("it is not signed by this instance")
            verification["checksums"] = "absent" if archive.checksums is None else "not checked"
            options = RestoreOptions("replace", trust_unsigned=True)
            plan = plan_restore(archive, options, known_revisions(app))
            started = time.monotonic()
            verification["test_restore"] = _test_restore(archive, options, plan, report)
            verification["restore_seconds"] = round(time.monotonic() - started, 3)
            if archive.checksums is not None:
                verification["checksums"] = "ok"
            verification["record_counts"] = {t: c["restored"] for t, c in verification["test_restore"].items()}
            mismatched = [t for t, c in verification["test_restore"].items() if c["expected"] != c["restored"]]
            if mismatched:
                problems.append("the test restore holds other row counts than the metadata for "
                                + ", ".join(mismatched))
    except BackupError as exc:
        if source.tampered:
            verification["sha256"] = "failed"
        elif "checksum" in exc.message:
            verification["checksums"] = "failed"
        problems.insert(0, exc.message.rstrip("."))
    if problems:
        verification["error"] = "; ".join(problems) + "."
    else:
        verification["ok"] = True
    report(1.0, "Verified" if verification["ok"] else "Verification failed")
    return verification


def _test_restore(archive, options: RestoreOptions, plan: RestorePlan, report: ProgressCallback) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="cyberquest-verify-"))
    engine = sa.create_engine(f"sqlite:///{scratch / 'scratch.db'}", poolclass=sa.pool.NullPool)
    try:
        db.metadata.create_all(engine)
        result = restore_archive(archive, engine, options, plan=plan,
                                 progress=lambda fraction, message: report(fraction * 0.95, message))
        with engine.connect() as conn:
            counts = {str(t.name): conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                      for t in data_tables() if str(t.name) in result["tables"]}
        expected = archive.record_counts or {t: c["inserted"] for t, c in result["tables"].items()}
        return {table: {"expected": expected.get(table, 0), "restored": counts[table]} for table in counts}
    finally:
        engine.dispose()
        shutil.rmtree(scratch, ignore_errors=True)


@job_body("verify")
def run_verify(app, handle: JobHandle, *, source: dict, trust_unsigned: bool, actor: dict) -> dict:
    """The verify job's body, in whichever process runs the job: the source and actor rebuilt from plain data.

    The outcome of a listed backup is recorded on it (with the hash of the file as
    verified), and the verification is audited as ``actor``'s.
    """
    archive_source = ArchiveSource(**source)
    verification = verify_archive(app, archive_source, trust_unsigned=trust_unsigned, progress=handle.progress)
    if archive_source.listed_name is not None:
        BackupService(app).record_verification(archive_source.listed_name, verification["ok"], verification,
                                               sha256=archive_source.opened_sha256)
    audit.record(Actor(**actor), "backup.verify", archive_source.label,
                 {key: verification[key] for key in ("ok", "sha256", "checksums", "signature", "error")})
    return verification


def verify_listed_backup(filename: str, *, actor: Actor) -> dict:
    """Verify a listed backup as a ``verify`` job in this thread and remember the outcome; 404 for other names."""
    return verify_source(listed_source(filename), actor=actor)


def verify_source(source: ArchiveSource, *, actor: Actor, trust_unsigned: bool = False,
                  progress: ProgressCallback | None = None) -> dict:
    """Verify any archive (a listed backup or a file) as a ``verify`` job in this thread, audited; records listed ones."""
    job = start_verify(source, actor=actor, trust_unsigned=trust_unsigned, background=False, progress=progress)
    return BackupService.job(job.id)["result"]


def start_verify(source: ArchiveSource, *, actor: Actor, trust_unsigned: bool = False, background: bool,
                 progress: ProgressCallback | None = None) -> BackupJob:
    """Start verifying ``source`` as a ``verify`` job and return it (finished unless ``background``).

    One verification runs at a time: ``ConflictError`` (409, carrying the running
    job) otherwise. The outcome of a listed backup is recorded on it by the job.
    """
    app = current_app._get_current_object()
    if dialect_for(db.engine).restore_locks_database:
        # A restore holds the write lock: the verify job could not even be recorded.
        refuse_while_locked(kinds=("restore",))
    trusted = trust_unsigned
    if source.listed_name is not None:
        trusted = trusted or not BackupService(app).get(source.listed_name)["signed"]
    work = JobWork("verify", {"source": asdict(source), "trust_unsigned": trusted, "actor": asdict(actor)})
    return run_job("verify", actor.username, work, exclusive=True, background=background, progress=progress,
                   lock_name=VERIFY_LOCK)
