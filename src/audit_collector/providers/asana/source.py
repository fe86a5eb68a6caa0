"""Asana: an oldest-first offset stream, inside windows ``[start, end)`` that end at the settle horizon.

Asana keeps handing out a ``next_page`` even when nothing new exists, so a window ends on the first
empty page. Its ``end`` (``now - SETTLE_SECONDS``) keeps events that reach the API late from being
skipped: they are younger than the horizon when the window is planned.

After each object is written the checkpoint holds the offset for the next page (with the
``start_at`` it belongs to) and the *position*: the ``created_at`` of the last archived event and
every ``gid`` archived at that instant. An expired offset resumes from ``start_at`` = that
``created_at``, skipping those gids: on every page that starts at or before that instant, since an
instant can hold more events than a page (bulk operations), and walking it again takes pages. A
restart that archived something new since the previous one does not count against
``max_window_restarts``. Objects never mix two UTC dates: a page that crosses midnight
is split, and the checkpoint then holds the position only.

Backfills split their ranges into time slices fetched at once, one client per thread, all paced
together under Asana's per-token limit.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from audit_collector.collector import Source, WindowContext
from audit_collector.collector.jobs import Job
from audit_collector.collector.provider import Descriptor
from audit_collector.errors import ApiBodyError, BudgetExhausted
from audit_collector.json_text import Events, Line
from audit_collector.providers.asana.client import AsanaAuditLogClient, iso_ms
from audit_collector.providers.asana.models import AsanaApiError, EventKey


@dataclass(frozen=True)
class Position:
    """The last archived event's instant, and every gid archived at that instant."""

    created_at: str
    ms: int
    gids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AsanaWindow:
    """``[start, end)`` in milliseconds; the offset of the next page (with the ``start_at`` it
    belongs to), the position, and the part index the next object takes."""

    start: int
    end: int
    offset: str | None = None
    offset_start: int | None = None
    position: Position | None = None
    part: int = 0

    @property
    def id(self) -> str:
        return f"{self.start}-{self.end}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AsanaWindow:
        position = data.get("position")
        return cls(**{**data, "position": Position(**position) if position else None})

    def archived_until(self) -> int | None:
        return self.position.ms + 1 if self.position else None  # oldest first: the position is progress


class AsanaSource:
    """Windows that end at the settle horizon, over an oldest-first offset stream."""

    def __init__(self, descriptor: Descriptor, client: AsanaAuditLogClient, workspace_gid: str, fork=None) -> None:
        self.descriptor = descriptor
        self.client = client
        self.workspace_gid = workspace_gid
        self._fork = fork

    def stats(self) -> dict[str, int]:
        return dict(self.client.stats)

    def clock_skew(self) -> float | None:
        return self.client.clock_skew

    def fork(self) -> Source:
        return self._fork() if self._fork else self

    def plan(self, job: Job, start: int, end: int | None, horizon: int) -> AsanaWindow | None:
        end = horizon if end is None else min(end, horizon)
        if end <= start:
            return None
        # Saved just before its first object is written (_WindowCollector._write), not now: an auth
        # error on the first request then leaves the checkpoint untouched.
        return AsanaWindow(start, end)

    def collect(self, window: AsanaWindow, ctx: WindowContext) -> bool:
        return _WindowCollector(self.client, self.workspace_gid, ctx, window).collect()


