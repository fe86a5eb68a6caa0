"""Async client for Asana's audit log API, on aiohttp (``pip install 'audit-collector[async]'``).

Parameters, validation, pages and errors are the sync client's (the same functions build the
request and read the page); only sending is awaited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from audit_collector.http.async_transport import AsyncApiTransport, mirrors
from audit_collector.providers.asana.client import DEFAULT_BASE_URL, AsanaAuditLogClient, events_request, to_page
from audit_collector.providers.asana.models import AuditLogEventsPage


class AsyncAsanaAuditLogClient(AsyncApiTransport):
    """Asana audit log client for asyncio: one aiohttp session, async retry handlers."""

    default_base_url = DEFAULT_BASE_URL

    @mirrors(AsanaAuditLogClient.get_audit_log_events)
    async def get_audit_log_events(self, workspace_gid: str, **filters: Any) -> AuditLogEventsPage:
        return to_page(await self.send(events_request(self, workspace_gid, **filters)))

    @mirrors(AsanaAuditLogClient.iter_audit_log_events)
    async def iter_audit_log_events(
        self, workspace_gid: str, *, offset: str | None = None, **filters: Any
    ) -> AsyncIterator[AuditLogEventsPage]:
        while True:
            page = await self.get_audit_log_events(workspace_gid, offset=offset, **filters)
            if not page.events:  # caught up: Asana keeps handing out a next_page even then
                return
            yield page
            if page.next_offset is None:
                return
            offset = page.next_offset
