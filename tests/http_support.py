"""A real HTTP server for an app (werkzeug's, threaded, on a free port) and a plain client for it.

For tests that must go through real sockets: chunked bodies, concurrent requests,
the memory of a server process.
"""
from __future__ import annotations

import http.client
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlencode

from werkzeug.serving import make_server


@contextmanager
def serving(app):
    """Serve ``app`` from a thread until the block ends; yields the port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="http-support",
                              daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class HttpClient:
    """One cookie jar over fresh HTTP/1.1 connections (werkzeug's server closes each after its answer)."""

    port: int
    cookies: dict = field(default_factory=dict)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            all_headers = dict(headers or {})
            if self.cookies:
                all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
            for cookie in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = cookie.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
            return answer
        finally:
            connection.close()

    def form_post(self, path: str, fields: dict, headers: dict | None = None) -> Answer:
        return self.request("POST", path, urlencode(fields).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})

    def csrf_token(self, page: str = "/auth/login") -> str:
        """Opens ``page`` (which starts the session) and returns its CSRF token."""
        html = self.request("GET", page).text
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
        assert match, html
        return match.group(1)
