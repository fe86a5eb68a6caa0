"""Client for the Slack Enterprise Grid Audit Logs API (``/logs``, ``/schemas``, ``/actions``).

Knows Slack's parameters and error bodies; knows nothing of AWS, checkpoints or files.

    >>> client = AuditLogsClient(token="xoxp-...")  # doctest: +SKIP
    >>> for page in client.iter_logs(oldest=1700000000, latest=1700003599, limit=9999):  # doctest: +SKIP
    ...     print(len(page.typed_body.entries))
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any
from urllib.parse import urljoin

import msgspec
import requests

from ._models import Model
from .errors import ApiBodyError, ApiError, ConfigError
from .http_retry import Clock, HttpRequest, HttpResponse, RequestPacer, RetryHandler
from .json_text import Events, PageReader, parse_json
from .transport import ApiTransport, describe_body

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


# --------------------------------------------------------------------------- typed models


@dataclasses.dataclass
class User(Model):
    id: Any = None
    name: Any = None
    email: Any = None
    team: Any = None


@dataclasses.dataclass
class Actor(Model):
    type: Any = None
    user: Any = None
    _nested = {"user": User}


@dataclasses.dataclass
class Location(Model):
    type: Any = None
    id: Any = None
    name: Any = None
    domain: Any = None


@dataclasses.dataclass
class App(Model):
    id: Any = None
    name: Any = None
    is_distributed: Any = None
    is_directory_approved: Any = None
    is_workflow_app: Any = None
    scopes: Any = None
    scopes_bot: Any = None
    creator: Any = None
    team: Any = None


@dataclasses.dataclass
class Context(Model):
    location: Any = None
    ua: Any = None
    ip_address: Any = None
    session_id: Any = None  # a string, an integer or null, depending on the event
    app: Any = None
    _nested = {"location": Location, "app": App}


@dataclasses.dataclass
class NamedObject(Model):
    """The shape most entity payloads share; anything else is kept in ``unknown_fields``."""

    id: Any = None
    name: Any = None
    domain: Any = None
    privacy: Any = None
    is_shared: Any = None
    is_org_shared: Any = None
    filetype: Any = None
    title: Any = None


@dataclasses.dataclass
class Entity(Model):
    """``{"type": T, T: {...}}``. New entity types arrive over time and stay in ``unknown_fields``."""

    type: Any = None
    user: Any = None
    workspace: Any = None
    enterprise: Any = None
    channel: Any = None
    file: Any = None
    app: Any = None
    usergroup: Any = None
    workflow: Any = None
    barrier: Any = None
    message: Any = None
    huddle: Any = None
    role: Any = None
    _nested = {
        "user": User,
        "app": App,
        **{k: NamedObject for k in ("workspace", "enterprise", "channel", "file", "usergroup", "workflow")},
    }

    @property
    def target(self) -> Any:
        """The payload named by ``type``, whichever type that is."""
        if not isinstance(self.type, str):
            return None
        known = getattr(self, self.type, None) if self.type in self.__dataclass_fields__ else None
        return known if known is not None else self.unknown_fields.get(self.type)


@dataclasses.dataclass
class Details(Model):
    """Free-form, depends on the action. ``succeeded_users`` may be a JSON-encoded string."""

    type: Any = None
    reason: Any = None
    app_owner_id: Any = None
    scopes: Any = None
    bot_scopes: Any = None
    new_scopes: Any = None
    previous_scopes: Any = None
    installer_user_id: Any = None
    approver_id: Any = None
    export_type: Any = None
    succeeded_users: Any = None
    failed_users: Any = None


@dataclasses.dataclass
class Entry(Model):
    id: Any = None
    date_create: Any = None
    action: Any = None
    actor: Any = None
    entity: Any = None
    context: Any = None
    details: Any = None
    _nested = {"actor": Actor, "entity": Entity, "context": Context, "details": Details}


@dataclasses.dataclass
class ResponseMetadata(Model):
    next_cursor: Any = None
    messages: Any = None
    warnings: Any = None


@dataclasses.dataclass
class LogsResponse(Model):
    ok: Any = None
    warning: Any = None
    error: Any = None
    needed: Any = None
    provided: Any = None
    entries: Any = None
    response_metadata: Any = None
    _nested = {"entries": Entry, "response_metadata": ResponseMetadata}


@dataclasses.dataclass
class SchemasResponse(Model):
    schemas: Any = None


@dataclasses.dataclass
class ActionsResponse(Model):
    actions: Any = None


# --------------------------------------------------------------------------- responses and errors


class EntryKey(msgspec.Struct):
    """What the collector reads of an entry; the archive keeps the entry's own text."""

    id: Any = None
    date_create: Any = None


