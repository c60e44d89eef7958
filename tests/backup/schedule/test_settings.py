"""Schedule settings: slots and next_run_at, validation, storage."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.backup.schedule.settings import (
    ScheduleSettings,
    apply_changes,
    due_slot,
    latest_slot_at_or_before,
    load_settings,
    next_run_at,
    next_slot_after,
    update_settings,
)
from app.backup.schedule.validation import ScheduleValidationError, parse_emails


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


DAILY = ScheduleSettings(enabled=True, frequency="daily", time="02:30")
WEEKLY = ScheduleSettings(enabled=True, frequency="weekly", time="23:15", weekday=6)  # Sundays
MONTHLY = ScheduleSettings(enabled=True, frequency="monthly", time="04:00", day_of_month=28)


# --- Slots ---------------------------------------------------------------------------

@pytest.mark.parametrize("now, expected", [
    (utc(2026, 11, 26, 1, 0), utc(2026, 11, 26, 2, 30)),
    (utc(2026, 11, 26, 2, 30), utc(2026, 11, 27, 2, 30)),  # strictly after: this slot is now
    (utc(2026, 12, 31, 3, 0), utc(2027, 1, 1, 2, 30)),
])
def test_daily_next_run(now, expected):
    assert next_run_at(DAILY, now) == expected


def test_weekly_next_run_is_on_the_weekday():
    # 2026-11-26 is a Thursday; the next Sunday is the 29th.
    assert next_run_at(WEEKLY, utc(2026, 11, 26, 12)) == utc(2026, 11, 29, 23, 15)
    assert next_run_at(WEEKLY, utc(2026, 11, 29, 23, 16)) == utc(2026, 12, 6, 23, 15)


def test_monthly_next_run_crosses_the_year_and_february():
    assert next_run_at(MONTHLY, utc(2026, 12, 28, 5)) == utc(2027, 1, 28, 4)
    assert next_run_at(MONTHLY, utc(2027, 2, 1)) == utc(2027, 2, 28, 4)
    assert latest_slot_at_or_before(MONTHLY, utc(2027, 1, 10)) == utc(2026, 12, 28, 4)


def test_disabled_schedule_has_no_next_run():
    assert next_run_at(ScheduleSettings(enabled=False), utc(2026, 1, 1)) is None
    assert ScheduleSettings().to_dict(utc(2026, 1, 1))["next_run_at"] is None


@settings(max_examples=300, deadline=None)
@given(
    frequency=st.sampled_from(["daily", "weekly", "monthly"]),
    hour=st.integers(0, 23), minute=st.integers(0, 59), weekday=st.integers(0, 6), day=st.integers(1, 28),
    now=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)).map(
        lambda d: d.replace(tzinfo=timezone.utc)),
)
def test_slots_bracket_now_and_match_the_schedule(frequency, hour, minute, weekday, day, now):
    schedule = ScheduleSettings(enabled=True, frequency=frequency, time=f"{hour:02d}:{minute:02d}",
                                weekday=weekday, day_of_month=day)
    latest, following = latest_slot_at_or_before(schedule, now), next_slot_after(schedule, now)
    assert latest <= now < following
    for slot in (latest, following):
        assert (slot.hour, slot.minute, slot.second) == (hour, minute, 0)
        if frequency == "weekly":
            assert slot.weekday() == weekday
        if frequency == "monthly":
            assert slot.day == day
    # consecutive: nothing of the schedule falls strictly between them
    assert next_slot_after(schedule, latest) == following
    assert following - latest <= schedule.interval


def test_due_slot_catches_up_a_missed_slot_but_not_one_before_the_schedule_was_set():
    saved_yesterday = ScheduleSettings(enabled=True, time="02:00", effective_from=utc(2026, 11, 25, 9))
    # every instance was down at 02:00: the slot still runs when one comes back at 09:00
    assert due_slot(saved_yesterday, utc(2026, 11, 26, 9)) == utc(2026, 11, 26, 2)
    saved_today = ScheduleSettings(enabled=True, time="02:00", effective_from=utc(2026, 11, 26, 8))
    # enabled at 08:00: today's 02:00 lies before that, so the first run is tomorrow
    assert due_slot(saved_today, utc(2026, 11, 26, 9)) is None
    assert due_slot(saved_today, utc(2026, 11, 27, 2, 0, 30)) == utc(2026, 11, 27, 2)
    assert due_slot(ScheduleSettings(enabled=False), utc(2026, 11, 27)) is None


# --- Validation ---------------------------------------------------------------------

NOW = utc(2026, 11, 26, 12)


def test_fields_left_out_keep_their_values():
    current = ScheduleSettings(enabled=True, frequency="weekly", weekday=3, keep_last=9,
                               notify_emails=("ops@example.com",), effective_from=utc(2026, 1, 1))
    updated = apply_changes(current, {"keep_last": "4"}, NOW)
    assert updated == ScheduleSettings(enabled=True, frequency="weekly", weekday=3, keep_last=4,
                                       notify_emails=("ops@example.com",), effective_from=utc(2026, 1, 1))


def test_changing_the_timing_moves_effective_from_but_other_fields_do_not():
    current = ScheduleSettings(enabled=True, effective_from=utc(2026, 1, 1))
    assert apply_changes(current, {"notify_on": "always"}, NOW).effective_from == utc(2026, 1, 1)
    assert apply_changes(current, {"time": "03:00"}, NOW).effective_from == NOW
    assert apply_changes(current, {"time": "02:00"}, NOW).effective_from == utc(2026, 1, 1)  # same value


def test_form_strings_are_parsed():
    updated = apply_changes(ScheduleSettings(), {
        "enabled": "on", "frequency": "Monthly", "time": "7:05", "weekday": "6", "day_of_month": "28",
        "retention_days": "90", "keep_last": "0", "notify_emails": "a@example.com, b@example.com;a@example.com",
        "notify_on": "always", "csrf_token": "ignored",
    }, NOW)
    assert updated.enabled and updated.frequency == "monthly" and updated.time == "07:05"
    assert (updated.weekday, updated.day_of_month, updated.retention_days, updated.keep_last) == (6, 28, 90, 0)
    assert updated.notify_emails == ("a@example.com", "b@example.com")


def test_a_get_response_can_be_posted_back():
    body = {"schedule": ScheduleSettings(enabled=True).to_dict(NOW)}
    updated = apply_changes(ScheduleSettings(enabled=True, effective_from=NOW), body, NOW)
    assert updated.enabled and updated.retention_days == 30


@pytest.mark.parametrize("field, value", [
    ("frequency", "hourly"), ("time", "24:00"), ("time", "12:60"), ("time", "noon"), ("time", 1200),
    ("weekday", 7), ("weekday", "-1"), ("weekday", True), ("weekday", 2.5), ("day_of_month", 29),
    ("day_of_month", 0), ("retention_days", 0), ("keep_last", -1), ("notify_emails", "not-an-address"),
    ("notify_emails", ["ok@example.com", 5]), ("notify_on", "sometimes"), ("enabled", "maybe"),
    ("enabled", None), ("frequency", None), ("colour", "blue"),
])
def test_bad_values_are_rejected_naming_the_field(field, value):
    with pytest.raises(ScheduleValidationError) as caught:
        apply_changes(ScheduleSettings(), {"keep_last": 3, field: value}, NOW)
    assert field in caught.value.extra["fields"]
    assert field in caught.value.message
    assert caught.value.status == 400


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(ScheduleValidationError) as caught:
        apply_changes(ScheduleSettings(), {"time": "99:99", "weekday": 9, "keep_last": 2}, NOW)
    assert set(caught.value.extra["fields"]) == {"time", "weekday"}


def test_parse_emails_accepts_lists_and_separators():
    assert parse_emails(["x@example.com"]) == ("x@example.com",)
    assert parse_emails("x@example.com\ny@example.com") == ("x@example.com", "y@example.com")
    assert parse_emails("") == ()


# --- Storage ------------------------------------------------------------------------

def test_defaults_come_from_config_until_saved(tmp_path):
    from support.app import build_app

    app = build_app(tmp_path, BACKUP_RETENTION_DAYS=45)
    with app.app_context():
        stored = load_settings()
        assert not stored.enabled and stored.effective_retention_days == 45
        saved = update_settings({"enabled": True, "notify_emails": "ops@example.com"}, NOW)
        assert saved.exists and saved.effective_from == NOW
        assert saved.to_dict(NOW)["retention_days"] == 45
        saved = update_settings({"retention_days": None}, NOW + timedelta(hours=1))
        assert saved.retention_days is None and saved.effective_from == NOW
        with pytest.raises(ScheduleValidationError):
            update_settings({"enabled": False, "time": "bad"}, NOW)
        assert load_settings() == saved
