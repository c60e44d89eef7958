"""The System Backup page's history chart, laid out on the server as plain SVG geometry.

``history_chart`` turns ``overview.history`` (backups oldest first, failed runs)
into coordinates, axis ticks and a sentence that says what the chart shows; the
template draws them as inline SVG, so the chart needs no JavaScript and reads the
same in a screen reader (the sentence, and a table of the points).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from ..units import human_size

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 70, 64, 14, 40
TICKS = 4


def _nice_top(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^n at or above ``value`` (an axis that ends on a round number)."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    raise AssertionError("unreachable")


def _records_label(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _time_scale(moments: list[datetime]):
    start, end = min(moments), max(moments)
    if end - start < timedelta(hours=1):
        start, end = start - timedelta(minutes=30), end + timedelta(minutes=30)
    span = (end - start).total_seconds()
    inner = WIDTH - LEFT - RIGHT
    return start, end, lambda moment: round(LEFT + (moment - start).total_seconds() / span * inner, 1)


def _path(xy: list[tuple[float, float]]) -> str:
    return " ".join(f"{'M' if i == 0 else 'L'}{x},{y}" for i, (x, y) in enumerate(xy))


def _describe(points: list[dict], failures: list[dict]) -> str:
    if not points:
        failed = f"; {len(failures)} failed run{'s' if len(failures) != 1 else ''} marked" if failures else ""
        return f"No backups to draw yet{failed}."
    first, last = points[0], points[-1]
    text = (f"{len(points)} backup{'s' if len(points) != 1 else ''} from {first['at']:%Y-%m-%d %H:%M} to "
            f"{last['at']:%Y-%m-%d %H:%M} UTC. Archive size went from {human_size(first['size'])} to "
            f"{human_size(last['size'])}; total records from {first['records']:,} to {last['records']:,}.")
    if failures:
        text += f" {len(failures)} failed run{'s' if len(failures) != 1 else ''} marked with a red cross."
    else:
        text += " No failed runs."
    return text


def history_chart(history: dict) -> dict:
    """SVG geometry for ``history``: the size and records lines and dots, failure marks, ticks, a description."""
    points, failures = history["points"], history["failures"]
    rows = [{"at": p["at"], "what": p["filename"], "size": human_size(p["size"]), "records": p["records"]}
            for p in points] + [{"at": f["at"], "what": f"Failed: {f['message']}", "size": None, "records": None}
                                for f in failures]
    chart = {"width": WIDTH, "height": HEIGHT, "description": _describe(points, failures),
             "rows": sorted(rows, key=lambda row: row["at"]), "drawn": bool(points or failures)}
    if not chart["drawn"]:
        return chart
    start, end, x = _time_scale([p["at"] for p in points] + [f["at"] for f in failures])
    bottom, inner = HEIGHT - BOTTOM, HEIGHT - TOP - BOTTOM
    top_size = _nice_top(max((p["size"] for p in points), default=0))
    top_records = _nice_top(max((p["records"] for p in points), default=0))

    def y(value, top):
        return round(bottom - value / top * inner, 1)

    stamp = "%Y-%m-%d" if end - start > timedelta(days=2) else "%d %b %H:%M"
    size_xy = [(x(p["at"]), y(p["size"], top_size)) for p in points]
    records_xy = [(x(p["at"]), y(p["records"], top_records)) for p in points]
    chart.update(
        left=LEFT, right=WIDTH - RIGHT, top=TOP, bottom=bottom,
        size_path=_path(size_xy), records_path=_path(records_xy),
        dots=[{"size": s, "records": r, "point": p} for s, r, p in zip(size_xy, records_xy, points)],
        marks=[{"x": x(f["at"]), "failure": f} for f in failures],
        y_ticks=[{"y": y(top_size * i / TICKS, top_size), "size": human_size(int(top_size * i / TICKS)),
                  "records": _records_label(top_records * i / TICKS)} for i in range(TICKS + 1)],
        x_ticks=[{"x": x(moment), "label": f"{moment:{stamp}}", "anchor": anchor}
                 for moment, anchor in ((start, "start"), (end, "end"))],
    )
    return chart
