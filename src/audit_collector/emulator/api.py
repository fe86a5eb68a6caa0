"""What one emulated API is: the part of the emulator a provider brings, in its own module.

The server (``server.py``) owns what every API shares: the loopback socket, routing by path prefix,
latency, the seeded faults, the rate limiter and the request log. An ``EmulatedApi`` owns only what
is the API's own: its paths, its token and resource checks, its paging, and the shape of its error
bodies. A provider's descriptor names the module (``Descriptor.emulator``), and the module's ``API``
is the class the emulator mounts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from audit_collector.emulator.limits import TokenBucket
from audit_collector.emulator.org import Org


@dataclass(frozen=True)
class Request:
    """One request, as an API sees it: its path below the API's prefix, query and bearer token."""

    path: str
    params: dict[str, str]
    token: str  # the bearer token; "" when the request carries none
    now: float  # the emulator's clock
    authorization: str = ""  # the header as sent, for an API that checks its scheme


@dataclass(frozen=True)
class Answer:
    """What the emulator writes back. ``data``: a page of events (``Emulator.calls`` counts them)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"
    data: bool = False


class EmulatedApi:
    """The base of every emulated API. Subclasses set the class attributes and the four answers."""

    name: ClassVar[str]  # the provider's name: the fault plan and the request log use it
    prefix: ClassVar[str]  # the path the API is served under, e.g. "/audit/v1/"
    default_tokens: ClassVar[tuple[str, ...]]
    position_param: ClassVar[str]  # the query parameter that carries a paging position
    position_fault: ClassVar[str]  # the fault name for "the API refuses that position"
    demo_per_day: ClassVar[int] = 1_000  # events a demo day holds
    demo_lag: ClassVar[float] = 0.0  # seconds before a new event is visible, in the demo

    def __init__(
        self,
        *,
        tokens: tuple[str, ...] | list[str] | None = None,
        calls_per_minute: float | None = None,
        rate_limit_burst: float | None = None,
    ) -> None:
        self.tokens = set(tokens if tokens is not None else self.default_tokens)
        self.limiter = TokenBucket(calls_per_minute, rate_limit_burst) if calls_per_minute else None
        self.base_url = ""  # set when the emulator mounts it

    @property
    def token(self) -> str:
        """A token the API accepts."""
        return sorted(self.tokens)[0]

    @property
    def options(self) -> dict[str, str]:
        """The provider options (by ``Option.name``) a collector needs for this API, beyond the token."""
        return {}

    def mount(self, root_url: str) -> None:
        self.base_url = root_url + self.prefix

    # -- the API's own answers

    def routes(self, path: str) -> bool:
        """Whether a path below the prefix is the API's at all (False: the server's plain 404)."""
        return True

    def early(self, request: Request) -> Answer | None:
        """An answer given before faults, token checks and rate limits (fixed documents, unknown
        endpoints), or None."""
        return None

    def refuse(self, request: Request) -> Answer | None:
        """The API's answer to a bad token or an unknown resource, or None to go on."""
        raise NotImplementedError

    def page(self, request: Request) -> Answer:
        raise NotImplementedError

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
        """An error in the API's own body shape."""
        raise NotImplementedError

    def server_error(self) -> Answer:
        return self.error(503, "internal_error")

    def rate_limited(self, retry_after: str, *, injected: bool = False) -> Answer:
        """A 429: from the API's limiter, or ``injected`` by the ``rate_limit`` fault."""
        return self.error(429, "rate_limited", {"Retry-After": retry_after})

    def position_rejected(self) -> Answer:
        raise NotImplementedError

    # -- events

    @staticmethod
    def encode(event: dict[str, Any]) -> bytes:
        """An event's JSON text as the API writes it (the archive must keep exactly these bytes)."""
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()

    def add(self, events: Any, visible_at: float | None = None, lag: float = 0.0) -> None:
        """Serve more events; each becomes visible at ``visible_at`` (default: its own time + ``lag``)."""
        raise NotImplementedError

    def generate(self, org: Org, start: float, end: float, count: int, seed: int = 1) -> list[dict[str, Any]]:
        """``count`` realistic events dated in ``[start, end)`` (epoch seconds): the demo and
        ``python -m audit_collector.emulator`` fill the API with them."""
        raise NotImplementedError(f"{type(self).__name__} generates no events: the demo needs generate()")
