"""Mail in tests: pointing an app at the real SMTP server (the ``smtp_server`` fixture), reading messages."""
from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Sequence

from app.mail import wait_for_background_mail


class DeliveredMail(Sequence):
    """The envelopes the SMTP server received, read only once the app's background mail is all sent."""

    def __init__(self, messages: list):
        self._messages = messages

    def _delivered(self) -> list:
        assert wait_for_background_mail(timeout=30), "the background mail was not sent within 30 s"
        return self._messages

    def __getitem__(self, index):
        return self._delivered()[index]

    def __len__(self):
        return len(self._delivered())

    def __eq__(self, other):
        return list(self._delivered()) == list(other)

    def clear(self) -> None:
        """Forget what was received so far (once the background mail is sent)."""
        self._delivered().clear()

    __hash__ = None

    def __repr__(self):
        return repr(self._messages)


def send_mail_to(app, smtp_server) -> DeliveredMail:
    """Point ``app``'s mail at the real SMTP server and clear it; returns the envelopes it receives
    (read once the app's background mail is sent)."""
    wait_for_background_mail()
    smtp_server.messages.clear()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, MAIL_SUPPRESS_SEND=False)
    # Flask-Mail copies its settings when the app is created, and under TESTING it
    # suppresses sending altogether; point the copy at the server and let it send.
    state = app.extensions["mail"]
    state.server, state.port, state.suppress = "127.0.0.1", smtp_server.port, False
    return DeliveredMail(smtp_server.messages)


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
