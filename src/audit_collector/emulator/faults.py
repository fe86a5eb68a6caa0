"""Seeded fault injection: which fault, if any, each request to each emulated API gets."""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Iterable

from audit_collector.emulator.registry import position_faults

FAULTS = (
    "server_error",  # 500/503 with a JSON body
    "html",  # 502 from a "proxy", with an HTML page
    "rate_limit",  # 429 with Retry-After
    "reset",  # the connection is reset before any response
    "disconnect",  # the connection is closed (a clean close, no reset) before any response
    "truncated",  # headers promise more body than is sent, then the connection closes
    "slow",  # the answer comes after slow_seconds (a read timeout for an impatient client)
)
# Besides these, each API has a fault that rejects a paging position (``EmulatedApi.position_fault``:
# Slack's ``invalid_cursor``, Asana's ``expired_offset``); it only hits requests that carry one.


def known_faults() -> tuple[str, ...]:
    """Every fault a plan may name: the shared ones, then each registered API's position fault."""
    return FAULTS + position_faults()


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
        self._positions = set(position_faults())
        unknown = set(rates or {}) - set(FAULTS) - self._positions
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}; known: {known_faults()}")
        self.rates = dict(rates or {})
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self._rng = random.Random(seed)
        self._scripted: defaultdict[str, deque[str]] = defaultdict(deque)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def allow(self, positions: Iterable[str]) -> None:
        """Position faults of APIs served beyond the registry's (a test's own API)."""
        with self._lock:
            self._positions.update(positions)

    def script(self, api: str, *faults: str) -> None:
        """The next requests to ``api`` (a provider's name) get these faults, in order."""
        for fault in faults:
            if fault not in FAULTS and fault not in self._positions:
                raise ValueError(f"unknown fault {fault!r}; known: {FAULTS + tuple(sorted(self._positions))}")
        with self._lock:
            self._scripted[api].extend(faults)

    def draw(self, api: str, *, has_position: bool, position: str = "") -> str | None:
        """The fault for the next request to ``api``, whose own position fault is ``position``."""
        with self._lock:
            scripted = self._scripted[api]
            if scripted and scripted[0] in self._positions and not has_position:
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
            if fault in self._positions and (fault != position or not has_position):
                return None  # another API's position fault, or a request without a position
            if fault is not None:
                self.injected[fault] += 1
            return fault
