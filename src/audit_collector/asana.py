"""Public import path of the Asana audit log client: ``from audit_collector.asana import AsanaAuditLogClient``.

The async client (``AsyncAsanaAuditLogClient``) needs aiohttp (``pip install 'audit-collector[async]'``), so it is
imported on first use: this module still imports without aiohttp.
The code lives in ``providers/asana/``; this module only re-exports it.
"""

from typing import TYPE_CHECKING

from audit_collector.providers.asana.client import (
    DEFAULT_BASE_URL,
    MAX_LIMIT,
    AsanaAuditLogClient,
    format_datetime,
    iso_ms,
)
from audit_collector.providers.asana.models import AsanaApiError, AsanaBodyError, AuditLogEventsPage, EventKey

if TYPE_CHECKING:
    from audit_collector.providers.asana.async_client import AsyncAsanaAuditLogClient

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_LIMIT",
    "AsanaApiError",
    "AsanaAuditLogClient",
    "AsanaBodyError",
    "AsyncAsanaAuditLogClient",
    "AuditLogEventsPage",
    "EventKey",
    "format_datetime",
    "iso_ms",
]


def __getattr__(name: str) -> object:
    """``AsyncAsanaAuditLogClient`` on first use: only the async path imports aiohttp."""
    if name == "AsyncAsanaAuditLogClient":
        from audit_collector.providers.asana.async_client import AsyncAsanaAuditLogClient

        return AsyncAsanaAuditLogClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
