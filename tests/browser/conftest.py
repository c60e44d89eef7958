"""Fixtures for the browser tests: the app on a real port, headless Chromium, pages that record errors.

For every test in tests/browser/. Chromium is Debian's ``/usr/bin/chromium``
driven by Playwright's sync API; ``playwright install`` is never needed. Without Chromium the browser tests skip loudly, or fail under
REQUIRE_SERVICES=1 (CI), like the database tests do.
"""
from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field

import pytest

from app.cli import create_account
from app.extensions import db
from support.app import ADMIN_PASSWORD, build_app
from support.browser import HeldBackup
from support.live_server import serving
from support.services import REQUIRE_SERVICES

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Generous for a shared, noisy machine; every wait is on a condition, so passing runs stay fast.
TIMEOUT_MS = 15_000

# Chromium logs CSP violations to the console itself, but in wording that changes
# between versions; the DOM event is a stable second signal, forwarded as a console error.
_REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline")
                + " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


def chromium_unavailable():
    """Skip loudly, or fail under REQUIRE_SERVICES=1, when Debian's Chromium is not installed."""
    message = (f"Chromium is not installed at {CHROMIUM}; install it with "
               "`apt-get update && apt-get install -y chromium` (never `playwright install`)")
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {message}")
    with warnings.catch_warnings():
        # Shown in the warnings summary; the suite's filterwarnings=error would turn it into an error.
        warnings.simplefilter("always", pytest.PytestWarning)
        warnings.warn(pytest.PytestWarning(f"SKIPPING: {message}"))
    pytest.skip(f"SKIPPED LOUDLY: {message}")


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the session; each test gets its own context (cookies, storage)."""
    if not os.access(CHROMIUM, os.X_OK):
        chromium_unavailable()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@dataclass
class LiveServer:
    """The app served on 127.0.0.1 from a thread; ``url`` has no trailing slash."""

    app: object
    url: str
    admin: dict

    def __call__(self, path: str) -> str:
        return self.url + path


@pytest.fixture
def live_app(tmp_path):
    """A migrated app on its own SQLite file, with one admin, answering to any host:port."""
    # SERVER_NAME would make Flask reject (404) requests for 127.0.0.1:<port>.
    app = build_app(tmp_path, SERVER_NAME=None)
    with app.app_context():
        create_account("admin", "admin@example.com", ADMIN_PASSWORD, is_admin=True)
    yield app
    with app.app_context():
        db.engine.dispose()


def _job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("backup-job-", "restore-job-", "verify-job-"))]


@pytest.fixture
def live_server(live_app):
    """Serve ``live_app`` until the test ends; background jobs are awaited so none outlives its database."""
    with serving(live_app) as port:
        try:
            yield LiveServer(live_app, f"http://127.0.0.1:{port}", {"username": "admin", "password": ADMIN_PASSWORD})
        finally:
            for job in _job_threads():
                job.join(timeout=30)


@dataclass
class BrowserProblems:
    """What went wrong in the page: console errors (CSP violations included) and uncaught exceptions."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    @property
    def all(self) -> list[str]:
        return self.console_errors + self.page_errors

    @property
    def csp_violations(self) -> list[str]:
        return [m for m in self.console_errors if "Content Security Policy" in m or m.startswith("CSP violation")]


@pytest.fixture
def browser_problems():
    return BrowserProblems()


@pytest.fixture
def page(chromium, live_server, browser_problems):
    """A fresh page (own cookies) on the live server; ``browser_problems`` collects its errors."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = chromium.new_context(base_url=live_server.url, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(script=_REPORT_CSP_VIOLATIONS)
    page = context.new_page()

    def on_console(message):
        if message.type == "error":
            location = message.location or {}
            browser_problems.console_errors.append(f"{message.text} ({location.get('url', '?')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: browser_problems.page_errors.append(str(error)))
    yield page
    context.close()


@pytest.fixture
def held_backup(monkeypatch, live_server):
    """The next backups pause where the test says (``support.browser.HeldBackup``)."""
    # Depends on live_server so it is torn down first: a failing test never leaves
    # the job thread waiting while the server fixture joins it.
    held = HeldBackup(monkeypatch)
    yield held
    held.release()
