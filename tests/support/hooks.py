"""A real local HTTP server standing in for Slack, a webhook receiver or healthchecks.io."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson


@dataclass
class Received:
    """One request the server got."""

    method: str
    path: str
    headers: dict
    body: bytes

    @property
    def json(self):
        """The body parsed as JSON."""
        return orjson.loads(self.body)


@dataclass
class HookServer:
    """``http.server`` on a free port of 127.0.0.1 in a thread; answers ``status`` after ``delay`` seconds."""

    status: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)

    def start(self) -> "HookServer":
        """Serve until ``stop``; ``url`` is its address."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.received.append(Received(self.command, self.path, dict(self.headers), body))
                time.sleep(owner.delay)
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up waiting (a timeout test)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def paths(self, method: str | None = None) -> list[str]:
        """The paths requested so far (of one method, if given), in order."""
        return [r.path for r in self.received if method is None or r.method == method]
