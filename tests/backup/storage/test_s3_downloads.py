"""Downloads from S3 storage redirected to presigned URLs (BACKUP_S3_PRESIGNED_DOWNLOADS=true).

Against moto's real server, behind ``support.s3.S3Proxy``, which adds the one thing
moto does not do: refusing a presigned URL once it has expired, as S3 does.
"""
from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest

from app.extensions import db
from app.models import User
from app.security import issue_api_token
from support.backup import seed_sample_rows
from support.s3 import BUCKET, PREFIX, S3Proxy, refuse_expired
from support.waiting import until


@pytest.fixture
def expiring_s3(s3):
    """A proxy in front of moto that refuses expired presigned URLs; ``.endpoint_url`` is the app's endpoint."""
    with S3Proxy(s3.endpoint_url, refuse_expired) as proxy:
        yield proxy


def fetch(url: str) -> tuple[int, dict, bytes]:
    """GET ``url`` as a browser following the redirect would: status, headers, body."""
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, dict(refused.headers), refused.read()


def downloads_audited(app) -> list[dict]:
    entries = app.test_client().get("/admin/audit?action=backup.download", headers=app.test_headers)
    return entries.get_json()["entries"]


def test_a_download_redirects_to_a_presigned_url_that_serves_the_archive_then_expires(s3, make_s3_app, expiring_s3):
    app = make_s3_app(BACKUP_S3_ENDPOINT_URL=expiring_s3.endpoint_url, BACKUP_S3_PRESIGNED_DOWNLOADS=True,
                      BACKUP_S3_PRESIGNED_EXPIRY=2)
    seed_sample_rows(app)
    client, headers = app.test_client(), app.test_headers
    name = client.post("/admin/create-backup", data={"wait": "1"}, headers=headers).get_json()["backup"]["filename"]

    answer = client.get(f"/admin/download-backup/{name}", headers=headers)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    url = urlsplit(location)
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}" == expiring_s3.endpoint_url
    assert url.path == f"/{BUCKET}/{PREFIX}/{name}"
    assert query["X-Amz-Expires"] == ["2"]
    # Signed into the URL: S3 then answers with this header (moto ignores response-* overrides).
    assert query["response-content-disposition"] == [f'attachment; filename="{name}"']
    [entry] = downloads_audited(app)
    assert (entry["actor"], entry["target"], entry["details"]["presigned"]) == ("s3admin", name, True)

    status, _, body = fetch(location)
    assert status == 200
    assert body == s3.client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}")["Body"].read()

    refused = until(lambda: (result := fetch(location))[0] == 403 and result, 15, "the presigned URL to expire")
    assert b"Request has expired" in refused[2]


def test_a_name_that_is_not_a_listed_backup_gets_404_and_no_url(s3, make_s3_app):
    app = make_s3_app(BACKUP_S3_PRESIGNED_DOWNLOADS=True)
    stray = "cyberquest_backup_20200101_000000.zip"
    s3.client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{stray}", Body=b"not an archive of ours")
    for name in (stray, "cyberquest_backup_20200101_000001.zip", ".partial-x"):
        answer = app.test_client().get(f"/admin/download-backup/{name}", headers=app.test_headers)
        assert answer.status_code == 404 and "Location" not in answer.headers
    assert downloads_audited(app) == []


def test_a_token_without_the_backup_scope_gets_403_before_any_url(s3, make_s3_app):
    app = make_s3_app(BACKUP_S3_PRESIGNED_DOWNLOADS=True)
    client = app.test_client()
    name = client.post("/admin/create-backup", data={"wait": "1"},
                       headers=app.test_headers).get_json()["backup"]["filename"]
    with app.app_context():
        reader = issue_api_token(db.session.scalar(db.select(User).filter_by(username="s3admin")), scopes=["read"])
    answer = client.get(f"/admin/download-backup/{name}", headers={"Authorization": f"Bearer {reader}"})
    assert answer.status_code == 403 and "Location" not in answer.headers
    assert "backup" in answer.get_json()["error"]
    assert downloads_audited(app) == []


def test_without_the_setting_the_app_streams_the_archive_itself(s3, s3_app):
    client, headers = s3_app.test_client(), s3_app.test_headers
    name = client.post("/admin/create-backup", data={"wait": "1"}, headers=headers).get_json()["backup"]["filename"]
    answer = client.get(f"/admin/download-backup/{name}", headers=headers)
    assert answer.status_code == 200 and "Location" not in answer.headers
    assert answer.data == s3.client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}")["Body"].read()
    answer.close()
    assert "presigned" not in downloads_audited(s3_app)[0]["details"]
