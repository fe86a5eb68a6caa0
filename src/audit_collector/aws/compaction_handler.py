"""The compaction function's Lambda edge: the schedule's payload in, every compacted provider
compacted by Athena (``compaction/athena.py``), the OCSF views replaced, a metric out."""

from __future__ import annotations

import time
from typing import Any

from audit_collector import providers
from audit_collector.compaction import sql
from audit_collector.compaction.athena import AthenaCompactor, CompactionFailed, Target
from audit_collector.compaction.rules import COMPACTED
from audit_collector.emf import metric_line
from audit_collector.ocsf import views as ocsf_views

BEHIND_METRIC = "CompactionDaysBehind"


def emit_behind(days: int, now: float) -> None:
    """One CloudWatch metric, as an embedded-metric-format log line (no API call, no permission)."""
    print(metric_line(BEHIND_METRIC, days, now, [["service"]], service="audit-collector"))


def compact_all(compactor: AthenaCompactor, names: list[str] | None = None) -> dict[str, Any]:
    reports = []
    for descriptor in providers.all_descriptors():
        if sql.compacted(descriptor) and (names is None or descriptor.name in names):
            reports.append(compactor.compact(descriptor))
    emit_behind(max((r["behind"] for r in reports), default=0), compactor.now())
    failed = [f"{r['provider']} {f}" for r in reports for f in r["failed"]]
    failed += replace_ocsf_views(compactor)
    if failed:
        raise CompactionFailed("compaction failed for " + "; ".join(failed))
    return {"providers": reports, "compacted_prefix": f"{compactor.target.prefix}{COMPACTED}/"}


def replace_ocsf_views(compactor: AthenaCompactor) -> list[str]:
    """The ``ocsf_<class>`` views over the ``T_all`` views (``ocsf/views.py``), replaced on every run so
    that a changed mapping reaches Athena with the code that carries it. Returns what failed."""
    statements = ocsf_views.create_views()
    queries = [compactor.start(statement) for statement in statements]
    states = compactor.wait(queries)
    return [
        f"view {statement.split()[4]}: query {query}"
        for statement, query in zip(statements, queries, strict=True)
        if states[query] != "SUCCEEDED"
    ]


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """The schedule's entry point: compact every compacted provider (or those ``event["providers"]`` names)."""
    import boto3

    from audit_collector.ocsf import athena_lake
    from audit_collector.storage.state import DynamoDBStore

    target = Target.from_event(event)
    lake = athena_lake.from_event(event, deadline=time.time() + 600)  # None: the option is off
    compactor = AthenaCompactor(
        target,
        athena=boto3.client("athena"),
        glue=boto3.client("glue"),
        s3=boto3.client("s3"),
        store=DynamoDBStore(target.state_table),
        lake=lake,
    )
    return compact_all(compactor, event.get("providers"))
