"""Seeded fault injection and the rate limiter of the emulator."""

from __future__ import annotations

import random
import threading
from collections import Counter, deque

FAULTS = (
    "server_error",  # 500/503 with a JSON body
    "html",  # 502 from a "proxy", with an HTML page
    "rate_limit",  # 429 with Retry-After
    "reset",  # the connection is reset before any response
    "disconnect",  # the connection is closed (a clean close, no reset) before any response
    "truncated",  # headers promise more body than is sent, then the connection closes
    "slow",  # the answer comes after slow_seconds (a read timeout for an impatient client)
    "invalid_cursor",  # Slack rejects the cursor (only on requests that carry one)
    "expired_offset",  # Asana rejects the offset (only on requests that carry one)
)


class FaultPlan:
    """Which fault, if any, the next request gets: scripted ones first, then seeded random draws."""

    def __init__(
        self,
        seed: int = 0,
        rates: dict[str, float] | None = None,
        *,
        slow_seconds: float = 2.0,
        retry_after: str = "1",
    ) -> None:
        unknown = set(rates or {}) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}; known: {FAULTS}")
        self.rates = dict(rates or {})
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self._rng = random.Random(seed)
        self._scripted: dict[str, deque[str]] = {"slack": deque(), "asana": deque()}
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def script(self, api: str, *faults: str) -> None:
        """The next requests to ``api`` ('slack' or 'asana') get these faults, in order."""
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}")
        with self._lock:
            self._scripted[api].extend(faults)

    def draw(self, api: str, *, has_position: bool) -> str | None:
        with self._lock:
            scripted = self._scripted[api]
            if scripted and scripted[0] in ("invalid_cursor", "expired_offset") and not has_position:
                return None  # a scripted position fault waits for a request that carries one
            if scripted:
                fault = scripted.popleft()
            else:
                fault = None
                roll = self._rng.random()
                for name, rate in self.rates.items():
                    if roll < rate:
                        fault = name
                        break
                    roll -= rate
            if fault in ("invalid_cursor", "expired_offset"):
                wrong_api = (fault == "invalid_cursor") != (api == "slack")
                if wrong_api or not has_position:
                    return None
            if fault is not None:
                self.injected[fault] += 1
            return fault


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
