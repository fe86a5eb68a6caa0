"""Client for the Slack Enterprise Grid Audit Logs API (``/logs``, ``/schemas``, ``/actions``).

Knows Slack's parameters and error bodies; knows nothing of AWS, checkpoints or files.

    >>> client = AuditLogsClient(token="xoxp-...")  # doctest: +SKIP
    >>> for page in client.iter_logs(oldest=1700000000, latest=1700003599, limit=9999):  # doctest: +SKIP
    ...     print(len(page.typed_body.entries))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urljoin

from audit_collector.errors import ConfigError
from audit_collector.http.base import TransportBase, all_filters
from audit_collector.http.messages import HttpRequest, HttpResponse
from audit_collector.http.transport import ApiTransport, describe_body
from audit_collector.json_text import Events, parse_json
from audit_collector.providers.slack.models import (
    LOGS_PAGE,
    AuditLogsApiError,
    AuditLogsBodyError,
    AuditLogsResponse,
    EntryKey,
)

DEFAULT_BASE_URL = "https://api.slack.com/audit/v1/"
MAX_LIMIT = 9999
MAX_ACTIONS = 30

ERROR_HINTS = {
    "invalid_authentication": (
        "the token was rejected: use a user token (xoxp-…) of an Enterprise org owner with the "
        "auditlogs:read scope, from an app installed on the org, not on a workspace"
    ),
    "missing_authentication": "no token was sent: configure the Slack token (secret or SLACK_TOKEN)",
    "feature_not_enabled": (
        "the Audit Logs API is only available to Enterprise Grid orgs, through an app installed on the org"
    ),
    "invalid_cursor": ("the cursor expired or was sent with different filters: restart paging from the first page"),
    "rate_limited": (
        "over Slack's rate limit (about 50 calls a minute for the whole org, shared with every other "
        "app reading audit logs): wait for Retry-After and lower the call rate"
    ),
    "invalid_range": "oldest/latest are not a valid range (integers, oldest <= latest, not before 2018-03)",
    "invalid_action": "an action name is unknown: list valid names with GET /actions",
    "user_not_authorized": "the token's user must be an owner of the Enterprise org",
}


# --------------------------------------------------------------------------- client


class AuditLogsClient(ApiTransport):
    """Slack Audit Logs API client. One pooled session; retry handlers in ``self.retry_handlers``."""

    default_base_url = DEFAULT_BASE_URL

    def logs(
        self,
        *,
        latest: int | None = None,
        oldest: int | None = None,
        limit: int | None = None,
        action: str | Sequence[str] | None = None,
        actor: str | None = None,
        entity: str | None = None,
        cursor: str | None = None,
        additional_query_params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AuditLogsResponse:
        """One page of events, newest first. ``oldest`` and ``latest`` are both inclusive."""
        query = logs_query(
            latest=latest,
            oldest=oldest,
            limit=limit,
            action=action,
            actor=actor,
            entity=entity,
            cursor=cursor,
            additional_query_params=additional_query_params,
        )
        return checked_logs(self.api_call(path="logs", query_params=query, headers=headers))

    def iter_logs(
        self,
        *,
        latest: int | None = None,
        oldest: int | None = None,
        limit: int | None = None,
        action: str | Sequence[str] | None = None,
        actor: str | None = None,
        entity: str | None = None,
        cursor: str | None = None,
        additional_query_params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[AuditLogsResponse]:
        """Every page for these filters, following cursors (same filters each time) to the end."""
        while True:
            page = self.logs(
                latest=latest,
                oldest=oldest,
                limit=limit,
                action=action,
                actor=actor,
                entity=entity,
                cursor=cursor,
                additional_query_params=additional_query_params,
                headers=headers,
            )
            yield page
            cursor = page.next_cursor
            if cursor is None:
                return

    def schemas(
        self, *, query_params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
    ) -> AuditLogsResponse:
        """Object types that appear in events (no token needed)."""
        return self.api_call(path="schemas", query_params=query_params, headers=headers)

    def actions(
        self, *, query_params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
    ) -> AuditLogsResponse:
        """Action names, by object type (no token needed)."""
        return self.api_call(path="actions", query_params=query_params, headers=headers)

    def api_call(
        self,
        *,
        http_verb: str = "GET",
        path: str,
        query_params: Mapping[str, Any] | None = None,
        body_params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AuditLogsResponse:
        """Any endpoint. Raises ``AuditLogsApiError`` for Slack errors, ``OSError`` for transport ones."""
        request = api_request(
            self, http_verb=http_verb, path=path, query_params=query_params, body_params=body_params, headers=headers
        )
        return to_response(self.send(request), path=path.strip("/"))


# --------------------------------------------------------------------------- shared with the async client


def api_request(
    transport: TransportBase,
    *,
    path: str,
    http_verb: str = "GET",
    query_params: Mapping[str, Any] | None = None,
    body_params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpRequest:
    """The request for any endpoint, as both clients send it."""
    return HttpRequest(
        method=http_verb.upper(),
        url=urljoin(transport.base_url, path.lstrip("/")),
        query_params={k: str(v) for k, v in (query_params or {}).items() if v is not None},
        headers=transport._headers(headers),
        body_params=body_params,
    )


LOGS_FILTERS = ("latest", "oldest", "limit", "action", "actor", "entity", "cursor")


def logs_query(*, additional_query_params: Mapping[str, Any] | None = None, **filters: Any) -> dict[str, str]:
    """/logs filters (``LOGS_FILTERS``), validated (``ConfigError`` before any request), in Slack's wire format."""
    query = _logs_query(**all_filters(filters, LOGS_FILTERS, "logs"))
    query.update({k: str(v) for k, v in (additional_query_params or {}).items() if v is not None})
    return query


