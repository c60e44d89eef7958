"""Encrypted archives (BACKUP_ENCRYPTION_KEY) streamed to S3: made, listed, verified, downloaded, opened by
7-Zip and restored, all through the HTTP API against moto's real server."""
from __future__ import annotations

import hashlib
import zipfile

from app.backup.archive import format
from app.extensions import db
from support.app import count_rows
from support.archives import needs_7z, seven_zip
from support.backup import parse_rows, seed_sample_rows
from support.restoring import restore_listed
from support.s3 import BUCKET, PREFIX

KEY = "a passphrase for the bucket"


@needs_7z
def test_an_encrypted_backup_in_s3_round_trips_and_7z_opens_the_download(s3, make_s3_app, tmp_path):
    app = make_s3_app(BACKUP_ENCRYPTION_KEY=KEY)
    seed_sample_rows(app)
    before = count_rows(app)
    client, headers = app.test_client(), app.test_headers

    made = client.post("/admin/create-backup", data={"wait": "1"}, headers=headers)
    assert made.status_code == 201, made.get_json()
    name = made.get_json()["backup"]["filename"]
    stored = s3.client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}")["Body"].read()
    assert b"s3admin@example.com" not in stored and b"password_hash" not in stored  # nothing in clear in the bucket

    [listed] = client.get("/admin/system-backup", headers=headers).get_json()["backups"]
    assert (listed["filename"], listed["encrypted"], listed["signed"]) == (name, True, True)
    assert listed["record_counts"] == {table: rows for table, rows in before.items()}

    verified = client.post(f"/admin/verify-backup/{name}", headers=headers)
    assert verified.status_code == 200 and verified.get_json()["verification"]["ok"] is True, verified.get_json()

    download = client.get(f"/admin/download-backup/{name}", headers=headers)
    assert download.status_code == 200 and hashlib.sha256(download.data).digest() == hashlib.sha256(stored).digest()
    path = tmp_path / name
    path.write_bytes(download.data)
    download.close()
    with zipfile.ZipFile(path) as zf:
        assert all(info.compress_type == 99 for info in zf.infolist())  # AES members (WinZip AE-2)
    out = tmp_path / "extracted"
    result = seven_zip("x", f"-p{KEY}", f"-o{out}", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(format.MEMBERS)
    rows = parse_rows((out / format.DATA_MEMBER).read_bytes())
    assert {table: len(rows[table]) for table in before} == before
    assert seven_zip("x", "-pnot the passphrase", f"-o{tmp_path / 'wrong'}", "-y", str(path)).returncode != 0

    with app.app_context():
        db.session.execute(db.text("DELETE FROM contact_submissions"))
        db.session.commit()
    restored = restore_listed(client, headers, name)
    assert restored.status_code == 200, restored.get_json()
    assert count_rows(app) == before
    safety = restored.get_json()["restore"]["safety_backup"]
    [safety_backup] = [b for b in client.get("/admin/system-backup", headers=headers).get_json()["backups"]
                       if b["filename"] == safety]
    assert safety_backup["encrypted"] is True  # the safety backup went up encrypted too
