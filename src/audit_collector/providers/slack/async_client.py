"""Async client for the Slack Audit Logs API, on aiohttp (``pip install 'audit-collector[async]'``).

Parameters, validation, typed responses and errors are the sync client's: the query building and
response parsing are its very functions; only sending is awaited.

    >>> async with AsyncAuditLogsClient(token="xoxp-...") as client:  # doctest: +SKIP
    ...     async for page in client.iter_logs(oldest=1700000000, limit=9999):
    ...         print(len(page.typed_body.entries))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from audit_collector.http.async_transport import AsyncApiTransport, mirrors
from audit_collector.providers.slack.client import (
    DEFAULT_BASE_URL,
    AuditLogsClient,
    api_request,
    checked_logs,
    logs_query,
    to_response,
)
from audit_collector.providers.slack.models import AuditLogsResponse


class AsyncAuditLogsClient(AsyncApiTransport):
    """Slack Audit Logs API client for asyncio: one aiohttp session, async retry handlers."""

    default_base_url = DEFAULT_BASE_URL

    @mirrors(AuditLogsClient.logs)
    async def logs(self, *, headers: Mapping[str, str] | None = None, **filters: Any) -> AuditLogsResponse:
        return checked_logs(await self.api_call(path="logs", query_params=logs_query(**filters), headers=headers))

    @mirrors(AuditLogsClient.iter_logs)
    async def iter_logs(self, *, cursor: str | None = None, **filters: Any) -> AsyncIterator[AuditLogsResponse]:
        while True:
            page = await self.logs(cursor=cursor, **filters)
            yield page
            cursor = page.next_cursor
            if cursor is None:
                return

    @mirrors(AuditLogsClient.schemas)
    async def schemas(self, **kwargs: Any) -> AuditLogsResponse:
        return await self.api_call(path="schemas", **kwargs)

    @mirrors(AuditLogsClient.actions)
    async def actions(self, **kwargs: Any) -> AuditLogsResponse:
        return await self.api_call(path="actions", **kwargs)

    @mirrors(AuditLogsClient.api_call)
    async def api_call(self, *, path: str, **params: Any) -> AuditLogsResponse:
        return to_response(await self.send(api_request(self, path=path, **params)), path=path.strip("/"))
