"""What replace and merge do to the data: exact round trips, layouts, conflicts, subsets, dry runs, undo."""
from __future__ import annotations

import copy

import pytest
import sqlalchemy as sa

from app.backup.archive import format
from app.cli import create_account
from app.extensions import db
from app.models import ApiToken, AuditLog, ContactSubmission, EmailVerification, LoginAttempt, User
from app.security import hash_password
from support.web import login
from support.archives import (as_archive_rows, build_archive, expected_rows, legacy_archive, restore_order,
                               sample_tables, snapshot)
from support.restoring import backup_names, create_backup, restore_listed, restore_upload


def archive_of(tmp_path, env, tables=None, name="a.zip", **options):
    options.setdefault("schema_revision", env["revision"])
    return build_archive(tmp_path / name, tables, key=env["key"], **options)


def add_rows(app):
    """Rows the archive does not have, in every table."""
    with app.app_context():
        carol = create_account("carol", "carol@example.com", "carol-password-1", is_admin=False)
        db.session.add_all([
            LoginAttempt(ip_address="198.51.100.1", username_or_email="carol", success=True),
            EmailVerification(user_id=carol.id, email="carol@example.com", token="d" * 64,
                              expires_at=sa.func.now()),
            ContactSubmission(name="Carol", email="carol@example.com", message="hi"),
        ])
        db.session.commit()


def result_of(response) -> dict:
    body = response.get_json()
    assert response.status_code == 200, body
    return body.get("restore") or body["preview"]


# --- replace -------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["lines", "pretty", "compact", "shuffled"])
def test_replace_makes_every_table_equal_to_the_archive_in_any_layout(app, client, env, tmp_path, layout):
    add_rows(app)
    before = {name: len(rows) for name, rows in as_archive_rows(app).items()}
    result = result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env, layout=layout)))
    assert as_archive_rows(app) == expected_rows(sample_tables())
    assert result["mode"] == "replace"
    assert result["tables"] == {name: {"inserted": len(rows), "updated": 0, "skipped": 0, "deleted": before[name]}
                                for name, rows in restore_order(sample_tables()).items()}
    assert result["skipped_reasons"] == []
    assert result["safety_backup"] in backup_names(app)


def test_children_listed_before_their_parents_restore(app, client, env, tmp_path):
    tables = dict(reversed(list(sample_tables().items())))  # password_reset_tokens first, users late
    result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env, tables, layout="pretty")))
    assert as_archive_rows(app) == expected_rows(sample_tables())


def test_timestamps_with_other_offsets_are_stored_in_utc(app, client, env, tmp_path):
    tables = sample_tables()
    tables["users"][0]["created_at"] = "2025-01-02T05:04:05.123456+02:00"
    tables["users"][1]["last_login"] = "2025-03-01T10:00:00.5Z"
    result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env, tables)))
    with app.app_context():
        assert db.session.get(User, 1).created_at.isoformat() == "2025-01-02T03:04:05.123456+00:00"
        assert db.session.get(User, 2).last_login.isoformat() == "2025-03-01T10:00:00.500000+00:00"


def test_replace_keeps_tables_outside_the_archive(app, client, env, tmp_path):
    add_rows(app)
    tables = {"users": sample_tables()["users"], "contact_submissions": sample_tables()["contact_submissions"]}
    with app.app_context():
        email_verifications = db.session.query(EmailVerification).count()
    untouched = {name: rows for name, rows in as_archive_rows(app).items()
                 if name in ("login_attempts", "password_reset_tokens")}
    # email_verifications (outside the archive) points at users: replacing users would orphan it.
    response = restore_upload(client, env["headers"], archive_of(tmp_path, env, tables))
    assert response.status_code == 400
    assert "would leave rows of email_verifications pointing at deleted rows" in response.get_json()["error"]
    with app.app_context():
        db.session.query(EmailVerification).delete()
        db.session.commit()
    result = result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env, tables, name="b.zip")))
    assert set(result["tables"]) == {"users", "contact_submissions"}
    rows = as_archive_rows(app)
    assert {name: rows[name] for name in untouched} == untouched
    assert email_verifications == 1


