"""Public import path of the Slack Audit Logs client: ``from audit_collector.slack import AuditLogsClient``.

The async client (``AsyncAuditLogsClient``) needs aiohttp (``pip install 'audit-collector[async]'``), so it is
imported on first use: this module still imports without aiohttp.
The code lives in ``providers/slack/``; this module only re-exports it.
"""

from typing import TYPE_CHECKING

from audit_collector.providers.slack.client import DEFAULT_BASE_URL, MAX_ACTIONS, MAX_LIMIT, AuditLogsClient
from audit_collector.providers.slack.details import (
    ConversationPref,
    Details,
    FeatureEnablement,
    Permission,
    PermissionGrant,
    PermissionResource,
    PermissionWildcard,
    Profile,
    RetentionPolicy,
    SharedWith,
)
from audit_collector.providers.slack.models import (
    ActionsResponse,
    AuditLogsApiError,
    AuditLogsBodyError,
    AuditLogsResponse,
    Entry,
    EntryKey,
    LogsResponse,
    ResponseMetadata,
    SchemasResponse,
)
from audit_collector.providers.slack.objects import Actor, App, Context, Entity, Location, NamedObject, User

if TYPE_CHECKING:
    from audit_collector.providers.slack.async_client import AsyncAuditLogsClient

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_ACTIONS",
    "MAX_LIMIT",
    "ActionsResponse",
    "Actor",
    "App",
    "AsyncAuditLogsClient",
    "AuditLogsApiError",
    "AuditLogsBodyError",
    "AuditLogsClient",
    "AuditLogsResponse",
    "Context",
    "ConversationPref",
    "Details",
    "Entity",
    "Entry",
    "EntryKey",
    "FeatureEnablement",
    "Location",
    "LogsResponse",
    "NamedObject",
    "Permission",
    "PermissionGrant",
    "PermissionResource",
    "PermissionWildcard",
    "Profile",
    "ResponseMetadata",
    "RetentionPolicy",
    "SchemasResponse",
    "SharedWith",
    "User",
]


def __getattr__(name: str) -> object:
    """``AsyncAuditLogsClient`` on first use: only the async path imports aiohttp."""
    if name == "AsyncAuditLogsClient":
        from audit_collector.providers.slack.async_client import AsyncAuditLogsClient

        return AsyncAuditLogsClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
