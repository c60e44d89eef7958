"""S3Storage against moto's S3 served over real HTTP (the ``s3_server`` fixture).

First the storage interface (the same contract LocalStorage keeps), then errors an
operator must be able to act on, then the whole app configured with
BACKUP_STORAGE=s3 through its HTTP API.
"""
from __future__ import annotations

import logging
import os
from datetime import timedelta
from types import SimpleNamespace

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.awsrequest import AWSResponse

from app.backup.errors import BackupNotFoundError, StorageError
from app.backup.storage.s3 import S3Storage, normalise_prefix
from app.backup.storage.s3_client import make_client
from app.backup.storage import get_storage
from app.cli import create_account
from app.extensions import db
from app.models import User
from app.security import issue_api_token

from support.backup import seed_sample_rows
from support.app import build_app, count_rows
from support.s3 import BUCKET, PREFIX
from support.services import free_port

MiB = 1024 * 1024
# Parts of at least 5 MiB: S3 (and moto) refuse smaller ones except the last.
MULTIPART = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                           preferred_transfer_client="classic")


@pytest.fixture
def storage(s3):
    return S3Storage(BUCKET, PREFIX + "/", s3.endpoint_url, temp_dir=str(s3.temp_dir))


def write(storage, data: bytes, names=("a.zip", "a_2.zip", "a_3.zip")) -> str:
    with storage.atomic_writer(iter(names)) as pending:
        pending.file.write(data)
    return pending.name


def object_bytes(s3, key: str) -> bytes:
    return s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def all_keys(s3) -> list[str]:
    return sorted(o["Key"] for o in s3.client.list_objects_v2(Bucket=BUCKET).get("Contents", ()))


def open_multipart_uploads(s3) -> list[dict]:
    return s3.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def fake_response(status: int, code: str, message: str = "") -> AWSResponse:
    """An S3 error answer, handed to botocore instead of sending the request."""
    body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message></Error>").encode()
    raw = SimpleNamespace(stream=lambda: iter([body]))
    return AWSResponse("http://s3.test/", status, {"Content-Type": "application/xml"}, raw)


# --- the storage interface --------------------------------------------------------------

def test_write_list_stat_read_delete(s3, storage):
    data = os.urandom(70_000)
    name = write(storage, data)

    assert name == "a.zip"
    assert all_keys(s3) == [f"{PREFIX}/a.zip"]
    assert object_bytes(s3, f"{PREFIX}/a.zip") == data
    [entry] = storage.list()
    assert (entry.name, entry.size) == ("a.zip", len(data))
    assert storage.stat("a.zip") == entry  # LIST and HEAD agree, so the metadata cache hits
    with storage.open_read("a.zip") as fh:
        assert fh.read() == data
        fh.seek(-100, os.SEEK_END)  # the ZIP reader seeks to the central directory
        assert fh.read() == data[-100:]
    storage.delete("a.zip")
    assert storage.list() == [] and all_keys(s3) == []
    assert os.listdir(s3.temp_dir) == []


@pytest.mark.parametrize("prefix, key", [
    ("", "x.zip"), (None, "x.zip"), ("/", "x.zip"), ("a/b", "a/b/x.zip"), ("/a//b/", "a/b/x.zip"),
])
def test_prefix_is_optional_and_normalised(s3, prefix, key):
    storage = S3Storage(BUCKET, prefix, s3.endpoint_url)
    write(storage, b"x", ["x.zip"])
    assert all_keys(s3) == [key]
    assert [e.name for e in storage.list()] == ["x.zip"]


def test_normalise_prefix():
    assert normalise_prefix(" ") == " "  # a blank is a legal key character; only slashes are trimmed
    assert normalise_prefix("//a///b//c/") == "a/b/c"


def test_location_tells_stores_apart(s3):
    a = S3Storage(BUCKET, "a", s3.endpoint_url)
    b = S3Storage(BUCKET, "b", s3.endpoint_url)
    assert a.location != b.location and a.location == S3Storage(BUCKET, "/a/", s3.endpoint_url).location


