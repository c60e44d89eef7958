"""What S3's and botocore's errors mean to the operator: one ``StorageError`` saying what to fix.

Kept apart from ``s3.py`` because these messages change for their own reasons (a new
error code seen in the field, a setting renamed), not when the store's protocol does.
"""
from __future__ import annotations

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from ..errors import StorageError

# What each action needs in IAM, named in "access denied" messages.
_PERMISSIONS = {
    "list": "s3:ListBucket",
    "read": "s3:GetObject",
    "write": "s3:PutObject",
    "delete": "s3:DeleteObject",
    "clean up": "s3:ListBucketMultipartUploads and s3:AbortMultipartUpload",
}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                     "TokenRefreshRequired", "InvalidClientTokenId"}
#: Codes of a conditional write refused because the name was taken meanwhile.
CLASH_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict"}
#: Codes of a missing object (or bucket: see ``S3Storage._not_found``).
NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}


def error_code(exc: ClientError) -> str:
    """S3's error code, else the HTTP status (a HEAD answer has no body), else ``""``."""
    return str(exc.response.get("Error", {}).get("Code") or exc.response.get("ResponseMetadata", {})
               .get("HTTPStatusCode") or "")


def storage_error(action: str, exc: Exception, bucket: str, endpoint_url: str | None) -> StorageError:
    """The ``StorageError`` for ``exc``, raised while trying to ``action`` (a key of ``_PERMISSIONS``)."""
    if isinstance(exc, ClientError):
        return _client_error(action, exc, bucket)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageError("No usable AWS credentials were found for S3; set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or give the machine an IAM role.")
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        where = endpoint_url or "AWS S3"
        return StorageError(f"The S3 endpoint {where} cannot be reached; check BACKUP_S3_ENDPOINT_URL "
                            "and the network.")
    if isinstance(exc, ConnectionClosedError):
        where = endpoint_url or "AWS S3"
        return StorageError(f"The connection to the S3 endpoint {where} was lost mid-request; check the "
                            "store's health and the network, then try again.")
    if isinstance(exc, ReadTimeoutError):
        where = endpoint_url or "AWS S3"
        return StorageError(f"The S3 endpoint {where} stopped answering; check the store's health and "
                            "the network, then try again.")
    if isinstance(exc, ParamValidationError) and "bucket" in str(exc).lower():
        return StorageError(f"'{bucket}' is not a valid S3 bucket name; fix BACKUP_S3_BUCKET.")
    if isinstance(exc, S3UploadFailedError):
        return StorageError(f"The upload to the S3 bucket '{bucket}' failed ({exc}); check the bucket and "
                            "the BACKUP_S3_* settings.")
    return StorageError(f"S3 could not {action} in the bucket '{bucket}' ({exc}); check the BACKUP_S3_* "
                        "settings and the network.")


def _client_error(action: str, exc: ClientError, bucket: str) -> StorageError:
    code = error_code(exc)
    message = exc.response.get("Error", {}).get("Message") or ""
    if code == "NoSuchBucket" or (code in NOT_FOUND_CODES and exc.operation_name == "HeadBucket"):
        return StorageError(f"The S3 bucket '{bucket}' does not exist; create it or fix BACKUP_S3_BUCKET.")
    if code in ("AccessDenied", "403", "AllAccessDisabled", "Forbidden"):
        return StorageError(f"Access to the S3 bucket '{bucket}' was denied ({action}); grant the app's "
                            f"credentials {_PERMISSIONS[action]} on it, or fix the credentials boto3 finds.")
    if code in _CREDENTIAL_CODES:
        return StorageError(f"S3 rejected the credentials ({code}); fix AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY, or the profile or role boto3 uses.")
    if code == "InvalidBucketName":
        return StorageError(f"'{bucket}' is not a valid S3 bucket name; fix BACKUP_S3_BUCKET.")
    detail = f"{code}: {message}" if message else code
    return StorageError(f"S3 refused to {action} in the bucket '{bucket}' ({detail}); "
                        "check the bucket and the BACKUP_S3_* settings.")
