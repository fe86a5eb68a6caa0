"""The Lambda edge: read config, check the payload, wire the adapters, report. No logic of its own.

Order matters for safety: the environment and the payload are checked before any AWS or API call,
so a malformed invocation costs nothing and changes nothing.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from audit_collector import providers
from audit_collector.aws.config import Config
from audit_collector.aws.invocation import parse_invocation
from audit_collector.aws.tokens import load_token
from audit_collector.collector import BackfillRequest, Budget, RunResult
from audit_collector.errors import AuditCollectorError
from audit_collector.evidence.signing import KmsSigner
from audit_collector.http.clock import Clock, SystemClock
from audit_collector.storage.s3 import S3Archive
from audit_collector.storage.state import DynamoDBStore
from audit_collector.wiring import collect_provider

logger = Logger(service="audit-collector")
metrics = Metrics(namespace="AuditCollector", service="audit-collector")


class CollectionFailed(AuditCollectorError):
    """At least one provider failed. Raised so Lambda records an error and the alarm fires."""


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Collect every provider the payload names; raise if any of them failed."""
    config = Config.from_env(os.environ)
    invocation = parse_invocation(event, config.enabled_providers)
    if invocation.check:
        return check_all(invocation.providers, config)
    return collect_all(
        invocation.providers,
        config,
        remaining_seconds=context.get_remaining_time_in_millis() / 1000,
        owner=getattr(context, "aws_request_id", None),
        backfill=invocation.backfill,
    )


def collect_all(
    names: tuple[str, ...],
    config: Config,
    *,
    remaining_seconds: float,
    owner: str | None = None,
    clock: Clock | None = None,
    store: DynamoDBStore | None = None,
    archive: S3Archive | None = None,
    backfill: BackfillRequest | None = None,
) -> dict[str, Any]:
    """The handler without Lambda: what tests and the CLI's ``--state dynamodb://`` mode call."""
    clock = clock or SystemClock()
    budget = Budget.for_run(clock, remaining_seconds, config.settings(names[0]))
    store = store or aws_adapters(config.state_table_name, config.archive_bucket_name)[0]
    archive = archive or aws_adapters(config.state_table_name, config.archive_bucket_name)[1]
    signer = signer_for(config.signing_key_id)
    results, failures = [], []
    for provider in names:
        logger.append_keys(provider=provider)
        try:
            enabled = config.providers[provider]
            token = load_token(enabled.secret_id)
            result = collect_provider(
                providers.get(provider),
                token=token,
                base_url=enabled.base_url,
                options=enabled.options,
                store=store,
                archive=archive,
                prefix=config.archive_prefix,
                settings=config.settings(provider),
                clock=clock,
                budget=budget,
                owner=owner,
                backfill=backfill,
                signer=signer,
            )
        except Exception as exc:
            logger.exception(f"{provider} collection failed: {exc}")
            failures.append(f"{provider}: {exc}")
            continue
        finally:
            logger.remove_keys(["provider"])
        _report(result)
        results.append(result.as_dict())
        if result.status != "lease_held":
            _watch_drift(provider, config, token, archive, clock)
    if failures:
        raise CollectionFailed("; ".join(failures))
    return {"results": results}


def check_all(names: tuple[str, ...], config: Config, *, clock: Clock | None = None) -> dict[str, Any]:
    """The preflight of a ``{"check": true}`` invoke: each provider's token and API, then the
    state table and the bucket. One log line per check; nothing written, no lease, no checkpoint."""
    from audit_collector.checks.preflight import Check, report, storage_checks
    from audit_collector.wiring import check_provider

    clock = clock or SystemClock()
    checks: list[Check] = []
    for name in names:
        enabled = config.providers[name]
        try:
            token = load_token(enabled.secret_id)
        except AuditCollectorError as exc:
            checks.append(Check(name, "secret", False, str(exc)))
            continue
        checks += check_provider(
            providers.get(name),
            token=token,
            clock=clock,
            timeout=config.http_timeout_seconds,
            base_url=enabled.base_url,
            options=enabled.options,
        )
    store, archive = aws_adapters(config.state_table_name, config.archive_bucket_name)
    checks += storage_checks(
        store, archive, config.archive_prefix, object_lock_mode=config.object_lock_mode, kms_key_arn=config.kms_key_arn
    )
    for check in checks:
        (logger.info if check.ok else logger.warning)(check.line(), extra={"check": check.as_dict()})
    return report(checks)


@functools.cache
def aws_adapters(table_name: str, bucket_name: str) -> tuple[DynamoDBStore, S3Archive]:
    """The state table and the archive bucket, kept for the container's life: warm invocations
    reuse their boto3 clients instead of building them again, each loading its service's model.
    (The clients are created on first use, so a malformed payload still touches no AWS.)"""
    return DynamoDBStore(table_name), S3Archive(bucket_name)


@functools.cache
def signer_for(key_id: str) -> KmsSigner | None:
    """The chain's signer (one KMS client for the container's life); None when signing is off."""
    return KmsSigner(key_id) if key_id else None


def _watch_drift(provider: str, config: Config, token: str, archive: S3Archive, clock: Clock) -> None:
    """Once a day per provider (drift.py). A failure here costs no event: it is logged, and the next
    run tries again."""
    from audit_collector.wiring import watch_drift

    try:
        watch_drift(
            providers.get(provider),
            archive=archive,
            prefix=config.archive_prefix,
            token=token,
            clock=clock,
            timeout=config.http_timeout_seconds,
            base_url=config.providers[provider].base_url,
        )
    except Exception as exc:
        logger.warning(f"{provider}: drift watch failed, retried next run: {type(exc).__name__}: {exc}")


def _report(result: RunResult) -> None:
    if result.status == "lease_held":
        logger.info(f"{result.provider}: skipped, {result.message}")
        return
    logger.info(
        f"{result.provider}: archived {result.events_written} events in {result.objects_written} objects "
        f"from {result.pages} pages; complete={result.complete}",
        extra={"result": result.as_dict()},
    )
    metrics.add_dimension(name="provider", value=result.provider)
    metrics.add_metric(name="EventsWritten", unit=MetricUnit.Count, value=result.events_written)
    metrics.add_metric(name="ObjectsWritten", unit=MetricUnit.Count, value=result.objects_written)
    metrics.add_metric(name="Pages", unit=MetricUnit.Count, value=result.pages)
    metrics.add_metric(name="Retries", unit=MetricUnit.Count, value=result.retries)
    metrics.add_metric(name="RateLimited", unit=MetricUnit.Count, value=result.rate_limited)
    if result.behind_seconds is not None:
        metrics.add_metric(name="SecondsBehind", unit=MetricUnit.Seconds, value=result.behind_seconds)
    if result.sweep is not None:  # late events, by how late they were at least (collector/sweep.py)
        metrics.add_metric(name="LateEvents", unit=MetricUnit.Count, value=result.sweep["late_events"])
        metrics.add_metric(name="SweepCalls", unit=MetricUnit.Count, value=result.sweep["calls"])
        # Never silence: passes that will not run, and passes waiting over an hour, alarm.
        metrics.add_metric(name="LateEventsUnchecked", unit=MetricUnit.Count, value=result.sweep["given_up"])
        metrics.add_metric(name="SweepOverdue", unit=MetricUnit.Count, value=result.sweep["overdue"])
        for bucket, count in sorted(result.sweep["lateness"].items()):
            metrics.add_metric(name=f"LateEvents_{bucket}", unit=MetricUnit.Count, value=count)
    metrics.flush_metrics()  # one set per provider, each with its own dimension
