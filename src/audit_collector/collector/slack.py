"""Slack: forward, bounded windows; newest-first pages inside each window.

Slack pages newest first, so a failure part-way through "everything since the checkpoint" cannot
resume without a gap. Instead each job's ranges are cut into closed windows ``[oldest, latest]``:
``latest`` is at least ``SETTLE_SECONDS`` in the past (late events have arrived) and a window never
crosses a UTC midnight (all its events share one ``dt``). A window is saved in the job's checkpoint
before its first object is written; inside it, each object written moves the checkpoint to the
next cursor and part index. Only a finished window moves the job's watermark to ``latest + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..archive import EMPTY_GZIP
from ..errors import ApiBodyError, BudgetExhausted
from ..slack import AuditLogsApiError, AuditLogsClient, EntryKey
from .core import Run, end_of_utc_day, utc_date
from .jobs import Job

FIRST_EVENT = 1519862400  # 2018-03-01: nothing exists before


class SlackSource:
    provider = "slack"
    units_per_second = 1

    def __init__(self, client: AuditLogsClient) -> None:
        self.client = client

    def stats(self) -> dict[str, int]:
        return dict(self.client.stats)

    def live_origin(self, run: Run) -> int:
        return max(FIRST_EVENT, int(run.started_at - run.settings.initial_lookback_days * 86400))

    def collect(self, run: Run, job_ids: list[str]) -> bool:
        for job_id in job_ids:  # one at a time: the org-wide rate limit leaves nothing to overlap
            while True:
                job = run.job(job_id)
                window = job.window or self._plan(run, job)
                if window is None:
                    break
                if not self._collect_window(run, job, window):
                    return False
        return True

    def _plan(self, run: Run, job: Job) -> dict[str, Any] | None:
        """The job's next window, or None when it is caught up (or done)."""
        gap = run.next_gap(job, self)
        if gap is None:
            return None
        oldest, gap_end = gap
        latest = min(int(run.started_at) - run.settings.settle_seconds, end_of_utc_day(oldest))
        if gap_end is not None:
            latest = min(latest, gap_end - 1)
        if latest < oldest:
            return None
        # Saved after its first page arrives (an auth error leaves the checkpoint untouched), and
        # always before its first object is written, so every object belongs to a saved window.
        return {"oldest": oldest, "latest": latest, "cursor": None, "part": 0, "pages": 0, "stale_parts": 0}

    def _collect_window(self, run: Run, job: Job, window: dict[str, Any]) -> bool:
        oldest, latest = window["oldest"], window["latest"]
        dt, window_id = utc_date(oldest), f"{oldest}-{latest}"
        cursor, part, pages = window["cursor"], window["part"], window["pages"]
        stale_parts = window["stale_parts"]
        buffer = run.new_buffer()
        restarts = 0
        saved = job.window == window

        def save_progress(next_cursor: str | None, next_part: int) -> None:
            job.window = {
                **window,
                "cursor": next_cursor,
                "part": next_part,
                "pages": pages,
                "stale_parts": stale_parts,
            }
            run.save_job(job)

        def stop() -> bool:
            """Out of time: archive what was fetched, and leave the cursor for the next run."""
            if buffer:
                run.write(run.key(dt, window_id, part), buffer)
                save_progress(cursor, part + 1)
            return False

        while True:
            if not run.budget.allows():
                return stop()
            try:
                page = self.client.logs(
                    oldest=oldest, latest=latest, limit=run.settings.slack_page_limit, cursor=cursor
                )
            except BudgetExhausted:
                return stop()
            except AuditLogsApiError as exc:
                if exc.error == "rate_limited":
                    return stop()  # Retry-After beyond what a run waits: the next run continues
                if exc.error != "invalid_cursor" or cursor is None or restarts >= run.settings.max_window_restarts:
                    raise
                # The cursor expired: the window starts again from its first page, rewriting the
                # same part names. Parts this window may have written beyond the new count are
                # overwritten with empty objects when the window ends (stale_parts).
                restarts += 1
                stale_parts = max(stale_parts, part + 1)
                cursor, part, pages, buffer = None, 0, 0, run.new_buffer()
                save_progress(None, 0)
                continue
            events = page.events
            _check_entries(events.keys, oldest, latest)
            if not saved and (events or page.next_cursor):
                save_progress(None, 0)  # before any object of this window is written
            saved = True
            buffer.extend(events.lines)
            pages += 1
            run.page_fetched(job.id, len(events))
            cursor = page.next_cursor
            page = events = None  # freed before the next page arrives: memory holds one page, not two
            if buffer and (buffer.full or cursor is None):
                run.write(run.key(dt, window_id, part), buffer)
                part += 1
                buffer = run.new_buffer()
                if cursor is not None:
                    save_progress(cursor, part)
            if cursor is None:
                for stale in range(part, stale_parts):
                    run.archive.put(run.key(dt, window_id, stale), EMPTY_GZIP)
                job.watermark, job.window = latest + 1, None
                run.save_job(job)
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
