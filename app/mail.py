"""Outgoing e-mail through Flask-Mail (account links now, backup notifications later)."""
from __future__ import annotations

import smtplib
from collections.abc import Iterable

from flask import current_app, render_template
from flask_mail import Connection, Message


# Flask-Mail opens SMTP connections without a timeout; a silent server would
# hold the request (or the scheduler thread) forever.
DEFAULT_TIMEOUT_SECONDS = 10


class MailError(Exception):
    """A message could not be handed to the SMTP server."""


class _TimeoutConnection(Connection):
    """Flask-Mail's connection, with a socket timeout (``MAIL_TIMEOUT`` seconds)."""

    def configure_host(self):
        timeout = current_app.config.get("MAIL_TIMEOUT", DEFAULT_TIMEOUT_SECONDS)
        smtp_class = smtplib.SMTP_SSL if self.mail.use_ssl else smtplib.SMTP
        host = smtp_class(self.mail.server, self.mail.port, timeout=timeout)
        host.set_debuglevel(int(self.mail.debug))
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


def send_mail(recipients: str | Iterable[str], subject: str, body: str, sender: str | None = None) -> None:
    """Send a plain-text e-mail now, through the SMTP server in the ``MAIL_*`` settings.

    ``recipients`` is one address or several; ``sender`` defaults to ``MAIL_DEFAULT_SENDER``.
    Returns once the server has accepted the message. Raises ``MailError`` (with the
    SMTP or network error as its cause) when it could not be delivered to the server;
    callers decide whether that is fatal. When Flask-Mail suppresses sending
    (``MAIL_SUPPRESS_SEND``, on by default under ``TESTING``) nothing is sent.
    """
    if isinstance(recipients, str):
        recipients = [recipients]
    message = Message(subject=subject, recipients=list(recipients), body=body, sender=sender)
    state = current_app.extensions["mail"]
    try:
        with _TimeoutConnection(state) as connection:
            connection.send(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"Could not send {subject!r} via {state.server}:{state.port}: {exc}") from exc


def send_template_mail(recipients: str | Iterable[str], subject: str, template: str, **context) -> None:
    """Render the plain-text template ``email/<template>`` with ``context`` and send it.

    Raises ``MailError`` like ``send_mail``.
    """
    send_mail(recipients, subject, render_template(f"email/{template}", **context))


__all__ = ["MailError", "send_mail", "send_template_mail"]
