"""What an invoke payload asks for, checked before anything touches AWS or an API.

Accepted: ``{"provider": "slack"}`` / ``{"provider": "asana"}`` (what each schedule passes), and an
EventBridge scheduled event with no provider (every enabled provider runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

PROVIDERS = ("slack", "asana")
SCHEDULED_EVENT_KEYS = {
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
}


@dataclass(frozen=True)
class Invocation:
    providers: tuple[str, ...]


def parse_invocation(event: Any, enabled: tuple[str, ...]) -> Invocation:
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
    unknown = sorted(set(event) - {"provider"})
    if unknown:
        raise ConfigError(f"unknown field(s) in the invoke payload: {', '.join(unknown)}; expected only 'provider'")
    provider = event["provider"]
    if provider not in PROVIDERS:
        raise ConfigError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    if provider not in enabled:
        hint = "SLACK_TOKEN_SECRET_ID" if provider == "slack" else "ASANA_TOKEN_SECRET_ID and ASANA_WORKSPACE_GID"
        raise ConfigError(f"provider {provider!r} is not enabled in this deployment: set {hint}")
    return Invocation((provider,))
