"""The one bounded hand-off between the calling thread and a helper thread.

Reading, inflating, deflating, CRC and SHA-256 release the GIL, so a helper
thread doing them uses the second core while the caller parses or encodes rows.
The reader has its helper read ahead (``Handoff.reading_ahead``), the writer has
its helper write behind (``Handoff.writing_behind``); both hand over chunks of
about a megabyte, never single rows.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator

_END = object()
# How often a side blocked on the queue looks whether the other side has stopped.
_POLL_SECONDS = 0.05


class Handoff:
    """Chunks passed through a bounded queue between the caller and one helper thread.

    At most ``depth`` chunks wait in the queue, which bounds memory. An exception
    on the helper is raised in the caller: after the chunks read before it, or at
    the next ``put`` / ``finish``. ``close`` stops the helper between two chunks
    (so every chunk it took was handled exactly once) and waits for it.
    """

    def __init__(self, depth: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def reading_ahead(cls, chunks: Iterable[bytes], *, name: str, depth: int = 4) -> "Handoff":
        """A helper thread iterates ``chunks`` up to ``depth`` ahead; the caller iterates the handoff."""
        handoff = cls(depth)
        handoff._start(handoff._produce, chunks, name)
        return handoff

    @classmethod
    def writing_behind(cls, consume: Callable[[bytes], None], *, name: str, depth: int = 4) -> "Handoff":
        """A helper thread calls ``consume`` on each chunk the caller ``put``s, in order, until ``finish``."""
        handoff = cls(depth)
        handoff._start(handoff._consume, consume, name)
        return handoff

    def _start(self, target, argument, name: str) -> None:
        self._thread = threading.Thread(target=target, args=(argument,), name=name, daemon=True)
        self._thread.start()

    def _offer(self, item) -> bool:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _take(self):
        while not self._stopping.is_set():
            try:
                return self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
        return _END

    def _produce(self, chunks: Iterable[bytes]) -> None:
        try:
            for chunk in chunks:
                if not self._offer(chunk):
                    return
        except BaseException as exc:  # raised in the caller once it has the chunks before it
            self._error = exc
        self._offer(_END)

    def _consume(self, consume: Callable[[bytes], None]) -> None:
        try:
            while (chunk := self._take()) is not _END:
                consume(chunk)
        except BaseException as exc:  # raised in the caller at its next put or finish
            self._error = exc
            self._stopping.set()

    def __iter__(self) -> Iterator[bytes]:
        """The chunks the helper read, in order; its exception, if it failed, after the last of them."""
        while (chunk := self._take()) is not _END:
            yield chunk
        if self._error is not None:
            raise self._error

    def put(self, chunk: bytes) -> None:
        """Hand ``chunk`` to the helper, waiting while the queue is full; raise the helper's exception if it failed."""
        if not self._offer(chunk):
            self._raise_error()

    def finish(self) -> None:
        """Wait until the helper has consumed every chunk put; raise its exception if it failed."""
        self._offer(_END)
        self._thread.join()
        self._raise_error()

    def close(self) -> None:
        """Stop the helper between two chunks and wait for it; what is still queued is dropped."""
        self._stopping.set()
        self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error
