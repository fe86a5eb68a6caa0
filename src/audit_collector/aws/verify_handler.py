"""The scheduled verification in AWS: ``verify`` of the last N days, as a metric and log lines.

The schedule's input (template.yaml) names the bucket, prefix and state table, how many days
back to check (``days``; ``quick``: S3's stored checksums instead of reading every object), and the
KMS key the chain's heads are signed with (``signing_key``: each head's signature is checked with
``kms:Verify``). Each
finding is logged as one JSON line; the count per provider is published as the ``VerifyFindings``
metric (embedded metric format: no API call, no permission), which the stack alarms on. The
archive and the state table are only ever read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from audit_collector import providers
from audit_collector.emf import metric_line
from audit_collector.errors import ConfigError
from audit_collector.evidence.signing import Checker, KmsChecker
from audit_collector.storage.archive import ArchiveWriter
from audit_collector.storage.keys import normalize_prefix
from audit_collector.storage.state import CheckpointStore
from audit_collector.verify.check import verify_archive
from audit_collector.verify.report import Report

FINDINGS_METRIC = "VerifyFindings"


@dataclass(frozen=True)
class Target:
    bucket: str
    prefix: str
    state_table: str
    days: float = 3
    quick: bool = False
    signing_key: str = ""

    @classmethod
    def from_event(cls, event: Any) -> Target:
        if not isinstance(event, dict):
            raise ConfigError("the verification payload must be a JSON object")
        missing = [k for k in ("bucket", "state_table") if not event.get(k)]
        if missing:
            raise ConfigError(f"the verification payload lacks {', '.join(missing)}")
        days = float(event.get("days", 3))
        if not 0 < days <= 3660:
            raise ConfigError("days must be from 0 to 3660")
        return cls(
            bucket=str(event["bucket"]),
            prefix=normalize_prefix(event.get("prefix")),
            state_table=str(event["state_table"]),
            days=days,
            quick=bool(event.get("quick", False)),
            signing_key=str(event.get("signing_key") or ""),
        )


def verify_recent(
    target: Target, archive: ArchiveWriter, store: CheckpointStore, now: float, checker: Checker | None = None
) -> Report:
    descriptors = providers.all_descriptors()
    checkpoints = {d.name: store.read(d.name).get("checkpoint", {}) for d in descriptors}
    return verify_archive(
        archive,
        target.prefix,
        descriptors,
        checkpoints=checkpoints,
        start=now - target.days * 86400,
        quick=target.quick,
        checker=checker,
    )


def emit(report: Report, now: float) -> None:
    """A log line per finding, then one metric line per provider (embedded metric format)."""
    for provider in report.providers:
        for finding in provider.findings:
            level = "ERROR" if finding in provider.failing else "INFO"
            print(json.dumps({"level": level, "message": "verify finding", **finding.as_dict()}))
        print(
            metric_line(
                FINDINGS_METRIC,
                len(provider.failing),
                now,
                [["service"], ["service", "provider"]],
                service="audit-collector",
                provider=provider.provider,
                objects=provider.objects,
                events=provider.events,
            )
        )


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """The schedule's entry point. Returns the report; findings do not fail the invocation (the
    alarm on the metric reports them), errors reading the archive do."""
    from audit_collector.storage.s3 import S3Archive
    from audit_collector.storage.state import DynamoDBStore

    target = Target.from_event(event)
    now = time.time()
    checker = KmsChecker(target.signing_key) if target.signing_key else None
    report = verify_recent(target, S3Archive(target.bucket), DynamoDBStore(target.state_table), now, checker)
    emit(report, now)
    return report.as_dict()
