"""The retention policy as a pure function: what it keeps, what it deletes, and why."""
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from app.backup.schedule.retention import BackupDescriptor, RetentionPolicy, plan_retention

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def backup(days_ago: float, *, verified=True, pinned=False, trigger="scheduled", name=None) -> BackupDescriptor:
    created = NOW - timedelta(days=days_ago)
    return BackupDescriptor(filename=name or f"cyberquest_backup_{created:%Y%m%d_%H%M%S}.zip",
                            created_at=created, trigger=trigger, pinned=pinned, verified=verified)


def only_count(keep_last: int, retention_days: int = 1) -> RetentionPolicy:
    """A policy without the GFS layers, so a test sees age and count alone."""
    return RetentionPolicy(retention_days=retention_days, keep_last=keep_last, daily=0, weekly=0, monthly=0)


def test_keeps_the_newest_n_verified_and_deletes_older_ones():
    backups = [backup(d) for d in range(10, 20)]
    plan = plan_retention(backups, only_count(3), NOW)
    assert sorted(plan.keep) == sorted(b.filename for b in backups[:3])
    assert plan.delete == [b.filename for b in backups[3:]]


def test_everything_younger_than_retention_days_is_kept():
    backups = [backup(d, verified=None, trigger="manual") for d in (0.5, 3, 9.9, 10.1, 40)]
    plan = plan_retention(backups, only_count(0, retention_days=10), NOW)
    assert set(plan.keep) == {b.filename for b in backups[:3]}
    assert plan.delete == [backups[3].filename, backups[4].filename]
    assert plan.keep[backups[1].filename] == ["younger than 10 days"]


def test_failed_and_unverified_backups_never_count_toward_keep_last():
    good = [backup(d) for d in (30, 31)]
    failed = [backup(d, verified=False) for d in (20, 21)]
    unverified = [backup(d, verified=None, trigger="manual") for d in (22, 23)]
    plan = plan_retention(good + failed + unverified, only_count(2), NOW)
    # The two verified backups are kept although four newer ones exist.
    assert {g.filename for g in good} <= set(plan.keep)
    # The newest not-failed backup is protected; the rest of the newer ones go.
    assert plan.keep[unverified[0].filename] == ["newest successful backup"]
    assert set(plan.delete) == {failed[0].filename, failed[1].filename, unverified[1].filename}


def test_never_deletes_the_newest_successful_backup_even_when_it_is_old():
    only = backup(400)
    plan = plan_retention([only], RetentionPolicy(retention_days=1, keep_last=0, daily=0, weekly=0, monthly=0), NOW)
    assert plan.delete == []
    assert "newest successful backup" in plan.keep[only.filename]


def test_a_failed_newest_backup_does_not_protect_itself_but_the_last_good_one_stays():
    failed = backup(100, verified=False)
    good = backup(200)
    plan = plan_retention([failed, good], only_count(0), NOW)
    assert plan.delete == [failed.filename]
    assert good.filename in plan.keep


def test_pinned_backups_are_kept_whatever_their_age():
    pinned = backup(3000, pinned=True, verified=False)
    plan = plan_retention([backup(1), pinned], only_count(1), NOW)
    assert plan.keep[pinned.filename] == ["pinned"]
    assert plan.delete == []


def test_restore_safety_backups_are_kept_for_seven_days_then_follow_the_policy():
    recent = backup(6.9, trigger="pre-restore", verified=None)
    old = backup(7.1, trigger="pre-restore", verified=None)
    newest = backup(0.1)
    plan = plan_retention([recent, old, newest], only_count(1), NOW)
    assert "safety backup of a restore, younger than 7 days" in plan.keep[recent.filename][0]
    assert plan.delete == [old.filename]


