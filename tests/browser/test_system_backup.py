"""The System Backup page as an admin uses it, in headless Chromium (issue 16).

Create with a live bar and log, download, expand, verify, pin, delete through the
dialog, preview a merge and run it, replace and undo, save a schedule, find the
download in the audit log, a 403, and the page at 375 px. Each main screen is saved
under ``tests/artifacts/``. Every page is checked for console errors, uncaught
exceptions and CSP violations.
"""
from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.backup.service import BackupService
from app.cli import create_account
from app.extensions import db
from app.models import ContactSubmission, User
from support.app import USER_PASSWORD, count_rows
from support.backup import seed_sample_rows, user_ids
from support.browser import HeldBackup, log_in, screenshot, table_rows

pytestmark = pytest.mark.browser

PAGE = "/admin/system-backup"


def open_system_backup(page, live_server) -> None:
    page.goto("/auth/login")
    log_in(page, live_server.admin["username"], live_server.admin["password"])
    page.get_by_role("link", name="System Backup", exact=True).click()
    expect(page).to_have_url(live_server(PAGE))
    page.wait_for_load_state("load")  # the stylesheet too: a page measured before it is wider


def make_backups(app, count: int) -> list[str]:
    """``count`` backups made directly by the service; their names, newest first."""
    with app.app_context():
        for _ in range(count):
            BackupService().create("manual", "admin")
        return [b["filename"] for b in BackupService().list()]


def row(page, filename: str):
    return page.locator(f'#backups tbody tr[data-filename="{filename}"]')


def counts_table(page, selector: str) -> dict[str, list[int]]:
    """A restore counts table as {table: [inserted, updated, skipped, deleted]}."""
    return {name: [int(n) for n in numbers] for name, *numbers in table_rows(page, selector)}


def test_a_new_admin_sees_the_summary_the_chart_and_the_navigation(page, live_server, browser_problems):
    seed_sample_rows(live_server.app)
    page.goto("/auth/login")
    screenshot(page, "01-login")
    log_in(page, live_server.admin["username"], live_server.admin["password"])
    expect(page.get_by_role("heading", name="Admin panel")).to_be_visible()
    nav = page.get_by_role("navigation", name="Administration")
    assert nav.get_by_role("link").all_inner_texts() == [
        "Admin panel", "System Backup", "Schedule", "Audit log", "API tokens"]
    expect(nav.get_by_role("link", name="Admin panel")).to_have_attribute("aria-current", "page")
    screenshot(page, "02-admin-panel")

    nav.get_by_role("link", name="System Backup").click()
    expect(nav.get_by_role("link", name="System Backup")).to_have_attribute("aria-current", "page")
    expect(page.locator("#backup-health")).to_contain_text("Backup health: empty")
    expect(page.locator("#card-last-backup")).to_contain_text("None yet")
    expect(page.locator("#card-next-run")).to_contain_text("Not scheduled")
    expect(page.locator("#card-stored")).to_contain_text("0 backups")
    expect(page.locator("#card-proven-restore")).to_contain_text("Not proven yet")
    total = sum(count_rows(live_server.app).values())
    expect(page.locator("#card-at-risk .value")).to_have_text(f"{total} rows")
    expect(page.locator("#history-chart")).to_contain_text("No backups to draw yet")
    screenshot(page, "03-system-backup-first-visit")
    assert browser_problems.all == []