def test_replace_keeps_api_tokens_and_audit_entries_of_accounts_still_present(app, client, env, tmp_path):
    with app.app_context():
        eve = create_account("eve", "eve@example.com", "eve-password-1", is_admin=True)  # id 2, zoë's id later
        from app.security import issue_api_token

        issue_api_token(eve)
        db.session.add_all([AuditLog(actor_id=1, actor="admin", action="kept"),
                            AuditLog(actor_id=eve.id, actor="eve", action="goes"),
                            AuditLog(actor_id=None, actor="scheduler", action="kept too"),
                            AuditLog(actor_id=77, actor="ghost", action="goes too")])
        db.session.commit()
    result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env)))
    with app.app_context():
        owners = sorted(t.user_id for t in db.session.query(ApiToken))
        actions = sorted(a.action for a in db.session.query(AuditLog) if a.action != "backup.restore")
    # Kept: the admin's (same id and username). Gone: eve's, whose id now belongs to zoë, and a ghost's.
    assert owners == [1]
    assert actions == ["kept", "kept too"]
    # The script's own token still works after the restore.
    assert client.get("/admin/system-backup", headers=env["headers"]).status_code == 200


# --- merge ---------------------------------------------------------------------------------------------

def test_merge_inserts_new_rows_and_skips_present_ids(app, client, env, tmp_path):
    add_rows(app)  # carol is user 2, like zoë in the archive
    before = as_archive_rows(app)
    result = result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env), mode="merge"))
    counts = result["tables"]
    assert counts["users"] == {"inserted": 1, "updated": 0, "skipped": 2, "deleted": 0}  # 1 and 2 present, 5 new
    assert counts["contact_submissions"] == {"inserted": 1, "updated": 0, "skipped": 1, "deleted": 0}
    assert counts["password_reset_tokens"] == {"inserted": 1, "updated": 0, "skipped": 0, "deleted": 0}
    reasons = {(r["table"], r["reason"]): r for r in result["skipped_reasons"]}
    present = reasons[("users", "id already present (on_conflict=skip keeps the current row)")]
    assert present["count"] == 2 and present["ids"] == [1, 2]
    after = as_archive_rows(app)
    assert [u["username"] for u in after["users"]] == ["admin", "carol", "bob"]
    for name, rows in before.items():  # every row that was there is still there, unchanged
        assert all(row in after[name] for row in rows)


def test_merge_overwrite_updates_changed_rows_and_reports_identical_ones(app, client, env, tmp_path):
    result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env)))
    tables = sample_tables()
    tables["users"][2]["email"] = "robert@example.com"
    tables["contact_submissions"][1]["is_read"] = False
    result = result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env, tables, name="b.zip"),
                                      mode="merge", on_conflict="overwrite"))
    assert result["tables"]["users"] == {"inserted": 0, "updated": 1, "skipped": 2, "deleted": 0}
    assert result["tables"]["contact_submissions"] == {"inserted": 0, "updated": 1, "skipped": 1, "deleted": 0}
    assert as_archive_rows(app) == expected_rows(tables)


def test_merge_skips_rows_colliding_on_unique_columns_and_their_children(app, client, env, tmp_path):
    with app.app_context():
        user = User(id=9, username="bob", email="other-bob@example.com", password_hash=hash_password("x" * 10))
        db.session.add(user)
        db.session.commit()
        db.session.add(EmailVerification(id=3, user_id=9, email="x@example.com", token="a" * 64,
                                         expires_at=sa.func.now()))
        db.session.commit()
    result = result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env), mode="merge"))
    reasons = {(r["table"], r["reason"]): (r["count"], r["ids"]) for r in result["skipped_reasons"]}
    assert reasons[("users", "username already belongs to another users row")] == (1, [5])
    assert reasons[("email_verifications", "token already belongs to another email_verifications row")] == (1, [1])
    assert reasons[("email_verifications", "its users row (id 5) was skipped")] == (1, [2])
    assert result["tables"]["users"] == {"inserted": 1, "updated": 0, "skipped": 2, "deleted": 0}
    assert result["tables"]["email_verifications"] == {"inserted": 0, "updated": 0, "skipped": 2, "deleted": 0}
    with app.app_context():
        assert db.session.get(User, 9).email == "other-bob@example.com"
        assert db.session.get(User, 5) is None


