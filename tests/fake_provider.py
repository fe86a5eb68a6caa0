"""A third provider, defined outside ``src/``: proof that the house takes plugins.

It talks to ``tests/fake_audit_api.py``, its emulator module (``GET /v1/events``, oldest first,
keyset cursor = the uuid of the last event seen), through the house's ``ApiTransport`` (session,
retries, pacing, redaction) and the house's ``PageReader`` (each event archived as the exact text
served). Collection follows the same rule as the built-ins: a window ``[start, end)`` (milliseconds)
ends at the settle horizon; after each object is written the checkpoint holds the cursor (the last
archived event's uuid) and the next part index, so a rerun after a crash fetches the same pages and
overwrites the same object names. Objects never mix two UTC dates.

Registered by tests with ``providers.register(DESCRIPTOR)``, or found as the entry point
``fakeaudit = tests.fake_provider:DESCRIPTOR`` in the ``audit_collector.providers`` group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from audit_collector.collector import WindowContext
from audit_collector.collector.jobs import Job
from audit_collector.collector.provider import ClientSettings, Column, Descriptor, Option
from audit_collector.errors import ApiBodyError, ApiError, BudgetExhausted
from audit_collector.http.transport import ApiTransport, describe_body
from audit_collector.http_retry import HttpRequest
from audit_collector.json_text import Events, PageReader

MAX_LIMIT = 100

TENANT = Option(
    name="tenant",
    env="FAKEAUDIT_TENANT",
    flag="--tenant",
    help="the FakeAudit tenant whose events are collected",
)


# ------------------------------------------------------------------ client


class FakeAuditApiError(ApiError):
    def __init__(self, message: str, *, response: object | None = None, status_code: int | None = None) -> None:
        super().__init__(message, response=response)
        self.status_code = status_code


class EventKey(msgspec.Struct):
    """What the collector reads of an event; the archive keeps the event's own text."""

    uuid: Any = None
    time: Any = None


_PAGE = PageReader("events", EventKey, fields=("next", "error"))


@dataclass(frozen=True)
class EventsPage:
    events: Events[EventKey]
    next: str | None


class FakeAuditClient(ApiTransport):
    """The API's one call. Everything else (retries, pacing, token redaction) is the house's."""

    def events(self, tenant: str, *, since: int, until: int, after: str | None, limit: int) -> EventsPage:
        query = {"tenant": tenant, "since": str(since), "until": str(until), "limit": str(limit)}
        if after is not None:
            query["after"] = after
        http = self.send(
            HttpRequest(method="GET", url=f"{self.base_url}v1/events", query_params=query, headers=self._headers(None))
        )
        try:
            page = _PAGE.read(http.body)
        except ValueError:
            raise ApiBodyError(
                f"FakeAudit answered HTTP {http.status_code} with a body that is not a JSON object "
                f"({describe_body(http.body, http.header('Content-Type'))})",
                response=http,
            ) from None
        if not 200 <= http.status_code < 300:
            raise FakeAuditApiError(
                f"FakeAudit /v1/events failed with HTTP {http.status_code} ({page.fields['error'] or 'no message'})",
                response=http,
                status_code=http.status_code,
            )
        if page.events is None:
            raise ApiBodyError("FakeAudit answered without an 'events' list of objects", response=http)
        cursor = page.fields["next"]
        return EventsPage(page.events, cursor if isinstance(cursor, str) and cursor else None)


# ------------------------------------------------------------------ event times


