"""What a provider plugs into the collector: its facts (``Descriptor``), its strategy (``Source``, over
typed ``Window``s) and the one door to the archive and the checkpoint a source has (``WindowContext``).

The facts are the only place the rest of the house learns an API. A provider package
(``providers/<name>/``) builds one ``Descriptor``; the registry (``providers/__init__``) lists them.
The collector, config, invocation, CLI, demo and query read every provider-specific fact from here,
so a new source never inherits another one's pace, secret, time unit or page size by accident: a
missing fact is a ``TypeError`` at import.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from audit_collector.collector.settings import Settings
from audit_collector.errors import ConfigError

if TYPE_CHECKING:
    from audit_collector.collector.jobs import Job
    from audit_collector.collector.settings import Budget
    from audit_collector.http.clock import Clock, RequestPacer
    from audit_collector.http.retry import RetryHandler
    from audit_collector.storage.archive import ObjectBuffer

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")


@dataclass(frozen=True)
class Option:
    """A setting a provider needs beyond its token (a workspace id), with where it comes
    from: an environment variable in the Lambda, a flag (or the same variable) in the CLI."""

    name: str  # the key in ``options`` handed to ``Descriptor.build_source``
    env: str
    flag: str
    help: str
    required: bool = True
    pattern: str = ""  # the template parameter's AllowedPattern (empty: any text)


@dataclass(frozen=True)
class Column:
    """One column of a provider's archive table, in both engines' type syntax."""

    name: str
    duckdb: str
    athena: str
    comment: str = ""  # the Glue column's comment, which Athena shows beside it


@dataclass(frozen=True)
class Extracted:
    """A typed column of the compacted table, computed from the raw JSON text ``line``.

    ``sql`` is one expression that Athena (Trino) and the local DuckDB both run as written: built
    from ``json_extract_scalar``, ``json_extract``, ``json_format``, ``from_unixtime``,
    ``from_iso8601_timestamp`` and ``CAST`` (``query.py`` gives DuckDB the Athena functions it lacks).
    """

    name: str
    athena: str  # the Glue type
    duckdb: str
    sql: str


def scalar(path: str) -> str:
    """For ``Extracted.sql``: a field of the archived event (``line``, its JSON text) as a string, in both engines."""
    return f"json_extract_scalar(line, '$.{path}')"


@dataclass(frozen=True)
class NamedQuery:
    """A saved Athena query over the provider's table, deployed with the stack (``Query<Key><id>``)."""

    id: str  # CamelCase: the template's logical id is f"Query{key}{id}"
    name: str  # what the Athena console lists
    sql: str


@dataclass(frozen=True)
class Activity:
    """How "everything one user did" reads the provider's raw table: Athena SQL expressions over its
    columns. The stack's saved query joins every provider's with UNION ALL."""

    at: str  # the event's time, as a timestamp
    event: str  # what happened: the API's action or event type
    ip: str  # where from
    email: str  # the acting user's e-mail


@dataclass(frozen=True)
class ClientSettings:
    """How the wiring wants a provider's client built: every client of one run shares the pacer."""

    token: str
    base_url: str
    timeout: float
    clock: Clock
    pacer: RequestPacer | None
    retry_handlers: Callable[[], list[RetryHandler]]
    user_agent_suffix: str | None = None

    def client_kwargs(self) -> dict[str, Any]:
        """The keyword arguments every client of this package takes."""
        return {
            "token": self.token,
            "base_url": self.base_url,
            "timeout": self.timeout,
            "clock": self.clock,
            "pacer": self.pacer,
            "retry_handlers": self.retry_handlers(),
            "user_agent_suffix": self.user_agent_suffix,
        }