def test_list_shows_only_plain_names_directly_under_the_prefix(s3, storage):
    for key in ("elsewhere.zip", f"{PREFIX}x/near-miss.zip", f"{PREFIX}/deeper/y.zip", f"{PREFIX}/.hidden",
                f"{PREFIX}/mine.zip"):
        s3.client.put_object(Bucket=BUCKET, Key=key, Body=b"1")
    assert [e.name for e in storage.list()] == ["mine.zip"]


def test_list_follows_pagination(s3):
    storage = S3Storage(BUCKET, PREFIX, s3.endpoint_url, list_page_size=2)
    for i in range(5):
        s3.client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/f{i}.zip", Body=b"x" * i)
    assert sorted((e.name, e.size) for e in storage.list()) == [(f"f{i}.zip", i) for i in range(5)]


def test_a_taken_name_gets_the_next_candidate(s3, storage):
    assert [write(storage, bytes([i])) for i in range(3)] == ["a.zip", "a_2.zip", "a_3.zip"]
    assert [object_bytes(s3, f"{PREFIX}/{n}") for n in ("a.zip", "a_2.zip", "a_3.zip")] == [b"\0", b"\1", b"\2"]
    with pytest.raises(StorageError, match="No free backup file name"):
        write(storage, b"late")
    assert len(all_keys(s3)) == 3 and open_multipart_uploads(s3) == []


def race_for(client, operation: str, key: str, racer):
    """Just before ``operation`` is sent for ``key`` the first time, another writer takes ``key``.

    Returns the If-None-Match header each raced request carried.
    """
    raced = []

    def take_the_name(params, **kwargs):
        if params["url_path"].split("?")[0].endswith(f"/{key}") and not raced:
            raced.append(params["headers"].get("If-None-Match"))
            racer.put_object(Bucket=BUCKET, Key=key, Body=b"the other writer")

    client.meta.events.register(f"before-call.s3.{operation}", take_the_name)
    return raced


def test_a_name_taken_after_the_check_is_refused_by_the_conditional_put(s3):
    client = make_client(s3.endpoint_url)
    storage = S3Storage(BUCKET, PREFIX, s3.endpoint_url, client=client)
    raced = race_for(client, "PutObject", f"{PREFIX}/a.zip", s3.client)

    assert write(storage, b"ours") == "a_2.zip"
    assert raced == ["*"]
    assert object_bytes(s3, f"{PREFIX}/a.zip") == b"the other writer"
    assert object_bytes(s3, f"{PREFIX}/a_2.zip") == b"ours"


def test_a_name_taken_while_a_big_backup_uploads_is_never_overwritten(s3):
    client = make_client(s3.endpoint_url)
    storage = S3Storage(BUCKET, PREFIX, s3.endpoint_url, client=client, transfer_config=MULTIPART,
                        temp_dir=str(s3.temp_dir))
    raced = race_for(client, "CompleteMultipartUpload", f"{PREFIX}/a.zip", s3.client)
    data = os.urandom(11 * MiB)

    with pytest.raises(StorageError, match="Another writer stored a.zip .* this backup was not kept"):
        write(storage, data)
    assert raced == ["*"]
    assert object_bytes(s3, f"{PREFIX}/a.zip") == b"the other writer"
    assert all_keys(s3) == [f"{PREFIX}/a.zip"]
    assert open_multipart_uploads(s3) == []  # the refused upload was aborted, not left to linger

    assert write(storage, data) == "a_2.zip"  # the next backup skips the taken name before uploading
    head = s3.client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/a_2.zip")
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    with storage.open_read("a_2.zip") as fh:
        assert fh.read() == data
    assert os.listdir(s3.temp_dir) == [] and open_multipart_uploads(s3) == []


def test_a_failing_writer_leaves_nothing(s3, storage):
    with pytest.raises(RuntimeError, match="boom"):
        with storage.atomic_writer(["a.zip"]) as pending:
            pending.file.write(os.urandom(6 * MiB))
            raise RuntimeError("boom")
    assert pending.name is None
    assert storage.list() == [] and all_keys(s3) == [] and open_multipart_uploads(s3) == []
    assert os.listdir(s3.temp_dir) == []


