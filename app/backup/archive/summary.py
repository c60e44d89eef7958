"""What listing needs of an archive: its ZIP directory and its metadata member, nothing else.

``read_summary`` reads the central directory and ``backup_metadata.json`` only
(decrypted and authenticated whole when the archive is encrypted), so listing a
remote store fetches a few kilobytes per archive. An archive encrypted with no
passphrase of the keyring yields no metadata: only that it is encrypted.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from . import format
from ..errors import ArchiveError, UnknownPassphraseError
from .directory import checked
from .encryption import NO_KEYS, Keyring, Unlocker, member_encryption
from .inflater import MemberInflater
from .limits import DEFAULT_MAX_RATIO, Limits

METADATA_MAX_BYTES = 1024 * 1024
_METADATA_LIMITS = Limits(METADATA_MAX_BYTES, METADATA_MAX_BYTES, DEFAULT_MAX_RATIO)


@dataclass(frozen=True)
class Summary:
    """An archive as listing sees it: ``metadata`` (None when no known passphrase opens it) and ``encrypted``."""

    metadata: dict | None
    encrypted: bool


def read_summary(fileobj: BinaryIO, keyring: Keyring = NO_KEYS) -> Summary:
    """The parsed ``backup_metadata.json`` of an archive, reading only the ZIP directory and that member.

    Raises ``ArchiveError`` when the file is not a ZIP, has a central directory no
    backup has (``directory``), lacks the member, or the member is damaged, changed (its authentication code) or not a JSON object.
    """
    try:
        with zipfile.ZipFile(checked(fileobj)) as zf:
            try:
                info = zf.getinfo(format.METADATA_MEMBER)
            except KeyError:
                raise ArchiveError(f"The archive has no {format.METADATA_MEMBER}.") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise ArchiveError(f"The file is not a readable ZIP archive ({exc}).") from exc
    if info.file_size > METADATA_MAX_BYTES:
        raise ArchiveError(f"The archive's {format.METADATA_MEMBER} is implausibly large.")
    encrypted = member_encryption(info) is not None
    try:
        raw = MemberInflater(fileobj, info, _METADATA_LIMITS, digest=False, unlocker=Unlocker(keyring)).read_all()
    except UnknownPassphraseError:
        return Summary(None, True)
    return Summary(format.parse_json_object(format.METADATA_MEMBER, raw), encrypted)
