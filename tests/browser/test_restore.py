"""Restoring from the System Backup page in headless Chromium: choose, preview, restore, see the result.

Uses the live server and page fixtures of ``tests/browser/conftest.py``; every
page is checked for console errors, uncaught exceptions and CSP violations.
"""
from __future__ import annotations

import sqlalchemy as sa
import pytest
from playwright.sync_api import expect

from app.backup.service import BackupService
from app.extensions import db
from app.models import User
from support import browser
from support.backup import seed_sample_rows, user_ids
from support.app import count_rows

pytestmark = pytest.mark.browser


def log_in(page, username: str, password: str) -> None:
    """Open the login page and log in there."""
    page.goto("/auth/login")
    browser.log_in(page, username, password)


def counts_table(page, selector: str) -> dict[str, list[int]]:
    """A restore counts table as {table: [inserted, updated, skipped, deleted]}."""
    return {name: [int(n) for n in numbers] for name, *numbers in browser.table_rows(page, selector)}


def test_replace_restore_previews_then_brings_back_a_deleted_user(page, live_server, browser_problems):
    app = live_server.app
    seed_sample_rows(app)
    log_in(page, live_server.admin["username"], live_server.admin["password"])
    page.get_by_role("link", name="System Backup").click()

    page.get_by_role("button", name="Create Backup").click()
    # backup.js reloads the page when the job ends (or it had ended before the page rendered).
    expect(page.locator("#backups tbody tr")).to_have_count(1)
    expect(page.locator("#running-job")).to_have_count(0)
    filename = page.locator("#backups tbody tr td").first.inner_text().strip()
    with app.app_context():
        backed_up = BackupService().get(filename)["record_counts"]

    with app.app_context():
        db.session.execute(sa.delete(User).where(User.id == 103))
        db.session.commit()
    before = count_rows(app)
    assert 103 not in user_ids(app) and before["users"] == backed_up["users"] - 1

    page.get_by_label("Listed backup").select_option(filename)
    page.get_by_role("radio", name="Replace (dangerous)").check()
    expect(page.get_by_label("When a row already exists (merge only)")).to_be_disabled()
    page.get_by_label('Type the restore type, "merge" or "replace", to confirm').fill("replace")
    page.get_by_label("Your current password").fill(live_server.admin["password"])

    # Preview runs in the page: no navigation, the form keeps its input for the restore.
    page.evaluate("window.sameDocument = true")
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#restore-preview")
    expect(preview).to_contain_text("Preview (replace): ")
    expect(preview).to_contain_text("Nothing was changed; Restore would do this.")
    assert counts_table(page, "#restore-preview")["users"] == [backed_up["users"], 0, 0, before["users"]]
    assert page.evaluate("window.sameDocument") is True
    # Nothing changed but the password step's entry in login_attempts (issue 15: it is a login attempt).
    after_preview = count_rows(app)
    assert after_preview.pop("login_attempts") == before.pop("login_attempts") + 1
    assert after_preview == before and 103 not in user_ids(app)

    page.get_by_role("button", name="Restore").click()
    # The job runs in the background; backup.js follows it and reloads the page when it ends.
    outcome = page.locator("#last-restore")
    expect(outcome).to_contain_text("The last restore succeeded (replace", timeout=30_000)
    expect(page.locator("#running-job")).to_have_count(0)
    assert counts_table(page, "#last-restore")["users"] == [backed_up["users"], 0, 0, before["users"]]
    history = page.locator("#history tbody tr").first.locator("td")
    expect(history.nth(1)).to_have_text("restore")
    expect(history.nth(3)).to_have_text("succeeded")

    assert 103 in user_ids(app)
    assert count_rows(app) == backed_up
    # Still logged in: the restore kept the admin's account as it was.
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    assert browser_problems.all == []


def test_preview_errors_are_shown_in_the_page(page, live_server, browser_problems):
    app = live_server.app
    with app.app_context():
        filename = BackupService().create("manual", "admin")["filename"]
    log_in(page, live_server.admin["username"], live_server.admin["password"])
    page.goto("/admin/system-backup")

    page.get_by_label("Listed backup").select_option(filename)
    page.get_by_label('Type the restore type, "merge" or "replace", to confirm').fill("merge")
    page.get_by_label("Your current password").fill("not-the-password")
    page.get_by_role("button", name="Preview").click()

    expect(page.locator("#restore-preview")).to_have_text("The password is not correct; the restore was not started.")
    expect(page.locator("#restore-preview")).to_have_class("restore-outcome restore-failed")
    # Chromium logs every 4xx answer to fetch() as a console error; this 400 is the expected one.
    assert browser_problems.console_errors == [
        "Failed to load resource: the server responded with a status of 400 (BAD REQUEST) "
        f"({live_server('/admin/restore-backup')})"]
    assert browser_problems.page_errors == []
