"""The archive format's constants and its signature (shared by writer, reader and verifier).

Nothing here touches files or the database: it is the format as data.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import date, datetime
from decimal import Decimal

import orjson

from ..errors import ArchiveError

FORMAT_VERSION = 1
APP_NAME = "CyberQuest"
DATA_MEMBER = "database_backup.json"
METADATA_MEMBER = "backup_metadata.json"
APP_INFO_MEMBER = "app_info.json"
MEMBERS = (DATA_MEMBER, METADATA_MEMBER, APP_INFO_MEMBER)
FILENAME_PREFIX = "cyberquest_backup_"
FILENAME_PATTERN = r"cyberquest_backup_\d{8}_\d{6}(?:_\d+)?\.zip"
TRIGGERS = ("manual", "scheduled", "pre-restore", "cli")


def signing_key(config) -> bytes:
    """The HMAC key: ``BACKUP_SIGNING_KEY`` or, without it, a key derived from ``SECRET_KEY``."""
    explicit = config.get("BACKUP_SIGNING_KEY")
    if explicit:
        return explicit.encode()
    # Derived rather than the raw SECRET_KEY so a signature never exposes session-signing material.
    return hmac.new(str(config["SECRET_KEY"]).encode(), b"cyberquest-backup-signing-v1", hashlib.sha256).digest()


def _canonical(metadata: dict) -> bytes:
    unsigned = {key: value for key, value in metadata.items() if key != "signature"}
    return orjson.dumps(unsigned, option=orjson.OPT_SORT_KEYS)


def sign_metadata(metadata: dict, key: bytes) -> str:
    """``hmac-sha256:<hex>`` over every metadata field except ``signature`` (sorted-key JSON)."""
    return "hmac-sha256:" + hmac.new(key, _canonical(metadata), hashlib.sha256).hexdigest()


def signature_is_valid(metadata: dict, key: bytes) -> bool:
    """True when the metadata carries a signature made with ``key`` over exactly this content."""
    signature = metadata.get("signature")
    if not isinstance(signature, str):
        return False
    # As bytes: compare_digest refuses str with non-ASCII characters, and a planted file may hold them.
    return hmac.compare_digest(signature.encode("utf-8", "surrogatepass"), sign_metadata(metadata, key).encode())


def parse_json_object(member: str, raw: bytes) -> dict:
    """``raw`` parsed as a JSON object; ``ArchiveError`` naming ``member`` otherwise."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ArchiveError(f"The archive's {member} is not valid JSON ({exc}).") from exc
    if not isinstance(value, dict):
        raise ArchiveError(f"The archive's {member} is not a JSON object.")
    return value


def json_default(value):
    """orjson's fallback for the types it does not encode itself (datetimes it does natively)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} in a backup")
