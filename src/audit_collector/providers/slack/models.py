"""Typed views of Slack's Audit Logs payloads, the response object, and Slack's errors.

Shared by the sync and async clients: only the I/O differs between them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import msgspec

from audit_collector.errors import ApiBodyError, ApiError
from audit_collector.json_text import Events, PageReader, parse_json
from audit_collector.providers.slack.details import Details
from audit_collector.providers.slack.objects import Actor, Context, Entity
from audit_collector.typed import Model

# --------------------------------------------------------------------------- typed models


@dataclasses.dataclass
class Entry(Model):
    id: Any = None
    date_create: Any = None
    action: Any = None
    actor: Actor | None = None
    entity: Entity | None = None
    context: Context | None = None
    details: Details | None = None
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
    entries: list[Entry] | None = None
    response_metadata: ResponseMetadata | None = None
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


LOGS_PAGE = PageReader("entries", EntryKey, fields=("ok", "error", "response_metadata"))


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
