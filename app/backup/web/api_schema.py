"""The admin API's JSON as types: msgspec Structs, from which the OpenAPI document takes its schemas.

Answers (Backup, Job, Result, Verification, Schedule, Health, AuditEntry, Error and
the envelopes around them) forbid unknown fields, so a field the code starts to
send without adding it here fails the tests that check real answers against
these types. Request fields (``…Fields``) describe what the forms read, from a
form post, a multipart upload or a JSON body alike. A field the contract names
that some answers do not carry yet has a default (``UNSET``: left out).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ..audit import MAX_PAGE_SIZE, PAGE_SIZE

Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
Flag = Annotated[bool | Literal["1", "0", "true", "false", "yes", "no", "on", "off"],
                 Meta(description="a flag: 1/true/yes/on or 0/false/no/off")]
Count = Annotated[int, Meta(ge=0)]
Holder = Annotated[dict[str, Any], Meta(description="409: the Job holding the lock (only its id when the holder is "
                                                    "maintenance, such as a prune)")]


class Answer(msgspec.Struct, forbid_unknown_fields=True):
    """Base of the answers' types: strict about their fields."""


# --- Backups ---------------------------------------------------------------------------

class Backup(Answer):
    """A listed backup archive."""

    filename: str
    size_bytes: Count
    created_at: Timestamp
    created_by: str | None
    trigger: Literal["manual", "cli", "scheduled", "pre-restore"] | None
    record_counts: dict[str, Count]
    total_records: Count
    signed: bool
    verified: bool | None
    pinned: bool
    encrypted: bool
    restore_seconds: float | None


class Job(Answer):
    """A background backup, restore or verify run; ``result`` is its Backup, Result or Verification when done."""

    id: str
    kind: Literal["backup", "restore", "verify"]
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: Annotated[float, Meta(ge=0, le=1)]
    message: str | None
    created_by: str | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    result: dict[str, Any] | None
    waited_seconds: Annotated[float, Meta(ge=0, description="how long it waited (or has waited) in the queue")] | None
    log: Annotated[list[str], Meta(description="the job's last messages, one line per step")] | UnsetType = UNSET


class AtRisk(Answer):
    """The rows added to each data table since the newest successful backup."""

    since: Timestamp | None
    rows: Count
    tables: dict[str, Count]


class BackupList(Answer):
    """``GET /admin/system-backup``: the backups, newest first, and the running job."""

    backups: list[Backup]
    job: Job | None
    at_risk: AtRisk


class BackupAnswer(Answer):
    backup: Backup


class JobAnswer(Answer):
    job: Job


class Deleted(Answer):
    deleted: str


# --- Restores and verification ---------------------------------------------------------

class TableCounts(Answer):
    """One table's rows in a restore."""

    inserted: Count
    updated: Count
    skipped: Count
    deleted: Count


class SkippedReason(Answer):
    """Rows of one table skipped for one reason, with the first few ids."""

    table: str
    reason: str
    count: Count
    ids: list[Any]


class SecurityChanges(Answer):
    """Usernames of the accounts a restore changes in ways that matter for security."""

    new_admins: list[str]
    admin_granted: list[str]
    admin_revoked: list[str]
    password_changed: list[str]
    deactivated: list[str]
    removed: list[str]


class Result(Answer):
    """What a restore did (or, as a preview, would do)."""

    mode: Literal["merge", "replace"]
    tables: dict[str, TableCounts]
    skipped_reasons: list[SkippedReason]
    safety_backup: str | None
    security_changes: SecurityChanges | UnsetType = UNSET
    neutralised_tokens: Count | UnsetType = UNSET


class RestoreAnswer(Answer):
    restore: Result


class PreviewAnswer(Answer):
    preview: Result


class ScratchCounts(Answer):
    """One table in the scratch database: rows the metadata counts, rows restored."""

    expected: Count
    restored: Count


class Verification(Answer):
    """The outcome of checking an archive: the recorded SHA-256, structure, checksums, signature, a test restore."""

    ok: bool
    filename: str
    checked_at: Timestamp
    checksums: str
    signature: str
    test_restore: dict[str, ScratchCounts] | None
    record_counts: dict[str, Count]
    error: str | None
    sha256: Annotated[Literal["ok", "failed", "not recorded", "not checked", "not listed"],
                      Meta(description="a listed backup's file against the SHA-256 recorded when it was made or "
                                       "accepted")] | UnsetType = UNSET
    restore_seconds: Annotated[float, Meta(description="how long the test restore took")] | None | UnsetType = UNSET


class VerificationAnswer(Answer):
    verification: Verification


# --- Schedule and health ---------------------------------------------------------------

class Schedule(Answer):
    """When scheduled backups run, how long they are kept, and who hears about them."""

    enabled: bool
    frequency: Literal["daily", "weekly", "monthly"]
    time: Annotated[str, Meta(pattern=r"^\d\d:\d\d$", description="HH:MM, UTC")]
    weekday: Annotated[int, Meta(ge=0, le=6, description="Monday = 0")]
    day_of_month: Annotated[int, Meta(ge=1, le=28)]
    retention_days: Count | None
    keep_last: Count
    notify_emails: list[str]
    notify_on: Literal["failure", "always", "never"]
    next_run_at: Timestamp | None
    webhook_url: str | None
    heartbeat_url: str | None


