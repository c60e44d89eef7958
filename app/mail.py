"""Outgoing e-mail through Flask-Mail: account links and backup notifications.

Links in e-mails start with ``PUBLIC_URL``, never with anything the request says
about its host. Account mail can be handed to one background thread
(``send_in_background``), so a request answers in the same time whether or not
the address it names belongs to an account.
"""
from __future__ import annotations

import queue
import smtplib
import threading
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from flask import Flask, current_app, render_template
from flask_mail import Connection, Message


# Flask-Mail opens SMTP connections without a timeout; a silent server would
# hold the request (or the scheduler thread) forever.
DEFAULT_TIMEOUT_SECONDS = 10
# Tasks waiting for the mail thread; past this, new ones are dropped (and logged) rather than
# letting a flood of form posts grow the process without bound.
OUTBOX_LIMIT = 1000


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


def link_for(endpoint: str, **values) -> str:
    """An absolute link to ``endpoint`` for an e-mail: ``PUBLIC_URL`` followed by the route's path.

    Works with or without a request, and never looks at the request's Host or X-Forwarded-Host.
    """
    public = urlsplit(current_app.config["PUBLIC_URL"])
    adapter = current_app.url_map.bind(public.netloc, script_name=public.path or "/", url_scheme=public.scheme)
    return adapter.build(endpoint, values, force_external=True)


class _Outbox:
    """One daemon thread running queued mail tasks in order, each inside its app's context."""

    def __init__(self):
        self._tasks: queue.Queue = queue.Queue(maxsize=OUTBOX_LIMIT)
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, app: Flask, task: Callable, args: tuple) -> None:
        with self._start_lock:
            # Started on first use, and again in a forked worker (where the parent's thread is gone).
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="mail-outbox", daemon=True)
                self._worker.start()
        try:
            self._tasks.put_nowait((app, task, args))
        except queue.Full:
            app.logger.error("mail outbox full (%d tasks waiting): %s dropped", OUTBOX_LIMIT, task.__name__)

    def _run(self) -> None:
        while True:
            app, task, args = self._tasks.get()
            try:
                with app.app_context():
                    task(*args)
            except Exception:  # a failed task must not stop the thread that sends everyone's mail
                app.logger.exception("background mail task %s failed", task.__name__)
            finally:
                self._tasks.task_done()

    def wait_until_idle(self, timeout: float) -> bool:
        done = self._tasks.all_tasks_done
        with done:
            return done.wait_for(lambda: not self._tasks.unfinished_tasks, timeout)


_outbox = _Outbox()


def send_in_background(task: Callable, *args) -> None:
    """Run ``task(*args)`` soon on the mail thread, inside the current app's context; return at once.

    The task looks up what it needs and sends its mail itself; its errors are logged, never raised here.
    """
    _outbox.submit(current_app._get_current_object(), task, args)


def wait_for_background_mail(timeout: float = 10.0) -> bool:
    """Block until every task handed to ``send_in_background`` has finished; False on timeout."""
    return _outbox.wait_until_idle(timeout)


__all__ = ["MailError", "link_for", "send_in_background", "send_mail", "send_template_mail",
           "wait_for_background_mail"]
