"""The mail helper that account links (and later backup notifications) go through."""
import socket
import time

import pytest

from app.mail import MailError, send_mail


def test_one_message_reaches_every_recipient(app, mailbox):
    with app.app_context():
        send_mail(["ops@example.com", "oncall@example.org"], "Backup failed", "The nightly backup failed.")
        send_mail("solo@example.com", "Backup succeeded", "All good.")
    assert [sorted(m.rcpt_tos) for m in mailbox] == [["oncall@example.org", "ops@example.com"], ["solo@example.com"]]
    assert mailbox[0].mail_from == "cyberquest@test.local"
    assert "Subject: Backup failed" in mailbox[0].content.decode()
    assert "The nightly backup failed." in mailbox[0].content.decode()


def test_an_unreachable_server_raises_mail_error(app, mailbox):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    app.extensions["mail"].port = closed_port
    with app.app_context(), pytest.raises(MailError, match=str(closed_port)):
        send_mail("ops@example.com", "Backup failed", "body")
    assert mailbox == []


def test_a_silent_server_times_out_instead_of_hanging(app, mailbox):
    # A socket that accepts connections (via the backlog) but never greets.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        app.extensions["mail"].port = silent.getsockname()[1]
        app.config["MAIL_TIMEOUT"] = 0.5
        started = time.monotonic()
        with app.app_context(), pytest.raises(MailError):
            send_mail("ops@example.com", "Backup failed", "body")
        assert time.monotonic() - started < 5
