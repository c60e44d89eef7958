"""The bounded hand-off between the caller and a helper thread, in both directions."""
from __future__ import annotations

import threading

import pytest

from app.backup.archive.pipeline import Handoff


def helper_threads(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == name]


def test_reading_ahead_yields_every_chunk_in_order():
    handoff = Handoff.reading_ahead((bytes([i]) * 3 for i in range(50)), name="test-read")
    assert list(handoff) == [bytes([i]) * 3 for i in range(50)]
    handoff.close()
    assert not helper_threads("test-read")


def test_a_failure_while_reading_ahead_comes_after_the_chunks_read_before_it():
    def chunks():
        yield b"one"
        yield b"two"
        raise ValueError("damaged")

    handoff = Handoff.reading_ahead(chunks(), name="test-read")
    received = []
    with pytest.raises(ValueError, match="damaged"):
        for chunk in handoff:
            received.append(chunk)
    assert received == [b"one", b"two"]
    handoff.close()


def test_closing_stops_the_reader_between_chunks_and_keeps_it_bounded():
    produced = []

    def chunks():
        for number in range(10_000):
            produced.append(number)
            yield b"x"

    handoff = Handoff.reading_ahead(chunks(), name="test-read", depth=2)
    iterator = iter(handoff)
    assert next(iterator) == b"x"
    handoff.close()
    assert not helper_threads("test-read")
    # one taken, at most two queued, one waiting to be queued when the close came
    assert len(produced) <= 4


def test_writing_behind_consumes_every_chunk_in_order_before_finish_returns():
    consumed = []
    handoff = Handoff.writing_behind(consumed.append, name="test-write", depth=2)
    for number in range(100):
        handoff.put(str(number).encode())
    handoff.finish()
    assert consumed == [str(number).encode() for number in range(100)]
    assert not helper_threads("test-write")


def test_a_failure_while_writing_behind_is_raised_in_the_caller():
    def consume(chunk: bytes) -> None:
        if chunk == b"bad":
            raise OSError("disk full")

    handoff = Handoff.writing_behind(consume, name="test-write", depth=2)
    handoff.put(b"good")
    handoff.put(b"bad")
    with pytest.raises(OSError, match="disk full"):
        for _ in range(1000):  # never blocks for good on the full queue of a dead helper
            handoff.put(b"more")
        handoff.finish()
    handoff.close()
    assert not helper_threads("test-write")


def test_closing_a_writer_drops_what_is_still_queued_and_stops_it():
    busy, release = threading.Event(), threading.Event()
    consumed = []

    def consume(chunk: bytes) -> None:
        busy.set()
        release.wait()
        consumed.append(chunk)

    handoff = Handoff.writing_behind(consume, name="test-write", depth=4)
    for number in range(4):
        handoff.put(bytes([number]))
    assert busy.wait(timeout=5)
    closer = threading.Thread(target=handoff.close)
    closer.start()
    closer.join(timeout=0.5)  # close() waits for the chunk in hand
    release.set()
    closer.join(timeout=5)
    assert not closer.is_alive() and not helper_threads("test-write")
    assert consumed == [bytes([0])]
