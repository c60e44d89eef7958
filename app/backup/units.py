"""How sizes are written for people: one spelling in messages, mails, the CLI and the pages."""
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
