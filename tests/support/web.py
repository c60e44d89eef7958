"""Driving the app over HTTP as its users do: the login form, CSRF tokens, flashes, API tokens, jobs."""
from __future__ import annotations

import html
import re
import time

import pytest

from app.cli import create_account
from app.security import issue_api_token

JSON = {"Accept": "application/json"}


def csrf_token_from(html: str) -> str:
    """The CSRF token of the first form in a page (the test fails if there is none)."""
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "no csrf_token in the page"
    return match.group(1)


def login(client, username: str, password: str):
    """Log in through the real form, CSRF token included; returns the response."""
    page = client.get("/auth/login")
    token = csrf_token_from(page.get_data(as_text=True))
    return client.post("/auth/login", data={"username": username, "password": password, "csrf_token": token})


def flashes(response) -> list[str]:
    """The flash messages a user sees on the page."""
    return [html.unescape(m) for m in
            re.findall(r'<div class="flash[^"]*" role="alert">(.*?)</div>', response.get_data(as_text=True))]


def bearer_client(app, username: str):
    """A test client that authenticates as a new admin ``username`` with an API token, as a script does."""
    with app.app_context():
        user = create_account(username, f"{username}@example.com", f"{username}-password-1", is_admin=True)
        token = issue_api_token(user)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def wait_for_job(client, headers, job: str, timeout: float = 30.0) -> dict:
    """Poll a background job until it has succeeded or failed, and return its JSON state.

    ``job`` is the job's id or its status URL (the ``Location`` of a 202). After
    ``timeout`` seconds the test fails, showing the job's last state.
    """
    url = job if "/" in job else f"/admin/backup-jobs/{job}"
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        state = response.get_json()["job"]
        if state["status"] in ("succeeded", "failed"):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"the job at {url} did not finish in {timeout} s; its last state: {state}")
        time.sleep(0.05)
