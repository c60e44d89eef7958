"""A real S3 endpoint for the storage tests: moto's server over HTTP."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 served over real HTTP on a free port; ``.endpoint_url`` points at it.

    State is shared by the session: tests reset it with ``POST /moto-api/reset``.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    server.endpoint_url = f"http://{host}:{port}"
    yield server
    server.stop()
