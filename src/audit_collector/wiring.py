"""The one place where a token becomes a client and a client a source: the handler, the CLI, the
demo and the tests all wire a run through here. The token goes into the client and no further:
the collector only ever sees the source.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from audit_collector.collector import (
    BackfillRequest,
    Budget,
    BudgetedClock,
    ProgressCallback,
    RunResult,
    Settings,
    Source,
    collect,
)
from audit_collector.collector.provider import ClientSettings, Descriptor
from audit_collector.errors import ConfigError, StateStoreMismatch
from audit_collector.evidence.signing import Signer
from audit_collector.http.clock import Clock, RequestPacer
from audit_collector.http.retry import all_builtin_retry_handlers
from audit_collector.storage.archive import ArchiveWriter
from audit_collector.storage.keys import STATE_STORE_MARKER, marker_key
from audit_collector.storage.state import CheckpointStore

# Transient faults get several tries before a run gives up and leaves its checkpoint for the next.
MAX_RETRIES = 5


def build_source(
    descriptor: Descriptor,
    *,
    token: str,
    settings: Settings,
    clock: Clock,
    base_url: str | None = None,
    options: Mapping[str, str] | None = None,
    user_agent_suffix: str | None = None,
) -> Source:
    """The provider's strategy over clients that retry every transient fault and share one pacer."""
    settings = descriptor.fill(settings)
    options = dict(options or {})
    missing = [o for o in descriptor.options if o.required and not options.get(o.name)]
    if missing:
        needed = ", ".join(f"{o.name} ({o.env} or {o.flag})" for o in missing)
        raise ConfigError(f"{descriptor.name} needs {needed}")
    pacer = (
        RequestPacer(settings.calls_per_minute, burst=settings.pacing_burst or 1)
        if settings.paced and settings.calls_per_minute
        else None
    )
    client = ClientSettings(
        token=token,
        base_url=base_url or descriptor.default_base_url,
        timeout=settings.http_timeout,
        clock=clock,
        pacer=pacer,
        retry_handlers=lambda: all_builtin_retry_handlers(max_retry_count=MAX_RETRIES),
        user_agent_suffix=user_agent_suffix,
    )
    return descriptor.build_source(client, options)


def check_state_store(archive: ArchiveWriter, prefix: str, store: CheckpointStore) -> str:
    """Refuse an archive that belongs to another state store. A run that cannot see the claims of
    the runs that fill an archive (live collection's, other backfills') would archive events again:
    so the archive records, on first use, which store owns it (``{prefix}_audit_collector/
    state-store.json``), and every run checks it before it takes a lease or writes anything."""
    mine = store.describe()
    key = marker_key(prefix, STATE_STORE_MARKER)
    body = json.dumps({"state_store": mine}, indent=2).encode() + b"\n"
    found = archive.claim_marker(key, body)
    try:
        theirs = json.loads(found)["state_store"]
    except (ValueError, KeyError, TypeError):
        raise StateStoreMismatch(f"{archive.describe(key)} is not a state-store marker; refusing to guess") from None
    if theirs != mine:
        raise StateStoreMismatch(
            f"the archive {archive.describe(prefix)} belongs to the state store {theirs}, not {mine}: a run "
            f"with this state could not see that store's claims and would archive events twice. Use that "
            f"state store (if it moved, with the same checkpoints, delete {archive.describe(key)})"
        )
    return mine


def collect_provider(
    descriptor: Descriptor,
    *,
    token: str,
    store: CheckpointStore,
    archive: ArchiveWriter,
    prefix: str,
    settings: Settings,
    clock: Clock,
    budget: Budget,
    base_url: str | None = None,
    options: Mapping[str, str] | None = None,
    owner: str | None = None,
    backfill: BackfillRequest | None = None,
    progress: ProgressCallback | None = None,
    user_agent_suffix: str | None = None,
    signer: Signer | None = None,
) -> RunResult:
    """One provider's run, wired the one way the Lambda, the CLI and the tests all use: clients whose
    retry waits answer to the run's budget, paced under the provider's rate limit."""
    source = build_source(
        descriptor,
        token=token,
        settings=settings,
        clock=BudgetedClock(clock, budget),
        base_url=base_url,
        options=options,
        user_agent_suffix=user_agent_suffix,
    )
    check_state_store(archive, prefix, store)  # before the lease, before anything is written
    return collect(
        source,
        store=store,
        archive=archive,
        prefix=prefix,
        settings=settings,
        clock=clock,
        budget=budget,
        owner=owner,
        backfill=backfill,
        progress=progress,
        signer=signer,
    )


def check_provider(
    descriptor: Descriptor,
    *,
    token: str,
    clock: Clock,
    timeout: float = 30,
    base_url: str | None = None,
    options: Mapping[str, str] | None = None,
) -> list:
    """The provider's preflight (``preflight.py``) over a client that makes one request: no
    retries (a 429 is the answer, not something to wait out), no pacer. Writes nothing."""
    from audit_collector.checks.preflight import Check

    if descriptor.preflight is None:
        return [Check(descriptor.name, "preflight", True, "this provider has no preflight checks")]
    client = ClientSettings(
        token=token,
        base_url=base_url or descriptor.default_base_url,
        timeout=timeout,
        clock=clock,
        pacer=None,
        retry_handlers=list,
    )
    return descriptor.preflight(client, dict(options or {}))


def watch_drift(
    descriptor: Descriptor,
    *,
    archive: ArchiveWriter,
    prefix: str,
    token: str,
    clock: Clock,
    timeout: float = 30,
    base_url: str | None = None,
):
    """The drift watch (``drift.py``) for one provider, at most once a UTC day; None when the
    provider has no vocabulary."""
    from audit_collector.checks.drift import watch

    if descriptor.vocabulary is None:
        return None
    client = ClientSettings(
        token=token,
        base_url=base_url or descriptor.default_base_url,
        timeout=timeout,
        clock=clock,
        pacer=None,
        retry_handlers=lambda: all_builtin_retry_handlers(max_retry_count=2),
    )
    return watch(descriptor.name, lambda events: descriptor.vocabulary(client, events), archive, prefix, clock.time())
