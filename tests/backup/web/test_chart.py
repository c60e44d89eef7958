"""The history chart's geometry (app/backup/web/chart.py): pure, from overview.history's values."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from app.backup.web import chart

START = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)


def point(day: int, size: int, records: int) -> dict:
    return {"at": START + timedelta(days=day), "size": size, "records": records,
            "filename": f"cyberquest_backup_202611{day + 1:02d}_020000.zip"}


def coordinates(path: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"[ML]([\d.]+),([\d.]+)", path)]


def test_nothing_to_draw_says_so():
    drawn = chart.history_chart({"points": [], "failures": []})
    assert drawn["drawn"] is False and drawn["description"] == "No backups to draw yet."


def test_points_run_left_to_right_and_bigger_is_higher():
    history = {"points": [point(0, 1000, 10), point(1, 3000, 30), point(4, 2000, 25)],
               "failures": [{"at": START + timedelta(days=2), "message": "The disk is full."}]}
    drawn = chart.history_chart(history)
    sizes, records = coordinates(drawn["size_path"]), coordinates(drawn["records_path"])
    assert [x for x, _ in sizes] == sorted(x for x, _ in sizes) == [x for x, _ in records]
    assert sizes[0][0] == chart.LEFT and sizes[-1][0] == chart.WIDTH - chart.RIGHT
    assert sizes[1][1] < sizes[2][1] < sizes[0][1]  # SVG y grows downwards
    assert all(chart.TOP <= y <= chart.HEIGHT - chart.BOTTOM for _, y in sizes + records)
    (mark,) = drawn["marks"]
    assert sizes[1][0] < mark["x"] < sizes[2][0]
    assert drawn["y_ticks"][0]["size"] == "0 bytes" and drawn["y_ticks"][-1]["records"] == "50"
    assert drawn["description"] == (
        "3 backups from 2026-11-01 02:00 to 2026-11-05 02:00 UTC. Archive size went from 1000 bytes to "
        "2.0 KiB; total records from 10 to 25. 1 failed run marked with a red cross.")
    assert [row["what"] for row in drawn["rows"]] == [
        point(0, 0, 0)["filename"], point(1, 0, 0)["filename"], "Failed: The disk is full.",
        point(4, 0, 0)["filename"]]


def test_one_backup_still_has_a_time_axis():
    drawn = chart.history_chart({"points": [point(0, 500, 5)], "failures": []})
    (x, _), = coordinates(drawn["size_path"])
    assert chart.LEFT < x < chart.WIDTH - chart.RIGHT
    assert [tick["label"] for tick in drawn["x_ticks"]] == ["01 Nov 01:30", "01 Nov 02:30"]


def test_axes_end_on_round_numbers():
    assert [chart._nice_top(v) for v in (0, 1, 7, 12, 230, 2600, 9_100_000)] == [
        1, 1, 10, 20, 250, 5000, 10_000_000]
