"""What a restore does to accounts: security_changes in every Result and preview, mailed links from an
archive not signed here stored as already used, and API tokens of an id that changes hands (issue 15, item 5)."""
from __future__ import annotations

import hashlib

import pytest

from app.auth.service import LinkProblem, usable_reset_token, verify_email
from app.backup.archive import format
from app.backup.service import schema_revision
from app.cli import create_account
from app.extensions import db
from app.models import ApiToken, User
from app.security import issue_api_token
from support.app import build_app
from support.archives import as_archive_rows, build_archive, snapshot
from support.restoring import restore_upload

NO_CHANGES = {"new_admins": [], "admin_granted": [], "admin_revoked": [], "password_changed": [],
              "deactivated": [], "removed": []}


@pytest.fixture
def accounts_app(tmp_path, any_database_url):
    """An app on each database with the accounts admin (the API token's owner), ann, bob, carl and dave."""
    app = build_app(tmp_path, any_database_url)
    with app.app_context():
        admin = create_account("admin", "admin@example.com", "admin-password-1", is_admin=True)
        headers = {"Authorization": "Bearer " + issue_api_token(admin)}
        create_account("ann", "ann@example.com", "ann-password-1", is_admin=True)
        for name in ("bob", "carl", "dave"):
            create_account(name, f"{name}@example.com", f"{name}-password-1", is_admin=False)
        env = {"headers": headers, "key": format.signing_key(app.config), "revision": schema_revision(app)}
    yield app, env
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def users_now(app) -> dict[str, dict]:
    return {row["username"]: row for row in as_archive_rows(app)["users"]}


def changed_users(app) -> list[dict]:
    """The current accounts, changed: ann loses admin, bob gains it, carl gets a new password and is
    deactivated, dave is gone, mallory is a new admin and erin a new ordinary account."""
    users = users_now(app)
    users["ann"]["is_admin"] = False
    users["bob"]["is_admin"] = True
    users["carl"].update(password_hash="$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHQ$changed", is_active=False)
    newest = max(row["id"] for row in users.values())
    del users["dave"]
    for offset, (name, admin) in enumerate((("mallory", True), ("erin", False)), 1):
        users[name] = {**users["bob"], "id": newest + offset, "username": name, "email": f"{name}@example.com",
                       "is_admin": admin}
    return sorted(users.values(), key=lambda row: row["id"])


EXPECTED = {"new_admins": ["mallory"], "admin_granted": ["bob"], "admin_revoked": ["ann"],
            "password_changed": ["carl"], "deactivated": ["carl"], "removed": ["dave"]}


def test_a_replace_reports_by_username_what_it_changes_about_accounts(accounts_app, tmp_path):
    app, env = accounts_app
    archive = build_archive(tmp_path / "a.zip", {"users": changed_users(app)}, key=env["key"],
                            schema_revision=env["revision"])
    response = restore_upload(app.test_client(), env["headers"], archive, mode="replace", tables="users")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["restore"]["security_changes"] == EXPECTED
    assert response.get_json()["restore"]["neutralised_tokens"] == 0
    assert set(users_now(app)) == {"admin", "ann", "bob", "carl", "mallory", "erin"}


def test_a_preview_carries_the_security_changes_and_changes_nothing(accounts_app, tmp_path):
    app, env = accounts_app
    archive = build_archive(tmp_path / "a.zip", {"users": changed_users(app)}, key=env["key"],
                            schema_revision=env["revision"])
    before = snapshot(app)
    response = restore_upload(app.test_client(), env["headers"], archive, mode="replace", tables="users",
                              dry_run="1")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["preview"]["security_changes"] == EXPECTED
    assert snapshot(app) == before
    # The copy of the accounts taken for the comparison is gone with the preview: the next restore can take one.
    again = restore_upload(app.test_client(), env["headers"], archive, mode="replace", tables="users", dry_run="1")
    assert again.get_json()["preview"]["security_changes"] == EXPECTED


def test_a_merge_that_overwrites_reports_its_changes_and_one_that_skips_reports_new_admins_only(accounts_app,
                                                                                                tmp_path):
    app, env = accounts_app
    archive = build_archive(tmp_path / "a.zip", {"users": changed_users(app)}, key=env["key"],
                            schema_revision=env["revision"])
    client = app.test_client()
    skipped = restore_upload(client, env["headers"], archive, mode="merge", dry_run="1").get_json()["preview"]
    assert skipped["security_changes"] == {**NO_CHANGES, "new_admins": ["mallory"]}
    overwritten = restore_upload(client, env["headers"], archive, mode="merge", on_conflict="overwrite")
    assert overwritten.get_json()["restore"]["security_changes"] == {**EXPECTED, "removed": []}


