"""Client for Asana's audit log API: ``GET /workspaces/{gid}/audit_log_events``.

Oldest first, offset paging, at most 100 events a page. An empty ``data`` means caught up: the
``next_page`` keeps coming back as a stream position, so paging must not stop on it alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from audit_collector.errors import ConfigError
from audit_collector.http.base import TransportBase, all_filters
from audit_collector.http.messages import HttpRequest, HttpResponse
from audit_collector.http.transport import ApiTransport, describe_body
from audit_collector.json_text import parse_json
from audit_collector.providers.asana.models import EVENTS_PAGE, AsanaApiError, AsanaBodyError, AuditLogEventsPage

DEFAULT_BASE_URL = "https://app.asana.com/api/1.0/"
MAX_LIMIT = 100
ACTOR_TYPES = ("user", "asana", "asana_support", "anonymous", "external_administrator")

STATUS_HINTS = {
    400: "a parameter was rejected (an expired offset, a bad date or limit)",
    401: "the token is missing, expired or revoked: create a service account token in the Admin console",
    402: "the audit log API needs an Enterprise+ domain",
    403: "the token cannot read this domain's audit log: use a service account token of the domain",
    404: "the workspace gid is wrong, or the token cannot see it",
    429: "over Asana's rate limit (1,500 calls a minute per token): wait for Retry-After",
}


def iso_ms(ms: int) -> str:
    """Asana's timestamp format from epoch milliseconds: UTC, milliseconds, Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def format_datetime(value: datetime | str, name: str) -> str:
    """Asana's wire format (UTC, milliseconds, Z) from an aware datetime or an ISO 8601 string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{name} must be an ISO 8601 date-time, got {value!r}") from None
    if not isinstance(value, datetime):
        raise ConfigError(f"{name} must be a datetime or an ISO 8601 string, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ConfigError(f"{name} must carry a time zone (UTC), got naive {value.isoformat()}")
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class AsanaAuditLogClient(ApiTransport):
    """Asana audit log client. Same retry handlers, session and redaction as the Slack client."""

    default_base_url = DEFAULT_BASE_URL

    def get_audit_log_events(
        self,
        workspace_gid: str,
        *,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        event_type: str | None = None,
        actor_type: str | None = None,
        actor_gid: str | None = None,
        resource_gid: str | None = None,
        limit: int | None = None,
        offset: str | None = None,
    ) -> AuditLogEventsPage:
        """One page, oldest first. ``start_at`` is inclusive, ``end_at`` exclusive."""
        request = events_request(
            self,
            workspace_gid,
            start_at=start_at,
            end_at=end_at,
            event_type=event_type,
            actor_type=actor_type,
            actor_gid=actor_gid,
            resource_gid=resource_gid,
            limit=limit,
            offset=offset,
        )
        return to_page(self.send(request))

    def iter_audit_log_events(
        self,
        workspace_gid: str,
        *,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        event_type: str | None = None,
        actor_type: str | None = None,
        actor_gid: str | None = None,
        resource_gid: str | None = None,
        limit: int | None = None,
        offset: str | None = None,
    ) -> Iterator[AuditLogEventsPage]:
        """Pages until caught up: an empty page (or no next page) ends the stream."""
        while True:
            page = self.get_audit_log_events(
                workspace_gid,
                start_at=start_at,
                end_at=end_at,
                event_type=event_type,
                actor_type=actor_type,
                actor_gid=actor_gid,
                resource_gid=resource_gid,
                limit=limit,
                offset=offset,
            )
            if not page.events:
                return
            yield page
            if page.next_offset is None:
                return
            offset = page.next_offset


EVENT_FILTERS = ("start_at", "end_at", "event_type", "actor_type", "actor_gid", "resource_gid", "limit", "offset")


def events_request(transport: TransportBase, workspace_gid: str, **filters: Any) -> HttpRequest:
    """The request for one page, validated (``ConfigError`` before any request): both clients send it."""
    query = _query(workspace_gid, **all_filters(filters, EVENT_FILTERS, "get_audit_log_events"))
    return HttpRequest(
        method="GET",
        url=f"{transport.base_url}workspaces/{quote(workspace_gid, safe='')}/audit_log_events",
        query_params=query,
        headers=transport._headers(None),
    )


def _query(
    workspace_gid: str,
    *,
    start_at: datetime | str | None,
    end_at: datetime | str | None,
    event_type: str | None,
    actor_type: str | None,
    actor_gid: str | None,
    resource_gid: str | None,
    limit: int | None,
    offset: str | None,
) -> dict[str, str]:
    if not isinstance(workspace_gid, str) or not workspace_gid.strip():
        raise ConfigError("workspace_gid must be a non-empty string")
    query: dict[str, str] = {}
    if start_at is not None:
        query["start_at"] = format_datetime(start_at, "start_at")
    if end_at is not None:
        query["end_at"] = format_datetime(end_at, "end_at")
    if "start_at" in query and "end_at" in query and query["start_at"] >= query["end_at"]:
        raise ConfigError(f"start_at ({query['start_at']}) must be before end_at ({query['end_at']})")
    if actor_type is not None:
        if actor_gid is not None:
            raise ConfigError("give actor_type or actor_gid, not both: Asana rejects actor_type with actor_gid")
        if actor_type not in ACTOR_TYPES:
            raise ConfigError(f"actor_type must be one of {', '.join(ACTOR_TYPES)}, got {actor_type!r}")
        query["actor_type"] = actor_type
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ConfigError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
        query["limit"] = str(limit)
    for name, value in (
        ("event_type", event_type),
        ("actor_gid", actor_gid),
        ("resource_gid", resource_gid),
        ("offset", offset),
    ):
        if value is not None:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
            query[name] = value
    return query


def to_page(http: HttpResponse) -> AuditLogEventsPage:
    try:
        page = EVENTS_PAGE.read(http.body)
    except ValueError:  # UnicodeDecodeError is one too
        raise AsanaBodyError(
            f"Asana answered HTTP {http.status_code} with a body that is not a JSON object "
            f"({describe_body(http.body, http.header('Content-Type'))}); a proxy or an outage is likely",
            response=http,
            status_code=http.status_code,
        ) from None
    if not 200 <= http.status_code < 300:
        errors = page.fields["errors"]
        messages = (
            [str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")]
            if isinstance(errors, list)
            else []
        )
        hint = STATUS_HINTS.get(http.status_code, "Asana is having trouble" if http.status_code >= 500 else "")
        said = "; ".join(messages) or "no message"
        raise AsanaApiError(
            f"Asana audit_log_events failed with HTTP {http.status_code} ({said})" + (f": {hint}" if hint else ""),
            response=http,
            status_code=http.status_code,
            messages=messages,
        )
    if page.events is None:
        data = (page.body or parse_json(http.body)).get("data")
        raise AsanaBodyError(
            f"Asana answered without a 'data' list of objects (got {type(data).__name__})",
            response=http,
            status_code=http.status_code,
        )
    next_page = page.fields["next_page"]
    offset = next_page.get("offset") if isinstance(next_page, dict) else None
    return AuditLogEventsPage(
        events=page.events,
        next_offset=offset if isinstance(offset, str) and offset else None,
        response=http,
        parsed=page.body,
    )
