"""E-mailed links come from PUBLIC_URL, never from the request; https means Secure cookies and HSTS;
X-Forwarded-Host is never believed; /admin responses and downloads are never cached."""
import re

import pytest

from app.cli import create_account
from app.extensions import db
from app.security import issue_api_token
from config import ConfigError, check_settings, load_config
from support.app import ADMIN_PASSWORD, build_app
from support.web import csrf_token_from
from support.mail import mail_text

PUBLIC_URL = "https://cq.example.org/portal"
POISON = {"X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": "https"}
POISONED_BASE = "https://evil.example"  # the request's own Host header


@pytest.fixture
def app_settings():
    return {"PUBLIC_URL": PUBLIC_URL, "TRUSTED_PROXIES": 1}


def poisoned_post(client, path, fields):
    page = client.get(path, base_url=POISONED_BASE, headers=POISON)
    fields["csrf_token"] = csrf_token_from(page.get_data(as_text=True))
    # Flask-WTF wants a same-origin Referer on https posts; the attacker's own host is that origin.
    return client.post(path, base_url=POISONED_BASE, headers={**POISON, "Referer": POISONED_BASE + path},
                       data=fields)


def only_link(envelope) -> str:
    links = re.findall(r"https?://\S+", mail_text(envelope))
    assert len(links) == 1, mail_text(envelope)
    return links[0]


def test_a_reset_link_starts_with_public_url_whatever_host_the_request_names(app, client, plain_user, mailbox):
    response = poisoned_post(client, "/auth/forgot-password", {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mailbox) == 1
    link = only_link(mailbox[0])
    assert re.fullmatch(re.escape(PUBLIC_URL) + r"/auth/reset-password/[0-9a-f]{64}", link), link
    # and the path after PUBLIC_URL is the app's own route
    assert client.get(link.removeprefix(PUBLIC_URL), base_url="https://cq.example.org").status_code == 200


def test_a_verification_link_starts_with_public_url_whatever_host_the_request_names(app, client, mailbox):
    response = poisoned_post(client, "/auth/register", {
        "username": "bob", "email": "bob@example.com", "password": "bob-password-1", "confirm": "bob-password-1"})
    assert response.status_code == 302
    assert only_link(mailbox[0]).startswith(PUBLIC_URL + "/auth/verify-email/")

    poisoned_post(client, "/auth/resend-verification", {"email": "bob@example.com"})
    assert len(mailbox) == 2
    assert only_link(mailbox[1]).startswith(PUBLIC_URL + "/auth/verify-email/")


def test_x_forwarded_host_is_not_believed_even_from_a_trusted_proxy(tmp_path):
    app = build_app(tmp_path, TRUSTED_PROXIES=1, TRUSTED_HOSTS=["cq.example.org"])
    client = app.test_client()
    # Flask checks the Host against TRUSTED_HOSTS; a forwarded host must not stand in for it.
    assert client.get("/auth/login", base_url="http://cq.example.org",
                      headers={"X-Forwarded-Host": "attacker.example"}).status_code == 200
    assert client.get("/auth/login", base_url="http://attacker.example").status_code == 400


def test_over_https_cookies_are_secure_and_hsts_is_sent(app, client, admin_user):
    page = client.get("/auth/login", base_url="https://cq.example.org")
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    response = client.post("/auth/login", base_url="https://cq.example.org",
                           headers={"Referer": "https://cq.example.org/auth/login"}, data={
        "username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_token_from(page.get_data(as_text=True))})
    assert response.status_code == 302
    cookies = response.headers.getlist("Set-Cookie")
    assert cookies and all("; Secure" in cookie for cookie in cookies), cookies


def test_over_plain_http_there_is_no_hsts_and_cookies_are_not_secure_only(tmp_path):
    client = build_app(tmp_path).test_client()
    page = client.get("/auth/login")
    assert "Strict-Transport-Security" not in page.headers
    assert "Secure" not in page.headers["Set-Cookie"]


@pytest.mark.parametrize("raw", ["cq.example.org", "ftp://cq.example.org", "https://", "https://x.org/?a=1"])
def test_a_public_url_that_is_not_an_http_address_stops_start_up(raw):
    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        check_settings({"SECRET_KEY": "k" * 32, "PUBLIC_URL": raw})


def test_admin_pages_and_downloads_are_never_cached(tmp_path):
    app = build_app(tmp_path)
    with app.app_context():
        token = issue_api_token(create_account("admin", "admin@example.com", ADMIN_PASSWORD, is_admin=True))
        db.session.remove()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    created = client.post("/admin/create-backup", headers=headers, data={"wait": "1"})
    assert created.status_code == 201, created.get_data(as_text=True)
    filename = created.get_json()["backup"]["filename"]
    responses = {
        "dashboard": client.get("/admin/", headers=headers),
        "list": client.get("/admin/system-backup", headers=headers),
        "download": client.get(f"/admin/download-backup/{filename}", headers=headers),
        "anonymous redirect": app.test_client().get("/admin/system-backup"),
    }
    assert responses["download"].status_code == 200 and responses["download"].data[:2] == b"PK"
    responses["download"].close()
    assert {name: r.headers.get("Cache-Control") for name, r in responses.items()} == {
        name: "no-store, private" for name in responses}
    with app.app_context():
        db.engine.dispose()


def test_public_url_defaults_to_the_address_make_run_serves():
    settings = load_config({"SECRET_KEY": "k" * 32})
    assert settings["PUBLIC_URL"] == "http://127.0.0.1:5000"
    check_settings(settings)
    assert settings["SESSION_COOKIE_SECURE"] is False
    https = {"SECRET_KEY": "k" * 32, "PUBLIC_URL": "https://backup.example.com/"}
    check_settings(https)
    assert https["PUBLIC_URL"] == "https://backup.example.com"
    assert https["SESSION_COOKIE_SECURE"] is https["REMEMBER_COOKIE_SECURE"] is True
