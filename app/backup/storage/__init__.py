"""Where archives live: ``base`` (the interface), ``local`` (a directory), ``s3`` (a bucket).

``get_storage(app)`` builds the store that ``BACKUP_STORAGE`` names.
"""
from __future__ import annotations

from ..errors import StorageError
from .base import Storage
from .local import LocalStorage


def get_storage(app) -> Storage:
    """The store configured by ``BACKUP_STORAGE``: ``local`` (a directory) or ``s3`` (a bucket)."""
    kind = app.config.get("BACKUP_STORAGE", "local")
    if kind == "local":
        return LocalStorage(app.config["BACKUP_DIRECTORY"])
    if kind == "s3":
        # Imported here, not at the top: boto3 is heavy and only installations that keep
        # their backups in S3 need it loaded (there is no import cycle to avoid).
        from .s3 import S3Storage

        return S3Storage(app.config.get("BACKUP_S3_BUCKET"), app.config.get("BACKUP_S3_PREFIX"),
                         app.config.get("BACKUP_S3_ENDPOINT_URL"), timeout=app.config.get("BACKUP_S3_TIMEOUT", 60))
    raise StorageError(f"Unknown BACKUP_STORAGE {kind!r}; use 'local' or 's3'.")
