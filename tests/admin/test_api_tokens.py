"""API tokens: a route added later needing a scope at once, the CLI, the /admin/api-tokens page and its JSON,
the audit trail, and password changes revoking tokens.

Which scope each route needs, and the 401s of expired, revoked and unknown tokens, are checked by the
matrix in tests/reliability/test_authz_matrix.py.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import orjson
from flask import jsonify

from app.cli import create_account
from app.extensions import db
from app.models import ApiToken, AuditLog, User
from app.security import hash_password, issue_api_token
from support.app import build_app
from support.web import csrf_token_from, flashes
from support.mail import mail_text


def token_for(app, username="admin", **options) -> str:
    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(username=username)).scalar_one()
        return issue_api_token(user, **options)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_route_added_later_is_covered_without_anyone_remembering(tmp_path):
    app = build_app(tmp_path)
    app.add_url_rule("/admin/brand-new-report", "brand_new_report", lambda: jsonify(ok=True), methods=["GET", "POST"])
    with app.app_context():
        db.session.add(User(username="admin", email="admin@example.com", password_hash=hash_password("x" * 10),
                            is_admin=True))
        db.session.commit()
    client = app.test_client()
    health, read = token_for(app, scopes=["health"]), token_for(app, scopes=["read"])
    assert client.get("/admin/brand-new-report", headers=bearer(health)).get_json()["required_scope"] == "read"
    assert client.get("/admin/brand-new-report", headers=bearer(read)).status_code == 200
    assert client.post("/admin/brand-new-report", headers=bearer(read)).get_json()["required_scope"] == "admin"
    with app.app_context():
        db.engine.dispose()


def run(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_the_cli_creates_lists_and_revokes_scoped_expiring_tokens(app, admin_user):
    created = run(app, "create-api-token", "admin", "--scope", "read", "--scope", "backup", "--expires-in", "7",
                  "--name", "nightly")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    client = app.test_client()
    assert client.get("/admin/system-backup", headers=bearer(token)).status_code == 200
    assert client.post("/admin/delete-backup/x.zip", headers=bearer(token)).get_json()["required_scope"] == "admin"

    listed = run(app, "list-api-tokens", "--json")
    (entry,) = orjson.loads(listed.stdout)["tokens"]
    assert (entry["name"], entry["owner"], entry["scopes"], entry["revoked_at"]) == (
        "nightly", "admin", ["read", "backup"], None)
    assert timedelta(days=6, hours=23) < (_parse(entry["expires_at"]) - _parse(entry["created_at"])) <= timedelta(days=7)
    assert token not in listed.stdout
    table = run(app, "list-api-tokens").stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "NAME", "OWNER", "SCOPES"] and "read,backup" in table[1]

    revoked = run(app, "revoke-api-token", str(entry["id"]))
    assert revoked.exit_code == 0 and "nightly" in revoked.stdout
    assert client.get("/admin/", headers=bearer(token)).status_code == 401
    missing = run(app, "revoke-api-token", "424242")
    assert missing.exit_code == 1 and missing.stderr.strip().splitlines() == ["Error: No API token has the id 424242."]

    default = run(app, "create-api-token", "admin").stdout.strip().splitlines()[-1]
    assert client.post("/admin/api-tokens/424242/revoke", headers=bearer(default)).status_code == 404  # admin scope
    bad_scope = run(app, "create-api-token", "admin", "--scope", "root")
    assert bad_scope.exit_code == 2


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def test_the_page_creates_a_token_shown_once_and_revokes_it(app, admin_client, admin_user):
    dashboard = admin_client.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/api-tokens"' in dashboard
    page = admin_client.get("/admin/api-tokens")
    assert page.status_code == 200 and "No API tokens yet" in page.get_data(as_text=True)
    created = admin_client.post("/admin/api-tokens", data={
        "name": "uptime monitor", "scopes": "health", "expires_in": "30",
        "csrf_token": csrf_token_from(page.get_data(as_text=True))})
    assert created.status_code == 201
    secret = re.search(r'<code id="new-token-value">(cq_[^<]+)</code>', created.get_data(as_text=True)).group(1)
    client = app.test_client()
    assert client.get("/admin/backup-health", headers=bearer(secret)).status_code in (200, 503)
    assert client.get("/admin/system-backup", headers=bearer(secret)).status_code == 403

    listing = admin_client.get("/admin/api-tokens").get_data(as_text=True)
    assert secret not in listing and "uptime monitor" in listing and secret[:10] in listing
    with app.app_context():
        token_id = db.session.execute(db.select(ApiToken.id)).scalar_one()
    revoked = admin_client.post(f"/admin/api-tokens/{token_id}/revoke",
                                data={"csrf_token": csrf_token_from(listing)})
    assert revoked.status_code == 302 and revoked.headers["Location"] == "/admin/api-tokens"
    assert flashes(admin_client.get("/admin/api-tokens")) == [f"API token {token_id} revoked."]
    assert client.get("/admin/backup-health", headers=bearer(secret)).status_code == 401

    refused = admin_client.post("/admin/api-tokens", data={
        "name": "x", "scopes": "root", "csrf_token": csrf_token_from(listing)})
    assert refused.status_code == 400
    assert flashes(refused) == ["Scopes: Unknown scope 'root': use health, read, backup, admin."]
    assert admin_client.post("/admin/api-tokens", data={"name": "no csrf"}).status_code == 400


def test_the_json_api_for_tokens_and_its_audit_trail(app, admin_user, api_headers):
    client = app.test_client()
    created = client.post("/admin/api-tokens", headers=api_headers,
                          json={"name": "monitor", "scopes": ["health"], "expires_in": 30})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert set(body) == {"token", "id"} and body["token"].startswith("cq_")
    listed = client.get("/admin/api-tokens", headers=api_headers).get_json()["tokens"]
    assert [(t["id"], t["scopes"]) for t in listed][0] == (body["id"], ["health"])
    assert client.post(f"/admin/api-tokens/{body['id']}/revoke", headers=api_headers).get_json() == {
        "revoked": body["id"]}
    assert client.post("/admin/api-tokens", headers=api_headers, json={"scopes": "read,nope"}).get_json() == {
        "error": "Scopes: Unknown scope 'nope': use health, read, backup, admin."}
    with app.app_context():
        acting = db.session.execute(db.select(ApiToken.id).filter_by(name="cli")).scalar_one()
        entries = db.session.execute(db.select(AuditLog).order_by(AuditLog.id)).scalars().all()
        assert [(e.actor, e.action, e.target) for e in entries] == [
            ("admin", "token.create", f"api-token:{body['id']}"), ("admin", "token.revoke", f"api-token:{body['id']}")]
        details = orjson.loads(entries[0].details)
        assert details["token_id"] == acting and details["scopes"] == ["health"] and details["name"] == "monitor"
        assert body["token"] not in entries[0].details


def test_a_password_reset_revokes_the_users_tokens(app, client, admin_user, mailbox):
    token = token_for(app)
    assert app.test_client().get("/admin/", headers=bearer(token)).status_code == 200
    page = client.get("/auth/forgot-password")
    client.post("/auth/forgot-password", data={"email": "admin@example.com",
                                               "csrf_token": csrf_token_from(page.get_data(as_text=True))})
    link = re.search(r"http://localhost(/auth/reset-password/[0-9a-f]{64})", mail_text(mailbox[0])).group(1)
    form = client.get(link)
    changed = client.post(link, data={"password": "a-new-password-1", "confirm": "a-new-password-1",
                                      "csrf_token": csrf_token_from(form.get_data(as_text=True))})
    assert changed.status_code == 302
    assert app.test_client().get("/admin/", headers=bearer(token)).status_code == 401


def test_a_password_change_revokes_the_users_tokens_and_only_theirs(app, admin_user):
    with app.app_context():
        create_account("other", "other@example.com", "other-password-1", is_admin=True)
    mine, theirs = token_for(app), token_for(app, "other")
    with app.app_context():
        db.session.get(User, admin_user["id"]).password_hash = hash_password("changed-password-1")
        db.session.commit()
    client = app.test_client()
    assert client.get("/admin/", headers=bearer(mine)).status_code == 401
    assert client.get("/admin/", headers=bearer(theirs)).status_code == 200
