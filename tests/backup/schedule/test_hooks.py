"""Webhooks and heartbeats of scheduled runs (app/backup/schedule/hooks.py), against a real local HTTP server."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest

from app.backup.schedule.hooks import parse_hook_url
from app.backup.schedule.runner import alert_if_missed, run_scheduled
from app.models import utcnow
from support.schedule import backup_at, save_schedule
from support.waiting import until
from support.web import JSON, bearer_client, login


@pytest.fixture
def app_settings():
    return {"BACKUP_HOOK_TIMEOUT": 1, "BACKUP_HOOK_ATTEMPTS": 3}


@pytest.fixture
def api(app):
    return bearer_client(app, "root")


def in_force(app, hook_server, **fields):
    """A daily schedule in force for days, so its latest slot is due; hooks point at ``hook_server``."""
    defaults = {"enabled": True, "frequency": "daily", "time": "02:00", "notify_on": "always",
                "webhook_url": f"{hook_server.url}/slack/T000/B000", "heartbeat_url": f"{hook_server.url}/ping/abc"}
    return save_schedule(app, effective_from=utcnow() - timedelta(days=3), **{**defaults, **fields})


def deliveries(api, count: int) -> list[dict]:
    """The schedule JSON's deliveries, once ``count`` of them are recorded (oldest first)."""
    found = until(lambda: (lambda d: d if len(d) >= count else None)(
        api.get("/admin/backup-schedule").get_json()["hook_deliveries"]), 15, f"{count} recorded deliveries")
    return list(reversed(found))


@pytest.mark.parametrize("value", ["ftp://example.com/hook", "javascript:alert(1)", "hooks.example.com/x",
                                   "https://", "http://exa mple.com/", 42, "https://example.com/" + "x" * 2048])
def test_a_hook_url_must_be_http_or_https(value):
    with pytest.raises(ValueError, match="webhook_url must be an http:// or https:// URL"):
        parse_hook_url(value, "webhook_url")


def test_hook_urls_are_saved_validated_and_cleared_through_the_api(api):
    saved = api.post("/admin/backup-schedule", json={"webhook_url": "https://hooks.slack.com/services/T/B/x",
                                                     "heartbeat_url": "http://hc.internal/ping/1"})
    assert saved.status_code == 200
    schedule = saved.get_json()["schedule"]
    assert (schedule["webhook_url"], schedule["heartbeat_url"]) == ("https://hooks.slack.com/services/T/B/x",
                                                                   "http://hc.internal/ping/1")
    refused = api.post("/admin/backup-schedule", json={"heartbeat_url": "file:///etc/passwd"})
    assert refused.status_code == 400 and "heartbeat_url" in refused.get_json()["error"]
    assert api.get("/admin/backup-schedule").get_json()["schedule"]["heartbeat_url"] == "http://hc.internal/ping/1"
    cleared = api.post("/admin/backup-schedule", data={"webhook_url": ""}).get_json()["schedule"]
    assert cleared["webhook_url"] is None and cleared["heartbeat_url"] == "http://hc.internal/ping/1"


def test_a_successful_run_posts_slack_text_and_pings_the_heartbeat(app, api, hook_server):
    in_force(app, hook_server)
    with app.app_context():
        outcome = run_scheduled()
    assert outcome.status == "succeeded", outcome.message
    sent = deliveries(api, 2)
    assert [(d["target"], d["event"], d["ok"], d["attempts"]) for d in sent] == [
        ("webhook", "backup.succeeded", True, 1), ("heartbeat", "backup.succeeded", True, 1)]
    post = next(r for r in hook_server.received if r.method == "POST")
    assert post.path == "/slack/T000/B000" and post.headers["Content-Type"] == "application/json"
    filename = outcome.report.backup["filename"]
    assert filename in post.json["text"] and "succeeded" in post.json["text"]
    assert post.json["event"] == "backup.succeeded" and post.json["filename"] == filename
    assert hook_server.paths("GET") == ["/ping/abc"]


def test_a_failed_run_posts_the_failure_and_pings_the_fail_url(app, api, hook_server, tmp_path):
    in_force(app, hook_server, notify_on="failure", heartbeat_url=f"{hook_server.url}/ping/abc/")
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    app.config["BACKUP_DIRECTORY"] = str(not_a_directory)
    with app.app_context():
        outcome = run_scheduled()
    assert outcome.status == "failed"
    sent = deliveries(api, 2)
    assert {(d["target"], d["event"], d["ok"]) for d in sent} == {("webhook", "backup.failed", True),
                                                                   ("heartbeat", "backup.failed", True)}
    post = next(r for r in hook_server.received if r.method == "POST")
    assert "FAILED" in post.json["text"] and post.json["error_kind"] == "storage" and post.json["error"]
    assert hook_server.paths("GET") == ["/ping/abc/fail"]


def test_notify_on_decides_the_webhook_the_heartbeat_always_follows_a_run(app, api, hook_server):
    in_force(app, hook_server, notify_on="failure")
    with app.app_context():
        assert run_scheduled().status == "succeeded"
    assert [d["target"] for d in deliveries(api, 1)] == ["heartbeat"]
    time.sleep(0.3)  # give a wrongly sent webhook the time to arrive
    assert hook_server.paths("POST") == []


def test_a_slow_hook_never_holds_up_the_run_and_its_failure_is_recorded_and_shown(app, api, hook_server):
    hook_server.delay = 3.0  # longer than BACKUP_HOOK_TIMEOUT (1 s)
    in_force(app, hook_server, heartbeat_url="")
    with app.app_context():
        started = time.monotonic()
        outcome = run_scheduled()
        took = time.monotonic() - started
    assert outcome.status == "succeeded" and took < 2.5
    [failed] = deliveries(api, 1)
    assert failed["ok"] is False and failed["attempts"] == 3
    assert "timed out" in failed["error"].lower()
    browser = app.test_client()
    bearer_client(app, "anna")  # an admin whose password the form below uses
    assert login(browser, "anna", "anna-password-1").status_code == 302
    page = browser.get("/admin/backup-schedule").get_data(as_text=True)
    assert 'class="delivery-failed"' in page and "FAILED" in page


def test_a_refused_delivery_is_retried_with_back_off_then_recorded(app, api, hook_server):
    hook_server.status = 503
    in_force(app, hook_server, webhook_url="")
    with app.app_context():
        assert run_scheduled().status == "succeeded"
    [failed] = deliveries(api, 1)
    assert (failed["ok"], failed["attempts"], failed["status_code"]) == (False, 3, 503)
    assert hook_server.paths() == ["/ping/abc"] * 3


def test_a_missed_schedule_goes_to_the_webhook_once_per_episode(app, api, hook_server):
    in_force(app, hook_server, notify_on="failure", heartbeat_url="")
    backup_at(app, utcnow() - timedelta(days=3))
    for _ in range(3):
        with app.app_context():
            assert alert_if_missed().status == "stale"
    [sent] = deliveries(api, 1)
    assert (sent["target"], sent["event"], sent["ok"]) == ("webhook", "schedule.missed", True)
    [post] = hook_server.received
    assert post.json["event"] == "schedule.missed" and "overdue" in post.json["text"]
    assert api.get("/admin/backup-schedule", headers=JSON).get_json()["hook_deliveries"] == [sent]
