"""One bad file in the store cannot break listing: the page, health, retention and `flask backup list` keep
answering, the file is left out and logged once (issue 15, item 7)."""
from __future__ import annotations

import logging
import struct
import zipfile

import orjson
import pytest

from app.backup.archive import format
from support.archives import write_zip
from support.backup import archive_members
from support.restoring import backup_names, create_backup


def with_non_ascii_signature(path) -> None:
    members = archive_members(path)
    metadata = orjson.loads(members[format.METADATA_MEMBER])
    metadata["signature"] = "hmac-sha256:" + "é" * 64
    write_zip(path, {**members, format.METADATA_MEMBER: orjson.dumps(metadata)})


def with_corrupt_metadata_stream(path) -> None:
    """The metadata member's deflate stream overwritten with bytes no inflater accepts (sizes kept)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(format.METADATA_MEMBER)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    data[start:start + info.compress_size] = b"\xff" * info.compress_size
    path.write_bytes(bytes(data))


# A signature that is no hex at all is just not this instance's: the file is not listed, as any unsigned
# file is. A metadata member that cannot be read is logged, once.
@pytest.mark.parametrize("plant, logged", [(with_non_ascii_signature, 0), (with_corrupt_metadata_stream, 1)],
                         ids=["non-ascii-signature", "corrupt-metadata-deflate"])
def test_a_planted_bad_file_is_left_out_and_everything_that_lists_keeps_answering(app, client, env, caplog, plant,
                                                                                  logged):
    good = create_backup(app)
    store = app.config["BACKUP_DIRECTORY"]
    bad = "cyberquest_backup_20990101_000000.zip"
    planted = write_zip(f"{store}/{bad}", archive_members(f"{store}/{good}"))
    plant(planted)
    caplog.set_level(logging.WARNING, logger="app.backup.catalogue")

    page = client.get("/admin/system-backup", headers=env["headers"])
    assert page.status_code == 200
    assert [b["filename"] for b in page.get_json()["backups"]] == [good]
    html = client.get("/admin/system-backup", headers={"Authorization": env["headers"]["Authorization"],
                                                       "Accept": "text/html"})
    assert html.status_code == 200
    assert client.get("/admin/backup-health", headers=env["headers"]).status_code in (200, 503)
    assert client.get(f"/admin/download-backup/{bad}", headers=env["headers"]).status_code == 404

    runner = app.test_cli_runner()
    listed = runner.invoke(args=["backup", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [b["filename"] for b in orjson.loads(listed.stdout)["backups"]] == [good]
    pruned = runner.invoke(args=["backup", "prune", "--dry-run"])
    assert pruned.exit_code == 0, pruned.output
    assert backup_names(app) == [good]

    warnings = [r for r in caplog.records if bad in r.getMessage()]
    assert len(warnings) == logged, [r.getMessage() for r in warnings]
