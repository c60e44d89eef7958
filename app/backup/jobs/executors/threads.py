"""The thread executor: jobs run inside the web (or CLI) process that starts them."""
from __future__ import annotations

import threading
from typing import Callable

from flask import current_app

from ..runner import JobHandle, execute_job


class ThreadExecutor:
    """A background job runs on a daemon thread with its own app context; a waited-for job in the caller's thread."""

    queues = False

    def start(self, handle: JobHandle, work: Callable[[JobHandle], dict], exclusive: bool) -> None:
        """Start the job on a new thread and return at once."""
        app = current_app._get_current_object()

        def thread_main():
            with app.app_context():
                execute_job(handle, work, exclusive)

        threading.Thread(target=thread_main, name=f"{handle.kind}-job-{handle.job_id[:8]}", daemon=True).start()

    def run(self, handle: JobHandle, work: Callable[[JobHandle], dict], exclusive: bool) -> BaseException | None:
        """Run the job here, to its end; returns what the work raised, if anything."""
        return execute_job(handle, work, exclusive)