class _WindowCollector:
    """One window's loop. Holds the in-memory position, which may run ahead of the saved one."""

    def __init__(
        self, client: AsanaAuditLogClient, workspace_gid: str, ctx: WindowContext, window: AsanaWindow
    ) -> None:
        self.client = client
        self.workspace_gid = workspace_gid
        self.ctx = ctx
        self.window = window
        self.offset: str | None = window.offset
        self.offset_start: int | None = window.offset_start
        self.position: Position | None = window.position  # last event added to a buffer
        self.part: int = window.part
        self.buffer = ctx.new_buffer()
        self._saved_position: Position | None = window.position

    def collect(self) -> bool:
        ctx, start, end = self.ctx, self.window.start, self.window.end
        restarts = 0  # in a row without progress: one that archived anything new does not count
        progress_at_restart = self.position
        beyond = False
        while True:
            if not ctx.budget.allows():
                return self._stop()
            by_position = self.offset is None and self.position is not None
            query_start = self.offset_start if self.offset else (self.position.ms if by_position else start)
            if by_position and beyond:
                query_start += 1  # the position's instant is walked whole: ask from the next millisecond
            try:
                page = self.client.get_audit_log_events(
                    self.workspace_gid,
                    start_at=iso_ms(query_start),
                    end_at=iso_ms(end),
                    limit=ctx.page_limit,
                    offset=self.offset,
                )
            except BudgetExhausted:
                return self._stop()
            except AsanaApiError as exc:
                if exc.status_code == 429:
                    return self._stop()  # Retry-After beyond what a run waits: the next run continues
                if self.position != progress_at_restart:
                    restarts = 0  # the last restart made progress: this one starts a new count
                if exc.status_code != 400 or self.offset is None or restarts >= ctx.settings.max_window_restarts:
                    raise
                restarts += 1  # the offset expired: resume from the position, skipping its gids
                progress_at_restart = self.position
                self.offset = self.offset_start = None
                continue
            events = page.events
            ctx.page_fetched(len(events))
            if not events:
                return self._finish()
            before = self.position
            self._add_page(events, start, end, self._skip(events.keys, start, end))
            if by_position and not beyond and self.position == before and len(events) < ctx.page_limit:
                # A short page (nothing after it) that held only the position's own instant, all
                # archived: the rest is after that instant, and asking for it by time needs no offset
                # (an offset that keeps expiring at the end of a window would otherwise loop).
                beyond = True
                continue
            beyond = False
            self.offset, self.offset_start = page.next_offset, query_start if page.next_offset else None
            if page.next_offset is None:
                return self._finish()
            if self.buffer.full:
                self._flush(next_offset=self.offset, offset_start=self.offset_start)

    def _skip(self, keys: Sequence[EventKey], start: int, end: int) -> Position | None:
        """The position, when the page starts at or before its instant: a page after a restart (and
        every page that follows while an instant longer than a page is walked again, in this run or
        the next) serves events the position already holds. None for the usual page."""
        if self.position is None or not keys:
            return None
        return self.position if _place(keys[0], start, end)[0] <= self.position.ms else None

    def _add_page(self, events: Events[EventKey], start: int, end: int, skip: Position | None) -> None:
        """Add a page's events to the buffer, a run of same-date events at a time (a page across
        midnight writes the first date's object before it goes on), moving the position with them.
        Every event is checked before any is added."""
        keys = events.keys
        dt = _one_plain_day(keys, start, end)
        if dt is not None and skip is not None and _PLAIN_TIMES.fullmatch(str(skip.created_at)):
            # A page that starts inside the position's instant (bulk operations put many events in one
            # millisecond): in Asana's own format equal text is the same instant, so the events the
            # position holds are found by comparing strings, and the rest is a usual page.
            kept = [i for i, k in enumerate(keys) if not (k.created_at == skip.created_at and k.gid in skip.gids)]
            if len(kept) < len(keys):
                events = Events([events.lines[i] for i in kept], [keys[i] for i in kept])
                keys = events.keys
            skip = None
        if dt is not None and skip is None:  # the usual page: nothing to parse event by event, nothing to skip
            if not keys:
                return
            last = keys[-1]
            gids = [key.gid for key in keys if key.created_at == last.created_at]
            self._add_batch(dt, events.lines, events.keys, last, _place(last, start, end)[0], gids)
            return
        places = [_place(key, start, end) for key in keys]
        batch: list[int] = []  # indices of same-date events not yet added
        for i, (ms, dt) in enumerate(places):
            if skip is not None and ms == skip.ms and keys[i].gid in skip.gids:
                continue  # archived before the offset expired
            if batch and dt != places[batch[-1]][1]:
                self._add_indices(events, places, batch)
                batch = []
            batch.append(i)
        if batch:
            self._add_indices(events, places, batch)

    def _add_indices(self, events: Events[EventKey], places: list[tuple[int, str]], batch: list[int]) -> None:
        last_ms, dt = places[batch[-1]]
        gids = [events.keys[i].gid for i in batch if places[i][0] == last_ms]
        lines, keys = [events.lines[i] for i in batch], [events.keys[i] for i in batch]
        self._add_batch(dt, lines, keys, events.keys[batch[-1]], last_ms, gids)

    def _add_batch(
        self, dt: str, lines: Sequence[Line], keys: Sequence[EventKey], last: EventKey, last_ms: int, gids: list[str]
    ) -> None:
        """Add same-date events; the position moves to the last of them (``gids``: those at its instant)."""
        if self.buffer and dt != self.buffer.dt:
            self._flush(next_offset=None, offset_start=None)  # the checkpoint then holds the position only
        self.buffer.dt = dt
        self.buffer.extend(lines, keys)
        if self.position is not None and self.position.ms == last_ms:
            gids = [*self.position.gids, *gids]
        self.position = Position(last.created_at, last_ms, gids)

    def _write(self) -> None:
        """Write the buffer as the next part, the window having been saved first."""
        if not self.ctx.saved:
            self.ctx.save(self.window)
        self.ctx.write(self.buffer.dt, self.window, self.part, self.buffer)

    def _flush(self, *, next_offset: str | None, offset_start: int | None) -> None:
        """Write the buffer, then save where the next run picks up."""
        self._write()
        self.part += 1
        self.buffer = self.ctx.new_buffer()
        self._save(next_offset=next_offset, offset_start=offset_start)

    def _save(self, *, next_offset: str | None, offset_start: int | None) -> None:
        self.ctx.save(
            dataclasses.replace(
                self.window, offset=next_offset, offset_start=offset_start, position=self.position, part=self.part
            )
        )
        self._saved_position = self.position

    def _stop(self) -> bool:
        if self.buffer:
            self._flush(next_offset=self.offset, offset_start=self.offset_start)
        elif self.position != self._saved_position:  # a sweep's pages held nothing new: its place still counts
            self._save(next_offset=self.offset, offset_start=self.offset_start)
        return False

    def _finish(self) -> bool:
        if self.buffer:
            self._write()
        self.ctx.close(self.window.end)
        return True