def test_an_upload_that_fails_leaves_nothing(s3):
    storage = S3Storage("cq-missing", PREFIX, s3.endpoint_url, transfer_config=MULTIPART, temp_dir=str(s3.temp_dir))
    with pytest.raises(StorageError, match="'cq-missing' does not exist"):
        write(storage, os.urandom(6 * MiB))
    assert all_keys(s3) == [] and os.listdir(s3.temp_dir) == []


def test_open_read_file_is_anonymous_and_gone_after_close(s3, storage):
    write(storage, b"payload")
    fh = storage.open_read("a.zip")
    try:
        assert fh.seekable() and fh.read() == b"payload"
        assert os.listdir(s3.temp_dir) == []  # nothing to leak even if the process dies now
    finally:
        fh.close()


def test_reading_an_archives_metadata_fetches_only_its_directory_and_that_member(s3, storage, tmp_path):
    from app.backup.archive.summary import read_summary
    from support.archives import build_archive, generated_tables

    archive = build_archive(tmp_path / "big.zip", generated_tables(users=2_000, attempts=40_000), key=None)
    name = write(storage, archive.read_bytes(), names=("big.zip",))
    entry = storage.stat(name)
    assert entry.size > 1_000_000
    fetched = []

    def count(parsed, **_):
        fetched.append(parsed["ContentLength"])

    storage.client.meta.events.register("after-call.s3.GetObject", count)
    try:
        with storage.open_parts(entry) as fh:
            metadata = read_summary(fh).metadata
    finally:
        storage.client.meta.events.unregister("after-call.s3.GetObject", count)
    with storage.open_read(name) as fh:
        assert metadata == read_summary(fh).metadata
    assert metadata["record_counts"]["login_attempts"] == 40_000
    assert sum(fetched) < 200_000 and len(fetched) <= 4, fetched


@pytest.mark.parametrize("name", ["nope.zip", ".hidden", "../a.zip", "sub/a.zip", "", "."])
def test_unknown_or_unsafe_names_are_not_found(s3, storage, name):
    s3.client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/sub/a.zip", Body=b"x")
    for call in (storage.stat, storage.open_read, storage.delete):
        with pytest.raises(BackupNotFoundError):
            call(name)
    assert os.listdir(s3.temp_dir) == []


def test_cleanup_aborts_only_stale_uploads_of_our_names(s3):
    keys = [f"{PREFIX}/a.zip", f"{PREFIX}/b.zip", "elsewhere/c.zip", f"{PREFIX}/deeper/d.zip"]
    for key in keys:
        s3.client.create_multipart_upload(Bucket=BUCKET, Key=key)

    # moto reports every upload as initiated in 2010, so "young" is modelled by a long age limit.
    patient = S3Storage(BUCKET, PREFIX, s3.endpoint_url, stale_upload_age=timedelta(days=365 * 100))
    assert patient.cleanup_partials() == 0
    assert len(open_multipart_uploads(s3)) == 4
    assert S3Storage(BUCKET, PREFIX, s3.endpoint_url).cleanup_partials() == 2
    assert sorted(u["Key"] for u in open_multipart_uploads(s3)) == sorted(keys[2:])


# --- errors say what to fix ---------------------------------------------------------------

def test_a_missing_bucket_is_a_storage_error_naming_the_setting(s3):
    storage = S3Storage("cq-no-such-bucket", PREFIX, s3.endpoint_url)
    message = "The S3 bucket 'cq-no-such-bucket' does not exist; create it or fix BACKUP_S3_BUCKET."
    for call in (storage.list, lambda: storage.stat("a.zip"), lambda: storage.open_read("a.zip"),
                 lambda: storage.delete("a.zip"), storage.cleanup_partials, lambda: write(storage, b"x")):
        with pytest.raises(StorageError) as caught:
            call()
        assert str(caught.value) == message


