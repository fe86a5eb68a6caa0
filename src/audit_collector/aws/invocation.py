"""What an invoke payload asks for, checked before anything touches AWS or an API.

Accepted:
- ``{"provider": "<name>"}``, a registered provider (what each schedule passes);
- an EventBridge scheduled event with no provider (every enabled provider runs);
- ``{"provider": ..., "backfill": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-08T00:00:00Z"}}``
  (UTC, start inclusive, end exclusive);
- ``{"check": true}`` (every enabled provider) or ``{"provider": ..., "check": true}``: the preflight,
  which writes nothing (``preflight.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from audit_collector import providers
from audit_collector.collector import BackfillRequest
from audit_collector.collector.provider import Descriptor
from audit_collector.errors import ConfigError

SCHEDULED_EVENT_KEYS = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}


@dataclass(frozen=True)
class Invocation:
    providers: tuple[str, ...]
    backfill: BackfillRequest | None = None
    check: bool = False


def parse_invocation(event: Any, enabled: tuple[str, ...], *, now: float | None = None) -> Invocation:
    """The providers to run. Raises ``ConfigError`` saying exactly what is wrong with the payload."""
    if not isinstance(event, dict):
        raise ConfigError(
            f'the invoke payload must be a JSON object such as {{"provider": "<name>"}}, got {type(event).__name__}'
        )
    check = event.get("check", False)
    if not isinstance(check, bool):
        raise ConfigError(f'"check" must be true or false, got {check!r}')
    if check and "backfill" in event:
        raise ConfigError('"check" takes no backfill: the preflight writes nothing')
    if check and "provider" not in event:
        unknown = sorted(set(event) - {"check"})
        if unknown:
            raise ConfigError(f"unknown field(s) in the check payload: {', '.join(unknown)}")
        return Invocation(enabled, check=True)
    if "provider" not in event:
        if event.get("detail-type") == "Scheduled Event" and set(event) <= SCHEDULED_EVENT_KEYS:
            return Invocation(enabled)
        examples = " or ".join(f'{{"provider": "{name}"}}' for name in enabled or providers.names())
        raise ConfigError(f"the invoke payload names no provider: send {examples} (got keys {sorted(event)})")
    unknown = sorted(set(event) - {"provider", "backfill", "check"})
    if unknown:
        raise ConfigError(
            f"unknown field(s) in the invoke payload: {', '.join(unknown)}; expected 'provider' (and 'backfill' "
            "or 'check')"
        )
    descriptor = providers.get(event["provider"])
    if descriptor.name not in enabled:
        raise ConfigError(
            f"provider {descriptor.name!r} is not enabled in this deployment: set {descriptor.enabled_by}"
        )
    backfill = None
    if "backfill" in event:
        backfill = parse_backfill(
            descriptor, event["backfill"], now=datetime.now(UTC).timestamp() if now is None else now
        )
    return Invocation((descriptor.name,), backfill, check=check)


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


def parse_backfill(descriptor: Descriptor, spec: Any, *, now: float) -> BackfillRequest:
    """A validated range in the provider's unit, clamped where the API has nothing to give, with a
    note for each clamp."""
    if not isinstance(spec, dict) or set(spec) != {"start", "end"}:
        got = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
        raise ConfigError(f'backfill must be {{"start": "...Z", "end": "...Z"}}, got {got}')
    start, end = parse_time(spec["start"], "start"), parse_time(spec["end"], "end")
    if start >= end:
        raise ConfigError(f"backfill.start ({spec['start']}) must be before backfill.end ({spec['end']})")
    if end.timestamp() > now:
        raise ConfigError(f"backfill.end ({spec['end']}) is in the future; a backfill covers the past")
    notes = []
    first = datetime.fromtimestamp(math.ceil(descriptor.first_event_at(now)), UTC)
    if first > descriptor.first_event:
        reason = (
            f"{descriptor.title} keeps {descriptor.retention_days} days of events (nothing before {first.isoformat()})"
        )
        clamp = f"{descriptor.title} deletes events after {descriptor.retention_days} days"
    else:
        reason = f"nothing exists before {first.date().isoformat()}"
        clamp = f"the {descriptor.title} API has nothing earlier"
    if end <= first:
        raise ConfigError(f"backfill range ends before anything can be fetched: {reason}")
    if start < first:
        notes.append(f"start clamped from {start.isoformat()} to {first.isoformat()}: {clamp}")
        start = first
    unit = descriptor.units_per_second
    return BackfillRequest(math.floor(start.timestamp() * unit), math.ceil(end.timestamp() * unit), tuple(notes))
