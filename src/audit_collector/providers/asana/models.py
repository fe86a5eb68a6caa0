"""Asana's audit log page, its event key, and Asana's errors: shared by the sync and async clients."""

from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import Any

import msgspec

from audit_collector.errors import ApiBodyError, ApiError
from audit_collector.http.messages import HttpResponse
from audit_collector.json_text import Events, PageReader, parse_json


class AsanaApiError(ApiError):
    """Asana answered with an error status. ``messages`` holds the API's own error messages."""

    def __init__(
        self,
        message: str,
        *,
        response: HttpResponse | None = None,
        status_code: int | None = None,
        messages: list[str] | None = None,
    ) -> None:
        super().__init__(message, response=response)
        self.status_code = status_code
        self.messages = messages or []


class AsanaBodyError(AsanaApiError, ApiBodyError):
    """The body was not Asana's documented JSON."""


class EventKey(msgspec.Struct):
    """What the collector reads of an event; the archive keeps the event's own text."""

    gid: Any = None
    created_at: Any = None


EVENTS_PAGE = PageReader("data", EventKey, fields=("next_page", "errors"))


@dataclasses.dataclass(frozen=True)
class AuditLogEventsPage:
    """One page: its events (each one's text as served, with its gid and created_at), the offset
    of the next page, and the raw response. ``data`` and ``body`` are parsed on first use."""

    events: Events[EventKey]
    next_offset: str | None
    response: HttpResponse
    parsed: dataclasses.InitVar[dict[str, Any] | None] = None

    def __post_init__(self, parsed: dict[str, Any] | None) -> None:
        if parsed is not None:
            self.__dict__["body"] = parsed

    @cached_property
    def body(self) -> dict[str, Any]:
        return parse_json(self.response.body)

    @property
    def data(self) -> list[dict[str, Any]]:
        """The events as values."""
        return self.body["data"]
