"""A run's tunables and its time budget."""

from __future__ import annotations

from dataclasses import dataclass

from audit_collector.errors import BudgetExhausted
from audit_collector.http.clock import Clock
from audit_collector.storage.archive import DEFAULT_MAX_OBJECT_BYTES


@dataclass(frozen=True)
class Settings:
    """Tunables of one provider's run, with the defaults the Lambda uses. ``None`` fields take the
    provider's own value from its descriptor (``Descriptor.fill``)."""

    settle_seconds: int = 120
    initial_lookback_days: float = 7
    http_timeout: float = 30
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    write_reserve_seconds: float = 15.0  # kept back for the last object write and checkpoint
    lease_margin_seconds: float = 30.0  # a crashed run's lease outlives its deadline by this much
    max_window_restarts: int = 3  # expired cursors or offsets in a row (without progress) before the run gives up
    page_limit: int | None = None  # events per request (None: the API's largest page)
    calls_per_minute: float | None = None  # the pace (None: the provider's, just under its limit)
    paced: bool = True  # False: no pacing at all (tests that move a fake clock themselves)
    pacing_burst: int | None = None
    backfill_slices: int | None = None  # backfill jobs fetched at once (None: the provider's)
    # The late-event sweep (collector/sweep.py): re-read each closed window this long after it ended,
    # once per entry (empty: no sweep); at this share of the provider's pace, for at most this long a run.
    sweep_after_seconds: tuple[float, ...] = ()
    sweep_share: float = 0.25
    sweep_seconds: float = 120.0


class Budget:
    """The invocation's time, on the monotonic clock. Knows whether one more request fits."""

    def __init__(self, clock: Clock, seconds: float, *, reserve_seconds: float, request_seconds: float) -> None:
        self.clock = clock
        self.deadline = clock.monotonic() + seconds
        self.reserve_seconds = reserve_seconds
        self.request_seconds = request_seconds

    @classmethod
    def for_run(cls, clock: Clock, seconds: float, settings: Settings) -> Budget:
        """A run's budget: ``seconds`` from now, keeping back what the settings say a request and the
        last write need."""
        return cls(
            clock, seconds, reserve_seconds=settings.write_reserve_seconds, request_seconds=settings.http_timeout
        )

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
