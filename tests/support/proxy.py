"""A real TCP proxy that lets a set number of bytes through and then drops the connection: a store lost mid-upload."""
from __future__ import annotations

import socket
import struct
import threading

from support.services import free_port

CHUNK = 64 * 1024


def _reset(sock: socket.socket) -> None:
    """Drop ``sock``: the peer's connection breaks (a reset, SO_LINGER 0), and a thread blocked reading it
    wakes up (the shutdown; a bare close would leave it waiting)."""
    for step in (lambda: sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
                 lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
        try:
            step()
        except OSError:
            pass


class DroppingProxy:
    """Listens on 127.0.0.1 (``url``) and forwards every connection to ``target`` (host, port) both ways until
    ``limit`` bytes in all have gone from clients to the target. The connection that crosses the limit is
    reset there, and so is every later one: the endpoint is gone. ``start()`` returns the proxy; ``stop()``
    closes everything and joins its threads."""

    def __init__(self, target: tuple[str, int], limit: int):
        self.target, self.limit = target, limit
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.forwarded = 0  # bytes passed from clients to the target
        self.dropped = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))

    def start(self) -> "DroppingProxy":
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        _reset(self._listener)
        with self._lock:
            for sock in self._sockets:
                _reset(sock)
        for thread in self._threads:
            thread.join(timeout=10)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener was closed: stop
                return
            if self.dropped.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(CHUNK):
                if counted:
                    with self._lock:
                        allowed = max(0, self.limit - self.forwarded)
                        self.forwarded += min(allowed, len(data))
                    if allowed < len(data):
                        sink.sendall(data[:allowed])
                        self.dropped.set()
                        break
                if self.dropped.is_set():
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            _reset(sock)
