"""The collection loop and its two ordering strategies. Imports no boto3: adapters come in."""

from __future__ import annotations

from ..asana import AsanaAuditLogClient
from ..http_retry import Clock, RequestPacer, all_builtin_retry_handlers
from ..slack import AuditLogsClient
from .asana import AsanaSource
from .core import BackfillRequest, Budget, BudgetedClock, Run, RunResult, Settings, Source, collect
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
) -> Source:
    """The strategy for ``provider``: clients that retry every transient fault and share one pacer."""
    pacer = RequestPacer(calls_per_minute) if calls_per_minute else None

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
