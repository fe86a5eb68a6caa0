"""The preflight: what a deployment needs before its first run, checked without writing anything.

``audit-collector doctor`` and a ``{"check": true}`` invoke of the collector run the same checks:
each enabled provider's own (``Descriptor.preflight``: the token's type, scope, plan, install; one
request), the host clock against the API's ``Date`` header, and, where there is one, the state
table and the archive bucket (reachable, belonging to each other, Object Lock and KMS as
configured). Each check is one line that says what to fix. Nothing is written, no lease is taken,
no checkpoint moves: the state-store marker is read, never claimed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from audit_collector.storage.keys import STATE_STORE_MARKER, marker_key

# The host may be this far from the API's clock before the check says so (the settle lag absorbs
# less than this; a larger skew also breaks request signing with AWS).
CLOCK_TOLERANCE_SECONDS = 30.0


@dataclass(frozen=True)
class Check:
    """One line of the preflight: ``ok`` or what to fix."""

    subject: str  # "slack", "asana", "storage"
    name: str  # "token", "clock", "rate limit", "state store", "object lock", ...
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'ok ' if self.ok else 'FIX'} {self.subject} {self.name}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def clock_check(subject: str, headers: Mapping[str, str] | None, now: float, api: str) -> Check | None:
    """The host clock against the API's ``Date`` header (None when the answer carried none)."""
    date = {k.lower(): v for k, v in (headers or {}).items()}.get("date")
    if not date:
        return None
    try:
        theirs = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None
    skew = now - theirs
    if abs(skew) <= CLOCK_TOLERANCE_SECONDS:
        return Check(subject, "clock", True, f"within {abs(skew):.0f} s of {api}'s clock")
    side = "ahead of" if skew > 0 else "behind"
    return Check(
        subject,
        "clock",
        False,
        f"this host's clock is {abs(skew):.0f} s {side} {api}'s: sync it (NTP); windows planned from a wrong clock "
        "skip or re-read events",
    )


def storage_checks(
    store: Any, archive: Any, prefix: str, *, object_lock_mode: str | None = None, kms_key_arn: str | None = None
) -> list[Check]:
    """The state table and the archive: reachable, paired, and the bucket configured as deployed.
    ``object_lock_mode`` (NONE, GOVERNANCE, COMPLIANCE) and ``kms_key_arn`` ("" for SSE-S3): what the
    deployment asked for; None: not known, the bucket's settings are only reported."""
    checks = []
    mine = store.describe()
    try:
        store.read("preflight")  # any record (none is called so): one GetItem
        checks.append(Check("storage", "state store", True, f"{mine} answers"))
    except Exception as exc:
        checks.append(Check("storage", "state store", False, f"cannot read {mine}: {_short(exc)}"))
    key = marker_key(prefix, STATE_STORE_MARKER)
    try:
        theirs = json.loads(archive.get(key))["state_store"]
    except KeyError:
        checks.append(
            Check("storage", "pairing", True, f"no marker yet: the first run records {mine} in {archive.describe(key)}")
        )
    except Exception as exc:
        checks.append(Check("storage", "pairing", False, f"cannot read {archive.describe(key)}: {_short(exc)}"))
    else:
        if theirs == mine:
            checks.append(Check("storage", "pairing", True, f"{archive.describe(prefix)} belongs to {mine}"))
        else:
            checks.append(
                Check(
                    "storage",
                    "pairing",
                    False,
                    f"{archive.describe(prefix)} belongs to {theirs}, not {mine}: point STATE_TABLE_NAME at that "
                    "table (runs here would archive events twice)",
                )
            )
    client = getattr(archive, "client", None)
    if client is not None and getattr(archive, "bucket", None):
        checks += _bucket_checks(client, archive.bucket, object_lock_mode, kms_key_arn)
    return checks


def _bucket_checks(client: Any, bucket: str, object_lock_mode: str | None, kms_key_arn: str | None) -> list[Check]:
    checks = []
    try:
        rule = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"].get("Rule", {})
        retention = rule.get("DefaultRetention", {})
        mode = retention.get("Mode", "NONE")
        found = f"{mode} {retention.get('Days', retention.get('Years', ''))}".strip()
    except Exception as exc:
        if _code(exc) != "ObjectLockConfigurationNotFoundError":
            return [Check("storage", "object lock", False, f"cannot read {bucket}'s Object Lock: {_short(exc)}")]
        mode, found = "NONE", "off"
    want = (object_lock_mode or "").upper()
    if want and want != mode:
        checks.append(
            Check(
                "storage",
                "object lock",
                False,
                f"the bucket's Object Lock is {found}, the stack asks for {want}: Object Lock is set when the bucket "
                "is created; deploy a new bucket to change it",
            )
        )
    else:
        checks.append(Check("storage", "object lock", True, found))
    try:
        rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        default = rules[0]["ApplyServerSideEncryptionByDefault"]
        algorithm, key = default["SSEAlgorithm"], default.get("KMSMasterKeyID", "")
    except Exception as exc:
        if _code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            return [*checks, Check("storage", "encryption", False, f"cannot read {bucket}'s encryption: {_short(exc)}")]
        algorithm, key = "AES256", ""  # no configuration: S3 encrypts new objects with SSE-S3
    wanted = None if kms_key_arn is None else ("aws:kms", kms_key_arn) if kms_key_arn else ("AES256", "")
    if wanted is not None and (algorithm, key if algorithm == "aws:kms" else "") != wanted:
        asked = f"KMS key {kms_key_arn}" if kms_key_arn else "SSE-S3"
        checks.append(
            Check(
                "storage",
                "encryption",
                False,
                f"the bucket encrypts with {algorithm} {key}, the stack asks for {asked}: redeploy with KmsKeyArn "
                "matching the bucket (the role's kms: grants follow KmsKeyArn)",
            )
        )
    else:
        checks.append(Check("storage", "encryption", True, f"{algorithm} {key}".strip()))
    return checks


def _code(exc: Exception) -> str | None:
    return getattr(exc, "response", {}).get("Error", {}).get("Code")


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def report(checks: list[Check]) -> dict[str, Any]:
    return {
        "ok": all(c.ok for c in checks),
        "checks": [c.as_dict() for c in checks],
        "lines": [c.line() for c in checks],
    }
