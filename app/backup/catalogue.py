"""Which files in the store are listed backups, and what the list says of each (the Backup dict).

A file is listed when its name is ``cyberquest_backup_YYYYMMDD_HHMMSS[_N].zip``, its
metadata is readable, and it is signed with this instance's key or was accepted
(its ``BackupRecord`` says ``accepted``). An accepted archive encrypted with no
known passphrase is listed as ``encrypted`` with nothing else read from it.
Summaries (``archive.summary``) are cached per store location and keyring by file
name, size and mtime, so a listing reads only the files that changed. A file that
cannot be read at all (a damaged or planted one) is left out and logged once: one
bad file never breaks a listing.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

import orjson

from ..models import BackupRecord
from .archive import format
from .archive.encryption import Keyring
from .archive.summary import Summary, read_summary
from .errors import BackupError
from .storage.base import Storage, StoredFile

log = logging.getLogger(__name__)

# format.FILENAME_PATTERN with groups for the timestamp and the clash suffix.
NAME = re.compile(r"cyberquest_backup_(\d{8}_\d{6})(?:_(\d+))?\.zip")

# Summaries per store location and keyring, then per file name, with the size and mtime
# they were read at. None = unreadable.
_metadata_cache: dict[str, dict[str, tuple[int, int, Summary | None]]] = {}
_cache_stats = {"hits": 0, "misses": 0}
# (location, name, size, mtime) of the files already logged as unlistable.
_reported_unlistable: set[tuple[str, str, int, int]] = set()


def metadata_cache_info() -> dict:
    """How often listing found an archive's metadata in the cache (``hits``) or read it (``misses``)."""
    return dict(_cache_stats)


def _newest_first_key(name: str):
    match = NAME.fullmatch(name)
    return (match.group(1), int(match.group(2) or 1))


def _restore_seconds(record: BackupRecord | None) -> float | None:
    """How long the last verification's test restore took (``verify.verify_archive``), or None."""
    if record is None or not record.verification:
        return None
    seconds = orjson.loads(record.verification).get("restore_seconds")
    return seconds if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else None


def _int_or_none(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Catalogue:
    """The listed backups of one store, as this instance's signing key and keyring see them."""

    def __init__(self, storage: Storage, signing_key: bytes, keyring: Keyring):
        self.storage = storage
        self.signing_key = signing_key
        self.keyring = keyring
        # What a summary holds depends on the passphrases it was read with.
        self._cache_key = f"{storage.location}|{keyring.fingerprint}"

    @property
    def _cached(self) -> dict:
        return _metadata_cache.setdefault(self._cache_key, {})

    def listing(self, records: dict[str, BackupRecord]) -> list[dict]:
        """Every listed backup's Backup dict, newest first; ``records`` are the backup records by file name."""
        cached, fresh = self._cached, {}
        backups = []
        for entry in self.storage.list():
            if NAME.fullmatch(entry.name):
                backup = self.backup(entry, records.get(entry.name), cached, fresh)
                if backup is not None:
                    backups.append(backup)
        _metadata_cache[self._cache_key] = fresh
        backups.sort(key=lambda b: _newest_first_key(b["filename"]), reverse=True)
        return backups

    def backup(self, entry: StoredFile, record: BackupRecord | None, cached: dict | None = None,
               fresh: dict | None = None) -> dict | None:
        """The Backup dict of a stored file, or None when it is not listed (or cannot be read at all)."""
        cached = self._cached if cached is None else cached
        fresh = cached if fresh is None else fresh
        try:
            summary = self.summary(entry, cached, fresh)
            if summary is None:
                return None
            signed = summary.metadata is not None and format.signature_is_valid(summary.metadata, self.signing_key)
            if not (signed or (record is not None and record.accepted)):
                return None
            return backup_dict(entry, summary, signed, record)
        except Exception:  # a planted or damaged file: left out, so the listing still answers
            fresh[entry.name] = (entry.size, entry.mtime_ns, None)
            self._report_once(entry, "its metadata cannot be read", exc_info=True)
            return None

    def summary(self, entry: StoredFile, cached: dict | None = None, fresh: dict | None = None) -> Summary | None:
        """The ``Summary`` of a stored file (from the cache when unchanged), or None when it cannot be read."""
        cached = self._cached if cached is None else cached
        fresh = cached if fresh is None else fresh
        hit = cached.get(entry.name)
        if hit is not None and hit[0] == entry.size and hit[1] == entry.mtime_ns:
            _cache_stats["hits"] += 1
            fresh[entry.name] = hit
            return hit[2]
        _cache_stats["misses"] += 1
        try:
            with self.storage.open_parts(entry) as fh:
                summary = read_summary(fh, self.keyring)
        except BackupError as exc:
            self._report_once(entry, str(exc))
            summary = None
        fresh[entry.name] = (entry.size, entry.mtime_ns, summary)
        return summary

    def remember(self, entry: StoredFile, summary: Summary) -> None:
        """Cache the summary of a file this instance just wrote."""
        self._cached[entry.name] = (entry.size, entry.mtime_ns, summary)

    def forget(self, name: str) -> None:
        """Drop a deleted file from the cache."""
        self._cached.pop(name, None)

    def _report_once(self, entry: StoredFile, why: str, exc_info: bool = False) -> None:
        seen = (self.storage.location, entry.name, entry.size, entry.mtime_ns)
        if seen not in _reported_unlistable:
            _reported_unlistable.add(seen)
            log.warning("not listing %s: %s", entry.name, why, exc_info=exc_info)


def backup_dict(entry: StoredFile, summary: Summary, signed: bool, record: BackupRecord | None) -> dict:
    """The contract's Backup for a stored file, its summary and record (odd metadata values read as absent)."""
    metadata = summary.metadata or {}
    counts = metadata.get("record_counts")
    if not isinstance(counts, dict) or not all(_int_or_none(v) is not None for v in counts.values()):
        counts = {}
    total = _int_or_none(metadata.get("total_records"))
    created_at = metadata.get("created_at")
    if not isinstance(created_at, str):
        created_at = datetime.fromtimestamp(entry.mtime, timezone.utc).isoformat()
    created_by = metadata.get("created_by")
    trigger = metadata.get("trigger")
    return {
        "filename": entry.name,
        "size_bytes": entry.size,
        "created_at": created_at,
        "created_by": created_by if isinstance(created_by, str) else None,
        "trigger": trigger if isinstance(trigger, str) else None,
        "record_counts": counts,
        "total_records": total if total is not None else sum(counts.values()),
        "signed": signed,
        "verified": record.verified if record is not None else None,
        "pinned": bool(record is not None and record.pinned),
        "encrypted": summary.encrypted,
        "restore_seconds": _restore_seconds(record),
    }