class HookDelivery(Answer):
    """One webhook or heartbeat delivery, as the schedule page lists it."""

    at: Timestamp
    target: str
    event: str
    url: str
    ok: bool
    attempts: int
    status_code: int | None
    error: str | None


class ScheduleAnswer(Answer):
    schedule: Schedule
    hook_deliveries: list[HookDelivery] | UnsetType = UNSET


class ScheduledRunSummary(Answer):
    """The last finished scheduled run."""

    slot: Timestamp
    status: str
    filename: str | None
    error: str | None
    finished_at: Timestamp | None


class Health(Answer):
    """Whether backups are healthy (200) or not (503), and why."""

    status: Literal["ok", "stale", "failing", "empty"]
    reason: str
    last_success_at: Timestamp | None
    next_run_at: Timestamp | None
    last_scheduled_run: ScheduledRunSummary | None
    schedule_enabled: bool


# --- The audit log, the panel, tokens, errors ------------------------------------------

class AuditEntry(Answer):
    """One audited action; ``details`` has ``token_id`` when an API token acted."""

    id: int
    at: Timestamp
    actor: str | None
    action: str
    target: str | None
    ip: str | None
    details: dict[str, Any] | None


class AuditPage(Answer):
    """Entries newest first; ``next`` is the ``before`` of the next page, null on the last."""

    entries: list[AuditEntry]
    next: int | None


class LoginAttemptSummary(Answer):
    ip_address: str | None
    username_or_email: str | None
    success: bool
    attempted_at: Timestamp
    user_agent: str | None


class Dashboard(Answer):
    """The admin panel: rows per data table and the latest login attempts."""

    counts: dict[str, Count]
    recent_login_attempts: list[LoginAttemptSummary]


class ApiToken(Answer):
    """An API token as listed: never its secret."""

    id: int
    name: str
    owner: str | None
    prefix: str
    scopes: list[str]
    created_at: Timestamp
    last_used_at: Timestamp | None
    expires_at: Timestamp | None
    revoked_at: Timestamp | None


class TokenList(Answer):
    tokens: list[ApiToken]


class TokenCreated(Answer):
    """The new token's secret, shown this once, and its id."""

    token: str
    id: int


class TokenRevoked(Answer):
    revoked: int


class Error(Answer):
    """A refused or failed request: one clear sentence, and what else the refusal names."""

    error: str
    job: Holder | None | UnsetType = UNSET
    fields: dict[str, str] | UnsetType = UNSET
    required_scope: str | UnsetType = UNSET


# --- Requests ---------------------------------------------------------------------------

class CreateBackupFields(msgspec.Struct):
    wait: Flag = False


class VerifyFields(msgspec.Struct):
    wait: Annotated[Flag, Meta(description="0: answer at once with the job")] = True


class RestoreFields(msgspec.Struct):
    """A listed backup's ``filename`` or an uploaded ``backup_file`` (multipart), and the options."""

    mode: Literal["merge", "replace"]
    confirm: Annotated[str, Meta(description="must equal the mode")]
    filename: str | UnsetType = UNSET
    backup_file: Annotated[str, Meta(extra_json_schema={"contentMediaType": "application/zip"})] | UnsetType = UNSET
    dry_run: Flag = False
    trust_unsigned: Flag = False
    tables: Annotated[str | list[str], Meta(description="comma-separated; left out means all")] | UnsetType = UNSET
    on_conflict: Literal["skip", "overwrite"] = "skip"
    password: Annotated[str, Meta(description="the admin's password; browser sessions only")] | UnsetType = UNSET
    wait: Flag = False


class ScheduleFields(msgspec.Struct):
    """Any of the schedule's settings; those left out keep their values."""

    enabled: Flag | UnsetType = UNSET
    frequency: Literal["daily", "weekly", "monthly"] | UnsetType = UNSET
    time: Annotated[str, Meta(pattern=r"^\d\d?:\d\d$")] | UnsetType = UNSET
    weekday: int | str | UnsetType = UNSET
    day_of_month: int | str | UnsetType = UNSET
    retention_days: int | str | None | UnsetType = UNSET
    keep_last: int | str | UnsetType = UNSET
    notify_emails: Annotated[list[str] | str, Meta(description="a list, or comma-separated")] | UnsetType = UNSET
    notify_on: Literal["failure", "always", "never"] | UnsetType = UNSET
    webhook_url: Annotated[str, Meta(description="http or https; empty to turn it off")] | None | UnsetType = UNSET
    heartbeat_url: Annotated[str, Meta(description="http or https; empty to turn it off")] | None | UnsetType = UNSET


class TokenFields(msgspec.Struct):
    name: Annotated[str, Meta(max_length=100)] | UnsetType = UNSET
    scopes: list[Literal["health", "read", "backup", "admin"]] | str | UnsetType = UNSET
    expires_in: Annotated[int, Meta(ge=1)] | UnsetType = UNSET


class AuditQuery(msgspec.Struct):
    before: Annotated[int, Meta(ge=1, description="only entries older than this id")] | UnsetType = UNSET
    action: Annotated[str, Meta(description="only this action, e.g. backup.download")] | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE
