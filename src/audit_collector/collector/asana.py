"""Asana: an oldest-first offset stream, inside windows ``[start, end)`` that end at the settle horizon.

Asana keeps handing out a ``next_page`` even when nothing new exists, so a window ends on the first
empty page. Its ``end`` (``now - SETTLE_SECONDS``) keeps events that reach the API late from being
skipped: they are younger than the horizon when the window is planned.

After each object is written the checkpoint holds the offset for the next page (with the
``start_at`` it belongs to) and the *position*: the ``created_at`` of the last archived event and
every ``gid`` archived at that instant. An expired offset resumes from ``start_at`` = that
``created_at``, skipping those gids. Objects never mix two UTC dates: a page that crosses midnight
is split, and the checkpoint then holds the position only.

Checkpoint: ``{"watermark": <ms: everything before it is archived>, "window": {...} | null}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..asana import AsanaApiError, AsanaAuditLogClient, iso_ms
from ..errors import ApiBodyError, BudgetExhausted
from .core import Run

RETENTION_DAYS = 90  # Asana deletes older events
FIRST_EVENT_MS = int(datetime(2021, 10, 8, tzinfo=UTC).timestamp() * 1000)  # nothing exists before


class AsanaSource:
    provider = "asana"

    def __init__(self, client: AsanaAuditLogClient, workspace_gid: str) -> None:
        self.client = client
        self.workspace_gid = workspace_gid

    def stats(self) -> dict[str, int]:
        return dict(self.client.stats)

    def behind_seconds(self, checkpoint: dict[str, Any], now: float) -> float | None:
        watermark = checkpoint.get("watermark")
        return None if watermark is None else max(0.0, now - watermark / 1000)

    def collect(self, run: Run) -> bool:
        while True:
            window = run.checkpoint.get("window") or self._plan(run)
            if window is None:
                return True
            if not _WindowCollector(self, run, window).collect():
                return False

    def _plan(self, run: Run) -> dict[str, Any] | None:
        """The next window, or None when caught up (the budget is checked before its first request)."""
        now = run.started_at
        end = int((now - run.settings.settle_seconds) * 1000)
        start = run.checkpoint.get("watermark")
        if start is None:
            lookback = min(run.settings.initial_lookback_days, RETENTION_DAYS)
            start = max(int((now - lookback * 86400) * 1000), FIRST_EVENT_MS)
        if end <= start:
            return None
        # Saved just before its first object is written (_WindowCollector._write), not now: an auth
        # error on the first request then leaves the checkpoint untouched.
        return {"start": start, "end": end, "offset": None, "offset_start": None, "position": None, "part": 0}


class _WindowCollector:
    """One window's loop. Holds the in-memory position, which may run ahead of the saved one."""

    def __init__(self, source: AsanaSource, run: Run, window: dict[str, Any]) -> None:
        self.client = source.client
        self.workspace_gid = source.workspace_gid
        self.run = run
        self.window = window
        self.window_id = f"{window['start']}-{window['end']}"
        self.offset: str | None = window["offset"]
        self.offset_start: int | None = window["offset_start"]
        self.position: dict[str, Any] | None = window["position"]  # last event added to a buffer
        self.part: int = window["part"]
        self.buffer = run.new_buffer()

    def collect(self) -> bool:
        run, start, end = self.run, self.window["start"], self.window["end"]
        restarts = 0
        while True:
            if not run.budget.allows():
                return self._stop()
            by_position = self.offset is None and self.position is not None
            query_start = self.offset_start if self.offset else (self.position["ms"] if by_position else start)
            try:
                page = self.client.get_audit_log_events(
                    self.workspace_gid,
                    start_at=iso_ms(query_start),
                    end_at=iso_ms(end),
                    limit=run.settings.asana_page_limit,
                    offset=self.offset,
                )
            except BudgetExhausted:
                return self._stop()
            except AsanaApiError as exc:
                if exc.status_code == 429:
                    return self._stop()  # Retry-After beyond what a run waits: the next run continues
                if exc.status_code != 400 or self.offset is None or restarts >= run.settings.max_window_restarts:
                    raise
                restarts += 1  # the offset expired: resume from the position, skipping its gids
                self.offset = self.offset_start = None
                continue
            run.result.pages += 1
            if not page.data:
                return self._finish()
            skip = self.position if by_position else None  # archived before the offset expired
            for event in page.data:
                ms, dt = _place(event, start, end)
                gid = event["gid"]
                if skip is not None and ms == skip["ms"] and gid in skip["gids"]:
                    continue
                if self.buffer and dt != self.buffer.dt:
                    self._flush(next_offset=None, offset_start=None)  # a page across midnight: split it
                self.buffer.dt = dt
                self.buffer.add(event)
                if self.position is not None and self.position["ms"] == ms:
                    self.position = {**self.position, "gids": [*self.position["gids"], gid]}
                else:
                    self.position = {"created_at": event["created_at"], "ms": ms, "gids": [gid]}
            self.offset, self.offset_start = page.next_offset, query_start if page.next_offset else None
            if page.next_offset is None:
                return self._finish()
            if self.buffer.full:
                self._flush(next_offset=self.offset, offset_start=self.offset_start)

    def _write(self) -> None:
        """Write the buffer as the next part, the window having been saved first."""
        run = self.run
        if run.checkpoint.get("window") is None:
            run.save({"watermark": self.window["start"], "window": self.window})
        run.write(run.key(self.buffer.dt, self.window_id, self.part), self.buffer)

    def _flush(self, *, next_offset: str | None, offset_start: int | None) -> None:
        """Write the buffer, then save where the next run picks up."""
        run = self.run
        self._write()
        self.part += 1
        self.buffer = run.new_buffer()
        window = {
            **self.window,
            "offset": next_offset,
            "offset_start": offset_start,
            "position": self.position,
            "part": self.part,
        }
        run.save({"watermark": self.window["start"], "window": window})

    def _stop(self) -> bool:
        if self.buffer:
            self._flush(next_offset=self.offset, offset_start=self.offset_start)
        return False

    def _finish(self) -> bool:
        if self.buffer:
            self._write()
        self.run.save({"watermark": self.window["end"], "window": None})
        return True


def _place(event: dict[str, Any], start: int, end: int) -> tuple[int, str]:
    """The event's millisecond and UTC date; refuses events that cannot be placed or positioned."""
    gid, created_at = event.get("gid"), event.get("created_at")
    if not isinstance(gid, str) or not gid:
        raise ApiBodyError(f"Asana event without a string gid (created_at {created_at!r}); cannot track it")
    try:
        when = datetime.fromisoformat(str(created_at).replace("Z", "+00:00"))
    except ValueError:
        raise ApiBodyError(f"Asana event {gid} has an unreadable created_at {created_at!r}") from None
    if when.tzinfo is None:
        raise ApiBodyError(f"Asana event {gid} has a created_at without a time zone: {created_at!r}")
    ms = int(when.timestamp() * 1000)
    if not start <= ms < end:
        raise ApiBodyError(
            f"Asana event {gid} has created_at {created_at}, outside the window asked for; "
            "refusing to archive it under the wrong date"
        )
    return ms, when.astimezone(UTC).strftime("%Y-%m-%d")