# Asana's own created_at format. Strings in it sort as their instants do, so a page of them can be
# checked with string comparisons: no per-event parsing.
_PLAIN_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z"
_PLAIN_TIMES = re.compile(f"(?:{_PLAIN_TIME}\n)*{_PLAIN_TIME}")


def _one_plain_day(keys: Sequence[EventKey], start: int, end: int) -> str | None:
    """The UTC date every event of a page shares, when each has a string gid and a created_at in
    Asana's format inside ``[start, end)``; None for any other page (``_place`` then checks each)."""
    created = [key.created_at for key in keys]
    if not created or not all(isinstance(c, str) for c in created):
        return None
    if not _PLAIN_TIMES.fullmatch("\n".join(created)):
        return None
    first, last = min(created), max(created)
    if first[:10] != last[:10] or not iso_ms(start) <= first or not last < iso_ms(end):
        return None
    gids = [key.gid for key in keys]
    if set(map(type, gids)) != {str} or not all(gids):
        return None
    return first[:10]


def _place(key: EventKey, start: int, end: int) -> tuple[int, str]:
    """The event's millisecond and UTC date; refuses events that cannot be placed or positioned."""
    gid, created_at = key.gid, key.created_at
    if not isinstance(gid, str) or not gid:
        raise ApiBodyError(f"Asana event without a string gid (created_at {created_at!r}); cannot track it")
    try:
        when = datetime.fromisoformat(created_at)
    except (TypeError, ValueError):
        raise ApiBodyError(f"Asana event {gid} has an unreadable created_at {created_at!r}") from None
    if when.tzinfo is not UTC:
        if when.tzinfo is None:
            raise ApiBodyError(f"Asana event {gid} has a created_at without a time zone: {created_at!r}")
        when = when.astimezone(UTC)
    ms = (when - _EPOCH) // _MILLISECOND
    if not start <= ms < end:
        raise ApiBodyError(
            f"Asana event {gid} has created_at {created_at}, outside the window asked for; "
            "refusing to archive it under the wrong date"
        )
    return ms, when.date().isoformat()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
