"""Backups streamed into S3 (app/backup/storage/s3_stream.py) against moto's real HTTP server.

Bounded memory (parts of 5 MiB, at most two in flight), nothing listed before the
publication, a failing or killed writer leaving no object and its upload aborted,
and archives written over the non-seekable stream reading back whole.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import zipfile
from datetime import timedelta

import pytest
from botocore.exceptions import EndpointConnectionError

from app.backup.errors import StorageError
from app.backup.storage.s3 import S3Storage
from app.backup.jobs.lock import current_owner
from app.backup.storage.s3_client import make_client
from support.processes import REPO
from support.s3 import fresh_bucket
from support.waiting import until

BUCKET = "cq-stream"
PREFIX = "streamed"
MiB = 1024 * 1024
CHUNK = os.urandom(64 * 1024)


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A clean moto state with one bucket, test credentials in boto3's chain, and a plain client to look."""
    return fresh_bucket(s3_server.endpoint_url, BUCKET, monkeypatch)


def uploads(s3) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def keys(s3) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", ()))


def test_a_big_archive_streams_in_parts_of_5_mib_two_at_a_time_with_bounded_memory(s3, s3_server):
    client = make_client(s3_server.endpoint_url)
    in_flight, most, sizes = [0], [0], []
    lock = threading.Lock()

    def part_starts(params, **kwargs):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            sizes.append(len(params["Body"]))

    def part_ends(**kwargs):
        with lock:
            in_flight[0] -= 1

    calls = []
    client.meta.events.register("provide-client-params.s3.*", lambda model, **kwargs: calls.append(model.name))
    client.meta.events.register("provide-client-params.s3.UploadPart", part_starts)
    client.meta.events.register("after-call.s3.UploadPart", part_ends)
    storage = S3Storage(BUCKET, PREFIX, s3_server.endpoint_url, client=client)
    listed_while_writing = keys_while_writing = None
    with storage.atomic_writer(["big.zip"]) as pending:
        for index in range(48 * MiB // len(CHUNK)):
            pending.file.write(CHUNK)
            if index == 24 * MiB // len(CHUNK):
                listed_while_writing = (storage.list(), [u["Key"] for u in uploads(s3)])
                keys_while_writing = keys(s3)
    assert pending.name == "big.zip"
    # Nothing listed while the parts go up straight to the backup's own key, beside the upload naming its writer.
    assert listed_while_writing[0] == [] and keys_while_writing == []
    assert sorted(listed_while_writing[1]) == [f"{PREFIX}/.partial-{current_owner()}-big.zip", f"{PREFIX}/big.zip"]
    assert most[0] == 2 and sizes.count(5 * MiB) == len(sizes) - 1
    assert storage.stat("big.zip").size == 48 * MiB
    assert keys(s3) == [f"{PREFIX}/big.zip"] and uploads(s3) == []  # no copy, no upload left behind
    assert not [c for c in calls if c in ("CopyObject", "UploadPartCopy")]


MEASURE = """
import os, sys, time
from app.backup.storage.s3 import S3Storage

def peak_kib():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (larger) test process this one was forked from.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

storage = S3Storage(sys.argv[1], sys.argv[2], sys.argv[3])
chunk = os.urandom(64 * 1024)
# A store slower than the writer, as a real one is: without the bound, parts would pile up in memory.
storage.client.meta.events.register("before-send.s3.UploadPart", lambda **kwargs: time.sleep(0.05))

def write(name, mib):
    with storage.atomic_writer([name]) as pending:
        for _ in range(mib * 16):
            pending.file.write(chunk)

write("warm-up.zip", 11)  # every code path loaded, the client's pools filled
before = peak_kib()
write("big.zip", 96)
print(before, peak_kib())
"""


def test_streaming_a_96_mib_archive_grows_the_writer_by_less_than_20_mb(s3, s3_server):
    result = subprocess.run([sys.executable, "-c", MEASURE, BUCKET, PREFIX, s3_server.endpoint_url], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    before, after = (int(kib) for kib in result.stdout.split())
    assert (after - before) * 1024 < 20 * 1000 * 1000, f"grew by {(after - before) / 1024:.1f} MiB"
    assert s3.head_object(Bucket=BUCKET, Key=f"{PREFIX}/big.zip")["ContentLength"] == 96 * MiB


def test_a_zip_written_over_the_stream_reads_back_whole(s3, s3_server):
    storage = S3Storage(BUCKET, PREFIX, s3_server.endpoint_url)
    payload = os.urandom(12 * MiB)
    with storage.atomic_writer(["a.zip"]) as pending:
        with zipfile.ZipFile(pending.file, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            with zf.open("data.bin", "w", force_zip64=True) as member:
                member.write(payload)
            zf.writestr("small.json", b"{}")
    with storage.open_read("a.zip") as fh, zipfile.ZipFile(fh) as zf:
        assert zf.read("data.bin") == payload and zf.read("small.json") == b"{}"


def test_a_writer_failing_mid_stream_aborts_its_upload_and_leaves_nothing(s3, s3_server):
    storage = S3Storage(BUCKET, PREFIX, s3_server.endpoint_url)
    with pytest.raises(RuntimeError, match="the database went away"):
        with storage.atomic_writer(["a.zip"]) as pending:
            for _ in range(16 * MiB // len(CHUNK)):
                pending.file.write(CHUNK)
            raise RuntimeError("the database went away")
    assert pending.name is None and keys(s3) == [] and uploads(s3) == []


WRITER = """
import os, sys, time
from app.backup.storage.s3 import S3Storage
storage = S3Storage(sys.argv[1], sys.argv[2], sys.argv[3])
with storage.atomic_writer(["killed.zip"]) as pending:
    pending.file.write(os.urandom(11 * 1024 * 1024))
    print("parts sent", flush=True)
    time.sleep(60)
"""


def test_a_killed_writer_leaves_no_listed_object_and_its_upload_is_aborted(s3, s3_server):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, BUCKET, PREFIX, s3_server.endpoint_url], cwd=REPO,
                              env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "parts sent"
        until(lambda: len(uploads(s3)) == 2, 10, "the upload and the one naming its writer")
        # moto dates every upload in 2010: a century-long age limit leaves only the writer's liveness to decide.
        storage = S3Storage(BUCKET, PREFIX, s3_server.endpoint_url, stale_upload_age=timedelta(days=36500))
        assert storage.cleanup_partials() == 0  # its writer lives: its upload is kept
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        assert storage.list() == [] and keys(s3) == []
        assert storage.cleanup_partials() == 2  # a dead writer of this host: both aborted at once
        assert uploads(s3) == [] and keys(s3) == []
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()


def test_an_endpoint_dropping_mid_upload_fails_with_what_to_check_and_leaves_nothing(s3, s3_server):
    client = make_client(s3_server.endpoint_url, max_attempts=1)
    sent = []

    def drop_after_the_first_part(request, **kwargs):
        sent.append(request.url)
        if len(sent) > 1:
            raise EndpointConnectionError(endpoint_url=s3_server.endpoint_url)

    client.meta.events.register("before-send.s3.UploadPart", drop_after_the_first_part)
    storage = S3Storage(BUCKET, PREFIX, s3_server.endpoint_url, client=client)
    with pytest.raises(StorageError, match="cannot be reached; check BACKUP_S3_ENDPOINT_URL"):
        with storage.atomic_writer(["a.zip"]) as pending:
            for _ in range(20 * MiB // len(CHUNK)):
                pending.file.write(CHUNK)
    assert pending.name is None and keys(s3) == [] and uploads(s3) == []


def test_the_stream_hashes_what_it_uploads(s3, s3_server):
    storage = S3Storage(BUCKET, PREFIX, s3_server.endpoint_url, client=make_client(s3_server.endpoint_url))
    with storage.atomic_writer(["hashed.zip"]) as pending:
        for _ in range(7 * MiB // len(CHUNK)):  # more than one part
            pending.file.write(CHUNK)
        digest = pending.sha256()
    stored = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/hashed.zip")["Body"].read()
    assert digest == hashlib.sha256(stored).hexdigest()
