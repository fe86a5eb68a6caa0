"""What both strategies share: settings, the time budget, the lease, and write-then-checkpoint.

The one rule that makes the archive exactly-once: an object is written (under a deterministic
name) *before* the checkpoint that moves past its events is saved. A crash between the two leaves
a checkpoint that leads the next run to the same name, which it overwrites.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..archive import DEFAULT_MAX_OBJECT_BYTES, ArchiveWriter, ObjectBuffer, object_key
from ..errors import BudgetExhausted
from ..http_retry import Clock
from ..state import CheckpointStore, Lease, LeaseHeld


@dataclass(frozen=True)
class Settings:
    """Tunables, with the defaults the Lambda uses."""

    settle_seconds: int = 120
    initial_lookback_days: float = 7
    http_timeout: float = 30
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    slack_page_limit: int = 9999
    asana_page_limit: int = 100
    write_reserve_seconds: float = 15.0  # kept back for the last object write and checkpoint
    lease_margin_seconds: float = 30.0  # a crashed run's lease outlives its deadline by this much
    max_window_restarts: int = 3  # invalid cursors in a row before the run gives up


class Budget:
    """The invocation's time, on the monotonic clock. Knows whether one more request fits."""

    def __init__(self, clock: Clock, seconds: float, *, reserve_seconds: float, request_seconds: float) -> None:
        self.clock = clock
        self.deadline = clock.monotonic() + seconds
        self.reserve_seconds = reserve_seconds
        self.request_seconds = request_seconds

    def remaining(self) -> float:
        return self.deadline - self.clock.monotonic()

    def allows(self, seconds: float = 0.0) -> bool:
        """True if ``seconds`` of waiting, then one request, then the final write all still fit."""
        return self.remaining() - self.reserve_seconds - self.request_seconds >= seconds


class BudgetedClock(Clock):
    """The clock the API clients get: it refuses a retry wait that would overrun the budget."""

    def __init__(self, clock: Clock, budget: Budget) -> None:
        self._clock = clock
        self.budget = budget

    def time(self) -> float:
        return self._clock.time()

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def sleep(self, seconds: float) -> None:
        if not self.budget.allows(seconds):
            raise BudgetExhausted(
                f"a retry wait of {seconds:.1f}s would overrun the time budget "
                f"({self.budget.remaining():.1f}s left); stopping at the last checkpoint"
            )
        self._clock.sleep(seconds)


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
        return out


class Run:
    """One provider's run: holds the lease, writes objects, saves checkpoints, counts."""

    def __init__(
        self,
        *,
        provider: str,
        store: CheckpointStore,
        archive: ArchiveWriter,
        prefix: str,
        lease: Lease,
        settings: Settings,
        clock: Clock,
        budget: Budget,
    ) -> None:
        self.provider = provider
        self.store = store
        self.archive = archive
        self.prefix = prefix
        self.lease = lease
        self.settings = settings
        self.clock = clock
        self.budget = budget
        self.result = RunResult(provider)
        # Fixed once: a run collects up to where real time stood when it started, then stops.
        # (Planning against a moving "now" would chase the clock in ever thinner windows.)
        self.started_at = clock.time()

    @property
    def checkpoint(self) -> dict[str, Any]:
        return self.lease.checkpoint

    def new_buffer(self) -> ObjectBuffer:
        return ObjectBuffer(self.settings.max_object_bytes)

    def key(self, dt: str, window_id: str, part: int) -> str:
        return object_key(self.prefix, self.provider, dt, f"{window_id}-p{part:05d}")

    def write(self, key: str, buffer: ObjectBuffer) -> None:
        """First half of the rule: the object, under its deterministic name."""
        self.archive.put(key, buffer.finish())
        self.result.objects_written += 1
        self.result.events_written += buffer.events

    def save(self, checkpoint: dict[str, Any]) -> None:
        """Second half: the checkpoint, conditional on the lease and the version."""
        self.store.save(self.lease, checkpoint)


class Source(Protocol):
    """An ordering strategy: Slack's forward windows, or Asana's oldest-first stream."""

    provider: str

    def collect(self, run: Run) -> bool:
        """Collect until caught up (True) or out of budget (False). Raises on API errors."""

    def behind_seconds(self, checkpoint: dict[str, Any], now: float) -> float | None:
        """How far the archive trails real time."""

    def stats(self) -> dict[str, int]:
        """The client's request, retry and 429 counters."""


def collect(
    source: Source,
    *,
    store: CheckpointStore,
    archive: ArchiveWriter,
    prefix: str,
    settings: Settings,
    clock: Clock,
    budget: Budget,
    owner: str | None = None,
) -> RunResult:
    """Run one provider under its lease. Raises what the source raises (after releasing the lease)."""
    owner = owner or uuid.uuid4().hex
    now = clock.time()
    expires_at = now + budget.remaining() + settings.lease_margin_seconds
    try:
        lease = store.acquire(source.provider, owner=owner, expires_at=expires_at, now=now)
    except LeaseHeld as held:
        return RunResult(source.provider, status="lease_held", message=str(held))
    run = Run(
        provider=source.provider,
        store=store,
        archive=archive,
        prefix=prefix,
        lease=lease,
        settings=settings,
        clock=clock,
        budget=budget,
    )
    before = source.stats()
    try:
        run.result.complete = source.collect(run)
    finally:
        store.release(lease)
        after = source.stats()
        run.result.retries = after["retries"] - before["retries"]
        run.result.rate_limited = after["rate_limited"] - before["rate_limited"]
        run.result.checkpoint = lease.checkpoint
        run.result.behind_seconds = source.behind_seconds(lease.checkpoint, clock.time())
    return run.result


def utc_date(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d")


def end_of_utc_day(epoch_seconds: int) -> int:
    """The last second of the UTC day holding ``epoch_seconds``."""
    return epoch_seconds - epoch_seconds % 86400 + 86399


def iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
