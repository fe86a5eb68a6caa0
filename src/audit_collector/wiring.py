"""The one place where a token becomes a client and a client a source: the handler, the CLI, the
demo and the tests all wire a run through here. The token goes into the client and no further:
the collector only ever sees the source.
"""

from __future__ import annotations

from collections.abc import Mapping

from .archive import ArchiveWriter
from .collector import BackfillRequest, Budget, BudgetedClock, ProgressCallback, RunResult, Settings, Source, collect
from .descriptor import ClientSettings, Descriptor
from .errors import ConfigError
from .http_retry import Clock, RequestPacer, all_builtin_retry_handlers
from .state import CheckpointStore

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
    settings = settings.for_provider(descriptor)
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
    )