def test_create_shows_the_bar_and_the_log_reach_the_end_then_the_new_file(page, live_server, browser_problems,
                                                                            held_backup):
    seed_sample_rows(live_server.app)
    open_system_backup(page, live_server)
    page.get_by_role("button", name="Create Backup").click()
    progress, log = page.locator("#job-progress"), page.locator("#job-log li")
    expect(progress).to_have_js_property("value", HeldBackup.FIRST)
    expect(log).to_have_text(["Held by the test (first step)"])
    page.evaluate("window.sameDocument = true")

    held_backup.step()
    expect(progress).to_have_js_property("value", HeldBackup.SECOND)
    # One line per step: the second message of the same step updates its line.
    expect(log).to_have_text(["Held by the test (second step)"])
    screenshot(page, "04-create-backup-running")

    held_backup.run_to_the_end()
    expect(progress).to_have_js_property("value", 1)
    expect(page.locator("#job-percent")).to_have_text("100%")
    expect(log.last).to_have_text(re.compile(r"^Created cyberquest_backup_\d{8}_\d{6}(_\d+)?\.zip$"))
    lines = log.all_inner_texts()
    # Table by table, one line each (the row counts update the table's line).
    tables = [line.split(" (")[0].removeprefix("Backing up ") for line in lines if line.startswith("Backing up ")]
    assert sorted(tables) == sorted(count_rows(live_server.app))
    assert page.evaluate("window.sameDocument") is True

    held_backup.release()
    outcome = page.locator("#job-outcome")
    expect(outcome).to_contain_text("Backup created")
    expect(outcome).to_be_focused()
    filename = lines[-1].removeprefix("Created ")
    expect(outcome.get_by_role("link", name=f"Download {filename}")).to_be_visible()
    expect(page.locator("#running-job")).to_have_count(0)
    outcome.locator("summary", has_text="Log").click()
    expect(outcome.locator(".job-log li").last).to_have_text(f"Created {filename}")
    expect(row(page, filename).locator("td.state")).to_contain_text("signed")
    expect(row(page, filename).locator("td.state")).to_contain_text("not verified yet")
    screenshot(page, "05-create-backup-done")
    assert browser_problems.all == []


def test_download_expand_verify_and_pin_a_backup(page, live_server, browser_problems):
    seed_sample_rows(live_server.app)
    (filename,) = make_backups(live_server.app, 1)
    with live_server.app.app_context():
        counts = BackupService().get(filename)["record_counts"]
    open_system_backup(page, live_server)
    backup = row(page, filename)

    with page.expect_download() as download_info:
        backup.get_by_role("link", name="Download").click()
    download = download_info.value
    assert download.suggested_filename == filename
    data = Path(download.path()).read_bytes()
    assert "backup_metadata.json" in zipfile.ZipFile(io.BytesIO(data)).namelist()

    records = backup.locator("td.records")
    expect(records.locator("dl")).to_be_hidden()
    records.locator("summary").click()
    expect(records.locator("dl")).to_be_visible()
    shown = dict(zip(records.locator("dt").all_inner_texts(), map(int, records.locator("dd").all_inner_texts())))
    assert shown == counts

    backup.get_by_role("button", name="Verify").click()
    expect(page.locator(".flash-success")).to_have_text(f"Backup {filename} verified.")
    expect(page.locator(".flash-success")).to_be_focused()
    expect(row(page, filename).locator("td.state .badge.ok", has_text="verified")).to_have_text("verified just now")
    expect(page.locator("#card-proven-restore .value")).to_have_text(re.compile(r"^restores in \d+\.\d s$"))
    expect(page.locator("#card-proven-restore .detail")).to_contain_text("verified just now")

    row(page, filename).get_by_role("button", name="Pin", exact=True).click()
    expect(page.locator(".flash-success")).to_have_text(f"Backup {filename} pinned: retention keeps it.")
    expect(row(page, filename).locator("td.state")).to_contain_text("pinned")
    expect(row(page, filename).get_by_role("button", name="Unpin", exact=True)).to_be_visible()
    screenshot(page, "06-backup-verified-and-pinned")
    with live_server.app.app_context():
        backup_state = BackupService().get(filename)
    assert backup_state["pinned"] is True and backup_state["verified"] is True
    assert backup_state["restore_seconds"] > 0
    assert browser_problems.all == []


