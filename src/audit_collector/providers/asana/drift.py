"""Asana publishes no list of event types: the ones seen in archived events stand in (added to,
never removed from, since a type absent for a day may simply not have happened)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from audit_collector.checks.drift import Vocabulary
from audit_collector.collector.provider import ClientSettings


def vocabulary(client: ClientSettings, events: Callable[[], Iterable[dict[str, Any]]]) -> Vocabulary:
    seen = {e["event_type"] for e in events() if isinstance(e.get("event_type"), str)}
    return Vocabulary({"event_types": seen}, complete=False)
