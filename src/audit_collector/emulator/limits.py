"""The emulator's rate limiter: a token bucket per API, as the real APIs meter calls."""

from __future__ import annotations

import threading


class TokenBucket:
    """``per_minute`` calls a minute, with bursts up to ``burst``. Answers how long to wait."""

    def __init__(self, per_minute: float, burst: float | None = None) -> None:
        self.rate = per_minute / 60.0
        self.capacity = burst if burst is not None else max(1.0, per_minute / 60.0)
        self.tokens = self.capacity
        self.updated: float | None = None
        self._lock = threading.Lock()

    def take(self, now: float) -> float:
        """0 if a call may go now (and takes its token), else the seconds until one may."""
        with self._lock:
            if self.updated is not None:
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate
