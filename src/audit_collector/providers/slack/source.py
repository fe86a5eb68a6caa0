"""Slack: forward, bounded windows; newest-first pages inside each window.

Slack pages newest first, so a failure part-way through "everything since the checkpoint" cannot
resume without a gap. Instead each job's ranges are cut into closed windows ``[oldest, latest]``:
``latest`` is at least ``SETTLE_SECONDS`` in the past (late events have arrived) and a window never
crosses a UTC midnight (all its events share one ``dt``). A window is saved in the job's checkpoint
before its first object is written; inside it, each object written moves the checkpoint to the
next cursor and part index. Only a finished window moves the job's watermark to ``latest + 1``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from audit_collector.collector import Source, WindowContext
from audit_collector.collector.jobs import Job
from audit_collector.collector.provider import Descriptor
from audit_collector.dates import end_of_utc_day, utc_date
from audit_collector.errors import ApiBodyError, BudgetExhausted
from audit_collector.providers.slack.client import AuditLogsClient
from audit_collector.providers.slack.models import AuditLogsApiError, EntryKey


@dataclass(frozen=True)
class SlackWindow:
    """``[oldest, latest]`` in seconds, both inclusive, inside one UTC day.

    Progress: ``part``, the index the next object takes; ``cursor``, the next page of the query that
    ends at ``cursor_latest``; ``position``, the oldest second archived so far, with the ids archived
    at that second (``position_ids``): pages come newest first, so everything in
    ``(position, latest]`` is archived. ``stale_parts``: parts a window restarted by an older version
    must blank when it ends.
    """

    oldest: int
    latest: int
    cursor: str | None = None
    part: int = 0
    pages: int = 0
    stale_parts: int = 0
    cursor_latest: int | None = None
    position: int | None = None
    position_ids: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.oldest}-{self.latest}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["position_ids"] = list(self.position_ids)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlackWindow:
        return cls(**{**data, "position_ids": tuple(data.get("position_ids", ()))})

    def archived_until(self) -> int | None:
        return None  # newest first: the archived part is the window's newest end, not a prefix


class SlackSource:
    """Forward windows over a newest-first API. One job at a time: the org-wide rate limit leaves
    nothing to overlap."""

    def __init__(self, descriptor: Descriptor, client: AuditLogsClient) -> None:
        self.descriptor = descriptor
        self.client = client

    def stats(self) -> dict[str, int]:
        return dict(self.client.stats)

    def clock_skew(self) -> float | None:
        return self.client.clock_skew

    def fork(self) -> Source:
        return self  # never called while backfill_concurrency is 1

    def plan(self, job: Job, start: int, end: int | None, horizon: int) -> SlackWindow | None:
        latest = min(horizon, end_of_utc_day(start))
        if end is not None:
            latest = min(latest, end - 1)
        if latest < start:
            return None
        # Saved after its first page arrives (an auth error leaves the checkpoint untouched), and
        # always before its first object is written, so every object belongs to a saved window.
        return SlackWindow(start, latest)

    def collect(self, window: SlackWindow, ctx: WindowContext) -> bool:
        return _WindowCollector(self.client, ctx, window).collect()


class _WindowCollector:
    """One window's loop. Its in-memory progress (``cursor``, ``low``) may run ahead of the saved
    window; an expired cursor falls back to the saved window and goes on by time from its position
    (or from the first page when nothing was archived yet), so a window finishes whatever the cursor
    lifetime."""

    def __init__(self, client: AuditLogsClient, ctx: WindowContext, window: SlackWindow) -> None:
        self.client, self.ctx, self.saved = client, ctx, window
        self.dt = utc_date(window.oldest)
        self._resume(window)

    def _resume(self, window: SlackWindow) -> None:
        """Take up ``window`` as saved: its cursor (if it still works) and its position."""
        self.cursor, self.part, self.pages = window.cursor, window.part, window.pages
        self.query_latest = window.cursor_latest if window.cursor else self._position_latest(window)
        self.low, self.low_ids = window.position, list(window.position_ids)
        self.skip = (window.position, frozenset(window.position_ids)) if window.position is not None else None
        self.buffer = self.ctx.new_buffer()

    def _position_latest(self, window: SlackWindow) -> int:
        return window.latest if window.position is None else window.position

    def collect(self) -> bool:
        ctx, restarts = self.ctx, 0
        at_restart = (self.low, tuple(self.low_ids))
        while True:
            if not ctx.budget.allows():
                return self._stop()
            try:
                page = self.client.logs(
                    oldest=self.saved.oldest, latest=self.query_latest, limit=ctx.page_limit, cursor=self.cursor
                )
            except BudgetExhausted:
                return self._stop()
            except AuditLogsApiError as exc:
                if exc.error == "rate_limited":
                    return self._stop()  # Retry-After beyond what a run waits: the next run continues
                if exc.error != "invalid_cursor" or self.cursor is None:
                    raise
                # Keep what was fetched (its position says where it ends), then go on by time. Only
                # a cursor that fails before the position moved since the last restart counts
                # towards giving up.
                progressed = bool(self.buffer) or (self.low, tuple(self.low_ids)) != at_restart
                unsaved = self._moved()
                if self.buffer:
                    self._write()
                if unsaved:
                    self._save(None)
                if progressed:
                    restarts = 0
                else:
                    restarts += 1
                    if restarts > ctx.settings.max_window_restarts:
                        raise
                at_restart = (self.low, tuple(self.low_ids))
                self._resume(dataclasses.replace(self.saved, cursor=None))
                continue
            if self._add(page) is None:
                return self._finish()

    def _add(self, page: Any) -> str | None:
        """Add a page (less what the position says is archived); write a full buffer. Returns the
        next cursor, None at the end of the query."""
        events = page.events
        _check_entries(events.keys, self.saved.oldest, self.query_latest)
        if not self.ctx.saved and (events or page.next_cursor):
            self._save(None)  # before any object of this window is written
        lines, keys = events.lines, events.keys
        if self.skip is not None and keys and min(k.date_create for k in keys) <= self.skip[0]:
            second, ids = self.skip
            kept = [i for i, k in enumerate(keys) if not (k.date_create == second and k.id in ids)]
            lines, keys = [lines[i] for i in kept], [keys[i] for i in kept]
        if keys:
            low = min(k.date_create for k in keys)
            at_low = [k.id for k in keys if k.date_create == low]
            self.low_ids = [*self.low_ids, *at_low] if low == self.low else at_low
            self.low = low
        self.buffer.extend(lines, keys)
        self.pages += 1
        self.ctx.page_fetched(len(lines))
        self.cursor = page.next_cursor
        if self.buffer and (self.buffer.full or self.cursor is None):
            self._write()
            if self.cursor is not None:
                self._save(self.cursor)
        return self.cursor

    def _write(self) -> None:
        self.ctx.write(self.dt, self.saved, self.part, self.buffer)
        self.part += 1
        self.buffer = self.ctx.new_buffer()

    def _save(self, cursor: str | None) -> None:
        self.saved = dataclasses.replace(
            self.saved,
            cursor=cursor,
            cursor_latest=self.query_latest if cursor else None,
            part=self.part,
            pages=self.pages,
            position=self.low,
            position_ids=tuple(self.low_ids),
        )
        self.ctx.save(self.saved)

    def _moved(self) -> bool:
        """Whether anything was fetched past the saved window (a sweep keeps few of the events it
        fetches, so its buffer may be empty while its position moved)."""
        saved = self.saved
        return bool(self.buffer) or (self.low, tuple(self.low_ids)) != (saved.position, saved.position_ids)

    def _stop(self) -> bool:
        """Out of time: archive what was fetched, and leave the cursor for the next run."""
        moved = self._moved()
        if self.buffer:
            self._write()
        if moved:
            self._save(self.cursor)
        return False

    def _finish(self) -> bool:
        for stale in range(self.part, self.saved.stale_parts):
            self.ctx.blank(self.dt, self.saved, stale)
        self.ctx.close(self.saved.latest + 1)
        return True


def _check_entries(keys: Sequence[EntryKey], oldest: int, latest: int) -> None:
    """Every entry must say when it happened, inside the window asked for: that decides its ``dt``.
    Checked for the whole page at once (a call per entry costs more than the check)."""
    dates = [key.date_create for key in keys]
    if dates and (set(map(type, dates)) != {int} or min(dates) < oldest or max(dates) > latest):
        for key in keys:  # find the first culprit, for the message
            _check_entry(key, oldest, latest)


def _check_entry(key: EntryKey, oldest: int, latest: int) -> None:
    when = key.date_create
    if isinstance(when, bool) or not isinstance(when, int):
        raise ApiBodyError(f"Slack entry {key.id!r} has no integer date_create ({when!r}); cannot place it by date")
    if not oldest <= when <= latest:
        raise ApiBodyError(
            f"Slack entry {key.id!r} has date_create {when}, outside the window "
            f"[{oldest}, {latest}] that was asked for; refusing to archive it under the wrong date"
        )