def test_an_invalid_bucket_name_is_a_storage_error(s3):
    with pytest.raises(StorageError, match="not a valid S3 bucket name; fix BACKUP_S3_BUCKET"):
        S3Storage("bad bucket!", PREFIX, s3.endpoint_url).list()


def test_an_unreachable_endpoint_is_a_storage_error(s3):
    endpoint = f"http://127.0.0.1:{free_port()}"
    storage = S3Storage(BUCKET, PREFIX, endpoint, client=make_client(endpoint, max_attempts=1))
    with pytest.raises(StorageError) as caught:
        storage.list()
    assert str(caught.value) == (f"The S3 endpoint {endpoint} cannot be reached; "
                                 "check BACKUP_S3_ENDPOINT_URL and the network.")


def test_an_unusable_endpoint_url_is_a_storage_error():
    with pytest.raises(StorageError, match="BACKUP_S3_ENDPOINT_URL='not a url'"):
        make_client("not a url")


@pytest.mark.parametrize("action, call, permission", [
    ("list", lambda st: st.list(), "s3:ListBucket"),
    ("write", lambda st: write(st, b"x"), "s3:PutObject"),
    ("delete", lambda st: st.delete("a.zip"), "s3:DeleteObject"),
    ("clean up", lambda st: st.cleanup_partials(), "s3:ListBucketMultipartUploads and s3:AbortMultipartUpload"),
])
def test_access_denied_names_the_permission_to_grant(s3, action, call, permission):
    s3.client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/a.zip", Body=b"x")
    client = make_client(s3.endpoint_url, max_attempts=1)
    operations = {"list": "ListObjectsV2", "write": "PutObject", "delete": "DeleteObject",
                  "clean up": "ListMultipartUploads"}
    client.meta.events.register(f"before-send.s3.{operations[action]}",
                                lambda **kwargs: fake_response(403, "AccessDenied", "Access Denied"))
    with pytest.raises(StorageError) as caught:
        call(S3Storage(BUCKET, PREFIX, s3.endpoint_url, client=client))
    assert str(caught.value) == (f"Access to the S3 bucket '{BUCKET}' was denied ({action}); grant the app's "
                                 f"credentials {permission} on it, or fix the credentials boto3 finds.")


def test_rejected_credentials_say_which_variables_to_fix(s3):
    client = make_client(s3.endpoint_url, max_attempts=1)
    client.meta.events.register("before-send.s3.ListObjectsV2",
                                lambda **kwargs: fake_response(403, "InvalidAccessKeyId", "No such key id"))
    with pytest.raises(StorageError, match=r"rejected the credentials \(InvalidAccessKeyId\); fix AWS_ACCESS_KEY_ID"):
        S3Storage(BUCKET, PREFIX, s3.endpoint_url, client=client).list()


