"""The CPU priority of background jobs: their threads run nicer than the pages (``BACKUP_JOB_NICE``).

A backup keeps every core busy (reading the database, deflating on several
threads); at the same priority a page request waits in the run queue behind it.
Linux niceness belongs to a thread, and a thread starts with its creator's, so a
job thread made nicer before it starts working takes its deflate threads and its
heartbeat with it, and leaves the rest of the process as it was.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Callable

log = logging.getLogger(__name__)

MAX_NICENESS = 19


def thread_niceness() -> int:
    """The calling thread's niceness (Linux keeps one per thread)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def lower_thread_priority(increment: int) -> int | None:
    """Make the calling thread ``increment`` nicer (at most 19); returns its niceness, None if unchanged.

    Linux only: elsewhere ``setpriority`` would lower the whole process, web workers
    included, so nothing is changed there. Lowering one's own priority needs no
    privilege; a refusal is logged and the job runs on at the priority it has.
    """
    if increment <= 0 or not sys.platform.startswith("linux"):
        return None
    tid = threading.get_native_id()
    try:
        niceness = min(MAX_NICENESS, thread_niceness() + increment)
        os.setpriority(os.PRIO_PROCESS, tid, niceness)
    except OSError as exc:
        log.warning("could not lower the priority of job thread %s: %s", tid, exc)
        return None
    return niceness


def start_job_thread(app, name: str, target: Callable[[], object]) -> threading.Thread:
    """Start a daemon thread that runs ``target()`` in an app context of ``app``, at ``BACKUP_JOB_NICE``."""
    increment = app.config["BACKUP_JOB_NICE"]

    def thread_main():
        lower_thread_priority(increment)
        with app.app_context():
            target()

    thread = threading.Thread(target=thread_main, name=name, daemon=True)
    thread.start()
    return thread
