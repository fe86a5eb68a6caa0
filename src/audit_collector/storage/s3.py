"""The S3 adapter of the archive port: conditional puts (If-None-Match / If-Match) fence every write."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from audit_collector.errors import WriteRefused
from audit_collector.storage.archive import ArchiveWriter, refused

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3Archive(ArchiveWriter):
    """Objects in an S3 bucket. The client is created lazily so a bad payload never touches AWS."""

    def __init__(self, bucket: str, *, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> S3Client:
        if self._client is None:
            import boto3  # deferred: keeps cold starts and the CLI's local mode light

            self._client = boto3.client("s3")
        return self._client

    def _put(self, key: str, body: bytes, replaces: str | None) -> None:
        condition = {"If-Match": replaces} if replaces is not None else {"If-None-Match": "*"}
        kind = "application/json" if key.endswith(".json") else "application/gzip"
        try:
            self._conditional_put(key, body, kind, condition)
        except Exception as exc:
            if _error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise WriteRefused(refused(self.describe(key))) from None
            raise

    def _version(self, key: str) -> str | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)["ETag"]
        except Exception as exc:
            # Without s3:ListBucket, S3 answers a missing key with 403, not 404. Taking 403 for
            # "absent" is safe: the caller then has no version to replace, and writes nothing.
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound", "403", "AccessDenied", "Forbidden"):
                return None
            raise

    def _create(self, key: str, body: bytes) -> bool:
        try:  # a conditional write: no race between two first uses, and no s3:ListBucket needed
            self._conditional_put(key, body, "application/json", {"If-None-Match": "*"})
        except Exception as exc:
            if _error_code(exc) in ("PreconditionFailed", "412"):
                return False
            raise
        return True

    def _conditional_put(self, key: str, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        """A put with S3's conditional headers, added as headers (before signing) rather than as
        parameters, so a Lambda runtime whose boto3 predates ``IfMatch``/``IfNoneMatch`` sends them
        too. Thread-safe: concurrent slices share the client, each thread its own headers."""
        client = self.client
        if not getattr(client, "_audit_collector_conditions", False):
            client.meta.events.register("before-sign.s3.PutObject", _add_conditions, unique_id="audit-conditions")
            client._audit_collector_conditions = True
        _conditions.headers = headers
        try:
            client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **checksum_fields(body))
        finally:
            _conditions.headers = None

    def keys(self, prefix: str = "") -> Iterable[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise KeyError(key) from None

    def checksum(self, key: str) -> tuple[int, str | None] | None:
        try:
            found = self.client.get_object_attributes(
                Bucket=self.bucket, Key=key, ObjectAttributes=["Checksum", "ObjectSize"]
            )
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        stored = found.get("Checksum", {}).get("ChecksumSHA256")
        return found["ObjectSize"], base64.b64decode(stored).hex() if stored else None

    def describe(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"


def _error_code(exc: Exception) -> str | None:
    return getattr(exc, "response", {}).get("Error", {}).get("Code")


def _add_conditions(request: Any, **_: Any) -> None:
    headers = getattr(_conditions, "headers", None)
    if headers:
        for name, value in headers.items():
            request.headers[name] = value


def checksum_fields(body: bytes) -> dict[str, str]:
    """S3 checks the upload against this and keeps it (GetObjectAttributes returns it)."""
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": digest}


_conditions = threading.local()
