"""What one run did (``RunResult``, as the handler returns it), and what a progress callback sees."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunResult:
    """What one run did, as the handler returns it (``as_dict``) and the metrics report it."""

    provider: str
    events_written: int = 0
    objects_written: int = 0
    pages: int = 0
    complete: bool = False
    checkpoint: dict[str, Any] | None = None
    status: str = "ok"  # ok | lease_held
    message: str = ""
    behind_seconds: float | None = None
    retries: int = 0
    rate_limited: int = 0
    backfill: dict[str, Any] | None = None  # the backfill this invocation asked for
    backfills: list[dict[str, Any]] = field(default_factory=list)  # every unfinished one, after the run
    sweep: dict[str, Any] | None = None  # the late-event sweep's report (when it is on)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "provider": self.provider,
            "events_written": self.events_written,
            "objects_written": self.objects_written,
            "pages": self.pages,
            "complete": self.complete,
            "checkpoint": self.checkpoint,
        }
        if self.status != "ok":
            out["status"] = self.status
            out["message"] = self.message
        if self.behind_seconds is not None:
            out["behind_seconds"] = round(self.behind_seconds, 1)
        if self.backfill is not None:
            out["backfill"] = self.backfill
        if self.backfills:
            out["backfills"] = self.backfills
        if self.sweep is not None:
            out["sweep"] = self.sweep
        return out


@dataclass(frozen=True)
class Progress:
    """After each page: counts for this run, and how far the backfill (if any) has come."""

    job_id: str
    pages: int
    events: int  # fetched by this run so far
    backfill_fraction: float | None  # archived share of the backfill's range (None without one)
    slices_done: int
    slices: int


ProgressCallback = Callable[[Progress], None]
