"""End-to-end tests in headless Chromium: login, admin panel, System Backup, logout.

The app runs on a real port (``tests/browser/conftest.py``) and every page is
checked for console errors, uncaught exceptions and Content Security Policy
violations: the CSP forbids inline scripts and styles, so a template that slips
one in fails here.
"""
from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from support.backup import seed_sample_rows
from support.app import count_rows
from support.browser import HeldBackup, log_in, table_rows

pytestmark = pytest.mark.browser

BACKUP_NAME = re.compile(r"cyberquest_backup_\d{8}_\d{6}(_\d+)?\.zip")


def test_admin_logs_in_and_sees_row_counts(page, live_server, browser_problems):
    seed_sample_rows(live_server.app)
    page.goto("/auth/login")
    log_in(page, live_server.admin["username"], live_server.admin["password"])

    expect(page).to_have_url(live_server("/admin/"))
    expect(page.get_by_role("heading", name="Admin panel")).to_be_visible()
    shown = {name: int(count) for name, count in table_rows(page, "#row-counts")}
    assert shown == count_rows(live_server.app)
    assert shown["users"] > 1 and shown["contact_submissions"] > 0
    # The login just made is the newest attempt listed.
    newest = table_rows(page, "#login-attempts")[0]
    assert newest[1:] == ["admin", "127.0.0.1", "success"]
    assert browser_problems.all == []


def test_create_backup_shows_progress_lists_it_and_downloads_a_zip(page, live_server, browser_problems,
                                                                      held_backup):
    seed_sample_rows(live_server.app)
    page.goto("/auth/login")
    log_in(page, live_server.admin["username"], live_server.admin["password"])
    page.get_by_role("link", name="System Backup").click()
    expect(page).to_have_url(live_server("/admin/system-backup"))
    expect(page.locator("#backups")).to_contain_text("No backups yet.")

    total = sum(count_rows(live_server.app).values())  # after the login, which adds an attempt
    create = page.get_by_role("button", name="Create Backup")
    create.click()
    expect(page.locator(".flash-success")).to_have_text("Backup started.")
    progress = page.locator("#job-progress")
    expect(progress).to_be_visible()
    expect(create).to_be_disabled()
    expect(progress).to_have_js_property("value", HeldBackup.FIRST)

    # From here on only backup.js can change the page: the marker shows it was not reloaded.
    page.evaluate("window.sameDocument = true")
    held_backup.step()
    expect(progress).to_have_js_property("value", HeldBackup.SECOND)
    expect(page.locator("#job-message")).to_have_text("Held by the test (second step)")
    assert page.evaluate("window.sameDocument") is True

    held_backup.release()
    # backup.js reloads the page when the job ends; nobody else does.
    expect(page.locator("#running-job")).to_have_count(0)
    expect(page.locator("#backups tbody tr")).to_have_count(1)
    assert page.evaluate("window.sameDocument") is None
    expect(create).to_be_enabled()

    filename, _created, by, trigger, _records, _size, state, _actions = table_rows(page, "#backups")[0]
    # Issue 16: the Records cell expands to the counts per table; its summary is the total.
    records = page.locator("#backups tbody tr").first.locator("td.records summary").inner_text()
    assert BACKUP_NAME.fullmatch(filename)
    assert (by, trigger, int(records)) == ("admin", "manual", total)
    assert "unsigned" not in state
    assert table_rows(page, "#history")[0][1:4] == ["backup", "admin", "succeeded"]

    with page.expect_download() as download_info:
        page.locator("#backups tbody tr").first.get_by_role("link", name="Download").click()
    download = download_info.value
    assert download.failure() is None
    assert download.suggested_filename == filename
    data = Path(download.path()).read_bytes()
    assert data.startswith(b"PK")
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == [
        "app_info.json", "backup_metadata.json", "database_backup.json"]
    assert browser_problems.all == []


def test_anonymous_visitor_logs_in_and_lands_back_on_system_backup(page, live_server, browser_problems):
    page.goto("/admin/system-backup")

    expect(page).to_have_url(re.compile(r"/auth/login\?next="))
    assert parse_qs(urlsplit(page.url).query) == {"next": ["/admin/system-backup"]}
    log_in(page, live_server.admin["username"], live_server.admin["password"])

    expect(page).to_have_url(live_server("/admin/system-backup"))
    expect(page.get_by_role("heading", name="System Backup", exact=True)).to_be_visible()
    assert browser_problems.all == []


@pytest.mark.parametrize("target", ["https://evil.example/admin/", "//evil.example/admin/"])
def test_login_ignores_an_offsite_next(page, live_server, browser_problems, target):
    page.goto(f"/auth/login?next={target}")
    log_in(page, live_server.admin["username"], live_server.admin["password"])

    expect(page).to_have_url(live_server("/admin/"))
    assert browser_problems.all == []


def test_logout_is_a_post_button_that_ends_the_session(page, live_server, browser_problems):
    page.goto("/auth/login")
    log_in(page, live_server.admin["username"], live_server.admin["password"])
    expect(page).to_have_url(live_server("/admin/"))

    logout = page.get_by_role("button", name="Log out")
    form = page.locator("form", has=logout)
    assert form.get_attribute("method").lower() == "post"
    assert form.get_attribute("action") == "/auth/logout"
    assert form.locator("input[name=csrf_token]").get_attribute("value")
    logout.click()

    expect(page).to_have_url(live_server("/auth/login"))
    expect(page.get_by_role("alert")).to_have_text("You have been logged out.")
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/auth/login\?next="))
    # A link (GET) cannot log anyone out: a cross-site <img src=/auth/logout> does nothing.
    assert page.request.get(live_server("/auth/logout"), max_redirects=0).status == 405
    assert browser_problems.all == []


def test_the_error_collector_catches_a_csp_violation(page, live_server, browser_problems):
    """Guards the other tests against passing because the collector sees nothing."""
    page.goto("/auth/login")
    with page.expect_console_message(lambda m: m.type == "error" and "CSP violation" in m.text):
        page.evaluate("""() => {
            const s = document.createElement("script");
            s.textContent = "window.inlineRan = true";
            document.body.appendChild(s);
        }""")
    assert page.evaluate("window.inlineRan") is None
    assert browser_problems.csp_violations
