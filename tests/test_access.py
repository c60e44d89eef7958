"""Who may reach what: anonymous, user, admin session, bad CSRF, Bearer tokens."""
import pytest

from support.app import ADMIN_PASSWORD
from support.web import csrf_token_from, login

ADMIN_GETS = ["/admin/", "/admin/system-backup"]


@pytest.mark.parametrize("path", ADMIN_GETS)
def test_anonymous_html_is_redirected_to_login_with_next(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=")
    assert path.rstrip("/") in response.headers["Location"]


@pytest.mark.parametrize("path", ADMIN_GETS)
def test_anonymous_json_gets_401(client, path):
    response = client.get(path, headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert "error" in response.get_json()


@pytest.mark.parametrize("path", ADMIN_GETS)
def test_non_admin_gets_403(user_client, path):
    assert user_client.get(path).status_code == 403
    response = user_client.get(path, headers={"Accept": "application/json"})
    assert response.status_code == 403
    assert response.get_json()["error"]


def test_admin_sees_dashboard_with_row_counts(admin_client):
    page = admin_client.get("/admin/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Admin panel" in html and "login_attempts" in html
    data = admin_client.get("/admin/", headers={"Accept": "application/json"}).get_json()
    assert data["counts"]["users"] == 1
    # the admin's own successful login is the most recent attempt
    assert data["recent_login_attempts"][0]["success"] is True


def test_bearer_token_authenticates_without_cookies_or_csrf(app, api_headers):
    client = app.test_client()
    response = client.get("/admin/", headers=api_headers)
    assert response.status_code == 200
    assert response.is_json


def test_bad_or_revoked_token_gets_401(app, admin_token, admin_user):
    client = app.test_client()
    assert client.get("/admin/", headers={"Authorization": "Bearer nope"}).status_code == 401
    runner = app.test_cli_runner()
    assert runner.invoke(args=["revoke-api-tokens", "admin"]).exit_code == 0
    response = client.get("/admin/", headers={"Authorization": f"Bearer {admin_token}"})
    assert response.status_code == 401
    assert response.get_json()["error"]


def test_session_post_without_csrf_gets_400(admin_client):
    response = admin_client.post("/auth/logout")
    assert response.status_code == 400
    # and the session is still logged in
    assert admin_client.get("/admin/").status_code == 200


def test_logout_is_post_only(admin_client):
    assert admin_client.get("/auth/logout").status_code == 405
    token = csrf_token_from(admin_client.get("/admin/").get_data(as_text=True))
    assert admin_client.post("/auth/logout", data={"csrf_token": token}).status_code == 302
    assert admin_client.get("/admin/").status_code == 302


def test_login_follows_only_safe_next(client, admin_user):
    page = client.get("/auth/login?next=//evil.example/x")
    token = csrf_token_from(page.get_data(as_text=True))
    response = client.post("/auth/login?next=//evil.example/x",
                           data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/admin/"
    client.post("/auth/logout", data={"csrf_token": csrf_token_from(client.get("/admin/").get_data(as_text=True))})
    page = client.get("/auth/login?next=/admin/system-backup")
    token = csrf_token_from(page.get_data(as_text=True))
    response = client.post("/auth/login?next=/admin/system-backup",
                           data={"username": "admin@example.com", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/admin/system-backup"


def test_security_headers_and_cookie_flags(client, admin_user):
    response = login(client, "admin", ADMIN_PASSWORD)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/auth/login")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"


def test_password_change_ends_existing_sessions(app, admin_client, admin_user):
    from app.extensions import db
    from app.models import User
    from app.security import hash_password

    with app.app_context():
        db.session.get(User, admin_user["id"]).password_hash = hash_password("another-password")
        db.session.commit()
    assert admin_client.get("/admin/").status_code == 302
