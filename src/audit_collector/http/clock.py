"""Time in one injectable place: wall time, monotonic time, sleeping, and the pacer that spaces
requests under a published rate limit. Nothing here waits on its own: waits go through a clock,
so tests never sleep and budgets can refuse a wait."""

from __future__ import annotations

import time


class TimeSource:
    """Wall time and monotonic time: what the sync ``Clock`` and the ``AsyncClock`` share."""

    def time(self) -> float:
        """Seconds since the epoch (for ``Retry-After`` dates and event horizons)."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for budgets)."""
        return time.monotonic()


class Clock(TimeSource):
    """Wall time, monotonic time and sleeping, in one injectable place."""

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class SystemClock(Clock):
    """The real clock."""


class RequestPacer:
    """Spaces requests to stay under a published rate limit (``per_minute``), shared by threads.

    Proactive pacing beats reacting to 429s: an org-wide limit is shared by every app,
    and every 429 costs a round trip and a ``Retry-After``. Waits go through the caller's clock.
    """

    def __init__(self, per_minute: float, *, burst: int = 1) -> None:
        import threading

        self.interval = 60.0 / per_minute
        self.burst = burst
        self._next: float | None = None  # the earliest time the next request may start (GCRA)
        self._lock = threading.Lock()

    def reserve(self, clock: TimeSource) -> float:
        """Book the next slot; returns the seconds to wait for it (the sync and async waits share this)."""
        with self._lock:
            now = clock.monotonic()
            slot = now if self._next is None else max(self._next, now)
            delay = max(0.0, slot - now - (self.burst - 1) * self.interval)
            self._next = slot + self.interval
        return delay

    def wait(self, clock: Clock) -> None:
        delay = self.reserve(clock)
        if delay > 0:
            clock.sleep(delay)
