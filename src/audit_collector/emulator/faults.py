"""Seeded fault injection: which fault, if any, each request to each emulated API gets."""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from collections.abc import Mapping

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
    from audit_collector.emulator.registry import api_faults  # the registry imports every API's module

    return FAULTS + tuple(api_faults().values())


class FaultPlan:
    """Which fault, if any, the next request gets: scripted ones first, then seeded random draws.

    The emulator mounts the plan with its APIs (``mount``); from then on a fault or an API the plan
    does not know is an error, so a typo cannot quietly leave a test without its faults."""

    def __init__(
        self,
        seed: int = 0,
        rates: dict[str, float] | None = None,
        *,
        slow_seconds: float = 2.0,
        retry_after: str = "1",
    ) -> None:
        self.rates = dict(rates or {})
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self._rng = random.Random(seed)
        self._apis: dict[str, str] | None = None  # API name -> its position fault, once mounted
        self._scripted: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def mount(self, apis: Mapping[str, str]) -> None:
        """The APIs the plan serves, each with its position fault. Checks the rates and the script."""
        with self._lock:
            if self._apis is not None and dict(apis) != self._apis:
                raise ValueError("a fault plan serves one emulator")
            self._apis = dict(apis)
            known = self._known()
            unknown = sorted(set(self.rates) - set(known))
            if unknown:
                raise ValueError(f"unknown faults: {unknown}; known: {known}")
            for api, faults in self._scripted.items():
                self._check(api, faults)

    def script(self, api: str, *faults: str) -> None:
        """The next requests to ``api`` (a provider's name) get these faults, in order."""
        with self._lock:
            if self._apis is not None:
                self._check(api, faults)
            self._scripted.setdefault(api, deque()).extend(faults)

    def draw(self, api: str, *, has_position: bool, position: str) -> str | None:
        """The fault for the next request to ``api``, whose own position fault is ``position``."""
        positions = set((self._apis or {}).values())
        with self._lock:
            scripted = self._scripted.get(api) or deque()
            if scripted and scripted[0] in positions and not has_position:
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
            if fault in positions and (fault != position or not has_position):
                return None  # another API's position fault, or a request without a position
            if fault is not None:
                self.injected[fault] += 1
            return fault

    def _known(self) -> tuple[str, ...]:
        return FAULTS + tuple((self._apis or {}).values())

    def _check(self, api: str, faults: tuple[str, ...] | deque[str]) -> None:
        assert self._apis is not None
        if api not in self._apis:
            raise ValueError(f"no API named {api!r} to script faults for; the emulator serves {sorted(self._apis)}")
        for fault in faults:
            if fault not in FAULTS and fault != self._apis[api]:
                raise ValueError(f"unknown fault {fault!r} for {api}; known: {(*FAULTS, self._apis[api])}")
