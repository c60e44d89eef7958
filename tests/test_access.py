"""Sessions and their edges: the dashboard, logout, the login's ``next``, headers, password changes.

Who may reach which route is the matrix in tests/reliability/test_authz_matrix.py.
"""
from support.app import ADMIN_PASSWORD
from support.web import csrf_token_from, login


def test_admin_sees_dashboard_with_row_counts(admin_client):
    page = admin_client.get("/admin/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Admin panel" in html and "login_attempts" in html
    data = admin_client.get("/admin/", headers={"Accept": "application/json"}).get_json()
    assert data["counts"]["users"] == 1
    # the admin's own successful login is the most recent attempt
    assert data["recent_login_attempts"][0]["success"] is True


def test_revoke_api_tokens_ends_every_token_of_the_user(app, admin_token, admin_user):
    client = app.test_client()
    assert client.get("/admin/", headers={"Authorization": f"Bearer {admin_token}"}).status_code == 200
    assert app.test_cli_runner().invoke(args=["revoke-api-tokens", "admin"]).exit_code == 0
    response = client.get("/admin/", headers={"Authorization": f"Bearer {admin_token}"})
    assert response.status_code == 401 and "revoked" in response.get_json()["error"]


def test_a_session_post_without_csrf_is_refused_and_the_session_survives(admin_client):
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
