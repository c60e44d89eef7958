"""A crafted ZIP is refused from its end record, before zipfile parses its central directory (issue 15, item 6)."""
from __future__ import annotations

import struct
import time
import zipfile

import pytest

from app.backup.archive import format
from app.backup.archive.limits import Limits
from app.backup.archive.reader import Archive
from app.backup.errors import ArchiveError
from support.archives import build_archive, write_zip
from support.backup import archive_members
from support.restoring import restore_upload


def many_entries(path, count: int, zip64: bool = False):
    """A ZIP of ``count`` empty members; with ``zip64`` its end record in the ZIP64 form zipfile writes past
    65,535 entries (the classic record then says 0xFFFF)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(count):
            zf.writestr(f"{i}", b"")
    if zip64:
        data = path.read_bytes()
        at = data.rindex(b"PK\x05\x06")
        _sig, _disk, _cd_disk, _here, entries, size, offset, _comment = struct.unpack_from("<4s4H2LH", data, at)
        record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, size, offset)
        locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
        end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
        path.write_bytes(data[:at] + record + locator + end)
        assert len(zipfile.ZipFile(path).infolist()) == count  # zipfile reads it as it wrote it
    return path


@pytest.mark.parametrize("zip64", [False, True], ids=["classic-record", "zip64-record"])
def test_an_upload_listing_thousands_of_entries_is_refused_naming_how_many(app, client, env, tmp_path, zip64):
    archive = many_entries(tmp_path / "many.zip", 3000, zip64=zip64)  # under the test client's spooling size
    response = restore_upload(client, env["headers"], archive, trust_unsigned="1")
    assert response.status_code == 422
    assert "central directory lists 3,000 entries" in response.get_json()["error"]


def test_twenty_thousand_entries_are_refused_in_well_under_a_second(tmp_path):
    archive = many_entries(tmp_path / "many.zip", 20_000)
    started = time.monotonic()
    with pytest.raises(ArchiveError, match="lists 20,000 entries"):
        Archive.open(archive, limits=Limits(2**30, 2**32, 100), signing_key=b"k")
    assert time.monotonic() - started < 0.5


def test_a_central_directory_over_a_few_kilobytes_is_refused_though_the_members_are_right(app, client, env,
                                                                                         tmp_path):
    members = archive_members(build_archive(tmp_path / "good.zip", key=env["key"], schema_revision=env["revision"]))
    crafted = tmp_path / "crafted.zip"
    with zipfile.ZipFile(crafted, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.comment = b"x" * 3000  # each entry's comment lives in the central directory
            zf.writestr(info, content)
    response = restore_upload(client, env["headers"], crafted, dry_run="1")
    assert response.status_code == 422
    assert "central directory is" in response.get_json()["error"]


def test_an_archive_with_a_trailing_comment_and_its_three_members_still_restores(app, client, env, tmp_path):
    members = archive_members(build_archive(tmp_path / "good.zip", key=env["key"], schema_revision=env["revision"]))
    commented = write_zip(tmp_path / "commented.zip", members)
    with zipfile.ZipFile(commented, "a") as zf:
        zf.comment = b"made by hand " * 1000
    response = restore_upload(client, env["headers"], commented, dry_run="1")
    assert response.status_code == 200, response.get_json()


def test_a_file_with_no_end_record_is_refused_as_no_zip(app, client, env, tmp_path):
    members = archive_members(build_archive(tmp_path / "good.zip", key=env["key"], schema_revision=env["revision"]))
    data = (tmp_path / "good.zip").read_bytes()
    cut = data[:data.rindex(b"PK\x05\x06")]
    response = restore_upload(client, env["headers"], cut)
    assert response.status_code == 422 and "not a valid ZIP archive" in response.get_json()["error"]
    assert format.METADATA_MEMBER in members


def test_a_directory_pointing_before_the_start_of_the_file_is_refused_as_damaged(app, client, env, tmp_path):
    """Found by the archive fuzz: zipfile shifts offsets by the "prepended bytes" the end record implies, so
    a central-directory offset one too high puts the first entry at -1 (it was a 500)."""
    data = bytearray(build_archive(tmp_path / "good.zip", key=env["key"], schema_revision=env["revision"])
                     .read_bytes())
    at = data.rindex(b"PK\x05\x06")
    struct.pack_into("<L", data, at + 16, struct.unpack_from("<L", data, at + 16)[0] + 1)
    response = restore_upload(client, env["headers"], bytes(data), dry_run="1")
    assert response.status_code == 422, response.get_json()
    assert "points before the start of the file" in response.get_json()["error"]
