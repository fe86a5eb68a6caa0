"""Checkpoints and the lease, in DynamoDB or a local file, behind one small port.

One record per provider (``pk=provider, sk="state"``) holds both the lease (who may work on the
provider, until when) and the checkpoint (a JSON document with a version). Every checkpoint write
is conditional on holding the lease *and* on the version read, so a run that lost its lease (or
a stale process) can never move a checkpoint backwards or sideways.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit_collector.errors import AuditCollectorError, LeaseLost
from audit_collector.storage.files import atomic_write

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

STATE_SK = "state"


class LeaseHeld(AuditCollectorError):
    """Another run of this provider is working (EventBridge fired twice, or a manual run overlaps)."""

    def __init__(self, provider: str, owner: str, expires_at: float) -> None:
        until = datetime.fromtimestamp(expires_at, UTC).isoformat(timespec="seconds")
        super().__init__(f"another run ({owner}) is collecting {provider} until {until} at the latest")
        self.owner = owner
        self.expires_at = expires_at


@dataclass
class Lease:
    """What a run holds while it works: its identity, and the checkpoint as of its last write."""

    provider: str
    owner: str
    expires_at: float
    version: int
    checkpoint: dict[str, Any] = field(default_factory=dict)


class CheckpointStore:
    """Port. ``acquire`` / ``save`` / ``release`` carry the policy; ``_*`` hooks do the I/O."""

    def acquire(self, provider: str, *, owner: str, expires_at: float, now: float) -> Lease:
        """Take the provider's lease if it is free or expired. Raises ``LeaseHeld`` otherwise."""
        return self._acquire(provider, owner, expires_at, now)

    def save(self, lease: Lease, checkpoint: dict[str, Any]) -> None:
        """Write ``checkpoint`` if we still hold the lease and nobody wrote since. Raises ``LeaseLost``."""
        self._save(lease, checkpoint, lease.version + 1)
        lease.version += 1
        lease.checkpoint = checkpoint

    def renew(self, lease: Lease, *, expires_at: float, now: float) -> None:
        """Fence a write: raise ``LeaseLost`` unless we still hold the lease and it has not expired
        by ``now``; then extend it to ``expires_at``. A run paused past its lease (a sleeping laptop,
        a stopped process) learns here that it must not write, before it writes."""
        self._renew(lease, expires_at, now)
        lease.expires_at = expires_at

    def release(self, lease: Lease) -> None:
        """Let the next run start at once instead of waiting for the lease to expire."""
        self._release(lease)

    def read(self, provider: str) -> dict[str, Any]:
        """The current record (checkpoint, version, lease), for status and tests. No lease needed."""
        return self._read(provider)

    def describe(self) -> str:
        """Which store this is, the same from every process that uses it (the archive records it)."""
        raise NotImplementedError

    def _acquire(self, provider: str, owner: str, expires_at: float, now: float) -> Lease:
        raise NotImplementedError

    def _save(self, lease: Lease, checkpoint: dict[str, Any], new_version: int) -> None:
        raise NotImplementedError

    def _renew(self, lease: Lease, expires_at: float, now: float) -> None:
        raise NotImplementedError

    def _release(self, lease: Lease) -> None:
        raise NotImplementedError

    def _read(self, provider: str) -> dict[str, Any]:
        raise NotImplementedError


