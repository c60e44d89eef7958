"""AES-256 archive members in the WinZip AE-2 format, which 7-Zip and pyzipper open with the passphrase.

The primitives are pyzipper's (PBKDF2-HMAC-SHA1 key derivation, AES-CTR, the
HMAC-SHA1 authentication code, all from pycryptodomex); this module only decides
when they are used and streams bytes through them.

Writing: ``zip_for_writing`` opens pyzipper's ``AESZipFile`` when a passphrase is
given. Every member opened on it gets its own random salt and therefore its own
keys; the deflated bytes are encrypted and authenticated chunk by chunk as the
compressor hands them over, and the 10-byte code is appended when the member
closes. ``ensure_encrypted`` refuses to finish an archive holding a clear member.

Reading: ``Unlocker`` picks, for each member, the known passphrase whose 2-byte
verifier matches the member's salt (a wrong passphrase is told apart from a
changed member here) and returns a ``MemberCipher`` that decrypts the member's raw
bytes as they are read and checks the authentication code after the last one.
"""
from __future__ import annotations

import hashlib
import struct
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Iterator

import pyzipper
from pyzipper.zipfile_aes import WZ_AES_V2, WZ_SALT_LENGTHS, AESZipDecrypter, AESZipEncrypter

from ..errors import ArchiveError, EncryptionError, UnknownPassphraseError

AES_METHOD = 99
AES_EXTRA_ID = 0x9901
MAC_SIZE = AESZipDecrypter.hmac_size
VERIFIER_SIZE = 2
KEY_VARIABLE = "BACKUP_ENCRYPTION_KEY"
OLD_KEYS_VARIABLE = "BACKUP_ENCRYPTION_OLD_KEYS"


@dataclass(frozen=True)
class Keyring:
    """The passphrases of one instance: ``current`` encrypts new archives; it and the ``old`` ones read."""

    current: str | None = None
    old: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config) -> "Keyring":
        """``BACKUP_ENCRYPTION_KEY`` and ``BACKUP_ENCRYPTION_OLD_KEYS`` (already validated by ``config.py``)."""
        return cls(config.get(KEY_VARIABLE) or None, tuple(config.get(OLD_KEYS_VARIABLE) or ()))

    @property
    def readable(self) -> tuple[str, ...]:
        """Every passphrase that may open an archive, the current one first, each once."""
        return tuple(dict.fromkeys(key for key in (self.current, *self.old) if key))

    @property
    def fingerprint(self) -> str:
        """A digest of ``readable``: what a cache of decrypted metadata is keyed by (never the keys themselves)."""
        return hashlib.sha256("\0".join(self.readable).encode()).hexdigest()[:16]


NO_KEYS = Keyring()


@dataclass(frozen=True)
class AesField:
    """The 0x9901 extra field of an AES member: AE version (1 keeps the CRC, 2 zeroes it), key size, inner method."""

    version: int
    strength: int
    method: int

    @property
    def header_size(self) -> int:
        """Bytes before the encrypted data: the salt and the password verifier."""
        return WZ_SALT_LENGTHS[self.strength] + VERIFIER_SIZE


def member_encryption(info: zipfile.ZipInfo) -> AesField | None:
    """None for a clear member, the AES field of a WinZip AES one; ``ArchiveError`` for any other encryption."""
    if not info.flag_bits & 0x1:
        return None
    field = _aes_field(info) if info.compress_type == AES_METHOD else None
    if field is None:
        raise ArchiveError(f"{info.filename} is encrypted with legacy ZipCrypto (or an unknown method), which is "
                           "not secure and not read here; backups are encrypted with AES-256 (WinZip AE-2).")
    return field


def _aes_field(info: zipfile.ZipInfo) -> AesField | None:
    extra, position = info.extra, 0
    while position + 4 <= len(extra):
        field_id, size = struct.unpack_from("<HH", extra, position)
        if field_id == AES_EXTRA_ID:
            if size != 7:
                break
            version, vendor, strength, method = struct.unpack_from("<H2sBH", extra, position + 4)
            if vendor != b"AE" or version not in (1, 2) or strength not in WZ_SALT_LENGTHS:
                break
            return AesField(version, strength, method)
        position += 4 + size
    else:
        return None
    raise ArchiveError(f"{info.filename} carries a damaged AES extra field.")


# --- writing -----------------------------------------------------------------------------


