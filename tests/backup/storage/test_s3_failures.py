"""A scheduled backup to S3 that cannot be stored: a failed job with a clear message, the failure e-mail,
nothing listed, and no hang past BACKUP_S3_TIMEOUT.

Against moto's real server; ``support.s3.S3Proxy`` rejects the credentials (at once,
or after the first part of the upload, as S3 does once a key is deactivated) and
``SilentEndpoint`` is a store that stops answering. The endpoint that drops the
connection mid-upload is a row of tests/reliability/.
"""
from __future__ import annotations

import base64
import random
import time
from contextlib import ExitStack
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.backup.schedule import runner as scheduler
from app.extensions import db
from app.models import BackupJob, ContactSubmission, utcnow
from support.mail import message_text, send_mail_to
from support.s3 import BUCKET, PREFIX, S3Proxy, SilentEndpoint, refuse_after_parts
from support.schedule import save_schedule
from support.services import free_port

MiB = 1024 * 1024
CREDENTIALS = ("S3 rejected the credentials (InvalidAccessKeyId); fix AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
               "or the profile or role boto3 uses.")


def incompressible_rows(app, mib: int) -> None:
    """Contact messages of random text (fixed seed), so the archive is about ``mib`` MiB: several upload parts."""
    rng = random.Random(17)
    with app.app_context():
        for i in range(mib):
            text = base64.b64encode(rng.randbytes(MiB * 3 // 4)).decode()
            db.session.add(ContactSubmission(name=f"n{i}", email=f"n{i}@example.com", subject="s", message=text))
        db.session.commit()


def missing_bucket(s3, stack):
    s3.client.delete_bucket(Bucket=BUCKET)
    return s3.endpoint_url, f"The S3 bucket '{BUCKET}' does not exist; create it or fix BACKUP_S3_BUCKET."


def credentials_rejected(s3, stack):
    # A small archive's first request is a HEAD (is the name free?), and a refused HEAD has no body
    # to tell a bad key from a missing permission: the message names both.
    return stack.enter_context(S3Proxy(s3.endpoint_url, refuse_after_parts(0))).endpoint_url, (
        f"Access to the S3 bucket '{BUCKET}' was denied (write); grant the app's credentials s3:PutObject on it, "
        "or fix the credentials boto3 finds.")


def credentials_rejected_after_the_first_part(s3, stack):
    return stack.enter_context(S3Proxy(s3.endpoint_url, refuse_after_parts(1))).endpoint_url, CREDENTIALS


def unreachable(s3, stack):
    endpoint = f"http://127.0.0.1:{free_port()}"
    return endpoint, f"The S3 endpoint {endpoint} cannot be reached; check BACKUP_S3_ENDPOINT_URL and the network."


def silent(s3, stack):
    endpoint = stack.enter_context(SilentEndpoint()).endpoint_url
    return endpoint, (f"The S3 endpoint {endpoint} stopped answering; check the store's health and the network, "
                      "then try again.")


@pytest.mark.parametrize("failure", [missing_bucket, credentials_rejected, credentials_rejected_after_the_first_part,
                                     unreachable, silent])
def test_a_scheduled_backup_that_s3_refuses_fails_its_job_and_mails_why(s3, make_s3_app, smtp_server, failure):
    with ExitStack() as stack:
        endpoint, says = failure(s3, stack)
        app = make_s3_app(BACKUP_S3_ENDPOINT_URL=endpoint, BACKUP_S3_TIMEOUT=1)
        if failure is credentials_rejected_after_the_first_part:
            incompressible_rows(app, 7)  # a 7 MiB archive: its first 5 MiB part goes up, the rest is refused
        mailbox = send_mail_to(app, smtp_server)
        save_schedule(app, effective_from=utcnow() - timedelta(days=60), enabled=True, frequency="daily",
                      time="02:00", notify_emails="ops@example.com", notify_on="failure")

        started = time.monotonic()
        with app.app_context():
            outcome = scheduler.run_scheduled()
        took = time.monotonic() - started

        assert outcome.status == "failed" and outcome.message == f"Failed: {says}"
        assert took < 30, f"the failure took {took:.0f} s with BACKUP_S3_TIMEOUT=1"
        with app.app_context():
            [job] = db.session.execute(select(BackupJob)).scalars().all()
            assert (job.kind, job.status, job.message) == ("backup", "failed", says)
        [mail] = mailbox
        assert "FAILED: storage" in message_text(mail) and says in message_text(mail)
        assert mail.rcpt_tos == ["ops@example.com"]
        if failure is not missing_bucket:
            listed = s3.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/").get("Contents", [])
            assert [o["Key"] for o in listed if ".partial-" not in o["Key"]] == []
        if failure is credentials_rejected_after_the_first_part:
            uploads = s3.client.list_multipart_uploads(Bucket=BUCKET)["Uploads"]  # could not be aborted either
            [upload] = [u for u in uploads if ".partial-" not in u["Key"]]  # the other names its writer
            parts = s3.client.list_parts(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])["Parts"]
            assert len(parts) == 1  # one part went up (parts travel two at a time: either one), then the key was refused
