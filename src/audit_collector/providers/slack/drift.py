"""Slack's published vocabulary: object types and their fields (``/schemas``), action names (``/actions``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from audit_collector.checks.drift import Vocabulary
from audit_collector.collector.provider import ClientSettings
from audit_collector.providers.slack.client import AuditLogsClient


def vocabulary(client: ClientSettings, events: Callable[[], Iterable[dict[str, Any]]]) -> Vocabulary:
    """Two requests (no token needed). A field added to an object type is drift too: ``type.field``."""
    api = AuditLogsClient(**client.client_kwargs())
    schemas: set[str] = set()
    for schema in api.schemas().body.get("schemas") or []:
        kind = schema.get("type")
        if isinstance(kind, str):
            schemas.add(kind)
            fields = schema.get(kind)
            if isinstance(fields, dict):
                schemas.update(f"{kind}.{name}" for name in fields)
    actions: set[str] = set()
    for names in (api.actions().body.get("actions") or {}).values():
        actions.update(name for name in names if isinstance(name, str))
    return Vocabulary({"schemas": schemas, "actions": actions}, complete=True)