@dataclass(frozen=True)
class Descriptor:
    """One audit API. Times inside the collector are integers in ``units_per_second``."""

    name: str  # lower case; the invoke payload's "provider", the archive's top folder
    title: str  # for people, in messages and help
    key: str  # CamelCase stem of the template's names: f"{key}TokenSecret"
    units_per_second: int  # 1: epoch seconds, 1000: epoch milliseconds
    first_event: datetime  # the API has nothing earlier
    retention_days: int | None  # the API deletes older events (None: kept)
    largest_page: int
    rate_limit_per_minute: float  # published
    calls_per_minute: float  # the pace used under it
    pacing_burst: int  # calls a run may make at once before the pace applies
    backfill_concurrency: int  # jobs (time slices) a backfill fetches at once
    default_base_url: str
    id_field: str  # the field that identifies an event
    time_field: str  # the field that dates it
    event_seconds: Callable[[Mapping[str, Any]], float]  # an event's time, in epoch seconds
    table: str  # the Athena / DuckDB table over the archive
    columns: tuple[Column, ...]
    window_type: type[Window]  # how a saved window reads back (``from_dict``)
    build_source: Callable[[ClientSettings, Mapping[str, str]], Source]
    options: tuple[Option, ...] = ()
    emulator: str | None = None  # the module of its emulated API (``API``, an ``EmulatedApi``), if any
    # Whether a window that ends at the settle horizon holds the horizon's own unit too: Slack's
    # ``latest`` is inclusive (its watermark moves to the horizon + 1); Asana's ``end_at`` is not.
    horizon_inclusive: bool = False
    questions: tuple[tuple[str, str], ...] = ()  # (question, SQL over ``table``): the demo asks them
    # The compacted table's typed columns (the first is the event's time); ``compaction.py`` adds the
    # full event text. Empty: the provider is not compacted.
    compacted_columns: tuple[Extracted, ...] = ()
    # How a compacted day is sorted: the event type first, so a question about one kind of event
    # reads only the row groups holding it; then time and id, so the order is total. Empty: time, id.
    compacted_sort: tuple[str, ...] = ()
    # The preflight (``preflight.py``): one request with the token, a ``Check`` per thing to fix.
    preflight: Callable[[ClientSettings, Mapping[str, str]], list[Any]] | None = None
    # The drift watch (``drift.py``): the API's names of actions and types, from the API or from
    # archived events (the second argument yields yesterday's).
    vocabulary: Callable[[ClientSettings, Callable[[], Any]], Any] | None = None
    # The provider's OCSF mapping (data: ``providers/<name>/ocsf.json``, read by ``audit_collector.ocsf``).
    # None: its events have no OCSF form.
    ocsf_mapping: Path | None = None
    # For the template (``aws/template.py``): what the token secret holds (the parameter's description),
    # what the API calls its events (the schedule's description), and saved Athena queries.
    token_help: str = ""  # empty: "the <title> token"
    events_noun: str = "audit logs"
    athena_queries: tuple[NamedQuery, ...] = ()
    activity: Activity | None = None  # None: the "everything one user did" query leaves it out

    def fill(self, settings: Settings) -> Settings:
        """``settings`` with every ``None`` filled in from this API's facts; refuses what the API would refuse."""
        page_limit = settings.page_limit or self.largest_page
        if not 1 <= page_limit <= self.largest_page:
            raise ConfigError(f"the page limit for {self.name} must be from 1 to {self.largest_page}")
        return dataclasses.replace(
            settings,
            page_limit=page_limit,
            calls_per_minute=settings.calls_per_minute or self.calls_per_minute,
            pacing_burst=settings.pacing_burst or self.pacing_burst,
            backfill_slices=settings.backfill_slices or self.backfill_concurrency,
        )

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"provider name {self.name!r} must be lower case letters, digits and _")
        if self.first_event.tzinfo is None:
            raise ValueError(f"{self.name}: first_event must be an aware UTC datetime")
        if not 0 < self.calls_per_minute <= self.rate_limit_per_minute:
            raise ValueError(f"{self.name}: the pace must be positive and at most the published limit")
        if self.units_per_second not in (1, 1000):
            raise ValueError(f"{self.name}: units_per_second must be 1 or 1000")
        unknown = set(self.compacted_sort) - {c.name for c in self.compacted_columns}
        if unknown:
            raise ValueError(f"{self.name}: compacted_sort names no compacted column: {', '.join(sorted(unknown))}")
        sort = self.compacted_sort
        if sort and (sort[-1] != self.id_field or len(set(sort)) != len(sort)):
            # Ending on the id makes the order total: a rerun writes the same rows in the same order.
            raise ValueError(f"{self.name}: compacted_sort must name each column once and end with {self.id_field}")

    # Names derived from ``name`` and ``key``, in one place: the Lambda's environment, the CLI's
    # token variable, the template's parameter.
    @property
    def env_prefix(self) -> str:
        return self.name.upper()

    @property
    def secret_env(self) -> str:
        return f"{self.env_prefix}_TOKEN_SECRET_ID"

    @property
    def base_url_env(self) -> str:
        return f"{self.env_prefix}_API_BASE_URL"

    @property
    def pace_env(self) -> str:
        return f"{self.env_prefix}_CALLS_PER_MINUTE"

    @property
    def token_env(self) -> str:
        return f"{self.env_prefix}_TOKEN"

    @property
    def enabled_by(self) -> str:
        """The variables that, set together, enable this provider in the Lambda (for messages)."""
        return " and ".join([self.secret_env, *(o.env for o in self.options if o.required)])

    @property
    def secret_parameter(self) -> str:
        return f"{self.key}TokenSecret"

    def option_parameter(self, option: Option) -> str:
        """The template parameter an option's variable comes from: f"{key}WorkspaceGid"."""
        return self.key + "".join(part.capitalize() for part in option.name.split("_"))

    def first_event_at(self, now: float) -> float:
        """The earliest instant (epoch seconds) the API can still return at ``now``."""
        first = self.first_event.timestamp()
        if self.retention_days is not None:
            first = max(first, now - self.retention_days * 86400)
        return first

    def to_units(self, seconds: float) -> int:
        return int(seconds * self.units_per_second)

    def settled_by(self, event: Mapping[str, Any], horizon: float) -> bool:
        """Whether a live job caught up to the settle horizon ``horizon`` (epoch seconds) holds
        ``event``: its time is before the horizon, or at it when ``horizon_inclusive``."""
        at, end = self.to_units(self.event_seconds(event)), self.to_units(horizon)
        return at <= end if self.horizon_inclusive else at < end

    def event_id(self, event: Mapping[str, Any]) -> Any:
        return event.get(self.id_field)

    def event_date(self, event: Mapping[str, Any]) -> str:
        """The event's UTC date: its archive partition."""
        return datetime.fromtimestamp(self.event_seconds(event), UTC).strftime("%Y-%m-%d")


