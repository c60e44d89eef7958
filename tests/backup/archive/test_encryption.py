"""Encrypted archives (WinZip AE-2): what we write, what 7-Zip and pyzipper make of it, and how we read it."""
from __future__ import annotations

import hashlib
import io
import os
import struct
import zipfile
from pathlib import Path

import orjson
import pytest
import pyzipper
from pyzipper.zipfile_aes import AESZipEncrypter

from app.backup.audit import Actor
from app.backup.archive import encryption, format, writer
from app.backup.archive.limits import Limits
from app.backup.archive.reader import Archive
from app.backup.archive.summary import Summary, read_summary
from app.backup.errors import ArchiveError, BackupError, EncryptionError, UnknownPassphraseError
from app.backup.service import BackupService
from app.backup.verify import verify_listed_backup
from app.extensions import db
from app.models import BackupJob
from support.app import build_app
from support.archives import needs_7z, seven_zip, snapshot
from support.backup import archive_members, seed_sample_rows
from support.restoring import restore_listed, restore_upload

KEY = "correct horse battery staple"
LIMITS = Limits(64 * 1024**2, 256 * 1024**2, 100)


@pytest.fixture
def app_settings():
    return {"BACKUP_ENCRYPTION_KEY": KEY}


def backup_path(app, filename):
    return os.path.join(app.config["BACKUP_DIRECTORY"], filename)


def make_backup(app, created_by="ann"):
    with app.app_context():
        return BackupService().create("manual", created_by)


def sibling(tmp_path, **settings):
    """Another app on the same database and backup store, with other settings (say, another key)."""
    return build_app(tmp_path, **settings)


