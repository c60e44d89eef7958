"""The app served for real: ``gunicorn`` child processes on free ports, and plain HTTP calls to them."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .processes import REPO
from .services import free_port

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


@dataclass
class Reply:
    """An HTTP answer: status, headers, the body, and the body as JSON (None when it is not JSON)."""

    status: int
    headers: dict
    body: bytes
    json: dict | None


def call(method: str, url: str, *, token: str | None = None, fields: dict | None = None,
         timeout: float = 60.0) -> Reply:
    """One HTTP request (form fields urlencoded), as a script with a Bearer token sends it."""
    data = urllib.parse.urlencode(fields).encode() if fields is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, headers, body = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, headers, body = error.code, dict(error.headers), error.read()
        error.close()
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return Reply(status, headers, body, parsed)


class Gunicorn:
    """``gunicorn -w WORKERS wsgi:app`` on a free port of 127.0.0.1, with the environment given."""

    def __init__(self, env: dict, workers: int = 2):
        self.env, self.workers = env, workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = ""

    def start(self, timeout: float = 60.0) -> "Gunicorn":
        """Start it and return once it answers HTTP (fails with its log otherwise)."""
        # No control socket: gunicorn's default is one fixed path per user, which the tests' instances would share.
        command = [GUNICORN, "-w", str(self.workers), "-b", f"127.0.0.1:{self.port}", "--timeout", "120",
                   "--no-control-socket", "--log-file", "-", "wsgi:app"]
        self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if call("GET", f"{self.url}/auth/login", timeout=2).status == 200:
                    return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("gunicorn did not start:\n" + self.stop())
            time.sleep(0.1)

    def stop(self) -> str:
        """Stop it (gracefully, then by force) and return what it logged; stopping again changes nothing."""
        if self.process is None or self.process.stdout.closed:
            return self.log
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log = self.process.stdout.read()
        self.process.stdout.close()
        return self.log
