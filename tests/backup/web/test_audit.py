"""``GET /admin/audit``: every action a person takes over HTTP is there with its actor, IP and token; paging, filter."""
from __future__ import annotations

import hashlib
from io import BytesIO

import pytest

from app.backup import audit
from app.extensions import db
from app.models import ApiToken
from app.security import hash_token
from support.app import ADMIN_PASSWORD
from support.restoring import restore_listed, restore_upload
from support.web import JSON, csrf_token_from, wait_for_job

SCRIPT_IP = "198.51.100.7"
BROWSER_IP = "2001:db8::42"


def token_id(app, token: str) -> int:
    with app.app_context():
        return db.session.execute(db.select(ApiToken.id).filter_by(token_hash=hash_token(token))).scalar_one()


def audit_entries(client, headers=JSON, **query) -> list[dict]:
    response = client.get("/admin/audit", query_string=query, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["entries"]


def created(client, headers) -> str:
    response = client.post("/admin/create-backup", data={"wait": "1"}, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["backup"]["filename"]


def test_every_action_a_token_takes_is_audited_with_its_actor_ip_and_token_id(app, client, admin_token, api_headers):
    client.environ_base["REMOTE_ADDR"] = SCRIPT_IP
    name = created(client, api_headers)
    client.get(f"/admin/download-backup/{name}", headers=api_headers).close()
    assert client.post(f"/admin/pin-backup/{name}", headers=api_headers).get_json()["backup"]["pinned"] is True
    assert client.post(f"/admin/pin-backup/{name}", headers=api_headers).get_json()["backup"]["pinned"] is False
    assert client.post(f"/admin/verify-backup/{name}", headers=api_headers).status_code == 200
    assert restore_listed(client, api_headers, name, mode="merge").status_code == 200
    assert client.post("/admin/backup-schedule", json={"keep_last": 3}, headers=api_headers).status_code == 200
    spare = client.post("/admin/api-tokens", json={"name": "spare"}, headers=api_headers).get_json()["id"]
    assert client.post(f"/admin/api-tokens/{spare}/revoke", headers=api_headers).status_code == 200
    assert client.post(f"/admin/delete-backup/{name}", headers=api_headers).status_code == 200

    entries = audit_entries(client, api_headers)
    assert [e["action"] for e in entries] == ["backup.delete", "token.revoke", "token.create", "schedule.save",
                                              "backup.restore", "backup.verify", "backup.unpin", "backup.pin",
                                              "backup.download", "backup.create"]
    acting = token_id(app, admin_token)
    for entry in entries:
        assert (entry["actor"], entry["ip"], entry["details"]["token_id"]) == ("admin", SCRIPT_IP, acting), entry
    by_action = {e["action"]: e for e in entries}
    assert {e["target"] for e in entries if e["action"].startswith("backup.")} == {name}
    assert by_action["backup.create"]["details"]["trigger"] == "manual"
    assert by_action["backup.verify"]["details"]["ok"] is True
    assert by_action["schedule.save"]["details"]["keep_last"] == 3
    assert by_action["token.create"]["target"] == by_action["token.revoke"]["target"] == f"api-token:{spare}"
    restore = by_action["backup.restore"]["details"]
    assert (restore["mode"], restore["trust_unsigned"], restore["signed"], restore["sha256"]) == \
        ("merge", False, True, None)
    assert restore["safety_backup"].startswith("cyberquest_backup_")


def test_a_backup_made_in_the_background_is_audited_as_the_requests_actor(app, client, admin_token, api_headers):
    client.environ_base["REMOTE_ADDR"] = SCRIPT_IP
    response = client.post("/admin/create-backup", headers=api_headers)
    assert response.status_code == 202
    job = wait_for_job(client, api_headers, response.headers["Location"])
    [entry] = audit_entries(client, api_headers, action="backup.create")
    assert entry["target"] == job["result"]["filename"]
    assert (entry["actor"], entry["ip"], entry["details"]["token_id"]) == ("admin", SCRIPT_IP,
                                                                           token_id(app, admin_token))


def test_a_browser_session_is_audited_with_its_ip_and_no_token(app, admin_client, env, archive):
    admin_client.environ_base["REMOTE_ADDR"] = BROWSER_IP
    csrf = csrf_token_from(admin_client.get("/admin/system-backup").get_data(as_text=True))
    uploaded = archive.read_bytes()
    response = admin_client.post("/admin/restore-backup", headers=JSON, content_type="multipart/form-data", data={
        "mode": "merge", "confirm": "merge", "wait": "1", "password": ADMIN_PASSWORD, "csrf_token": csrf,
        "trust_unsigned": "1", "backup_file": (BytesIO(uploaded), "from-elsewhere.zip")})
    assert response.status_code == 200, response.get_data(as_text=True)
    name = response.get_json()["restore"]["safety_backup"]
    admin_client.get(f"/admin/download-backup/{name}").close()
    assert admin_client.post(f"/admin/delete-backup/{name}", data={"csrf_token": csrf}).status_code == 302

    entries = audit_entries(admin_client)
    assert [(e["action"], e["target"]) for e in entries] == [
        ("backup.delete", name), ("backup.download", name), ("backup.restore", "from-elsewhere.zip")]
    for entry in entries:
        assert (entry["actor"], entry["ip"]) == ("admin", BROWSER_IP) and "token_id" not in entry["details"]
    restore = entries[-1]["details"]
    assert (restore["trust_unsigned"], restore["signed"]) == (True, True)
    assert restore["sha256"] == hashlib.sha256(uploaded).hexdigest()


def test_a_long_upload_name_is_cut_to_the_column_and_the_restore_stands(app, client, env, archive):
    name = "n" * 400 + ".zip"
    response = restore_upload(client, env["headers"], archive, name=name, mode="merge")
    assert response.status_code == 200, response.get_data(as_text=True)
    [entry] = audit_entries(client, env["headers"], action="backup.restore")
    assert len(entry["target"]) == 255 and entry["target"].endswith("…") and name.startswith(entry["target"][:-1])


def test_a_failing_audit_write_does_not_fail_a_committed_restore(app, client, env, archive, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the audit log is unwritable")

    monkeypatch.setattr(audit, "record", broken)
    response = restore_upload(client, env["headers"], archive, mode="merge")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["restore"]["tables"]["users"]["inserted"] > 0


# --- Paging and the filter -------------------------------------------------------------------------

@pytest.fixture
def logged(app, admin_user):
    """Seven entries, oldest first: pins and deletes in turn; returns their ids."""
    with app.app_context():
        return [audit.record("admin", "backup.pin" if n % 2 else "backup.delete", f"file-{n}", {"n": n},
                             ip="192.0.2.1").id for n in range(7)]


def test_pages_run_newest_first_and_the_next_cursor_ends_on_the_last(client, api_headers, logged):
    seen, before = [], None
    while True:
        query = {"limit": 3, **({"before": before} if before else {})}
        page = client.get("/admin/audit", query_string=query, headers=api_headers).get_json()
        assert len(page["entries"]) <= 3
        seen += [e["id"] for e in page["entries"]]
        before = page["next"]
        if before is None:
            break
        assert before == page["entries"][-1]["id"]
    assert seen == sorted(logged, reverse=True)
    first = audit_entries(client, api_headers)[0]
    assert first == {"id": logged[-1], "at": first["at"], "actor": "admin", "action": "backup.delete",
                     "target": "file-6", "ip": "192.0.2.1", "details": {"n": 6}}


def test_the_action_filter_pages_too(client, api_headers, logged):
    pins = [i for n, i in enumerate(logged) if n % 2]
    page = client.get("/admin/audit?action=backup.pin&limit=2", headers=api_headers).get_json()
    assert [e["id"] for e in page["entries"]] == pins[::-1][:2] and page["next"] == pins[1]
    rest = client.get(f"/admin/audit?action=backup.pin&limit=2&before={page['next']}", headers=api_headers)
    assert [e["id"] for e in rest.get_json()["entries"]] == [pins[0]] and rest.get_json()["next"] is None
    assert audit_entries(client, api_headers, action="token.revoke") == []


@pytest.mark.parametrize("query, named", [("before=abc", "before"), ("before=0", "before"), ("limit=0", "limit"),
                                          ("limit=501", "limit")])
def test_a_bad_paging_value_is_a_400_naming_it(client, api_headers, query, named):
    response = client.get(f"/admin/audit?{query}", headers=api_headers)
    assert response.status_code == 400 and named in response.get_json()["error"]


def test_the_page_shows_the_entries_the_filter_and_a_link_to_older_ones(admin_client, logged):
    html = admin_client.get("/admin/audit?limit=5").get_data(as_text=True)
    assert all(f'id="audit-{i}"' in html for i in logged[2:]) and f'id="audit-{logged[1]}"' not in html
    assert all(f'<option value="{name}"' in html for name in audit.ACTIONS)
    assert f'href="/admin/audit?before={logged[2]}"' in html and "192.0.2.1" in html
    filtered = admin_client.get("/admin/audit?action=backup.pin").get_data(as_text=True)
    assert '<option value="backup.pin" selected>' in filtered
    assert [f'id="audit-{i}"' in filtered for i in logged] == [False, True] * 3 + [False]


def test_only_admins_read_the_audit_log(app, user_client):
    assert user_client.get("/admin/audit", headers=JSON).status_code == 403
    assert app.test_client().get("/admin/audit", headers=JSON).status_code == 401