def test_missing_credentials_say_how_to_provide_them(s3, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    storage = S3Storage(BUCKET, PREFIX, s3.endpoint_url, client=make_client(s3.endpoint_url))
    with pytest.raises(StorageError, match="No usable AWS credentials were found for S3; set AWS_ACCESS_KEY_ID"):
        storage.list()


def test_a_store_without_conditional_writes_falls_back_to_the_existence_check(s3, caplog):
    client = make_client(s3.endpoint_url, max_attempts=1)

    def refuse_conditions(request, **kwargs):
        if "If-None-Match" in request.headers:
            return fake_response(501, "NotImplemented", "A header you provided implies functionality "
                                                        "that is not implemented")
        return None

    client.meta.events.register("before-send.s3.PutObject", refuse_conditions)
    storage = S3Storage(BUCKET, PREFIX, s3.endpoint_url, client=client)
    with caplog.at_level(logging.WARNING, logger="app.backup.storage.s3"):
        assert [write(storage, b"1"), write(storage, b"2")] == ["a.zip", "a_2.zip"]
    assert "does not support conditional writes" in caplog.text
    assert object_bytes(s3, f"{PREFIX}/a.zip") == b"1"


def test_get_storage_builds_s3_storage_from_the_settings(s3, tmp_path):
    app = SimpleNamespace(config={"BACKUP_STORAGE": "s3", "BACKUP_S3_BUCKET": BUCKET, "BACKUP_S3_PREFIX": "/p/",
                                  "BACKUP_S3_ENDPOINT_URL": s3.endpoint_url, "BACKUP_DIRECTORY": str(tmp_path)})
    storage = get_storage(app)
    assert isinstance(storage, S3Storage) and (storage.bucket, storage.prefix) == (BUCKET, "p")
    assert get_storage(app).client is storage.client  # one client per endpoint, not one per request
    app.config["BACKUP_S3_BUCKET"] = None
    with pytest.raises(StorageError, match="BACKUP_S3_BUCKET is not set"):
        get_storage(app)


def test_a_replacing_writer_swaps_the_object_whole_and_a_failing_one_leaves_it(s3):
    client = make_client(s3.endpoint_url)
    storage = S3Storage(BUCKET, PREFIX, s3.endpoint_url, client=client, temp_dir=str(s3.temp_dir))
    write(storage, b"old bytes", ["a.zip"])
    sent = []
    client.meta.events.register("before-call.s3.PutObject",
                                lambda params, **kwargs: sent.append(params["headers"].get("If-None-Match")))
    with pytest.raises(RuntimeError, match="boom"):
        with storage.replacing_writer("a.zip") as pending:
            pending.file.write(b"half of the new")
            raise RuntimeError("boom")
    assert object_bytes(s3, f"{PREFIX}/a.zip") == b"old bytes" and sent == []
    with storage.replacing_writer("a.zip") as pending:
        pending.file.write(b"new bytes")
    assert pending.name == "a.zip" and sent == [None]  # unconditional: it replaces on purpose
    assert object_bytes(s3, f"{PREFIX}/a.zip") == b"new bytes" and all_keys(s3) == [f"{PREFIX}/a.zip"]
    assert write(storage, b"next", ["a.zip", "a_2.zip"]) == "a_2.zip" and sent[-1] == "*"  # others stay conditional
    with pytest.raises(BackupNotFoundError):
        with storage.replacing_writer("missing.zip"):
            pass
    assert os.listdir(s3.temp_dir) == []


# --- the app with BACKUP_STORAGE=s3, through its HTTP API ---------------------------------

def test_backups_are_created_listed_downloaded_and_deleted_in_s3(s3, s3_app, tmp_path):
    seed_sample_rows(s3_app)
    client, headers = s3_app.test_client(), s3_app.test_headers

    created = client.post("/admin/create-backup", data={"wait": "1"}, headers=headers)
    assert created.status_code == 201, created.get_json()
    backup = created.get_json()["backup"]
    name = backup["filename"]
    assert backup["signed"] is True and backup["total_records"] >= 9
    assert all_keys(s3) == [f"{PREFIX}/{name}"]
    assert not (tmp_path / "backups").exists() or os.listdir(tmp_path / "backups") == []

    listed = client.get("/admin/system-backup", headers=headers).get_json()["backups"]
    assert [b["filename"] for b in listed] == [name]
    assert listed[0]["size_bytes"] == s3.client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}")["ContentLength"]

    download = client.get(f"/admin/download-backup/{name}", headers=headers)
    assert download.status_code == 200
    assert download.data == object_bytes(s3, f"{PREFIX}/{name}")
    download.close()

    # Anything else in the bucket is neither listed nor served.
    s3.client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/cyberquest_backup_20200101_000000.zip", Body=b"not a zip")
    assert [b["filename"] for b in client.get("/admin/system-backup", headers=headers).get_json()["backups"]] == [name]
    assert client.get("/admin/download-backup/cyberquest_backup_20200101_000000.zip",
                      headers=headers).status_code == 404

    deleted = client.post(f"/admin/delete-backup/{name}", headers=headers)
    assert deleted.status_code == 200 and deleted.get_json() == {"deleted": name}
    assert all_keys(s3) == [f"{PREFIX}/cyberquest_backup_20200101_000000.zip"]
    assert client.get("/admin/system-backup", headers=headers).get_json()["backups"] == []
    assert client.get(f"/admin/download-backup/{name}", headers=headers).status_code == 404


