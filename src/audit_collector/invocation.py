"""What an invoke payload asks for, checked before anything touches AWS or an API.

Accepted:
- ``{"provider": "slack"}`` / ``{"provider": "asana"}`` (what each schedule passes);
- an EventBridge scheduled event with no provider (every enabled provider runs);
- ``{"provider": ..., "backfill": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-08T00:00:00Z"}}``
  (UTC, start inclusive, end exclusive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .collector.asana import FIRST_EVENT_MS as ASANA_FIRST_EVENT_MS
from .collector.asana import RETENTION_DAYS
from .collector.core import BackfillRequest
from .collector.slack import FIRST_EVENT as SLACK_FIRST_EVENT
from .errors import ConfigError

PROVIDERS = ("slack", "asana")
SCHEDULED_EVENT_KEYS = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
SLACK_FIRST = datetime.fromtimestamp(SLACK_FIRST_EVENT, UTC)  # the Audit Logs API has nothing before
ASANA_FIRST = datetime.fromtimestamp(ASANA_FIRST_EVENT_MS / 1000, UTC)


@dataclass(frozen=True)
class Invocation:
    providers: tuple[str, ...]
    backfill: BackfillRequest | None = None


def parse_invocation(event: Any, enabled: tuple[str, ...], *, now: float | None = None) -> Invocation:
    """The providers to run. Raises ``ConfigError`` saying exactly what is wrong with the payload."""
    if not isinstance(event, dict):
        raise ConfigError(
            f'the invoke payload must be a JSON object such as {{"provider": "slack"}}, got {type(event).__name__}'
        )
    if "provider" not in event:
        if event.get("detail-type") == "Scheduled Event" and set(event) <= SCHEDULED_EVENT_KEYS:
            return Invocation(enabled)
        raise ConfigError(
            'the invoke payload names no provider: send {"provider": "slack"} or {"provider": "asana"} '
            f"(got keys {sorted(event)})"
        )
    unknown = sorted(set(event) - {"provider", "backfill"})
    if unknown:
        raise ConfigError(
            f"unknown field(s) in the invoke payload: {', '.join(unknown)}; expected 'provider' (and 'backfill')"
        )
    provider = event["provider"]
    if provider not in PROVIDERS:
        raise ConfigError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    if provider not in enabled:
        hint = "SLACK_TOKEN_SECRET_ID" if provider == "slack" else "ASANA_TOKEN_SECRET_ID and ASANA_WORKSPACE_GID"
        raise ConfigError(f"provider {provider!r} is not enabled in this deployment: set {hint}")
    backfill = None
    if "backfill" in event:
        backfill = parse_backfill(
            provider, event["backfill"], now=datetime.now(UTC).timestamp() if now is None else now
        )
    return Invocation((provider,), backfill)


def parse_time(value: Any, name: str) -> datetime:
    """An ISO 8601 date-time in UTC ('Z' or '+00:00')."""
    if not isinstance(value, str):
        raise ConfigError(f"backfill.{name} must be an ISO 8601 string such as 2026-10-01T00:00:00Z, got {value!r}")
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(f"backfill.{name} is not an ISO 8601 date-time: {value!r}") from None
    if when.tzinfo is None or when.utcoffset().total_seconds() != 0:
        raise ConfigError(f"backfill.{name} must be in UTC (end it with Z): {value!r}")
    return when


def parse_backfill(provider: str, spec: Any, *, now: float) -> BackfillRequest:
    """A validated range in the provider's unit (Slack seconds, Asana ms), clamped where the API
    has nothing to give, with a note for each clamp."""
    if not isinstance(spec, dict) or set(spec) != {"start", "end"}:
        got = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
        raise ConfigError(f'backfill must be {{"start": "...Z", "end": "...Z"}}, got {got}')
    start, end = parse_time(spec["start"], "start"), parse_time(spec["end"], "end")
    if start >= end:
        raise ConfigError(f"backfill.start ({spec['start']}) must be before backfill.end ({spec['end']})")
    if end.timestamp() > now:
        raise ConfigError(f"backfill.end ({spec['end']}) is in the future; a backfill covers the past")
    notes = []
    first = SLACK_FIRST if provider == "slack" else ASANA_FIRST
    if provider == "asana":
        first = max(first, datetime.fromtimestamp(now - RETENTION_DAYS * 86400, UTC).replace(microsecond=0))
    if end <= first:
        reason = (
            "nothing exists before 2018-03-01"
            if provider == "slack"
            else (f"Asana keeps {RETENTION_DAYS} days of events (nothing before {first.isoformat()})")
        )
        raise ConfigError(f"backfill range ends before anything can be fetched: {reason}")
    if start < first:
        notes.append(
            f"start clamped from {start.isoformat()} to {first.isoformat()}: "
            + (
                "the Audit Logs API has nothing earlier"
                if provider == "slack"
                else f"Asana deletes events after {RETENTION_DAYS} days"
            )
        )
        start = first
    if provider == "slack":
        return BackfillRequest(math.floor(start.timestamp()), math.ceil(end.timestamp()), tuple(notes))
    return BackfillRequest(math.floor(start.timestamp() * 1000), math.ceil(end.timestamp() * 1000), tuple(notes))