def test_merge_into_an_empty_database_equals_replace(app, client, env, tmp_path):
    with app.app_context():
        db.session.query(ApiToken).delete()
        db.session.query(User).delete()
        db.session.commit()
        from app.security import issue_api_token

        admin = User(id=1, username="admin", email="admin@example.com", password_hash=hash_password("p" * 10),
                     is_admin=True)
        db.session.add(admin)
        db.session.commit()
        headers = {"Authorization": "Bearer " + issue_api_token(admin)}
    tables = sample_tables()
    tables["users"] = tables["users"][1:]
    tables["password_reset_tokens"] = []
    result = result_of(restore_upload(client, headers, archive_of(tmp_path, env, tables), mode="merge"))
    assert all(c["skipped"] == 0 and c["inserted"] == len(tables[t]) for t, c in result["tables"].items())


# --- subsets ----------------------------------------------------------------------------------------------

def test_tables_restores_only_those(app, client, env, tmp_path):
    add_rows(app)
    before = as_archive_rows(app)
    result = result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env),
                                      tables="contact_submissions, login_attempts"))
    assert set(result["tables"]) == {"contact_submissions", "login_attempts"}
    after = as_archive_rows(app)
    expected = expected_rows(sample_tables())
    for name in after:
        assert after[name] == (expected[name] if name in result["tables"] else before[name])


def test_tables_whose_parents_are_missing_are_refused(app, client, env, tmp_path):
    before = snapshot(app)
    response = restore_upload(client, env["headers"], archive_of(tmp_path, env), tables="email_verifications")
    assert response.status_code == 422
    assert "user_id 2 refers to a users row that does not exist" in response.get_json()["error"]
    assert snapshot(app) == before


def test_tables_whose_parents_exist_restore(app, client, env, tmp_path):
    result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env)))
    with app.app_context():
        db.session.query(EmailVerification).delete()
        db.session.commit()
    result = result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env, name="b.zip"),
                                      tables="email_verifications"))
    assert result["tables"] == {"email_verifications": {"inserted": 2, "updated": 0, "skipped": 0, "deleted": 0}}


@pytest.mark.parametrize("tables, status, fragment", [
    ("badges", 400, "Unknown table(s) in tables: badges"),
    ("api_tokens", 400, "Unknown table(s) in tables: api_tokens"),
])
def test_unknown_tables_option_is_400(app, client, env, tmp_path, tables, status, fragment):
    before = snapshot(app)
    response = restore_upload(client, env["headers"], archive_of(tmp_path, env), tables=tables)
    assert response.status_code == status
    assert fragment in response.get_json()["error"]
    assert snapshot(app) == before


def test_a_table_the_archive_lacks_is_422(app, client, env, tmp_path):
    tables = {"users": sample_tables()["users"]}
    response = restore_upload(client, env["headers"], archive_of(tmp_path, env, tables), tables="login_attempts")
    assert response.status_code == 422
    assert "holds no table login_attempts" in response.get_json()["error"]


# --- dry run and undo ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, on_conflict", [("replace", "skip"), ("merge", "skip"), ("merge", "overwrite")])
def test_dry_run_returns_the_result_the_real_run_produces_and_writes_nothing(app, client, env, tmp_path, mode,
                                                                                on_conflict):
    add_rows(app)
    tables = sample_tables()
    tables["users"].append(dict(tables["users"][2], id=12, username="carol", email="c2@example.com"))  # collides
    archive = archive_of(tmp_path, env, tables)
    before, backups = snapshot(app), backup_names(app)
    extra = {"on_conflict": on_conflict} if mode == "merge" else {}
    response = restore_upload(client, env["headers"], archive, mode=mode, dry_run="1", **extra)
    preview = response.get_json()["preview"]
    assert response.status_code == 200
    assert snapshot(app) == before and backup_names(app) == backups
    assert preview["safety_backup"] is None
    real = result_of(restore_upload(client, env["headers"], archive, mode=mode, **extra))
    assert real["safety_backup"]
    assert preview == dict(real, safety_backup=None)


def test_restoring_the_safety_backup_undoes_a_replace(app, client, env, tmp_path):
    add_rows(app)
    before = as_archive_rows(app)
    result = result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env)))
    assert as_archive_rows(app) != before
    undo = result_of(restore_listed(client, env["headers"], result["safety_backup"]))
    assert as_archive_rows(app) == before
    assert undo["safety_backup"] != result["safety_backup"]


