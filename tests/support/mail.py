"""Mail in tests: pointing an app at the real SMTP server (the ``smtp_server`` fixture), reading messages."""
from __future__ import annotations

import email
import email.policy
import re


def send_mail_to(app, smtp_server) -> list:
    """Point ``app``'s mail at the real SMTP server and clear it; returns the list of envelopes it receives."""
    smtp_server.messages.clear()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, MAIL_SUPPRESS_SEND=False)
    # Flask-Mail copies its settings when the app is created, and under TESTING it
    # suppresses sending altogether; point the copy at the server and let it send.
    state = app.extensions["mail"]
    state.server, state.port, state.suppress = "127.0.0.1", smtp_server.port, False
    return smtp_server.messages


def _parsed(envelope):
    return email.message_from_bytes(envelope.content, policy=email.policy.default)


def mail_text(envelope) -> str:
    """The decoded plain-text body of a received message, as the recipient reads it."""
    return _parsed(envelope).get_body(("plain",)).get_content()


def link_in(envelope, pattern: re.Pattern) -> str:
    """The path of the first link in a received message that matches ``pattern`` (the test fails if none does)."""
    match = pattern.search(mail_text(envelope))
    assert match, mail_text(envelope)
    return match.group(0).removeprefix("http://localhost")


def message_text(envelope) -> str:
    """A received message as its subject and decoded plain-text body."""
    message = _parsed(envelope)
    body = message.get_body(preferencelist=("plain",))
    return f"Subject: {message['Subject']}\n\n{body.get_content() if body else ''}"