def test_a_restore_without_the_users_table_reports_no_account_changes(accounts_app, tmp_path):
    app, env = accounts_app
    archive = build_archive(tmp_path / "a.zip", {"contact_submissions": []}, key=env["key"],
                            schema_revision=env["revision"])
    response = restore_upload(app.test_client(), env["headers"], archive, mode="replace")
    assert response.get_json()["restore"]["security_changes"] == NO_CHANGES


def link_tables(app, token: str) -> dict:
    """A live password-reset link and a pending e-mail verification for bob, whose plaintext is ``token``."""
    bob = users_now(app)["bob"]
    digest = hashlib.sha256(token.encode()).hexdigest()
    far = "2099-01-01T00:00:00+00:00"
    return {
        "users": list(users_now(app).values()),
        "email_verifications": [{"id": 1, "user_id": bob["id"], "email": bob["email"], "token": digest,
                                 "created_at": "2025-01-01T00:00:00+00:00", "expires_at": far,
                                 "verified_at": None, "is_verified": False}],
        "password_reset_tokens": [{"id": 1, "user_id": bob["id"], "token": digest,
                                   "created_at": "2025-01-01T00:00:00+00:00", "expires_at": far,
                                   "is_active": True, "used_at": None}],
    }


@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_mailed_links_from_an_archive_not_signed_here_are_stored_as_already_used(accounts_app, tmp_path, mode):
    app, env = accounts_app
    archive = build_archive(tmp_path / "a.zip", link_tables(app, "known-to-the-archive-maker"), key=None,
                            schema_revision=env["revision"])
    response = restore_upload(app.test_client(), env["headers"], archive, mode=mode, trust_unsigned="1")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["restore"]["neutralised_tokens"] == 2
    rows = as_archive_rows(app)
    [reset], [verification] = rows["password_reset_tokens"], rows["email_verifications"]
    assert reset["is_active"] is False and reset["used_at"] is not None
    assert verification["is_verified"] is True and verification["verified_at"] is not None
    with app.app_context():
        db.session.get(User, users_now(app)["bob"]["id"]).is_active = False
        db.session.commit()
        for use in (usable_reset_token, verify_email):
            with pytest.raises(LinkProblem) as refused:
                use("known-to-the-archive-maker")
            assert refused.value.kind == "used"
        assert db.session.get(User, users_now(app)["bob"]["id"]).is_active is False


def test_mailed_links_from_an_archive_signed_here_are_restored_as_they_are(accounts_app, tmp_path):
    app, env = accounts_app
    archive = build_archive(tmp_path / "a.zip", link_tables(app, "ours"), key=env["key"],
                            schema_revision=env["revision"])
    response = restore_upload(app.test_client(), env["headers"], archive, mode="replace")
    assert response.get_json()["restore"]["neutralised_tokens"] == 0
    assert as_archive_rows(app)["password_reset_tokens"][0]["is_active"] is True


def test_a_merge_overwrite_giving_a_user_id_to_another_person_drops_that_ids_api_tokens(accounts_app, tmp_path):
    app, env = accounts_app
    with app.app_context():
        ann = db.session.execute(db.select(User).filter_by(username="ann")).scalar_one()
        bob = db.session.execute(db.select(User).filter_by(username="bob")).scalar_one()
        ann_id, bob_id, anns_token = ann.id, bob.id, issue_api_token(ann)
        issue_api_token(bob)
    users = users_now(app)
    users["ann"].update(username="mallory", email="mallory@example.com")  # ann's id, someone else now
    archive = build_archive(tmp_path / "a.zip", {"users": list(users.values())}, key=env["key"],
                            schema_revision=env["revision"])
    response = restore_upload(app.test_client(), env["headers"], archive, mode="merge", on_conflict="overwrite")
    assert response.status_code == 200, response.get_json()
    client = app.test_client()
    assert client.get("/admin/system-backup", headers={"Authorization": f"Bearer {anns_token}"}).status_code == 401
    assert client.get("/admin/system-backup", headers=env["headers"]).status_code == 200
    with app.app_context():
        owners = {token.user_id for token in db.session.execute(db.select(ApiToken)).scalars()}
    assert bob_id in owners and ann_id not in owners
