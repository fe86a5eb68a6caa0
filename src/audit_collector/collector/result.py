"""What one run did (``RunResult``, as the handler returns it; ``SweepReport``, the late-event sweep's
part of it), and what a progress callback sees."""

from __future__ import annotations

from collections import Counter
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


# How late a late event was, at least: from its own time to when its window closed.
LATENESS_BUCKETS = ((300, "under_5m"), (1800, "5m_30m"), (7200, "30m_2h"), (86400, "2h_24h"))


@dataclass
class SweepReport:
    """What the sweep did in one run: the handler publishes ``given_up`` and ``overdue``, which the stack alarms on."""

    passes: int = 0  # passes finished
    calls: int = 0  # pages asked for
    late_events: int = 0
    given_up: int = 0  # passes that will never run (LateEventsUnchecked)
    overdue: int = 0  # passes due for over an hour, still waiting (SweepOverdue)
    waiting: int = 0  # passes due and not finished when the run ended
    queued: int = 0  # queue entries after the run
    lateness: Counter = field(default_factory=Counter)  # bucket -> events

    @property
    def complete(self) -> bool:
        return self.waiting == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "passes": self.passes,
            "calls": self.calls,
            "late_events": self.late_events,
            "given_up": self.given_up,
            "overdue": self.overdue,
            "waiting": self.waiting,
            "queued": self.queued,
            "lateness": dict(self.lateness),
            "complete": self.complete,
        }


def lateness_bucket(seconds: float) -> str:
    for limit, name in LATENESS_BUCKETS:
        if seconds < limit:
            return name
    return "over_24h"
