"""How sizes, durations and ages are written for people (app/backup/units.py)."""
from __future__ import annotations

import pytest

from app.backup.units import human_age, human_duration, human_size


@pytest.mark.parametrize("size, text", [(None, "unknown"), (0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KiB"),
                                        (5 * 1024 ** 3, "5.0 GiB")])
def test_sizes(size, text):
    assert human_size(size) == text


@pytest.mark.parametrize("seconds, text", [(None, "unknown"), (0.04, "0.0 s"), (4.24, "4.2 s"), (59.9, "59.9 s"),
                                           (185, "3 min 5 s"), (7800, "2 h 10 min")])
def test_durations(seconds, text):
    assert human_duration(seconds) == text


@pytest.mark.parametrize("seconds, text", [(-5, "just now"), (59, "just now"), (60, "1 minute ago"),
                                           (5399, "89 minutes ago"), (5400, "1 hour ago"), (3 * 3600, "3 hours ago"),
                                           (2 * 86400, "2 days ago")])
def test_ages(seconds, text):
    assert human_age(seconds) == text
