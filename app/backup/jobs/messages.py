"""The live log of jobs run by this process: each job's last messages, one line per step.

A job reports many messages for one step ("Backing up users (1,000 of 9,000 rows)",
then "(2,000 of …)"): a message whose step (the text before " (") is the last
line's replaces that line, so the log reads table by table. Logs are bounded
(``LINES`` per job) and kept for the last ``KEPT`` jobs after they end, so a page
that reloads when its job finishes can still show how it went.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

LINES = 50
KEPT = 20

_logs: OrderedDict[str, list[str]] = OrderedDict()
_lock = threading.Lock()


def _step(message: str) -> str:
    return message.split(" (", 1)[0]


def record(job_id: str, message: str) -> None:
    """Add ``message`` to the job's log (or update its step's line); empty messages are ignored."""
    if not message:
        return
    with _lock:
        lines = _logs.get(job_id)
        if lines is None:
            lines = _logs[job_id] = []
            while len(_logs) > KEPT:
                _logs.popitem(last=False)
        if lines and _step(lines[-1]) == _step(message):
            lines[-1] = message
        else:
            lines.append(message)
            del lines[:-LINES]


def lines(job_id: str) -> list[str]:
    """The job's log, oldest line first; empty for a job this process did not run (or ran long ago)."""
    with _lock:
        return list(_logs.get(job_id, ()))
