"""S3 clients: one per endpoint for the process, suited to S3-compatible stores, and conditional PUTs.

Every PutObject and CompleteMultipartUpload of a prepared client carries
``If-None-Match: *``, so two writers can never publish the same backup name;
``replacing_keys`` names the keys a caller replaces on purpose (rekey), whose PUTs stay unconditional.
"""
from __future__ import annotations

import threading
import weakref

import boto3
from botocore.config import Config

from ..errors import StorageError

_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()
# Per client: whether PUTs still carry If-None-Match (False once the store said it cannot).
conditional_puts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Per client: the keys being replaced on purpose right now (``replacing_writer``), whose PUTs stay unconditional.
replacing_keys: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


DEFAULT_TIMEOUT = 60


def make_client(endpoint_url: str | None = None, *, max_attempts: int = 3, timeout: int = DEFAULT_TIMEOUT):
    """A new S3 client with boto3's credential chain, suited to ``endpoint_url`` (None = AWS).

    ``timeout`` bounds each wait for the store (connecting: at most 5 s), so a store
    that stops answering fails a request after ``timeout`` seconds per attempt.
    """
    session = boto3.session.Session()
    options = {
        "connect_timeout": min(5, timeout),
        "read_timeout": timeout,
        "retries": {"mode": "standard", "max_attempts": max_attempts},
        # Presigned URLs are signed with SigV2 otherwise, which regions opened since 2014 refuse.
        "signature_version": "s3v4",
    }
    if endpoint_url:
        # S3-compatible stores (MinIO, Ceph, …) reliably serve path-style URLs only, and
        # many reject the CRC checksums botocore sends by default since 1.36.
        options.update(s3={"addressing_style": "path"},
                       request_checksum_calculation="when_required",
                       response_checksum_validation="when_required")
    try:
        return session.client("s3", endpoint_url=endpoint_url or None,
                              region_name=session.region_name or "us-east-1", config=Config(**options))
    except ValueError as exc:  # botocore's "Invalid endpoint"
        raise StorageError(f"BACKUP_S3_ENDPOINT_URL={endpoint_url!r} is not a usable URL ({exc}); "
                           "fix it or leave it empty for AWS.") from exc


def shared_client(endpoint_url: str | None = None, timeout: int = DEFAULT_TIMEOUT):
    """One client per endpoint (and timeout) for the process: creating one costs ~0.2 s, and clients are thread-safe."""
    key = (endpoint_url or None, timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make_client(endpoint_url, timeout=timeout)
        return client


def prepare_client(client) -> None:
    """Make every PutObject/CompleteMultipartUpload of ``client`` conditional (once per client)."""
    if client in conditional_puts:
        return
    conditional_puts[client] = True
    ref = weakref.ref(client)

    # upload_fileobj accepts no IfNoneMatch in ExtraArgs, so the parameter is added
    # where the transfer manager calls the client (on its worker threads).
    def add_condition(params, **kwargs):
        owner = ref()
        if owner is not None and conditional_puts.get(owner, False) \
                and params.get("Key") not in replacing_keys.get(owner, ()):
            params.setdefault("IfNoneMatch", "*")

    for operation in ("PutObject", "CompleteMultipartUpload"):
        client.meta.events.register(f"before-parameter-build.s3.{operation}", add_condition,
                                    unique_id=f"cyberquest-if-none-match-{operation}")
