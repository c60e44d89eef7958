"""Real Celery workers on the machine's Redis, in a database number of this test run's own.

``RedisDatabase.claim()`` takes the first Redis database whose claim key it can set
(so two test runs on one machine never share one), ``flush()`` empties it between
tests and at the end. ``CeleryWorker`` runs ``celery -A wsgi:celery worker --pool solo``
on an app's database and store, and waits for its ``ready.`` line.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import redis

from .processes import REPO, flask_environment

CELERY = str(Path(sys.executable).with_name("celery"))
REDIS_SERVER = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
CLAIM_KEY = "cyberquest-tests:claimed-by"


class RedisDatabase:
    """One Redis database number held by this test run (a claim key with an expiry marks it taken)."""

    def __init__(self, number: int):
        self.number = number
        self.url = f"{REDIS_SERVER.rstrip('/')}/{number}"
        self.client = redis.Redis.from_url(self.url)

    @classmethod
    def claim(cls) -> "RedisDatabase":
        """The first of databases 15…2 nobody has claimed; raises ``redis.ConnectionError`` when Redis is down."""
        for number in range(15, 1, -1):
            database = cls(number)
            if database.client.set(CLAIM_KEY, f"pid {os.getpid()}", nx=True, ex=6 * 3600):
                return database
        raise RuntimeError("every Redis database from 2 to 15 is claimed by another test run")

    def flush(self, keep_claim: bool = True) -> None:
        """Empty the database (queued messages included); the claim stays unless ``keep_claim`` is false."""
        self.client.flushdb()
        if keep_claim:
            self.client.set(CLAIM_KEY, f"pid {os.getpid()}", ex=6 * 3600)


def worker_environment(app, broker_url: str, **extra: str) -> dict:
    """The environment of a worker process serving ``app``'s jobs (its database, store and settings)."""
    env = flask_environment(app)
    env.update(BACKUP_JOB_EXECUTOR="celery", CELERY_BROKER_URL=broker_url,
               BACKUP_LOCK_TTL=str(app.config["BACKUP_LOCK_TTL"]))
    env.update(extra)
    return env


class CeleryWorker:
    """A ``celery worker --pool solo`` child process; its output is collected in ``lines``."""

    def __init__(self, env: dict):
        self.env = env
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None
        self._ready = threading.Event()

    def start(self, timeout: float = 60.0) -> "CeleryWorker":
        """Start the worker and return once it logged ``ready.`` (fails with its output otherwise)."""
        command = [CELERY, "-A", "wsgi:celery", "worker", "--pool", "solo", "--concurrency", "1",
                   "--loglevel", "info", "-n", self.name, "--without-gossip", "--without-mingle",
                   "--without-heartbeat"]
        self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("the Celery worker did not start:\n" + self.output)
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if line.rstrip().endswith("ready."):
                self._ready.set()

    @property
    def output(self) -> str:
        """Everything the worker printed so far."""
        return "".join(self.lines)

    def kill(self) -> None:
        """kill -9: the worker dies at once, mid-job if it runs one."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._close()

    def stop(self) -> None:
        """Stop the worker (warm shutdown), killing it if it does not stop in time."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()

    def _close(self) -> None:
        if self.process is not None and not self.process.stdout.closed:
            self._reader.join(5)  # the output ends with the process
            self.process.stdout.close()
