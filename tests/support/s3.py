"""S3 for the tests: the bucket the storage tests use, and a small real proxy in front of moto's server.

``BUCKET`` and ``PREFIX`` are where the ``s3``/``s3_app`` fixtures (tests/backup/storage/conftest.py)
keep backups; ``reset_moto`` clears a moto server's state.

moto never checks a presigned URL's expiry, and its credentials are either always
accepted or always checked. ``S3Proxy`` forwards every request to moto unchanged
and can answer in S3's place, with S3's own error document, when a ``refuse`` rule
says so: the tests use it for an expired presigned URL (``refuse_expired``) and for
credentials rejected part-way through an upload (``refuse_after_parts``). It stands
in for S3's behaviour only at those points; everything else is moto's.
``SilentEndpoint`` is an endpoint that accepts connections and never answers.
"""
from __future__ import annotations

import http.client
import socket
import threading
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import boto3

BUCKET = "cq-backups"
PREFIX = "team/backups"


#: The credentials moto accepts, as boto3's chain reads them from the environment.
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1"}


def reset_moto(endpoint_url: str) -> None:
    """Clear every bucket, object and upload of the moto server at ``endpoint_url``."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")).close()


def fresh_bucket(endpoint_url: str, bucket: str, monkeypatch=None):
    """A moto server cleared of everything but one new, empty ``bucket``; returns a plain boto3 client on it.

    With ``monkeypatch``, the test credentials are also put in the environment (boto3's chain), for
    the app and the ``flask`` child processes the test starts.
    """
    if monkeypatch is not None:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        for name, value in TEST_CREDENTIALS.items():
            monkeypatch.setenv(name, value)
    reset_moto(endpoint_url)
    client = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=bucket)
    return client


# (HTTP status, S3 error code, message) to answer instead of forwarding; None forwards.
Refusal = tuple[int, str, str] | None
_HOP_HEADERS = {"connection", "expect", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class S3Proxy:
    """Forwards to ``upstream`` (``http://host:port``) on a free port; ``.endpoint_url`` is its address.

    ``refuse(method, path, query)`` is asked before each request is forwarded; ``requests``
    records ``(method, path, query, status)`` of every request answered. Use as a context
    manager, or call ``start``/``stop``.
    """

    def __init__(self, upstream: str, refuse: Callable[[str, str, dict], Refusal] | None = None):
        self.upstream = urlsplit(upstream)
        self.refuse = refuse or (lambda method, path, query: None)
        self.requests: list[tuple[str, str, dict, int]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-proxy", daemon=True)

    def start(self) -> "S3Proxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> "S3Proxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                refusal = proxy.refuse(self.command, parts.path, query)
                if refusal is not None:
                    status, code, message = refusal
                    document = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                                f"<Message>{message}</Message></Error>").encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(document)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(document)
                    proxy.requests.append((self.command, parts.path, query, status))
                    return
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                    self.send_response(answer.status)
                    for name, value in answer.getheaders():
                        if name.lower() not in _HOP_HEADERS and name.lower() != "content-length":
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    proxy.requests.append((self.command, parts.path, query, answer.status))
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

        return Handler


def refuse_expired(method: str, path: str, query: dict) -> Refusal:
    """S3's answer to a presigned URL used after ``X-Amz-Date`` + ``X-Amz-Expires``: 403 AccessDenied."""
    if "X-Amz-Expires" not in query:
        return None
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    if datetime.now(timezone.utc) > signed_at + timedelta(seconds=int(query["X-Amz-Expires"][0])):
        return 403, "AccessDenied", "Request has expired"
    return None


def refuse_after_parts(parts: int) -> Callable[[str, str, dict], Refusal]:
    """A rule that forwards the first ``parts`` UploadPart requests, then rejects every request's credentials
    (403 InvalidAccessKeyId, as S3 answers once a key is deleted or deactivated)."""
    seen = [0]
    lock = threading.Lock()

    def refuse(method: str, path: str, query: dict) -> Refusal:
        with lock:
            if seen[0] >= parts:
                return 403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
            if method == "PUT" and "partNumber" in query and "uploadId" in query:
                seen[0] += 1
        return None

    return refuse


class SilentEndpoint:
    """A TCP server on a free port that accepts connections and reads them, but never answers:
    an S3 endpoint that has stopped responding. ``.endpoint_url`` is its address; a context manager."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._connections: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-endpoint", daemon=True)

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connections.append(connection)
            threading.Thread(target=self._swallow, args=(connection,), daemon=True).start()

    def _swallow(self, connection: socket.socket) -> None:
        try:
            while connection.recv(65536):
                pass
        except OSError:
            pass

    @property
    def connections(self) -> int:
        """How many connections it has accepted so far."""
        return len(self._connections)

    def __enter__(self) -> "SilentEndpoint":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self._thread.join(10)
        self._listener.close()
        for connection in self._connections:
            connection.close()
