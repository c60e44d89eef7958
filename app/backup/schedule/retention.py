"""Which backups a retention policy keeps: a pure function over backup descriptors.

A backup is kept when at least one rule keeps it; every other backup is deleted.

Protections (always kept):
  * a pinned backup;
  * the newest successful backup (the newest one whose verification did not fail),
    and the newest verified one;
  * the safety backup taken before a restore, while it is younger than ``safety_days``.

Keep rules:
  * age: any backup younger than ``retention_days``;
  * count: the newest ``keep_last`` verified backups;
  * grandfather-father-son: the newest verified backup of each of the last ``daily``
    calendar days, ``weekly`` ISO weeks and ``monthly`` months (counted back from now).

Only *verified* backups count toward keep_last and the GFS layers: a failed or
never-verified backup can never take the place of a good one.
"""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone

from flask import current_app

from ...extensions import db
from ...models import BackupRecord
from ..audit import Actor
from ..jobs.lock import acquire_exclusive, release_exclusive
from ..errors import BackupNotFoundError
from ..service import BackupService


@dataclass(frozen=True)
class BackupDescriptor:
    """What retention needs to know about one backup."""

    filename: str
    created_at: datetime
    trigger: str = "manual"
    pinned: bool = False
    verified: bool | None = None

    @property
    def good(self) -> bool:
        """Verified: it may count toward what is kept."""
        return self.verified is True

    @property
    def failed(self) -> bool:
        """Its verification failed."""
        return self.verified is False

    @classmethod
    def from_backup(cls, backup: dict) -> "BackupDescriptor":
        """From the contract's Backup object (``created_at`` as ISO text or datetime)."""
        created_at = backup["created_at"]
        if isinstance(created_at, str):
            created_at = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=timezone.utc)
        return cls(filename=backup["filename"], created_at=created_at.astimezone(timezone.utc),
                   trigger=backup.get("trigger") or "manual", pinned=bool(backup.get("pinned")),
                   verified=backup.get("verified"))


@dataclass(frozen=True)
class RetentionPolicy:
    """The numbers of a retention policy."""

    retention_days: int = 30
    keep_last: int = 7
    daily: int = 7
    weekly: int = 4
    monthly: int = 12
    safety_days: int = 7

    def describe(self) -> str:
        """The policy in one line, for audit entries and e-mails."""
        return (f"keep {self.retention_days} days, the last {self.keep_last} verified, "
                f"{self.daily} daily / {self.weekly} weekly / {self.monthly} monthly")


@dataclass
class RetentionPlan:
    """The outcome: why each kept backup is kept, and which backups go (newest first)."""

    keep: dict[str, list[str]] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {"keep": self.keep, "delete": list(self.delete)}


def _week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def plan_retention(backups: list[BackupDescriptor], policy: RetentionPolicy, now: datetime) -> RetentionPlan:
    """Decide, for the given backups at ``now``, which to keep (with reasons) and which to delete.

    Deterministic: the same backups, policy and ``now`` always give the same plan,
    which is what makes a dry run list exactly what a real prune deletes.
    """
    now = now.astimezone(timezone.utc)
    newest_first = sorted(backups, key=lambda b: (b.created_at, b.filename), reverse=True)
    reasons: dict[str, list[str]] = {backup.filename: [] for backup in newest_first}

    def keep(backup: BackupDescriptor, reason: str) -> None:
        reasons[backup.filename].append(reason)

    newest_successful = next((b for b in newest_first if not b.failed), None)
    if newest_successful is not None:
        keep(newest_successful, "newest successful backup")
    newest_verified = next((b for b in newest_first if b.good), None)
    if newest_verified is not None and newest_verified is not newest_successful:
        keep(newest_verified, "newest verified backup")

    for backup in newest_first:
        age = now - backup.created_at
        if backup.pinned:
            keep(backup, "pinned")
        if backup.trigger == "pre-restore" and age < timedelta(days=policy.safety_days):
            keep(backup, f"safety backup of a restore, younger than {_days(policy.safety_days)}")
        if age < timedelta(days=policy.retention_days):
            keep(backup, f"younger than {_days(policy.retention_days)}")

    good = [b for b in newest_first if b.good]
    for backup in good[:policy.keep_last]:
        keep(backup, f"one of the newest {policy.keep_last} verified backups")

    today = now.date()
    layers = (
        ("daily", policy.daily, lambda d: d, lambda: {today - timedelta(days=i) for i in range(policy.daily)}),
        ("weekly", policy.weekly, _week_start,
         lambda: {_week_start(today) - timedelta(weeks=i) for i in range(policy.weekly)}),
        ("monthly", policy.monthly, _month_index,
         lambda: {_month_index(today) - i for i in range(policy.monthly)}),
    )
    for label, count, period_of, recent_periods in layers:
        if count <= 0:
            continue
        wanted = recent_periods()
        seen: set = set()
        for backup in good:  # newest first: the first one met in a period is its newest
            period = period_of(backup.created_at.date())
            if period in wanted and period not in seen:
                seen.add(period)
                keep(backup, f"{label} ({_period_label(label, period)})")

    plan = RetentionPlan()
    for backup in newest_first:
        if reasons[backup.filename]:
            plan.keep[backup.filename] = reasons[backup.filename]
        else:
            plan.delete.append(backup.filename)
    return plan