class Window(Protocol):
    """A stretch of one job that is collected as a unit and closes with one checkpoint."""

    @property
    def id(self) -> str:
        """Deterministic: the stem of the window's object names."""

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's form (JSON)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        """Read back what ``to_dict`` gave."""

    def archived_until(self) -> int | None:
        """Everything of the window before this instant is archived (None: unknown until it closes)."""


class Source(Protocol):
    """One provider's ordering strategy, over one API client."""

    descriptor: Descriptor

    def plan(self, job: Job, start: int, end: int | None, horizon: int) -> Window | None:
        """The window to collect next from ``start`` (up to ``end``, never past ``horizon``, the
        settled present), or None when nothing is due yet."""

    def collect(self, window: Window, ctx: WindowContext) -> bool:
        """Collect ``window``: True when it closed, False when the budget stopped it (the
        checkpoint then says where the next run picks up)."""

    def fork(self) -> Source:
        """Another source for a job collected at the same time (its own client, the same pacer)."""

    def stats(self) -> dict[str, int]:
        """The client's ``requests``, ``retries`` and ``rate_limited`` counters."""

    def clock_skew(self) -> float | None:
        """How many seconds this host's clock is ahead of the API's, from the last response's
        ``Date`` (None before the first). Optional: a source without it is not checked."""


class WindowContext(Protocol):
    """What a source may do while it collects one window: read the settings and the budget, fill
    buffers, write parts, save the window's progress, and close it. The collector hands a job's
    windows one (``context.JobContext``) and the late-event sweep's passes another
    (``sweep.SweepContext``); a source cannot tell them apart."""

    job: Job
    settings: Settings
    budget: Budget
    page_limit: int

    @property
    def saved(self) -> bool:
        """Whether the checkpoint already holds the window open (a resumed window)."""

    def new_buffer(self) -> ObjectBuffer:
        """An empty part, sized by the settings."""

    def key(self, dt: str, window: Window, part: int) -> str:
        """The deterministic name of the window's ``part`` under the date ``dt``."""

    def write(self, dt: str, window: Window, part: int, buffer: ObjectBuffer) -> None:
        """The part's object; the window must have been saved first (``save``)."""

    def blank(self, dt: str, window: Window, part: int) -> None:
        """Overwrite a part a restarted window no longer fills with an empty object."""

    def save(self, window: Window) -> None:
        """The window's progress, so the next run resumes it where this one stopped."""

    def close(self, watermark: int) -> None:
        """The window is archived whole: its manifest, then the job moves past it."""

    def page_fetched(self, events: int) -> None:
        """Count a page (progress, metrics)."""
