"""No secret ever shows up in an archive's app_info.json or metadata, a log line, a mail or a command's output.

The keys, the mail password, an account's passwords and an API token are set to
recognisable values; then the app does what leaks secrets when it goes wrong:
backups (encrypted and signed; the members are read back with 7-Zip), a download,
a verify, logins, a password reset by mail, a scheduled run that fails and mails
it (a real SMTP server), and ``flask backup`` commands in a child process that
reads the same secrets from its environment. Every log record of the process
(DEBUG and up, with tracebacks, from every logger), every mail as sent, every command's output and
the three archive members are searched for each secret, as written and as hex
and base64. Password hashes are data and belong in database_backup.json; the
plain passwords and the keys never appear anywhere.
"""
from __future__ import annotations

import base64
import logging
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from app.cli import create_account
from app.extensions import db
from app.models import utcnow
from app.security import issue_api_token
from support.app import build_app
from support.mail import message_text, send_mail_to
from support.processes import FLASK, REPO, flask_environment
from support.schedule import save_schedule
from support.web import csrf_token_from, login

SECRETS = {
    "SECRET_KEY": "SECRET-KEY-value-0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "BACKUP_SIGNING_KEY": "SIGNING-KEY-value-a1b2c3d4e5f6a7b8c9d0e1f2",
    "BACKUP_ENCRYPTION_KEY": "ENCRYPTION-passphrase-value-5e6f7a8b",
    "MAIL_PASSWORD": "MAIL-PASSWORD-value-9c8b7a6f5e4d",
}
PASSWORD = "ACCOUNT-password-value-31415926"
NEW_PASSWORD = "NEW-ACCOUNT-password-value-27182818"
SEVEN_ZIP = "/usr/bin/7z"


def forms_of(secret: str) -> list[bytes]:
    """The secret as written, and hex- and base64-encoded (how a key slips into a debug line)."""
    raw = secret.encode()
    return [raw, raw.hex().encode(), base64.b64encode(raw).rstrip(b"="), base64.urlsafe_b64encode(raw).rstrip(b"=")]


def members_with_7z(path, tmp_path) -> dict[str, bytes]:
    """The archive's three members, extracted by 7-Zip with the passphrase."""
    out = tmp_path / f"x-{path.name}"
    done = subprocess.run([SEVEN_ZIP, "x", f"-p{SECRETS['BACKUP_ENCRYPTION_KEY']}", f"-o{out}", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return {p.name: p.read_bytes() for p in out.iterdir()}


class Records(logging.Handler):
    """Every log record of the process, formatted with its traceback."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.mark.slow
def test_no_secret_appears_in_archive_metadata_logs_mails_or_command_output(tmp_path, smtp_server):
    app = build_app(tmp_path, **SECRETS)
    # On the root logger after build_app: the migrations' logging.fileConfig replaces the root's handlers
    # (pytest's caplog among them) and its level.
    root, records = logging.getLogger(), Records()
    level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        _exercise_and_search(app, tmp_path, smtp_server, records)
    finally:
        root.removeHandler(records)
        root.setLevel(level)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _exercise_and_search(app, tmp_path, smtp_server, records):
    mailbox = send_mail_to(app, smtp_server)
    with app.app_context():
        user = create_account("keeper", "keeper@example.com", PASSWORD, is_admin=True)
        token = issue_api_token(user)
    api = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    client = app.test_client()
    outputs: dict[str, bytes] = {}

    # A session: a login with the password, a wrong one, a backup made with the token, its download and verify.
    assert login(client, "keeper", PASSWORD).status_code == 302
    assert login(app.test_client(), "keeper", PASSWORD + "-wrong").status_code == 200
    made = client.post("/admin/create-backup", data={"wait": "1"}, headers=api)
    assert made.status_code == 201, made.get_data(as_text=True)
    filename = made.get_json()["backup"]["filename"]
    for response in (client.get(f"/admin/download-backup/{filename}", headers=api),
                     client.post(f"/admin/verify-backup/{filename}", data={"wait": "1"}, headers=api),
                     client.get("/admin/system-backup", headers=api), client.get("/admin/audit", headers=api)):
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        outputs[f"answer of {response.request.path}"] = response.get_data()
        response.close()
    assert made.get_json()["backup"]["encrypted"] is True

    # A password reset by mail, carried through to a new password.
    anonymous = app.test_client()
    page = anonymous.get("/auth/forgot-password")
    anonymous.post("/auth/forgot-password", data={"email": "keeper@example.com",
                                                  "csrf_token": csrf_token_from(page.get_data(as_text=True))})
    [reset_mail] = mailbox
    link = message_text(reset_mail).split("http://localhost", 1)[1].split()[0]
    page = anonymous.get(link)
    anonymous.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                               "csrf_token": csrf_token_from(page.get_data(as_text=True))})
    assert login(app.test_client(), "keeper", NEW_PASSWORD).status_code == 302

    # A scheduled run that fails (its backup directory is a file) and mails the failure.
    store = app.config["BACKUP_DIRECTORY"]
    not_a_directory = tmp_path / "not-a-directory"
    not_a_directory.write_text("")
    save_schedule(app, effective_from=utcnow() - timedelta(days=60), enabled=True, frequency="daily",
                  time="02:00", notify_emails="ops@example.com", notify_on="failure")
    app.config["BACKUP_DIRECTORY"] = str(not_a_directory)
    with app.app_context():
        from app.backup.schedule import runner

        assert runner.run_scheduled().status == "failed"
    app.config["BACKUP_DIRECTORY"] = store
    assert len(mailbox) == 2 and "FAILED" in message_text(mailbox[1])

    # The operator's commands, the secrets read from the environment this time.
    env = {**flask_environment(app), **SECRETS}
    for args in (["backup", "create"], ["backup", "list", "--json"], ["backup", "verify", filename],
                 ["backup", "restore", "no-such-backup.zip", "--mode", "merge", "--yes"]):
        done = subprocess.run([FLASK, *args], cwd=REPO, env=env, capture_output=True, timeout=120)
        outputs["flask " + " ".join(args)] = done.stdout + done.stderr

    # What is searched: the members of every archive, each log record, each mail, each output.
    searched = dict(outputs)
    for name in sorted(os.listdir(store)):
        for member, content in members_with_7z(Path(store) / name, tmp_path).items():
            searched[f"{name}/{member}"] = content
    assert any(key.endswith("/app_info.json") for key in searched) and \
        any(key.endswith("/backup_metadata.json") for key in searched)
    for number, line in enumerate(records.lines):
        searched[f"log record {number}: {line[:60]!r}"] = line.encode()
    for number, envelope in enumerate(smtp_server.messages):
        searched[f"mail {number}"] = envelope.content
    secrets = {**SECRETS, "the account's password": PASSWORD, "its new password": NEW_PASSWORD, "the API token": token}
    leaks = [f"{what} in {where}" for where, content in searched.items() for what, secret in secrets.items()
             if any(form in content for form in forms_of(secret))]
    assert len(records.lines) > 20 and len(smtp_server.messages) == 2
    assert not leaks, "\n".join(leaks)