def checked_logs(response: AuditLogsResponse) -> AuditLogsResponse:
    """A /logs answer must carry an ``entries`` list of objects."""
    if response.events is None:
        entries = response.body.get("entries")
        raise AuditLogsBodyError(
            "Slack /logs answered without an 'entries' list of objects "
            f"(got {type(entries).__name__}); the API changed or a proxy answered",
            response=response,
        )
    return response


def _logs_query(
    *,
    latest: int | None,
    oldest: int | None,
    limit: int | None,
    action: str | Sequence[str] | None,
    actor: str | None,
    entity: str | None,
    cursor: str | None,
) -> dict[str, str]:
    query: dict[str, str] = {}
    for name, value in (("oldest", oldest), ("latest", latest)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a non-negative integer of Unix seconds, got {value!r}")
        query[name] = str(value)
    if oldest is not None and latest is not None and oldest > latest:
        raise ConfigError(f"oldest ({oldest}) is after latest ({latest})")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ConfigError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
        query["limit"] = str(limit)
    if action is not None:
        actions = [action] if isinstance(action, str) else list(action)
        actions = [a.strip() for part in actions for a in part.split(",") if a.strip()]
        if not actions or len(actions) > MAX_ACTIONS:
            raise ConfigError(f"action takes 1 to {MAX_ACTIONS} action names, got {len(actions)}")
        query["action"] = ",".join(actions)
    for name, value in (("actor", actor), ("entity", entity), ("cursor", cursor)):
        if value is not None:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
            query[name] = value
    return query


def _read_body(http: HttpResponse, path: str) -> tuple[dict[str, Any] | None, Events[EntryKey] | None, Any]:
    """The body's top-level fields (None if it is not a JSON object), /logs entries, and the body
    as values if it was parsed whole (/logs pages are not, unless msgspec refused them)."""
    if not http.body.strip():
        return {}, None, {}
    try:
        if path == "logs":
            page = LOGS_PAGE.read(http.body)
            return page.fields, page.events, page.body
        parsed = parse_json(http.body)
    except ValueError:  # UnicodeDecodeError is one too
        return None, None, None
    return (parsed, None, parsed) if isinstance(parsed, dict) else (None, None, None)


def to_response(http: HttpResponse, *, path: str) -> AuditLogsResponse:
    fields, events, parsed = _read_body(http, path)
    response_args = {"url": http.url, "status_code": http.status_code, "headers": dict(http.headers), "raw": http.body}
    if fields is None:
        raise AuditLogsBodyError(
            f"Slack /{path} answered HTTP {http.status_code} with a body that is not a JSON object "
            f"({describe_body(http.body, http.header('Content-Type'))}); a proxy or an outage is likely",
            response=AuditLogsResponse(path=path, parsed={}, **response_args),
            error="non_json_body",
        )
    metadata = fields.get("response_metadata")
    cursor = metadata.get("next_cursor") if isinstance(metadata, dict) else None
    response = AuditLogsResponse(
        path=path,
        events=events,
        next_cursor=cursor if isinstance(cursor, str) and cursor else None,
        parsed=parsed,
        **response_args,
    )
    if 200 <= http.status_code < 300 and fields.get("ok") is not False:
        return response
    code = fields.get("error") if isinstance(fields.get("error"), str) and fields.get("error") else None
    code = code or f"http_{http.status_code}"
    hint = ERROR_HINTS.get(code)
    if hint is None and http.status_code >= 500:
        hint = "Slack is having trouble; the run will resume from its checkpoint"
    message = f"Slack /{path} failed with '{code}' (HTTP {http.status_code})"
    raise AuditLogsApiError(f"{message}: {hint}" if hint else message, response=response, error=code)
