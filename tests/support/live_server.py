"""A real HTTP server for an app (werkzeug's, threaded, on a free port) and a plain client for it.

For tests that must go through real sockets: chunked bodies, concurrent requests,
the memory of a server process.
"""
from __future__ import annotations

import http.client
import re
import socket
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


def _head(method: str, path: str, headers: dict) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(reader) -> int:
    status_line = reader.readline()
    assert status_line.startswith(b"HTTP/1."), status_line
    return int(status_line.split()[1])


def post_declaring(port: int, path: str, content_length: int, headers: dict | None = None) -> int:
    """Announce a body of ``content_length`` bytes but send none: only a server that refuses
    unread answers (the status is returned) before the 30 s timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(_head("POST", path, {"Content-Length": str(content_length), **(headers or {})}))
        with sock.makefile("rb") as reader:
            return _status(reader)


def post_chunked(port: int, path: str, size: int, headers: dict | None = None,
                 piece: bytes = b"a" * 65536, body: bytes | None = None, head: bytes = b"",
                 content_length: int | None = None) -> tuple[int, int]:
    """POST ``body``, or ``head`` and then ``size`` bytes of ``piece`` repeated, as ``Transfer-Encoding: chunked``,
    reading the answer while still sending. Given ``content_length``, the bytes go unframed under that declared
    length instead, whatever their real number (a lying client).

    Returns the status and how many body bytes went out before the server stopped reading.
    """
    sent = 0
    if body is not None:
        size = len(body)
    chunked = content_length is None

    def frame(data: bytes) -> bytes:
        return b"%x\r\n" % len(data) + data + b"\r\n" if chunked else data

    def send_body(sock):
        nonlocal sent
        try:
            if head:
                sock.sendall(frame(head))
                sent += len(head)
            repeated = frame(piece)
            while sent < size + len(head):
                if body is not None:
                    repeated = frame(body[sent:sent + len(piece)])
                sock.sendall(repeated)
                sent += len(piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            # End of the request: a server still draining the body (werkzeug reads 10 MB at a time) sees EOF.
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed: it will read no more
            pass

    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(content_length)}
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(_head("POST", path, {**framing, **(headers or {})}))
        sender = threading.Thread(target=send_body, args=(sock,), name="chunked-sender", daemon=True)
        sender.start()
        with sock.makefile("rb") as reader:
            status = _status(reader)
            try:
                reader.read()  # to the end: the server closes once it has stopped draining the body
            except OSError:
                pass
        sender.join(timeout=120)
    return status, sent
