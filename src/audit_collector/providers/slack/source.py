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

from ...collector import Source, WindowContext
from ...collector.jobs import Job
from ...dates import end_of_utc_day, utc_date
from ...descriptor import Descriptor
from ...errors import ApiBodyError, BudgetExhausted
from .client import AuditLogsClient
from .models import AuditLogsApiError, EntryKey


@dataclass(frozen=True)
class SlackWindow:
    """``[oldest, latest]`` in seconds, both inclusive, inside one UTC day; with the cursor and the
    part index the next page and object take, and how many parts a restarted window must blank."""

    oldest: int
    latest: int
    cursor: str | None = None
    part: int = 0
    pages: int = 0
    stale_parts: int = 0

    @property
    def id(self) -> str:
        return f"{self.oldest}-{self.latest}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlackWindow:
        return cls(**data)

    def archived_until(self) -> int | None:
        return None  # newest first: nothing is known archived until the window closes


class SlackSource:
    """Forward windows over a newest-first API. One job at a time: the org-wide rate limit leaves
    nothing to overlap."""

    def __init__(self, descriptor: Descriptor, client: AuditLogsClient) -> None:
        self.descriptor = descriptor
        self.client = client

    def stats(self) -> dict[str, int]:
        return dict(self.client.stats)

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
        oldest, latest = window.oldest, window.latest
        dt = utc_date(oldest)
        cursor, part, pages, stale_parts = window.cursor, window.part, window.pages, window.stale_parts
        buffer = ctx.new_buffer()
        restarts = 0

        def save_progress(next_cursor: str | None, next_part: int) -> None:
            ctx.save(
                dataclasses.replace(window, cursor=next_cursor, part=next_part, pages=pages, stale_parts=stale_parts)
            )

        def stop() -> bool:
            """Out of time: archive what was fetched, and leave the cursor for the next run."""
            if buffer:
                ctx.write(dt, window, part, buffer)
                save_progress(cursor, part + 1)
            return False

        while True:
            if not ctx.budget.allows():
                return stop()
            try:
                page = self.client.logs(oldest=oldest, latest=latest, limit=ctx.page_limit, cursor=cursor)
            except BudgetExhausted:
                return stop()
            except AuditLogsApiError as exc:
                if exc.error == "rate_limited":
                    return stop()  # Retry-After beyond what a run waits: the next run continues
                if exc.error != "invalid_cursor" or cursor is None or restarts >= ctx.settings.max_window_restarts:
                    raise
                # The cursor expired: the window starts again from its first page, rewriting the
                # same part names. Parts this window may have written beyond the new count are
                # overwritten with empty objects when the window ends (stale_parts).
                restarts += 1
                stale_parts = max(stale_parts, part + 1)
                cursor, part, pages, buffer = None, 0, 0, ctx.new_buffer()
                save_progress(None, 0)
                continue
            events = page.events
            _check_entries(events.keys, oldest, latest)
            if not ctx.saved and (events or page.next_cursor):
                save_progress(None, 0)  # before any object of this window is written
            buffer.extend(events.lines)
            pages += 1
            ctx.page_fetched(len(events))
            cursor = page.next_cursor
            page = events = None  # freed before the next page arrives: memory holds one page, not two
            if buffer and (buffer.full or cursor is None):
                ctx.write(dt, window, part, buffer)
                part += 1
                buffer = ctx.new_buffer()
                if cursor is not None:
                    save_progress(cursor, part)
            if cursor is None:
                for stale in range(part, stale_parts):
                    ctx.blank(dt, window, stale)
                ctx.close(latest + 1)
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
