"""Public import path of the Asana audit log client: ``from audit_collector.asana import AsanaAuditLogClient``.

The code lives in ``providers/asana/``; this module only re-exports it.
"""

from .providers.asana.client import DEFAULT_BASE_URL, MAX_LIMIT, AsanaAuditLogClient, format_datetime, iso_ms
from .providers.asana.models import AsanaApiError, AsanaBodyError, AuditLogEventsPage, EventKey

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_LIMIT",
    "AsanaApiError",
    "AsanaAuditLogClient",
    "AsanaBodyError",
    "AuditLogEventsPage",
    "EventKey",
    "format_datetime",
    "iso_ms",
]
