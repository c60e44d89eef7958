"""Writing an archive again under another passphrase, its members' content byte for byte (for key rotation)."""
from __future__ import annotations

from typing import BinaryIO

from . import format
from .deflate import COMPRESS_LEVEL, open_member
from .encryption import ensure_encrypted, zip_for_writing
from .reader import Archive


def rewrite_archive(archive: Archive, fileobj: BinaryIO, passphrase: str) -> None:
    """Write every member of ``archive``, in its order, into a new ZIP on ``fileobj`` encrypted with ``passphrase``.

    Each member is read through ``Archive.member_chunks``, so a damaged or changed
    archive raises instead of being given a fresh authentication code. The content
    is unchanged, so the metadata's checksums and signature still hold.
    """
    with zip_for_writing(fileobj, passphrase, COMPRESS_LEVEL) as zf:
        for name in archive.members:
            with open_member(zf, name, parallel=name == format.DATA_MEMBER) as member:
                for chunk in archive.member_chunks(name):
                    member.write(chunk)
        ensure_encrypted(zf)