@contextmanager
def zip_for_writing(fileobj, passphrase: str | None, compresslevel: int) -> Iterator[zipfile.ZipFile]:
    """A deflating ZIP writer on ``fileobj``: pyzipper's AES-256 (AE-2) one with a passphrase, else zipfile's.

    Closed (its directory written) after a clean block; abandoned, unfinished, when
    the block raises: the caller then discards the file.
    """
    if passphrase is None:
        zf = zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel,
                             allowZip64=True)
    else:
        zf = pyzipper.AESZipFile(fileobj, "w", compression=pyzipper.ZIP_DEFLATED, compresslevel=compresslevel,
                                 allowZip64=True, encryption=pyzipper.WZ_AES,
                                 encryption_kwargs={"nbits": 256, "force_wz_aes_version": WZ_AES_V2})
        zf.setpassword(passphrase.encode())
    try:
        yield zf
    except BaseException:
        # Finishing the ZIP would fail again on the member whose write failed (and once
        # more when the object is collected); without its file it has nothing to finish.
        zf.fp = None
        raise
    zf.close()


def ensure_encrypted(zf: zipfile.ZipFile) -> None:
    """``EncryptionError`` unless every member written so far is an AES-256 AE-2 member.

    The writer calls it before the archive is published, so a code path that lost
    the passphrase fails the backup instead of writing a clear archive.
    """
    for info in zf.infolist():
        if not (info.flag_bits & 0x1 and getattr(info, "wz_aes_strength", None) == 3
                and getattr(info, "wz_aes_version", None) == WZ_AES_V2):
            raise EncryptionError(f"{info.filename} was not encrypted although {KEY_VARIABLE} is set; "
                                  "the backup was discarded rather than stored in clear.")


# --- reading -----------------------------------------------------------------------------


class MemberCipher:
    """Decrypts one member's encrypted bytes in order; ``check`` compares its authentication code at the end."""

    def __init__(self, name: str, decrypter: AESZipDecrypter):
        self.name = name
        self._decrypter = decrypter

    def decrypt(self, data: bytes) -> bytes:
        """The plaintext of the next ``data`` (the code is computed over the encrypted bytes as they pass)."""
        return self._decrypter.decrypt(data)

    def check(self, code: bytes) -> None:
        """``ArchiveError`` unless ``code`` is the authentication code of every byte decrypted."""
        try:
            self._decrypter.check_hmac(code)
        except (zipfile.BadZipFile, pyzipper.BadZipFile):
            raise ArchiveError(f"{self.name} fails its AES authentication code: the archive was changed or "
                               "damaged after it was made.") from None


class Unlocker:
    """Opens the AES members of one archive with a keyring, trying first the passphrase that opened the last one.

    ``passphrase`` is the passphrase that opened the first member (None before).
    A wrong passphrase passes the 2-byte verifier once in 65,536 tries; the
    member's authentication code then refuses it as changed.
    """

    def __init__(self, keyring: Keyring):
        self.keyring = keyring
        self.passphrase: str | None = None

    def cipher(self, info: zipfile.ZipInfo, field: AesField, header: bytes) -> MemberCipher:
        """The cipher of the member whose salt and verifier are ``header``; ``UnknownPassphraseError`` otherwise."""
        described = SimpleNamespace(filename=info.filename, wz_aes_strength=field.strength)
        readable = self.keyring.readable
        if self.passphrase is not None:
            readable = (self.passphrase, *(key for key in readable if key != self.passphrase))
        for passphrase in readable:
            try:
                decrypter = AESZipDecrypter(described, passphrase.encode(), header)
            except RuntimeError:  # pyzipper's "Bad password": the verifier does not match
                continue
            if self.passphrase is None:
                self.passphrase = passphrase
            return MemberCipher(info.filename, decrypter)
        if not readable:
            raise UnknownPassphraseError(f"The archive is encrypted and this instance has no {KEY_VARIABLE}; "
                                         "set it to the passphrase the archive was made with.")
        raise UnknownPassphraseError(f"The archive is encrypted with a passphrase that is neither {KEY_VARIABLE} "
                                     f"nor one of {OLD_KEYS_VARIABLE}; add the passphrase it was made with to "
                                     f"{OLD_KEYS_VARIABLE}.")


def self_test(passphrase: str) -> None:
    """Encrypt and decrypt a few bytes with ``passphrase`` as a backup would; ``EncryptionError`` if that fails.

    Run at start-up, so an installation whose crypto library is missing or broken
    stops there instead of failing (or, worse, writing clear archives) later.
    """
    probe = b"CyberQuest encryption self-test"
    try:
        encrypter = AESZipEncrypter(passphrase.encode(), nbits=256, force_wz_aes_version=WZ_AES_V2)
        header = encrypter.encryption_header()
        sealed = encrypter.encrypt(probe)
        code = encrypter.flush()
        info = zipfile.ZipInfo("self-test")
        cipher = Unlocker(Keyring(passphrase)).cipher(info, AesField(2, 3, zipfile.ZIP_STORED), header)
        opened = cipher.decrypt(sealed)
        cipher.check(code)
    except Exception as exc:  # whatever the library raises, start-up must stop with it
        raise EncryptionError(f"AES encryption does not work on this installation ({exc}).") from exc
    if opened != probe or sealed == probe:
        raise EncryptionError("AES encryption does not work on this installation (the self-test round trip "
                              "did not give the bytes back).")