def _fenced(lease: Lease) -> str:
    return (
        f"{lease.provider}: this run no longer holds the lease (it expired, or another run took it over); "
        "stopping before writing anything more"
    )


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DynamoDBStore(CheckpointStore):
    """The state table defined in template.yaml (``pk``, ``sk``). The client is created lazily."""

    def __init__(self, table_name: str, *, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            import boto3

            self._client = boto3.client("dynamodb")
        return self._client

    def describe(self) -> str:
        """``dynamodb://table`` and the client's region: what the Lambda and the CLI both compute."""
        return f"dynamodb://{self.table_name} (region {self.client.meta.region_name})"

    def _key(self, provider: str) -> dict[str, Any]:
        return {"pk": {"S": provider}, "sk": {"S": STATE_SK}}

    def _acquire(self, provider: str, owner: str, expires_at: float, now: float) -> Lease:
        try:
            item = self.client.update_item(
                TableName=self.table_name,
                Key=self._key(provider),
                UpdateExpression="SET lease_owner = :owner, lease_expires_at = :expires",
                ConditionExpression=(
                    "attribute_not_exists(lease_owner) OR lease_expires_at < :now OR lease_owner = :owner"
                ),
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":expires": {"N": f"{expires_at:.3f}"},
                    ":now": {"N": f"{now:.3f}"},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )["Attributes"]
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            old = exc.response.get("Item", {})
            raise LeaseHeld(
                provider,
                old.get("lease_owner", {}).get("S", "?"),
                float(old.get("lease_expires_at", {}).get("N", 0)),
            ) from None
        return Lease(provider, owner, expires_at, *_version_and_checkpoint(item))

    def _save(self, lease: Lease, checkpoint: dict[str, Any], new_version: int) -> None:
        condition = "lease_owner = :owner AND "
        condition += "version = :version" if lease.version else "attribute_not_exists(version)"
        values = {
            ":owner": {"S": lease.owner},
            ":checkpoint": {"S": json.dumps(checkpoint, separators=(",", ":"), sort_keys=True)},
            ":new": {"N": str(new_version)},
            ":updated": {"S": _iso_now()},
        }
        if lease.version:
            values[":version"] = {"N": str(lease.version)}
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(lease.provider),
                UpdateExpression="SET checkpoint = :checkpoint, version = :new, updated_at = :updated",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise LeaseLost(
                f"{lease.provider}: the lease was taken over or the checkpoint moved (expected version "
                f"{lease.version}); stopping without writing more"
            ) from None

    def _renew(self, lease: Lease, expires_at: float, now: float) -> None:
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(lease.provider),
                UpdateExpression="SET lease_expires_at = :expires",
                ConditionExpression="lease_owner = :owner AND lease_expires_at >= :now",
                ExpressionAttributeValues={
                    ":owner": {"S": lease.owner},
                    ":expires": {"N": f"{expires_at:.3f}"},
                    ":now": {"N": f"{now:.3f}"},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise LeaseLost(_fenced(lease)) from None

    def _release(self, lease: Lease) -> None:
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(lease.provider),
                UpdateExpression="REMOVE lease_owner, lease_expires_at",
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues={":owner": {"S": lease.owner}},
            )

    def _read(self, provider: str) -> dict[str, Any]:
        item = self.client.get_item(TableName=self.table_name, Key=self._key(provider), ConsistentRead=True)
        return _plain_record(item.get("Item", {}))


def _version_and_checkpoint(item: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    version = int(item.get("version", {}).get("N", 0))
    checkpoint = json.loads(item["checkpoint"]["S"]) if "checkpoint" in item else {}
    return version, checkpoint


def _plain_record(item: dict[str, Any]) -> dict[str, Any]:
    if not item:
        return {}
    version, checkpoint = _version_and_checkpoint(item)
    record: dict[str, Any] = {"version": version, "checkpoint": checkpoint}
    if "lease_owner" in item:
        record["lease_owner"] = item["lease_owner"]["S"]
        record["lease_expires_at"] = float(item["lease_expires_at"]["N"])
    if "updated_at" in item:
        record["updated_at"] = item["updated_at"]["S"]
    return record


class FileStore(CheckpointStore):
    """A JSON file, for the CLI on a laptop. A lock file serializes processes; writes are atomic."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return f"file://{self.path.resolve()}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.path.read_text()) if self.path.exists() else {}
                snapshot = json.dumps(data, sort_keys=True)
                yield data
                if json.dumps(data, sort_keys=True) != snapshot:
                    for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # a killed writer's
                        stale.unlink(missing_ok=True)
                    atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True).encode())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _acquire(self, provider: str, owner: str, expires_at: float, now: float) -> Lease:
        with self._locked() as data:
            record = data.setdefault(provider, {})
            holder = record.get("lease_owner")
            if holder and holder != owner and record.get("lease_expires_at", 0) >= now:
                raise LeaseHeld(provider, holder, record["lease_expires_at"])
            record["lease_owner"], record["lease_expires_at"] = owner, expires_at
            return Lease(provider, owner, expires_at, record.get("version", 0), record.get("checkpoint", {}))

    def _save(self, lease: Lease, checkpoint: dict[str, Any], new_version: int) -> None:
        with self._locked() as data:
            record = data.get(lease.provider, {})
            if record.get("lease_owner") != lease.owner or record.get("version", 0) != lease.version:
                raise LeaseLost(f"{lease.provider}: the lease was taken over or the checkpoint moved")
            record.update(checkpoint=checkpoint, version=new_version, updated_at=_iso_now())

    def _renew(self, lease: Lease, expires_at: float, now: float) -> None:
        with self._locked() as data:
            record = data.get(lease.provider, {})
            if record.get("lease_owner") != lease.owner or record.get("lease_expires_at", 0) < now:
                raise LeaseLost(_fenced(lease))
            record["lease_expires_at"] = expires_at

    def _release(self, lease: Lease) -> None:
        with self._locked() as data:
            record = data.get(lease.provider, {})
            if record.get("lease_owner") == lease.owner:
                record.pop("lease_owner", None)
                record.pop("lease_expires_at", None)

    def _read(self, provider: str) -> dict[str, Any]:
        with self._locked() as data:
            record = json.loads(json.dumps(data.get(provider, {})))
        if record:  # as DynamoDBStore reads it: a leased record has a version and a checkpoint
            record.setdefault("version", 0)
            record.setdefault("checkpoint", {})
        return record