def test_delete_asks_in_a_dialog_that_names_the_file(page, live_server, browser_problems):
    newest, older = make_backups(live_server.app, 2)
    open_system_backup(page, live_server)
    dialog = page.locator("#confirm-dialog")

    row(page, older).get_by_role("button", name="Delete").click()
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("Delete this backup?")
    expect(dialog).to_contain_text(f"Delete {older}?")
    screenshot(page, "07-delete-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(row(page, older)).to_have_count(1)
    expect(row(page, older).get_by_role("button", name="Delete")).to_be_focused()

    row(page, older).get_by_role("button", name="Delete").click()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(row(page, older)).to_have_count(1)

    row(page, older).get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete backup").click()
    expect(page.locator(".flash-success")).to_have_text(f"Backup {older} deleted.")
    expect(row(page, older)).to_have_count(0)
    expect(row(page, newest)).to_have_count(1)
    with live_server.app.app_context():
        assert [b["filename"] for b in BackupService().list()] == [newest]
    assert browser_problems.all == []


def test_a_merge_preview_equals_the_restore_that_follows(page, live_server, browser_problems):
    app = live_server.app
    seed_sample_rows(app)
    (filename,) = make_backups(app, 1)
    with app.app_context():
        db.session.execute(sa.delete(User).where(User.id == 103))
        db.session.execute(sa.delete(ContactSubmission))
        db.session.commit()
    open_system_backup(page, live_server)

    page.get_by_label("Listed backup").select_option(filename)
    expect(page.get_by_role("radio", name="Merge (recommended)")).to_be_checked()
    page.get_by_label("When a row already exists (merge only)").select_option("skip")
    page.get_by_role("checkbox", name="users", exact=True).check()
    page.get_by_role("checkbox", name="contact_submissions", exact=True).check()
    page.get_by_label("Your current password").fill(live_server.admin["password"])
    # A preview needs no typed confirmation: it writes nothing.
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#restore-preview")
    expect(preview).to_contain_text("Preview (merge): ")
    expect(preview).to_be_focused()
    previewed = counts_table(page, "#restore-preview")
    assert set(previewed) == {"users", "contact_submissions"}
    assert previewed["users"][0] == 1 and previewed["contact_submissions"][0] > 0
    screenshot(page, "08-merge-preview")
    assert 103 not in user_ids(app)

    page.get_by_label('Type the restore type, "merge" or "replace", to confirm').fill("merge")
    page.get_by_role("button", name="Restore", exact=True).click()
    outcome = page.locator("#last-restore")
    expect(outcome).to_contain_text("The last restore succeeded (merge", timeout=30_000)
    expect(outcome).to_be_focused()
    assert counts_table(page, "#last-restore") == previewed
    assert 103 in user_ids(app)
    screenshot(page, "09-merge-done")
    assert browser_problems.all == []


def test_replace_then_undo_puts_the_data_back(page, live_server, browser_problems):
    app = live_server.app
    seed_sample_rows(app)
    (filename,) = make_backups(app, 1)
    with app.app_context():
        db.session.add(ContactSubmission(name="After", email="after@example.com", subject="new",
                                         message="Written after the backup."))
        db.session.commit()
    open_system_backup(page, live_server)
    changed = count_rows(app)  # the login is an attempt too: the undo brings it back

    page.get_by_label("Listed backup").select_option(filename)
    page.get_by_role("radio", name="Replace (dangerous)").check()
    page.get_by_label("Your current password").fill(live_server.admin["password"])
    page.get_by_label('Type the restore type, "merge" or "replace", to confirm').fill("replace")
    page.get_by_role("button", name="Restore", exact=True).click()
    outcome = page.locator("#last-restore")
    expect(outcome).to_contain_text("The last restore succeeded (replace", timeout=30_000)
    restored = count_rows(app)
    assert restored["contact_submissions"] == changed["contact_submissions"] - 1
    screenshot(page, "10-replace-done")

    undo = page.locator("#undo-restore")
    undo.get_by_text("Undo this restore").click()
    undo.get_by_label("Password to confirm the undo").fill(live_server.admin["password"])
    undo.get_by_role("button", name="Undo the restore").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("Every table is replaced with the safety backup")
    dialog.get_by_role("button", name="Undo the restore").click()
    expect(page.locator(".flash-success")).to_have_text("Restore started.")
    expect(outcome).to_contain_text("The last restore succeeded (replace", timeout=30_000)
    expect(page.locator("#running-job")).to_have_count(0)
    # The first restore's password step is a login attempt (issue 15), made before its safety backup: the undo
    # brings that one back too.
    undone = count_rows(app)
    assert undone.pop("login_attempts") == changed.pop("login_attempts") + 1
    assert undone == changed
    with app.app_context():
        assert db.session.execute(sa.select(ContactSubmission).filter_by(name="After")).scalar_one()
    screenshot(page, "11-undo-done")
    assert browser_problems.all == []


def test_save_a_schedule_and_see_it_on_the_page(page, live_server, browser_problems):
    open_system_backup(page, live_server)
    nav = page.get_by_role("navigation", name="Administration")
    nav.get_by_role("link", name="Schedule", exact=True).click()
    expect(nav.get_by_role("link", name="Schedule", exact=True)).to_have_attribute("aria-current", "page")
    page.get_by_label("Scheduled backups").select_option("true")
    page.get_by_label("Frequency").select_option("weekly")
    page.get_by_label("Weekday (weekly)").select_option(label="Friday")
    page.get_by_label("Time (HH:MM, UTC)").fill("03:30")
    page.get_by_role("button", name="Save schedule").click()
    expect(page.locator(".flash-success")).to_have_text("Schedule saved: weekly on Friday at 03:30 UTC.")
    screenshot(page, "12-schedule-saved")

    nav.get_by_role("link", name="System Backup", exact=True).click()
    expect(page.locator("#card-next-run .detail")).to_contain_text("Weekly on Friday at 03:30 UTC")
    expect(page.locator("#card-next-run time")).to_have_attribute("datetime", re.compile(r"T03:30:00"))
    expect(page.locator("#schedule-panel")).to_contain_text("Weekly on Friday at 03:30 UTC")
    assert browser_problems.all == []


def test_open_the_audit_log_and_find_the_download(page, live_server, browser_problems):
    newest, older = make_backups(live_server.app, 2)
    open_system_backup(page, live_server)
    with page.expect_download() as download_info:
        row(page, older).get_by_role("link", name="Download").click()
    assert download_info.value.suggested_filename == older

    page.get_by_role("navigation", name="Administration").get_by_role("link", name="Audit log", exact=True).click()
    expect(page).to_have_url(live_server("/admin/audit"))
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    downloads = [cells for cells in table_rows(page, "#audit-entries") if cells[2] == "backup.download"]
    # Time, actor, action, target, IP, details: the admin fetched the older file from this machine.
    assert [cells[1:5] for cells in downloads] == [["admin", "backup.download", older, "127.0.0.1"]]
    page.get_by_label("Action").select_option("backup.download")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#audit-entries caption")).to_have_text("Newest first, backup.download only")
    expect(page.locator("#audit-entries tbody tr")).to_have_count(1)
    expect(page.locator("#audit-entries tbody tr td").nth(3)).to_have_text(older)
    screenshot(page, "15-audit-log-download")
    assert browser_problems.all == []


def test_a_non_admin_sees_a_403_page_without_the_admin_menu(page, live_server, browser_problems):
    with live_server.app.app_context():
        create_account("bob", "bob@example.com", USER_PASSWORD, is_admin=False)
    page.goto("/auth/login")
    log_in(page, "bob", USER_PASSWORD)
    response = page.goto(PAGE)
    assert response.status == 403
    expect(page.get_by_role("heading", name="Error 403: Not allowed")).to_be_visible()
    expect(page.get_by_role("navigation", name="Administration")).to_have_count(0)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    screenshot(page, "13-forbidden")
    # Chromium logs the page's own 403 as a console error; that one is expected.
    assert [m for m in browser_problems.console_errors if "403" not in m] == []
    assert browser_problems.page_errors == []


def test_the_page_works_at_375_pixels_and_by_keyboard(page, live_server, browser_problems):
    seed_sample_rows(live_server.app)
    newest, _older = make_backups(live_server.app, 2)
    page.set_viewport_size({"width": 375, "height": 800})
    open_system_backup(page, live_server)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    for link in ("Admin panel", "System Backup", "Schedule", "Audit log", "API tokens"):
        expect(page.get_by_role("navigation", name="Administration")
               .get_by_role("link", name=link, exact=True)).to_be_in_viewport()
    card = row(page, newest)
    card.scroll_into_view_if_needed()
    box = card.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 375
    expect(card.get_by_role("button", name="Delete")).to_be_in_viewport(ratio=1)
    screenshot(page, "14-system-backup-375px")

    # By keyboard: the skip link comes first and leads to the content; focus is always visible.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    assert page.evaluate("getComputedStyle(document.activeElement).boxShadow") != "none"
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    card.locator("td.records summary").focus()
    page.keyboard.press("Enter")
    expect(card.locator("td.records dl")).to_be_visible()
    # Every form control on the page has a label.
    unlabelled = page.evaluate("""() => Array.from(document.querySelectorAll(
        'main input:not([type=hidden]), main select, main textarea')).filter(e => !e.labels.length)
        .map(e => e.name)""")
    assert unlabelled == []
    assert browser_problems.all == []