_LOGS_PAGE = PageReader("entries", EntryKey, fields=("ok", "error", "response_metadata"))


@dataclasses.dataclass(frozen=True)
class AuditLogsResponse:
    """One response. ``body`` is the whole JSON body as values, parsed on first use; the collector
    reads ``events`` instead (/logs): each entry's text as served, with its id and date_create."""

    url: str
    status_code: int
    headers: Mapping[str, str]
    path: str = "logs"
    raw: bytes = dataclasses.field(default=b"", repr=False)
    events: Events[EntryKey] | None = dataclasses.field(default=None, repr=False)
    next_cursor: str | None = None  # the cursor for the next page; None at the end
    parsed: dataclasses.InitVar[dict[str, Any] | None] = None

    def __post_init__(self, parsed: dict[str, Any] | None) -> None:
        if parsed is not None:
            self.__dict__["body"] = parsed

    @cached_property
    def body(self) -> dict[str, Any]:
        return parse_json(self.raw) if self.raw.strip() else {}

    @cached_property
    def raw_body(self) -> str:
        """The body as text, decoded only if asked for (a 9,999-event page is megabytes)."""
        return self.raw.decode("utf-8", "replace")

    @cached_property
    def typed_body(self) -> LogsResponse | SchemasResponse | ActionsResponse | None:
        model = {"schemas": SchemasResponse, "actions": ActionsResponse}.get(self.path, LogsResponse)
        return model.from_dict(self.body)


class AuditLogsApiError(ApiError):
    """Slack said no: ``ok: false``, or a non-2xx status once the retry handlers gave up.

    ``error`` holds Slack's code. Retrying is only safe for ``rate_limited`` and 5xx.
    """

    def __init__(self, message: str, *, response: object | None = None, error: str | None = None) -> None:
        super().__init__(message, response=response)
        self.error = error


class AuditLogsBodyError(AuditLogsApiError, ApiBodyError):
    """The body was not the JSON Slack documents (an HTML page from a proxy, truncated JSON, …)."""


# --------------------------------------------------------------------------- client


class AuditLogsClient(ApiTransport):
    """Slack Audit Logs API client. One pooled session; retry handlers in ``self.retry_handlers``."""

    def __init__(
        self,
        token: str | None = None,
        timeout: float = 30,
        proxy: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        session: requests.Session | None = None,
        default_headers: Mapping[str, str] | None = None,
        user_agent_prefix: str | None = None,
        user_agent_suffix: str | None = None,
        logger: logging.Logger | None = None,
        retry_handlers: list[RetryHandler] | None = None,
        clock: Clock | None = None,
        pacer: RequestPacer | None = None,
    ) -> None:
        super().__init__(
            token=token,
            base_url=base_url,
            timeout=timeout,
            proxy=proxy,
            session=session,
            default_headers=default_headers,
            user_agent_prefix=user_agent_prefix,
            user_agent_suffix=user_agent_suffix,
            logger=logger,
            retry_handlers=retry_handlers,
            clock=clock,
            pacer=pacer,
        )

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
        query = _logs_query(
            latest=latest,
            oldest=oldest,
            limit=limit,
            action=action,
            actor=actor,
            entity=entity,
            cursor=cursor,
        )
        query.update({k: str(v) for k, v in (additional_query_params or {}).items() if v is not None})
        response = self.api_call(path="logs", query_params=query, headers=headers)
        if response.events is None:
            entries = response.body.get("entries")
            raise AuditLogsBodyError(
                "Slack /logs answered without an 'entries' list of objects "
                f"(got {type(entries).__name__}); the API changed or a proxy answered",
                response=response,
            )
        return response

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
        request = HttpRequest(
            method=http_verb.upper(),
            url=urljoin(self.base_url, path.lstrip("/")),
            query_params={k: str(v) for k, v in (query_params or {}).items() if v is not None},
            headers=self._headers(headers),
            body_params=body_params,
        )
        return _to_response(self.send(request), path=path.strip("/"))


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
            page = _LOGS_PAGE.read(http.body)
            return page.fields, page.events, page.body
        parsed = parse_json(http.body)
    except ValueError:  # UnicodeDecodeError is one too
        return None, None, None
    return (parsed, None, parsed) if isinstance(parsed, dict) else (None, None, None)


def _to_response(http: HttpResponse, *, path: str) -> AuditLogsResponse:
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