def encrypted_span(path, name) -> tuple[int, int]:
    """Where the member's encrypted bytes lie in the file (after salt and verifier, before the code)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", fh.read(4))
    start = info.header_offset + 30 + name_length + extra_length + 16 + 2
    return start, info.header_offset + 30 + name_length + extra_length + info.compress_size - 10


def flipped(path, offset) -> bytes:
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0x01
    return bytes(data)


def without_volatile(metadata: dict) -> dict:
    return {k: v for k, v in metadata.items() if k not in ("created_at", "duration_seconds", "signature")}


# --- what we write ---------------------------------------------------------------------


def test_every_member_is_aes256_ae2_with_its_own_salt_and_nothing_is_in_clear(app):
    seed_sample_rows(app)
    made = make_backup(app)
    path = backup_path(app, made["filename"])
    assert made["encrypted"] is True
    with app.app_context():
        assert BackupService().list()[0]["encrypted"] is True
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    assert sorted(info.filename for info in infos) == sorted(format.MEMBERS)
    salts = set()
    for info in infos:
        assert info.compress_type == 99 and info.flag_bits & 0x1 and info.CRC == 0
        assert encryption.member_encryption(info) == encryption.AesField(version=2, strength=3, method=8)
        with open(path, "rb") as fh:
            start = encrypted_span(path, info.filename)[0] - 18
            fh.seek(start)
            salts.add(fh.read(16))
    assert len(salts) == 3
    raw = Path(path).read_bytes()
    for clear_text in (b"ann@example.com", b"password_hash", b"record_counts", b"CyberQuest"):
        assert clear_text not in raw
    with zipfile.ZipFile(path) as zf, pytest.raises(RuntimeError, match="password required"):
        zf.read(format.DATA_MEMBER)  # a reader without AES support gets nothing


@needs_7z
def test_7z_extracts_what_an_unencrypted_backup_of_the_same_database_holds(app, tmp_path):
    seed_sample_rows(app)
    encrypted = make_backup(app)
    clear = make_backup(sibling(tmp_path))
    assert clear["encrypted"] is False
    out = tmp_path / "extracted"
    result = seven_zip("x", f"-p{KEY}", f"-o{out}", backup_path(app, encrypted["filename"]))
    assert result.returncode == 0, result.stdout + result.stderr
    extracted = {name: (out / name).read_bytes() for name in os.listdir(out)}
    expected = archive_members(backup_path(app, clear["filename"]))
    assert sorted(extracted) == sorted(format.MEMBERS)
    assert extracted[format.DATA_MEMBER] == expected[format.DATA_MEMBER]
    assert extracted[format.APP_INFO_MEMBER] == expected[format.APP_INFO_MEMBER]
    assert without_volatile(orjson.loads(extracted[format.METADATA_MEMBER])) == \
        without_volatile(orjson.loads(expected[format.METADATA_MEMBER]))

    wrong = seven_zip("x", "-pnot the passphrase at all", f"-o{tmp_path / 'wrong'}", "-y",
                      backup_path(app, encrypted["filename"]))
    assert wrong.returncode != 0 and "Wrong password" in wrong.stdout + wrong.stderr


def test_pyzipper_alone_reads_it(app):
    seed_sample_rows(app)
    made = make_backup(app)
    with pyzipper.AESZipFile(backup_path(app, made["filename"])) as zf:
        zf.setpassword(KEY.encode())
        members = {name: zf.read(name) for name in zf.namelist()}
    metadata = orjson.loads(members[format.METADATA_MEMBER])
    for member, checksum in metadata["checksums"].items():
        assert checksum == "sha256:" + hashlib.sha256(members[member]).hexdigest()
    assert format.signature_is_valid(metadata, format.signing_key(app.config))
    assert metadata["record_counts"]["users"] == 3


@needs_7z
def test_an_aes_zip_made_by_7z_from_our_members_restores(app, env, tmp_path):
    seed_sample_rows(app)
    made = make_backup(app)
    rows = snapshot(app)
    members = tmp_path / "members"
    assert seven_zip("x", f"-p{KEY}", f"-o{members}", backup_path(app, made["filename"])).returncode == 0
    repacked = tmp_path / "by-7z.zip"
    result = seven_zip("a", "-tzip", "-mem=AES256", f"-p{KEY}", str(repacked), *format.MEMBERS, cwd=members)
    assert result.returncode == 0, result.stdout
    with zipfile.ZipFile(repacked) as zf:
        assert all(info.compress_type == 99 for info in zf.infolist())
    with app.app_context():
        db.session.execute(db.text("DELETE FROM contact_submissions"))
        db.session.commit()
    response = restore_upload(app.test_client(), env["headers"], repacked, trust_unsigned="1")
    assert response.status_code == 200, response.get_json()
    assert snapshot(app) == rows


# --- reading: known, old, unknown and wrong keys; tampering ---------------------------------


def test_a_wrong_passphrase_and_a_changed_member_get_different_422s(app, env, tmp_path):
    seed_sample_rows(app)
    made = make_backup(app)
    path = backup_path(app, made["filename"])
    before = snapshot(app)

    other = sibling(tmp_path, BACKUP_ENCRYPTION_KEY="a different passphrase")
    wrong = restore_upload(other.test_client(), env["headers"], Path(path).read_bytes())
    assert wrong.status_code == 422
    assert "neither BACKUP_ENCRYPTION_KEY nor one of BACKUP_ENCRYPTION_OLD_KEYS" in wrong.get_json()["error"]

    start, end = encrypted_span(path, format.DATA_MEMBER)
    for offset in (start, (start + end) // 2, end - 1):  # the last byte: every row was read before the code
        changed = restore_upload(app.test_client(), env["headers"], flipped(path, offset))
        assert changed.status_code == 422
        assert changed.get_json()["error"] == (f"{format.DATA_MEMBER} fails its AES authentication code: the "
                                               "archive was changed or damaged after it was made.")
    start, end = encrypted_span(path, format.METADATA_MEMBER)
    changed = restore_upload(app.test_client(), env["headers"], flipped(path, start + 5))
    assert changed.status_code == 422
    assert changed.get_json()["error"].startswith(f"{format.METADATA_MEMBER} fails its AES authentication code")
    assert snapshot(app) == before


def test_the_code_is_checked_before_the_data_member_ends_and_before_any_other_error(tmp_path, app):
    seed_sample_rows(app)
    path = backup_path(app, make_backup(app)["filename"])
    start, end = encrypted_span(path, format.DATA_MEMBER)
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(flipped(path, start))
    with Archive.open(damaged, limits=LIMITS, signing_key=format.signing_key(app.config),
                      keyring=encryption.Keyring(KEY)) as archive:
        assert archive.encrypted and archive.passphrase == KEY
        with pytest.raises(ArchiveError, match="fails its AES authentication code"):
            for _ in archive.events(fast=False):
                pass


def test_an_archive_of_an_unknown_key_is_listed_as_encrypted_with_nothing_read_and_refused(app, env, tmp_path):
    seed_sample_rows(app)
    made = make_backup(app)
    for settings, says in (({"BACKUP_ENCRYPTION_KEY": "a different passphrase"}, "neither BACKUP_ENCRYPTION_KEY"),
                           ({}, "this instance has no BACKUP_ENCRYPTION_KEY")):
        other = sibling(tmp_path, **settings)
        with other.app_context():
            listed = BackupService().get(made["filename"])
            assert listed["encrypted"] is True and listed["signed"] is False
            assert listed["record_counts"] == {} and listed["trigger"] is None and listed["created_by"] is None
            assert [b["filename"] for b in BackupService().list()] == [made["filename"]]
        client = other.test_client()
        refused = restore_listed(client, env["headers"], made["filename"])
        assert refused.status_code == 422 and says in refused.get_json()["error"]
        download = client.get(f"/admin/download-backup/{made['filename']}", headers=env["headers"])
        assert download.status_code == 200
        assert download.data == Path(backup_path(app, made["filename"])).read_bytes()
        download.close()
        with other.app_context():
            verification = verify_listed_backup(made["filename"], actor=Actor("admin"))
        assert verification["ok"] is False and says in verification["error"]


def test_an_archive_made_with_an_old_key_reads_with_backup_encryption_old_keys(app, env, tmp_path):
    seed_sample_rows(app)
    made = make_backup(app)
    rotated = sibling(tmp_path, BACKUP_ENCRYPTION_KEY="the passphrase of 2027", BACKUP_ENCRYPTION_OLD_KEYS=(KEY,))
    with rotated.app_context():
        listed = BackupService().get(made["filename"])
    assert listed["total_records"] == made["total_records"] > 0
    assert listed["signed"] is True and listed["encrypted"] is True
    response = restore_listed(rotated.test_client(), env["headers"], made["filename"])
    assert response.status_code == 200, response.get_json()
    newer = make_backup(rotated)
    with pyzipper.AESZipFile(backup_path(app, newer["filename"])) as zf:
        zf.setpassword(KEY.encode())
        with pytest.raises(RuntimeError, match="Bad password"):
            zf.read(format.METADATA_MEMBER)
        zf.setpassword(b"the passphrase of 2027")
        assert orjson.loads(zf.read(format.METADATA_MEMBER))["total_records"] == newer["total_records"]


def test_unencrypted_archives_read_as_before_with_a_key_set(app, tmp_path):
    seed_sample_rows(app)
    clear = make_backup(sibling(tmp_path))
    with app.app_context():
        listed = BackupService().get(clear["filename"])
    assert listed["encrypted"] is False and listed["total_records"] == 9 and listed["signed"] is True


@needs_7z
def test_zipcrypto_and_half_encrypted_archives_are_refused(app, tmp_path):
    seed_sample_rows(app)
    clear = make_backup(sibling(tmp_path))
    members = tmp_path / "members"
    members.mkdir()
    for name, content in archive_members(backup_path(app, clear["filename"])).items():
        (members / name).write_bytes(content)
    zipcrypto, mixed = tmp_path / "zipcrypto.zip", tmp_path / "mixed.zip"
    assert seven_zip("a", "-tzip", "-mem=ZipCrypto", f"-p{KEY}", str(zipcrypto), *format.MEMBERS,
                     cwd=members).returncode == 0
    assert seven_zip("a", "-tzip", "-mem=AES256", f"-p{KEY}", str(mixed), format.DATA_MEMBER,
                     cwd=members).returncode == 0
    assert seven_zip("a", "-tzip", str(mixed), format.METADATA_MEMBER, format.APP_INFO_MEMBER,
                     cwd=members).returncode == 0
    keyring = encryption.Keyring(KEY)
    with pytest.raises(ArchiveError, match="legacy ZipCrypto"):
        Archive.open(zipcrypto, limits=LIMITS, signing_key=b"k", trust_unsigned=True, keyring=keyring)
    with pytest.raises(ArchiveError, match="mixes encrypted and clear members"):
        Archive.open(mixed, limits=LIMITS, signing_key=b"k", trust_unsigned=True, keyring=keyring)


def test_listing_reads_the_metadata_member_only_and_refuses_a_changed_one(app):
    seed_sample_rows(app)
    path = backup_path(app, make_backup(app)["filename"])
    with open(path, "rb") as fh:
        summary = read_summary(fh, encryption.Keyring(KEY))
    assert summary.encrypted and summary.metadata["total_records"] == 9
    with open(path, "rb") as fh:
        assert read_summary(fh, encryption.Keyring("another passphrase here")) == Summary(None, True)
        assert read_summary(fh, encryption.NO_KEYS) == Summary(metadata=None, encrypted=True)
    start, _ = encrypted_span(path, format.METADATA_MEMBER)
    with pytest.raises(ArchiveError, match="authentication code"):
        read_summary(io.BytesIO(flipped(path, start)), encryption.Keyring(KEY))
    with pytest.raises(UnknownPassphraseError, match="has no BACKUP_ENCRYPTION_KEY"):
        Archive.open(path, limits=LIMITS, signing_key=b"k", trust_unsigned=True)


# --- fail closed -----------------------------------------------------------------------------


def test_a_backup_that_cannot_encrypt_fails_and_never_writes_a_clear_archive(app, monkeypatch):
    seed_sample_rows(app)

    def broken(self, data):
        raise RuntimeError("the AES library is gone")

    monkeypatch.setattr(AESZipEncrypter, "encrypt", broken)
    with app.app_context():
        try:
            job = BackupService().start_create("manual", "admin", wait=True)
        except BackupError:
            job = db.session.execute(db.select(BackupJob)).scalar_one()
        assert BackupService.job(job.id)["status"] == "failed"
        assert BackupService().list() == []
    assert os.listdir(app.config["BACKUP_DIRECTORY"]) == []


def test_a_writer_that_lost_the_passphrase_fails_instead_of_writing_in_clear(app, monkeypatch):
    seed_sample_rows(app)
    clear_writer = encryption.zip_for_writing
    monkeypatch.setattr(writer, "zip_for_writing",
                        lambda fileobj, passphrase, level: clear_writer(fileobj, None, level))
    with app.app_context():
        with pytest.raises(EncryptionError, match="was not encrypted although BACKUP_ENCRYPTION_KEY"):
            BackupService().create("manual", "admin")
        assert BackupService().list() == []
    assert os.listdir(app.config["BACKUP_DIRECTORY"]) == []