def _days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"


def _period_label(label: str, period) -> str:
    if label == "monthly":
        year, month = divmod(period, 12)
        return f"{year:04d}-{month + 1:02d}"
    if label == "weekly":
        year, week, _ = period.isocalendar()
        return f"{year}-W{week:02d}"
    return period.isoformat()


# --- Applying a policy to the backup store --------------------------------------------
# Everything above is pure; below, the plan meets the store, the lock and the audit log.

@dataclass
class PruneResult:
    """What a prune deleted (or, in a dry run, would delete) and what it kept, with reasons."""

    dry_run: bool
    deleted: list[str]
    kept: dict[str, list[str]]
    policy: RetentionPolicy

    def to_dict(self) -> dict:
        """JSON-able form (``flask backup prune --json``)."""
        return {"dry_run": self.dry_run, "deleted": list(self.deleted), "kept": self.kept,
                "policy": asdict(self.policy)}


def policy_for(settings) -> RetentionPolicy:
    """The policy of the stored schedule; GFS numbers from ``BACKUP_KEEP_DAILY/WEEKLY/MONTHLY``."""
    config = current_app.config
    return RetentionPolicy(retention_days=settings.effective_retention_days, keep_last=settings.keep_last,
                           daily=config["BACKUP_KEEP_DAILY"],
                           weekly=config["BACKUP_KEEP_WEEKLY"],
                           monthly=config["BACKUP_KEEP_MONTHLY"])


def _current_plan(service, policy: RetentionPolicy, now: datetime) -> tuple[RetentionPlan, dict[str, dict]]:
    backups = {b["filename"]: b for b in service.list()}
    plan = plan_retention([BackupDescriptor.from_backup(b) for b in backups.values()], policy, now)
    return plan, backups


def prune(policy: RetentionPolicy, now: datetime, *, dry_run: bool, actor: Actor | None) -> PruneResult:
    """Delete every backup the policy does not keep (or only list them with ``dry_run``).

    A real prune holds the one-at-a-time lock (``ConflictError`` while a backup or
    restore runs), plans again under it, re-checks each backup's pin right before
    deleting it, and writes one ``audit_log`` row per deletion. The dry run lists
    exactly what a real prune started at the same moment would delete.
    """
    service = BackupService()
    if dry_run:
        plan, _ = _current_plan(service, policy, now)
        return PruneResult(True, plan.delete, plan.keep, policy)

    lock_id = str(uuid.uuid4())
    acquire_exclusive(lock_id)
    deleted: list[str] = []
    try:
        plan, backups = _current_plan(service, policy, now)
        for filename in plan.delete:
            record = db.session.get(BackupRecord, filename, populate_existing=True)
            if record is not None and record.pinned:
                plan.keep[filename] = ["pinned"]  # pinned after the plan was made
                continue
            try:
                service.delete(filename, actor, prune_reason={
                    "reason": "kept by none of the retention rules", "policy": policy.describe(),
                    "verified": backups[filename]["verified"]})
            except BackupNotFoundError:
                continue  # already gone (another prune, or an admin)
            deleted.append(filename)
    finally:
        release_exclusive(lock_id)
    return PruneResult(False, deleted, plan.keep, policy)