def test_grandfather_father_son_keeps_one_per_day_week_and_month():
    # One verified backup every day at 02:00 for 500 days.
    backups = [BackupDescriptor(f"b{i:03d}.zip", datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc) - timedelta(days=i),
                                "scheduled", False, True) for i in range(500)]
    policy = RetentionPolicy(retention_days=1, keep_last=0, daily=7, weekly=4, monthly=12)
    plan = plan_retention(backups, policy, NOW)
    kept = [b for b in backups if b.filename in plan.keep]
    kept_days = {b.created_at.date() for b in kept}
    # the last 7 days, each by its one backup
    assert all((NOW - timedelta(days=i)).date() in kept_days for i in range(7))
    # the newest backup of each of the last 4 ISO weeks: the Sundays (or today in this week)
    weeks = {b.created_at.isocalendar()[:2] for b in kept}
    assert len([w for w in weeks if w >= (NOW - timedelta(weeks=3)).isocalendar()[:2]]) == 4
    # the newest of each of the last 12 months: month ends, or today in this month
    for months_back in range(1, 12):
        year, month = divmod(NOW.year * 12 + NOW.month - 1 - months_back, 12)
        month_end = max(b.created_at for b in backups if (b.created_at.year, b.created_at.month) == (year, month + 1))
        assert month_end.date() in kept_days
    # nothing older than 12 months survives, and nothing beyond the three layers
    assert min(kept_days) >= datetime(2025, 12, 1).date()
    assert len(kept) <= 7 + 4 + 12
    assert len(plan.keep) + len(plan.delete) == 500


def test_the_gfs_numbers_are_configurable():
    backups = [backup(d + 0.01) for d in range(60)]
    small = plan_retention(backups, RetentionPolicy(retention_days=1, keep_last=0, daily=2, weekly=0, monthly=0), NOW)
    large = plan_retention(backups, RetentionPolicy(retention_days=1, keep_last=0, daily=14, weekly=0, monthly=0), NOW)
    assert len(small.keep) == 2
    assert len(large.keep) == 14


def test_unverified_backups_do_not_fill_gfs_periods():
    unverified_today = backup(0.1, verified=None, trigger="manual")
    verified_today = backup(0.2)
    old_unverified = backup(3, verified=None, trigger="manual")
    plan = plan_retention([unverified_today, verified_today, old_unverified],
                          RetentionPolicy(retention_days=1, keep_last=0, daily=7, weekly=0, monthly=0), NOW)
    assert f"daily ({NOW.date().isoformat()})" in plan.keep[verified_today.filename]
    assert not any(r.startswith("daily") for r in plan.keep[unverified_today.filename])
    assert plan.delete == [old_unverified.filename]


def test_from_backup_reads_the_contract_shape():
    item = BackupDescriptor.from_backup({"filename": "x.zip", "created_at": "2026-11-26T02:00:00+00:00",
                                         "trigger": "pre-restore", "pinned": True, "verified": None})
    assert item.created_at == datetime(2026, 11, 26, 2, tzinfo=timezone.utc)
    assert item.pinned and item.trigger == "pre-restore" and item.verified is None


descriptors = st.lists(
    st.builds(
        BackupDescriptor,
        filename=st.uuids().map(lambda u: f"{u.hex}.zip"),
        created_at=st.integers(min_value=0, max_value=800 * 24).map(lambda h: NOW - timedelta(hours=h)),
        trigger=st.sampled_from(["manual", "cli", "scheduled", "pre-restore"]),
        pinned=st.booleans(),
        verified=st.sampled_from([True, False, None]),
    ),
    max_size=40,
    unique_by=lambda b: b.filename,
)
policies = st.builds(RetentionPolicy, retention_days=st.integers(1, 60), keep_last=st.integers(0, 10),
                     daily=st.integers(0, 10), weekly=st.integers(0, 6), monthly=st.integers(0, 14))


@settings(max_examples=200, deadline=None)
@given(descriptors, policies)
def test_invariants_hold_for_any_set_of_backups(backups, policy):
    plan = plan_retention(backups, policy, NOW)
    deleted = set(plan.delete)
    assert deleted | set(plan.keep) == {b.filename for b in backups}
    assert not deleted & set(plan.keep)
    for b in backups:
        if b.pinned or (b.trigger == "pre-restore" and NOW - b.created_at < timedelta(days=7)):
            assert b.filename not in deleted
    successful = [b for b in backups if b.verified is not False]
    if successful:
        newest = max(successful, key=lambda b: (b.created_at, b.filename))
        assert newest.filename not in deleted
    # the same input gives the same plan (a dry run equals the real prune)
    assert plan_retention(list(reversed(backups)), policy, NOW).delete == plan.delete
