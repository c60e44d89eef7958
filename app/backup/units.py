"""How sizes, durations and ages are written for people: one spelling in messages, mails, the CLI and the pages."""
from __future__ import annotations


def human_size(size: int | None) -> str:
    """``512 bytes``, ``2.0 KiB``, ``3.5 MiB``, ``1.2 GiB`` (binary units); ``unknown`` for None."""
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    """``0.8 s``, ``4.2 s``, ``3 min 5 s``, ``2 h 10 min``: how long something took; ``unknown`` for None."""
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def human_age(seconds: float) -> str:
    """How long ago, in the largest unit that reads well: ``just now``, ``12 minutes ago``, ``5 hours ago``, ``3 days ago``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return "just now"
    for limit, unit, size in ((5400, "minute", 60), (2 * 86400, "hour", 3600), (None, "day", 86400)):
        if limit is None or seconds < limit:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    raise AssertionError("unreachable")
