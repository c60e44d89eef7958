"""The figures of docs/RELIABILITY.md: one test, run short in `make test` and long in `make reliability`.

A reliability test asks ``count(ci=…, full=…)`` how many points, cases or tries
to run (the CI figure unless RELIABILITY_FULL=1) and, once it has measured,
calls ``record(key, cases=…, losses=…, measured=…)``. Under `make reliability`
each record becomes a row of docs/RELIABILITY.md (see tests/reliability/report.py,
which also names the keys and their targets); in `make test` nothing is written.
The test itself still asserts ``losses == 0``: a figure is only written by a test
that can fail.
"""
from __future__ import annotations

import json
import os

FULL = os.environ.get("RELIABILITY_FULL") == "1"
REPORT = os.environ.get("RELIABILITY_REPORT")


def count(*, ci: int, full: int) -> int:
    """How many points/cases this run takes: ``full`` under `make reliability`, else ``ci``."""
    return full if FULL else ci


def record(key: str, *, cases: int, losses: int, measured: str) -> None:
    """Append one measured figure to the reliability report (a no-op outside `make reliability`).

    ``key`` is one of report.ROWS; ``cases`` how many points/cases/tries ran;
    ``losses`` how many of them lost or leaked something (the row's loss count);
    ``measured`` the figures in words, e.g. "0 of 30 archives failed verify; 0 partial files listed".
    Several records of one key (one per database, say) are summed into one row.
    """
    if not REPORT:
        return
    line = {"key": key, "cases": cases, "losses": losses, "measured": measured,
            "test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]}
    with open(REPORT, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