def test_restoring_the_safety_backup_undoes_a_merge(app, client, env, tmp_path):
    add_rows(app)
    before = as_archive_rows(app)
    result = result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env), mode="merge",
                                      on_conflict="overwrite"))
    result_of(restore_listed(client, env["headers"], result["safety_backup"]))
    assert as_archive_rows(app) == before


def test_a_backup_restores_exactly_onto_its_own_database(app, client, env):
    add_rows(app)
    before = as_archive_rows(app)
    filename = create_backup(app)
    with app.app_context():
        db.session.query(ContactSubmission).delete()
        db.session.commit()
    result_of(restore_listed(client, env["headers"], filename))
    assert as_archive_rows(app) == before
    with app.app_context():  # the next insert gets a fresh id
        create_account("dave", "dave@example.com", "dave-password-1", is_admin=False)


# --- original CyberQuest archives -------------------------------------------------------------------------

@pytest.mark.parametrize("naive", [True, False])
def test_original_cyberquest_archive_restores_and_its_users_can_log_in(app, client, env, tmp_path, naive):
    archive = legacy_archive(tmp_path / "cyberquest_backup_20250822_001234.zip", naive_datetimes=naive)
    result = result_of(restore_upload(client, env["headers"], archive, trust_unsigned="1"))
    assert result["tables"]["users"]["inserted"] == 3
    # Not signed by this instance: its mailed links are stored as already used (issue 15, item 5),
    # the rest exactly as it holds them.
    links = ("email_verifications", "password_reset_tokens")
    restored, expected = as_archive_rows(app), expected_rows(sample_tables())
    assert {k: v for k, v in restored.items() if k not in links} == {k: v for k, v in expected.items()
                                                                     if k not in links}
    assert all(row["is_verified"] and row["verified_at"] for row in restored["email_verifications"])
    assert all(not row["is_active"] and row["used_at"] for row in restored["password_reset_tokens"])
    assert result["neutralised_tokens"] == 3
    response = login(app.test_client(), "zoë", "zoe-password-1")
    assert response.status_code == 302 and "/auth/login" not in response.headers["Location"]
    assert login(app.test_client(), "zoë", "wrong-password").status_code != 302


def test_original_archive_without_table_list_restores(app, client, env, tmp_path):
    import zipfile

    import orjson

    archive = legacy_archive(tmp_path / "a.zip")
    with zipfile.ZipFile(archive) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    metadata = orjson.loads(members[format.METADATA_MEMBER])
    for key in ("tables_included", "record_counts"):
        metadata.pop(key)
    members[format.METADATA_MEMBER] = orjson.dumps(metadata)
    from support.archives import write_zip

    write_zip(archive, list(members.items()))
    result = result_of(restore_upload(client, env["headers"], archive, trust_unsigned="1", mode="merge"))
    assert result["tables"]["users"] == {"inserted": 2, "updated": 0, "skipped": 1, "deleted": 0}


def test_older_archive_without_a_column_gets_its_default(app, client, env, tmp_path):
    tables = copy.deepcopy(sample_tables())
    for row in tables["contact_submissions"]:
        row.pop("is_read")
    for row in tables["users"]:
        row.pop("last_login")
    result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env, tables,
                                                                  schema_revision=None)))
    with app.app_context():
        assert {c.is_read for c in db.session.query(ContactSubmission)} == {False}
        assert {u.last_login for u in db.session.query(User)} == {None}


def test_merge_overwrite_skips_an_update_that_would_take_another_rows_unique_value(app, client, env, tmp_path):
    result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env)))
    with app.app_context():
        db.session.add(User(id=9, username="robert", email="robert@example.com", password_hash="x"))
        db.session.commit()
    tables = sample_tables()
    tables["users"][2]["username"] = "robert"  # bob (id 5) renamed to a name user 9 holds
    tables["users"][1]["email"] = "zoe@example.org"  # a change that collides with nobody
    result = result_of(restore_upload(client, env["headers"], archive_of(tmp_path, env, tables, name="b.zip"),
                                      mode="merge", on_conflict="overwrite"))
    assert result["tables"]["users"] == {"inserted": 0, "updated": 1, "skipped": 2, "deleted": 0}
    reasons = {(r["table"], r["reason"]): r["ids"] for r in result["skipped_reasons"]}
    assert reasons[("users", "username already belongs to another users row")] == [5]
    with app.app_context():
        assert db.session.get(User, 5).username == "bob"
        assert db.session.get(User, 2).email == "zoe@example.org"
