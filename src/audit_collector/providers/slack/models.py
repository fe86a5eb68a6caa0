"""Typed views of Slack's Audit Logs payloads, the response object, and Slack's errors.

Shared by the sync and async clients: only the I/O differs between them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import msgspec

from ..._models import Model
from ...errors import ApiBodyError, ApiError
from ...json_text import Events, PageReader, parse_json

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
