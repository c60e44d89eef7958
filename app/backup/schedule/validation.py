"""What each schedule setting accepts: one parser per setting, shared by every way a schedule is changed.

The web face's schedule form checks each field it was sent with ``parse_setting``;
``settings.apply_changes`` (behind ``update_settings``) checks whatever a caller
passes with the same parsers, so a value is accepted or refused alike wherever it
comes from. A parsed value parses to itself.
"""
from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from config import parse_flag

from ..errors import BadRequestError
from .hooks import HOOK_FIELDS, parse_hook_url

FREQUENCIES = ("daily", "weekly", "monthly")
NOTIFY_ON = ("failure", "always", "never")
# Sent by forms or echoed back from a GET; never an error, never stored.
IGNORED_FIELDS = frozenset({"csrf_token", "next_run_at", "submit"})
MAX_RETENTION_DAYS = 36500
MAX_KEEP_LAST = 10000
MAX_NOTIFY_EMAILS = 50
UNKNOWN_FIELD = "{name} is not a schedule field."

_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})(?::00)?")


class ScheduleValidationError(BadRequestError):
    """One or more schedule fields hold bad values; ``extra["fields"]`` maps field → message."""

    @classmethod
    def naming(cls, errors: dict[str, str]) -> "ScheduleValidationError":
        """The error for these field → message problems, every message in its text."""
        return cls("The schedule was not saved: " + " ".join(errors.values()), fields=errors)


def _integer(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number from {low} to {high}.")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}.")
    return value


def _clock_text(value) -> str:
    match = _TIME_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError("time must be HH:MM in UTC, from 00:00 to 23:59.")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _choice(value, name: str, choices: tuple[str, ...]) -> str:
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}.")
    return text


def parse_emails(value) -> tuple[str, ...]:
    """Addresses from a list or a comma/semicolon/whitespace-separated string, validated.

    Raises ``ValueError`` naming the first bad address. Duplicates are dropped.
    """
    if value is None:
        items: list = []
    elif isinstance(value, str):
        items = [part for part in re.split(r"[,;\s]+", value) if part]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError("notify_emails must be a list of addresses or a comma-separated string.")
    addresses: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError("notify_emails must hold e-mail addresses only.")
        try:
            address = validate_email(item.strip(), check_deliverability=False).normalized
        except EmailNotValidError:
            raise ValueError(f"notify_emails: {item.strip()!r} is not a valid e-mail address.") from None
        if address.lower() not in (known.lower() for known in addresses):
            addresses.append(address)
    if len(addresses) > MAX_NOTIFY_EMAILS:
        raise ValueError(f"notify_emails can hold at most {MAX_NOTIFY_EMAILS} addresses.")
    return tuple(addresses)


def parse_setting(name: str, value):
    """The value setting ``name`` stores for ``value`` as a client sent it (JSON types or form text).

    Raises ``ValueError`` with a message naming the setting when the value is bad,
    or when ``name`` is not a setting. A parsed value parses to itself.
    """
    if name == "enabled":
        try:
            return parse_flag(value)
        except ValueError:
            raise ValueError(f"{name} must be true or false.") from None
    if name == "frequency":
        return _choice(value, name, FREQUENCIES)
    if name == "time":
        return _clock_text(value)
    if name == "weekday":
        return _integer(value, name, 0, 6)
    if name == "day_of_month":
        return _integer(value, name, 1, 28)
    if name == "retention_days":
        return None if value is None else _integer(value, name, 1, MAX_RETENTION_DAYS)
    if name == "keep_last":
        return _integer(value, name, 0, MAX_KEEP_LAST)
    if name == "notify_emails":
        return parse_emails(value)
    if name == "notify_on":
        return _choice(value, name, NOTIFY_ON)
    if name in HOOK_FIELDS:
        return parse_hook_url(value, name)
    raise ValueError(UNKNOWN_FIELD.format(name=name))


def submitted_fields(fields: dict) -> dict:
    """The settings in a request body: the fields themselves, or a GET's ``{"schedule": {...}}``.

    Leaves out what forms send or a GET echoes that is never a setting (``IGNORED_FIELDS``).
    """
    if set(fields) == {"schedule"} and isinstance(fields["schedule"], dict):
        fields = fields["schedule"]
    return {name: value for name, value in fields.items() if name not in IGNORED_FIELDS}
