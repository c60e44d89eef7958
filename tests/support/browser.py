"""What the browser tests do on a page (the fixtures that give them one are in tests/browser/conftest.py)."""
from __future__ import annotations

import threading

from app.backup.service import BackupService
from support.processes import REPO

# Screenshots of the main screens, for people to look at (git ignores the folder).
ARTIFACTS = REPO / "tests" / "artifacts"


def log_in(page, username: str, password: str) -> None:
    """Fill and submit the login form of the current page."""
    page.get_by_label("Username or e-mail").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def table_rows(page, selector: str) -> list[list[str]]:
    """The text of each body cell of a table, row by row."""
    return page.locator(f"{selector} tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells, c => c.textContent.trim()))")


def screenshot(page, name: str) -> None:
    """Save the whole page as ``tests/artifacts/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


class HeldBackup:
    """Makes the next backups pause so a test can watch the progress bar and the log move.

    A backup reports 25 % and waits for ``step()``, then reports 50 % and waits for
    ``release()`` (or ``run_to_the_end()``), then runs for real. After
    ``run_to_the_end()`` the finished backup waits once more, at 100 % with its
    whole log, until ``release()``. Without this the backup of a small database
    ends before the page can show it running.
    """

    FIRST, SECOND = 0.25, 0.5

    def __init__(self, monkeypatch):
        self.stepped = threading.Event()
        self.released = threading.Event()
        self.finished = threading.Event()
        original = BackupService.create
        held = self

        def create(service, trigger, created_by, progress=None):
            report = progress or (lambda fraction, message: None)
            report(held.FIRST, "Held by the test (first step)")
            held.stepped.wait(timeout=60)
            report(held.SECOND, "Held by the test (second step)")
            held.released.wait(timeout=60)
            backup = original(service, trigger, created_by, progress)
            held.finished.wait(timeout=60)
            return backup

        monkeypatch.setattr(BackupService, "create", create)

    def step(self):
        self.stepped.set()

    def run_to_the_end(self):
        """Let the backup run, and hold it at its end (100 %, every message logged)."""
        self.stepped.set()
        self.released.set()

    def release(self):
        self.stepped.set()
        self.released.set()
        self.finished.set()
