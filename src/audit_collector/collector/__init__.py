"""The collection loop and its two ordering strategies. Imports no boto3: adapters come in."""

from __future__ import annotations

from ..archive import ArchiveWriter
from ..asana import AsanaAuditLogClient
from ..http_retry import Clock, RequestPacer, all_builtin_retry_handlers
from ..slack import AuditLogsClient
from ..state import CheckpointStore
from .asana import AsanaSource
from .core import (
    BackfillRequest,
    Budget,
    BudgetedClock,
    ProgressCallback,
    Run,
    RunResult,
    Settings,
    Source,
    collect,
)
from .slack import SlackSource

__all__ = [
    "AsanaSource",
    "BackfillRequest",
    "Budget",
    "BudgetedClock",
    "Run",
    "RunResult",
    "Settings",
    "SlackSource",
    "Source",
    "collect",
    "make_source",
    "run_provider",
]

# Transient faults get several tries before a run gives up and leaves its checkpoint for the next.
MAX_RETRIES = 5


def make_source(
    provider: str,
    *,
    token: str,
    base_url: str,
    timeout: float,
    clock: Clock,
    workspace_gid: str | None = None,
    user_agent_suffix: str | None = None,
    calls_per_minute: float | None = None,
    pacing_burst: int = 1,
) -> Source:
    """The strategy for ``provider``: clients that retry every transient fault and share one pacer."""
    pacer = RequestPacer(calls_per_minute, burst=pacing_burst) if calls_per_minute else None

    def client_args() -> dict:
        return {
            "token": token,
            "base_url": base_url,
            "timeout": timeout,
            "clock": clock,
            "pacer": pacer,
            "retry_handlers": all_builtin_retry_handlers(max_retry_count=MAX_RETRIES),
            "user_agent_suffix": user_agent_suffix,
        }

    if provider == "slack":
        return SlackSource(AuditLogsClient(**client_args()))
    if provider == "asana":
        if not workspace_gid:
            raise ValueError("the Asana source needs a workspace gid")
        return AsanaSource(
            AsanaAuditLogClient(**client_args()),
            workspace_gid,
            client_factory=lambda: AsanaAuditLogClient(**client_args()),
        )
    raise ValueError(f"unknown provider {provider!r}")


def run_provider(
    provider: str,
    *,
    token: str,
    base_url: str,
    store: CheckpointStore,
    archive: ArchiveWriter,
    prefix: str,
    settings: Settings,
    clock: Clock,
    budget: Budget,
    workspace_gid: str | None = None,
    owner: str | None = None,
    backfill: BackfillRequest | None = None,
    progress: ProgressCallback | None = None,
    user_agent_suffix: str | None = None,
) -> RunResult:
    """One provider's run, wired the one way the Lambda, the CLI and the tests all use: clients whose
    retry waits answer to the run's budget, paced under the provider's rate limit."""
    source = make_source(
        provider,
        token=token,
        base_url=base_url,
        workspace_gid=workspace_gid,
        timeout=settings.http_timeout,
        clock=BudgetedClock(clock, budget),
        calls_per_minute=settings.calls_per_minute(provider),
        pacing_burst=settings.pacing_burst(provider),
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
