"""What the browser tests do on a page (the fixtures that give them one are in tests/browser/conftest.py)."""
from __future__ import annotations


def log_in(page, username: str, password: str) -> None:
    """Fill and submit the login form of the current page."""
    page.get_by_label("Username or e-mail").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def table_rows(page, selector: str) -> list[list[str]]:
    """The text of each body cell of a table, row by row."""
    return page.locator(f"{selector} tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells, c => c.textContent.trim()))")
