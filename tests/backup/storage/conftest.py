"""For the storage tests: a clean bucket on the real S3 endpoint (``s3_server`` of tests/conftest.py), and apps on it."""
from __future__ import annotations

from types import SimpleNamespace

import boto3
import pytest

from app.cli import create_account
from app.extensions import db
from app.models import User
from app.security import issue_api_token
from support.app import ADMIN_PASSWORD, build_app
from support.s3 import BUCKET, PREFIX, fresh_bucket


@pytest.fixture(scope="module")
def s3_admin(s3_server):
    """A plain boto3 client the tests use to look at (and tamper with) the bucket directly."""
    return boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def s3(s3_server, s3_admin, monkeypatch, tmp_path):
    """A clean moto state with one empty bucket (``support.s3.BUCKET``), and test credentials in boto3's chain."""
    endpoint = s3_server.endpoint_url
    fresh_bucket(endpoint, BUCKET, monkeypatch)
    client = s3_admin
    temp_dir = tmp_path / "s3-temp"
    temp_dir.mkdir()
    return SimpleNamespace(endpoint_url=endpoint, client=client, temp_dir=temp_dir)


@pytest.fixture
def make_s3_app(s3, tmp_path):
    """``make_s3_app(**settings)``: a migrated app keeping its backups in the bucket, with an admin
    (``s3admin``) and ``app.test_headers`` carrying that admin's Bearer token; disposed afterwards."""
    apps = []

    def make(**settings):
        directory = tmp_path / f"app{len(apps)}" if apps else tmp_path  # the first one's database: tmp_path/app.db
        directory.mkdir(exist_ok=True)
        app = build_app(directory, **{"BACKUP_STORAGE": "s3", "BACKUP_S3_BUCKET": BUCKET,
                                      "BACKUP_S3_PREFIX": PREFIX, "BACKUP_S3_ENDPOINT_URL": s3.endpoint_url,
                                      **settings})
        with app.app_context():
            user = create_account("s3admin", "s3admin@example.com", ADMIN_PASSWORD, is_admin=True)
            app.test_headers = {"Authorization": f"Bearer {issue_api_token(db.session.get(User, user.id))}"}
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def s3_app(make_s3_app):
    """An app with BACKUP_STORAGE=s3 on the test bucket (see ``make_s3_app``)."""
    return make_s3_app()