def test_a_backup_in_s3_verifies_and_restores(s3, s3_app):
    seed_sample_rows(s3_app)
    client, headers = s3_app.test_client(), s3_app.test_headers
    name = client.post("/admin/create-backup", data={"wait": "1"}, headers=headers).get_json()["backup"]["filename"]
    before = count_rows(s3_app)

    verified = client.post(f"/admin/verify-backup/{name}", headers=headers)
    assert verified.status_code == 200 and verified.get_json()["verification"]["ok"] is True, verified.get_json()

    with s3_app.app_context():
        db.session.execute(db.text("DELETE FROM contact_submissions"))
        db.session.commit()
    assert count_rows(s3_app)["contact_submissions"] == 0
    restored = client.post("/admin/restore-backup", headers=headers,
                           data={"filename": name, "mode": "replace", "confirm": "replace", "wait": "1"})
    assert restored.status_code == 200, restored.get_json()
    assert count_rows(s3_app) == before
    safety = restored.get_json()["restore"]["safety_backup"]
    assert safety and safety != name
    assert all_keys(s3) == sorted([f"{PREFIX}/{name}", f"{PREFIX}/{safety}"])


def test_a_second_app_on_the_same_bucket_lists_the_backup(s3, s3_app, tmp_path):
    created = s3_app.test_client().post("/admin/create-backup", data={"wait": "1"}, headers=s3_app.test_headers)
    name = created.get_json()["backup"]["filename"]
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = build_app(other_dir, BACKUP_STORAGE="s3", BACKUP_S3_BUCKET=BUCKET, BACKUP_S3_PREFIX=f"/{PREFIX}/",
                      BACKUP_S3_ENDPOINT_URL=s3.endpoint_url)
    try:
        with other.app_context():
            user = create_account("admin2", "admin2@example.com", "admin-password-1", is_admin=True)
            headers = {"Authorization": f"Bearer {issue_api_token(db.session.get(User, user.id))}"}
        listed = other.test_client().get("/admin/system-backup", headers=headers).get_json()["backups"]
        assert [b["filename"] for b in listed] == [name]  # same SECRET_KEY, so signed by "this" instance
    finally:
        with other.app_context():
            db.engine.dispose()


def test_a_missing_bucket_makes_create_a_500_that_says_what_to_fix(s3, s3_app):
    s3.client.delete_bucket(Bucket=BUCKET)
    response = s3_app.test_client().post("/admin/create-backup", data={"wait": "1"}, headers=s3_app.test_headers)
    assert response.status_code == 500
    assert response.get_json() == {
        "error": f"The S3 bucket '{BUCKET}' does not exist; create it or fix BACKUP_S3_BUCKET."}


def test_rekey_re_encrypts_the_archives_in_s3(s3, s3_app, tmp_path):
    from app.backup.rekey import rekey_archives

    seed_sample_rows(s3_app)
    with s3_app.app_context():
        from app.backup.service import BackupService

        made = BackupService().create("manual", None)["filename"]
    rekeyed = build_app(tmp_path, BACKUP_STORAGE="s3", BACKUP_S3_BUCKET=BUCKET, BACKUP_S3_PREFIX=PREFIX,
                        BACKUP_S3_ENDPOINT_URL=s3.endpoint_url, BACKUP_ENCRYPTION_KEY="the passphrase in s3")
    with rekeyed.app_context():
        assert [(o.filename, o.action) for o in rekey_archives(rekeyed)] == [(made, "encrypted")]
        [backup] = BackupService().list()
    assert backup["filename"] == made and backup["encrypted"] is True and backup["signed"] is True
    assert all_keys(s3) == [f"{PREFIX}/{made}"]
    response = rekeyed.test_client().post(f"/admin/verify-backup/{made}", headers=s3_app.test_headers)
    assert response.status_code == 200 and response.get_json()["verification"]["ok"] is True
