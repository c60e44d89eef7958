"""Fixtures of the schedule tests: a real HTTP server receiving webhooks and heartbeats."""
from __future__ import annotations

import pytest

from support.hooks import HookServer


@pytest.fixture
def hook_server():
    """A local HTTP server that records each request and answers 200 (tests may change status and delay)."""
    server = HookServer().start()
    yield server
    server.stop()
