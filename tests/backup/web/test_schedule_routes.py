"""GET/POST /admin/backup-schedule: JSON and the HTML form, validation, access."""
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditLog
from support.web import JSON, bearer_client, csrf_token_from

FULL = {"enabled": True, "frequency": "weekly", "time": "03:30", "weekday": 2, "day_of_month": 15,
        "retention_days": 14, "keep_last": 5, "notify_emails": ["ops@example.com"], "notify_on": "always"}


@pytest.fixture
def api(sched_app):
    """A script's client with an admin API token."""
    return bearer_client(sched_app, "root")


def schedule_of(client) -> dict:
    response = client.get("/admin/backup-schedule")
    assert response.status_code == 200
    return response.get_json()["schedule"]


def test_defaults_before_anything_is_saved(api):
    assert schedule_of(api) == {"enabled": False, "frequency": "daily", "time": "02:00", "weekday": 0,
                                "day_of_month": 1, "retention_days": 30, "keep_last": 7, "notify_emails": [],
                                "notify_on": "failure", "webhook_url": None, "heartbeat_url": None,
                                "next_run_at": None}


def test_save_all_fields_as_json_and_read_them_back(api):
    response = api.post("/admin/backup-schedule", json=FULL)
    assert response.status_code == 200
    saved = response.get_json()["schedule"]
    assert {k: saved[k] for k in FULL} == FULL
    assert saved["next_run_at"].endswith("03:30:00+00:00")
    assert schedule_of(api) == saved


def test_fields_left_out_keep_their_values(api):
    api.post("/admin/backup-schedule", json=FULL)
    saved = api.post("/admin/backup-schedule", json={"keep_last": 9}).get_json()["schedule"]
    assert saved == {**schedule_of(api), "keep_last": 9}
    assert {k: saved[k] for k in FULL if k != "keep_last"} == {k: v for k, v in FULL.items() if k != "keep_last"}


def test_form_fields_urlencoded_with_a_token_work_too(api):
    response = api.post("/admin/backup-schedule", data={"enabled": "1", "frequency": "monthly", "day_of_month": "28",
                                                        "notify_emails": "a@example.com, b@example.com"})
    assert response.status_code == 200
    saved = response.get_json()["schedule"]
    assert saved["enabled"] is True and saved["day_of_month"] == 28
    assert saved["notify_emails"] == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize("bad", [
    {"frequency": "hourly"}, {"time": "25:00"}, {"weekday": 7}, {"day_of_month": 31}, {"retention_days": 0},
    {"keep_last": -2}, {"notify_emails": "nobody"}, {"notify_on": "sometimes"}, {"enabled": "perhaps"},
    {"keep_last": 3, "time": "7pm"},
])
def test_a_bad_value_is_a_400_that_changes_nothing(api, bad):
    api.post("/admin/backup-schedule", json=FULL)
    before = schedule_of(api)
    response = api.post("/admin/backup-schedule", json=bad)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"].startswith("The schedule was not saved")
    assert set(body["fields"]) <= set(bad) and body["fields"]
    assert schedule_of(api) == before


def test_a_json_body_that_is_not_an_object_is_a_400(api):
    response = api.post("/admin/backup-schedule", data="[1, 2]", content_type="application/json")
    assert response.status_code == 400 and "error" in response.get_json()


def test_saving_is_audited_with_the_changes(sched_app, api):
    api.post("/admin/backup-schedule", json={"enabled": True, "time": "04:00"})
    with sched_app.app_context():
        entry = db.session.execute(select(AuditLog).where(AuditLog.action == "schedule.save")).scalar_one()
    assert entry.actor == "root" and '"time":"04:00"' in entry.details


# --- The HTML page ---------------------------------------------------------------------

def test_the_page_shows_the_form_health_and_next_run(admin_client):
    admin_client.post("/admin/backup-schedule", data={
        "csrf_token": csrf_token_from(admin_client.get("/admin/backup-schedule").get_data(as_text=True)),
        "enabled": "true", "frequency": "daily", "time": "05:45"})
    page = admin_client.get("/admin/backup-schedule")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "daily at 05:45 UTC" in html and 'id="next-run-at"' in html and "05:45 UTC" in html
    assert "Backup health: empty" in html and 'name="notify_emails"' in html


def test_a_form_post_redirects_with_a_flash(admin_client):
    token = csrf_token_from(admin_client.get("/admin/backup-schedule").get_data(as_text=True))
    response = admin_client.post("/admin/backup-schedule", data={
        "csrf_token": token, "enabled": "true", "frequency": "weekly", "weekday": "4", "time": "01:15",
        "day_of_month": "1", "retention_days": "20", "keep_last": "4",
        "notify_emails": "ops@example.com,dba@example.com", "notify_on": "always"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/backup-schedule")
    html = admin_client.get("/admin/backup-schedule").get_data(as_text=True)
    assert "Schedule saved: weekly on Friday at 01:15 UTC." in html
    assert 'value="ops@example.com, dba@example.com"' in html
    saved = admin_client.get("/admin/backup-schedule", headers={"Accept": "application/json"}).get_json()["schedule"]
    assert saved["notify_emails"] == ["ops@example.com", "dba@example.com"] and saved["weekday"] == 4


def test_a_bad_form_post_shows_the_errors_keeps_the_input_and_changes_nothing(admin_client):
    token = csrf_token_from(admin_client.get("/admin/backup-schedule").get_data(as_text=True))
    response = admin_client.post("/admin/backup-schedule", data={
        "csrf_token": token, "enabled": "true", "time": "31:99", "notify_emails": "ops@example.com, not-an-address"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "time must be HH:MM in UTC" in html and "not-an-address" in html and 'id="error-notify_emails"' in html
    assert 'value="31:99"' in html
    saved = admin_client.get("/admin/backup-schedule", headers={"Accept": "application/json"}).get_json()["schedule"]
    assert saved["enabled"] is False and saved["time"] == "02:00"


def test_a_form_post_without_csrf_is_refused(admin_client):
    response = admin_client.post("/admin/backup-schedule", data={"enabled": "true"})
    assert response.status_code == 400
    saved = admin_client.get("/admin/backup-schedule", headers={"Accept": "application/json"}).get_json()["schedule"]
    assert saved["enabled"] is False


def test_access_is_for_admins_only(app, user_client):
    anonymous = app.test_client()
    assert anonymous.get("/admin/backup-schedule").status_code == 302
    assert anonymous.get("/admin/backup-schedule", headers={"Accept": "application/json"}).status_code == 401
    # Anonymous is refused as anonymous, before any CSRF check: the login page, or 401 to a JSON client.
    assert anonymous.post("/admin/backup-schedule", json={"enabled": True}).status_code == 302
    assert anonymous.post("/admin/backup-schedule", json={"enabled": True}, headers=JSON).status_code == 401
    assert user_client.get("/admin/backup-schedule").status_code == 403


def test_the_system_backup_page_shows_the_health_card_and_links_the_schedule(admin_client):
    html = admin_client.get("/admin/system-backup").get_data(as_text=True)
    assert 'id="backup-health"' in html and "Backup health: empty" in html
    assert 'href="/admin/backup-schedule"' in html