def time_ms(value: Any) -> int:
    """Epoch milliseconds from the API's ``time``: an integer, or an ISO 8601 string with a zone."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            return round(when.timestamp() * 1000)
    raise ValueError(f"unreadable time {value!r}")


def _event_seconds(event: Mapping[str, Any]) -> float:
    return time_ms(event["time"]) / 1000


def _utc_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


# ------------------------------------------------------------------ window and source


@dataclass(frozen=True)
class FakeAuditWindow:
    """``[start, end)`` in ms; the cursor (uuid of the last archived event, and its instant) and
    the part index the next object takes."""

    start: int
    end: int
    after: str | None = None
    last_ms: int | None = None
    part: int = 0

    @property
    def id(self) -> str:
        return f"{self.start}-{self.end}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FakeAuditWindow:
        return cls(**data)

    def archived_until(self) -> int | None:
        # Oldest first: everything before the last archived event's instant is archived (events at
        # that very instant may still follow it).
        return self.last_ms


class FakeAuditSource:
    descriptor: Descriptor

    def __init__(
        self,
        descriptor: Descriptor,
        client: FakeAuditClient,
        tenant: str,
        fork: Callable[[], FakeAuditSource] | None = None,
    ) -> None:
        self.descriptor, self.client, self.tenant, self._fork = descriptor, client, tenant, fork

    def plan(self, job: Job, start: int, end: int | None, horizon: int) -> FakeAuditWindow | None:
        end = horizon if end is None else min(end, horizon)
        return FakeAuditWindow(start, end) if start < end else None

    def collect(self, window: FakeAuditWindow, ctx: WindowContext) -> bool:
        return _WindowCollector(self.client, self.tenant, ctx, window).collect()

    def fork(self) -> FakeAuditSource:
        return self._fork() if self._fork else self

    def stats(self) -> dict[str, int]:
        return dict(self.client.stats)


class _WindowCollector:
    """One window's loop: fill a buffer page by page; write it (then checkpoint) when full, when the
    UTC date changes, when the budget ends, or when the window is done."""

    def __init__(self, client: FakeAuditClient, tenant: str, ctx: WindowContext, window: FakeAuditWindow) -> None:
        self.client, self.tenant, self.ctx, self.window = client, tenant, ctx, window
        self.after, self.last_ms, self.part = window.after, window.last_ms, window.part
        self.buffer = ctx.new_buffer()

    def collect(self) -> bool:
        ctx, window = self.ctx, self.window
        while True:
            if not ctx.budget.allows():
                return self._stop()
            try:
                page = self.client.events(
                    self.tenant, since=window.start, until=window.end, after=self.after, limit=ctx.page_limit
                )
            except BudgetExhausted:
                return self._stop()
            except FakeAuditApiError as exc:
                if exc.status_code == 429:
                    return self._stop()  # longer than a run waits: the next run continues
                raise
            ctx.page_fetched(len(page.events))
            for line, key in zip(page.events.lines, page.events.keys, strict=True):
                ms = self._place(key)
                dt = _utc_date(ms)
                if self.buffer and dt != self.buffer.dt:
                    self._flush()
                self.buffer.dt = dt
                self.buffer.extend([line])
                self.after, self.last_ms = key.uuid, ms
            if page.next is None or not page.events:
                return self._finish()
            if self.buffer.full:
                self._flush()

    def _place(self, key: EventKey) -> int:
        if not isinstance(key.uuid, str) or not key.uuid:
            raise ApiBodyError(f"FakeAudit event without a string uuid (time {key.time!r}); cannot track it")
        try:
            ms = time_ms(key.time)
        except ValueError as exc:
            raise ApiBodyError(f"FakeAudit event {key.uuid}: {exc}") from None
        if not self.window.start <= ms < self.window.end:
            raise ApiBodyError(f"FakeAudit event {key.uuid} at {ms} is outside the window {self.window.id}")
        return ms

    def _write(self) -> None:
        if not self.ctx.saved:  # the window as planned, before its first object
            self.ctx.save(self.window)
        self.ctx.write(self.buffer.dt, self.window, self.part, self.buffer)

    def _flush(self) -> None:
        self._write()
        self.part += 1
        self.buffer = self.ctx.new_buffer()
        self.ctx.save(dataclasses.replace(self.window, after=self.after, last_ms=self.last_ms, part=self.part))

    def _stop(self) -> bool:
        if self.buffer:
            self._flush()
        return False

    def _finish(self) -> bool:
        if self.buffer:
            self._write()
        self.ctx.close(self.window.end)
        return True


# ------------------------------------------------------------------ descriptor


def _build_source(client: ClientSettings, options: Mapping[str, str]) -> FakeAuditSource:
    tenant = options.get(TENANT.name)
    if not tenant:
        raise ValueError(f"the FakeAudit source needs a tenant ({TENANT.env} or {TENANT.flag})")

    def fork() -> FakeAuditSource:  # one client per concurrent backfill slice, all on the one pacer
        return FakeAuditSource(DESCRIPTOR, FakeAuditClient(**client.client_kwargs()), tenant, fork)

    return fork()


DESCRIPTOR = Descriptor(
    name="fakeaudit",
    title="FakeAudit",
    key="FakeAudit",
    units_per_second=1000,
    first_event=datetime(2020, 1, 1, tzinfo=UTC),
    retention_days=None,
    largest_page=MAX_LIMIT,
    rate_limit_per_minute=1200,
    calls_per_minute=1000,
    pacing_burst=20,
    backfill_concurrency=2,
    default_base_url="https://api.fakeaudit.invalid/",
    id_field="uuid",
    time_field="time",
    event_seconds=_event_seconds,
    horizon_inclusive=False,  # since <= time < until
    table="fakeaudit_events",
    columns=(
        Column("uuid", "VARCHAR", "string"),
        Column("time", "JSON", "string"),  # an integer or a string: kept as JSON text
        Column("type", "VARCHAR", "string"),
        Column("actor", "STRUCT(id VARCHAR, email VARCHAR)", "struct<id:string,email:string>"),
        Column("tenant", "VARCHAR", "string"),
    ),
    window_type=FakeAuditWindow,
    build_source=_build_source,
    options=(TENANT,),
    emulator="tests.fake_audit_api",
    questions=(
        (
            "Who downloaded the most files?",
            "SELECT actor.email, count(*) AS n FROM fakeaudit_events WHERE type = 'file.downloaded' "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
        ),
    ),
)
