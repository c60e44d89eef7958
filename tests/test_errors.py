"""Error pages: styled, with the site's navigation, for 403, 404, 413 and 500; JSON answers unchanged."""
from __future__ import annotations

import re

import pytest
from flask import abort

from support.processes import flask_process
from support.services import free_port
from support.web import JSON

ADMIN_NAV = ["Admin panel", "System Backup", "Schedule", "Audit log", "API tokens"]


def admin_nav(page: str) -> list[str]:
    """The labels of the admin navigation's links, in order."""
    nav = re.search(r'<nav class="admin-nav" aria-label="Administration">(.*?)</nav>', page, re.S)
    return re.findall(r"<a [^>]*>([^<]+)</a>", nav.group(1)) if nav else []


@pytest.fixture
def failing_routes(app):
    """Two routes that fail as no real one should: a 413 and an unexpected exception."""
    app.add_url_rule("/test-too-large", "test_too_large", lambda: abort(413))

    def crash():
        raise RuntimeError("boom")

    app.add_url_rule("/test-crash", "test_crash", crash)


def test_the_admin_navigation_marks_the_current_page(admin_client):
    page = admin_client.get("/admin/system-backup").get_data(as_text=True)
    assert admin_nav(page) == ADMIN_NAV
    assert re.findall(r'<a href="([^"]+)" aria-current="page">', page) == ["/admin/system-backup"]
    for href in ("/admin/", "/admin/backup-schedule", "/admin/audit", "/admin/api-tokens"):
        assert f'href="{href}"' in page
    schedule = admin_client.get("/admin/backup-schedule").get_data(as_text=True)
    assert re.findall(r'<a href="([^"]+)" aria-current="page">', schedule) == ["/admin/backup-schedule"]


def test_a_non_admin_sees_no_admin_navigation(user_client):
    page = user_client.get("/").get_data(as_text=True)
    assert admin_nav(page) == [] and "Log out" in page


def test_404_for_an_admin_is_a_page_with_the_navigation(admin_client):
    response = admin_client.get("/admin/no-such-page")
    page = response.get_data(as_text=True)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "Error 404: Not found" in page and 'class="card error-page"' in page and "style.css" in page
    assert admin_nav(page) == ADMIN_NAV
    assert admin_client.get("/admin/no-such-page", headers=JSON).get_json() == {"error": "Not found."}


def test_403_for_a_non_admin_says_what_to_do(user_client):
    response = user_client.get("/admin/system-backup")
    page = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "Error 403: Not allowed" in page and "Administrator access is required." in page
    assert "Ask an administrator" in page and "Log out" in page
    answer = user_client.get("/admin/system-backup", headers=JSON)
    assert answer.status_code == 403 and answer.get_json() == {"error": "Administrator access is required."}


def test_413_and_500_pages_keep_the_navigation(failing_routes, admin_client):
    too_large = admin_client.get("/test-too-large")
    assert too_large.status_code == 413
    assert "Error 413: Too large" in too_large.get_data(as_text=True)
    assert admin_nav(too_large.get_data(as_text=True)) == ADMIN_NAV
    crash = admin_client.get("/test-crash")
    page = crash.get_data(as_text=True)
    assert crash.status_code == 500 and "Error 500: Something went wrong" in page and "boom" not in page
    assert admin_nav(page) == ADMIN_NAV
    assert admin_client.get("/test-crash", headers=JSON).get_json() == {
        "error": "An internal error occurred; the server log has the details."}


def test_an_error_page_that_cannot_render_its_layout_is_still_an_answer(failing_routes, client, monkeypatch):
    import app.errors as errors

    def broken(*args, **kwargs):
        raise RuntimeError("the layout needs the database")

    monkeypatch.setattr(errors, "render_template", broken)
    response = client.get("/test-crash")
    assert response.status_code == 500
    assert "Error 500: Something went wrong" in response.get_data(as_text=True)


def test_an_unreachable_database_is_one_line_per_command_never_a_traceback(app):
    """Cron mails whatever a command prints: with the database down, each command (backup and account ones)
    says so in one ``Error:`` line (after at most one-line log warnings), exits 1, and prints no traceback."""
    nowhere = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    for command in (("backup", "list"), ("backup", "run-scheduled"), ("backup", "prune", "--dry-run"),
                    ("create-api-token", "admin", "--scope", "health"), ("list-api-tokens",)):
        done = flask_process(app, *command, env={"DATABASE_URL": nowhere})
        stdout, stderr = done.communicate(timeout=120)
        assert done.returncode == 1, (command, stdout, stderr)
        assert "Traceback" not in stderr and "sqlalche.me" not in stderr, (command, stderr)
        errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "Connection refused" in errors[0], (command, stderr)
        assert len(stderr.splitlines()) <= 4, (command, stderr)
