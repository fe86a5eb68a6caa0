"""Public import path of the Slack Audit Logs client: ``from audit_collector.slack import AuditLogsClient``.

The code lives in ``providers/slack/``; this module only re-exports it.
"""

from .providers.slack.client import DEFAULT_BASE_URL, MAX_ACTIONS, MAX_LIMIT, AuditLogsClient
from .providers.slack.models import (
    ActionsResponse,
    Actor,
    App,
    AuditLogsApiError,
    AuditLogsBodyError,
    AuditLogsResponse,
    Context,
    Details,
    Entity,
    Entry,
    EntryKey,
    Location,
    LogsResponse,
    NamedObject,
    ResponseMetadata,
    SchemasResponse,
    User,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_ACTIONS",
    "MAX_LIMIT",
    "ActionsResponse",
    "Actor",
    "App",
    "AuditLogsApiError",
    "AuditLogsBodyError",
    "AuditLogsClient",
    "AuditLogsResponse",
    "Context",
    "Details",
    "Entity",
    "Entry",
    "EntryKey",
    "Location",
    "LogsResponse",
    "NamedObject",
    "ResponseMetadata",
    "SchemasResponse",
    "User",
]
