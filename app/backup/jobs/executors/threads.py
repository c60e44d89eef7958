"""The thread executor: jobs run inside the web (or CLI) process that starts them."""
from __future__ import annotations

from typing import Callable

from flask import current_app

from ..priority import start_job_thread
from ..runner import JobHandle, execute_job


class ThreadExecutor:
    """A background job runs on a daemon thread with its own app context, ``BACKUP_JOB_NICE`` nicer than the
    process; a waited-for job in the caller's thread, at the caller's priority."""

    queues = False

    def start(self, handle: JobHandle, work: Callable[[JobHandle], dict], exclusive: bool) -> None:
        """Start the job on a new thread (at ``BACKUP_JOB_NICE``) and return at once."""
        start_job_thread(current_app._get_current_object(), f"{handle.kind}-job-{handle.job_id[:8]}",
                         lambda: execute_job(handle, work, exclusive))

    def run(self, handle: JobHandle, work: Callable[[JobHandle], dict], exclusive: bool) -> BaseException | None:
        """Run the job here, to its end; returns what the work raised, if anything."""
        return execute_job(handle, work, exclusive)
