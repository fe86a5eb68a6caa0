"""The third provider's emulated API (a Zoom/Okta-like shape): its emulator module, as a new source
brings one. The fake descriptor names it (``emulator="tests.fake_audit_api"``), so ``Emulator()``
mounts it beside the built-in APIs while the provider is registered.

``GET /fakeaudit/v1/events?tenant=T&since=<ms>&until=<ms>&after=<uuid>&limit=N`` with ``Authorization: Bearer
<token>`` answers ``{"events": [...], "next": <uuid> | null}``: the tenant's events with
``since <= time < until``, oldest first (ties by uuid), after the event ``after`` names. ``next`` is
the uuid of the page's last event while more follow. Each event's ``time`` is epoch milliseconds,
as an integer for some events and an ISO 8601 string for others (the API's documented drift).
401 for a bad token, 404 for an unknown tenant, 400 for a bad parameter or an unknown cursor.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

from audit_collector.emulator import Answer, EmulatedApi, Emulator, Org, Request

MAX_LIMIT = 100


def event_ms(event: dict[str, Any]) -> int:
    """An event's instant in epoch milliseconds, whichever form its ``time`` takes."""
    value = event["time"]
    if isinstance(value, int):
        return value
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return round(when.timestamp() * 1000)


def make_events(start_ms: int, end_ms: int, count: int, *, tenant: str = "t1", seed: str = "a") -> list[dict]:
    """``count`` events spread evenly over ``[start_ms, end_ms)``; every other one dated by an ISO string."""
    step = (end_ms - start_ms) / max(count, 1)
    out = []
    for i in range(count):
        ms = start_ms + int(i * step)
        iso = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
        out.append(
            {
                "uuid": f"{seed}-{i:06d}",
                "time": ms if i % 2 == 0 else iso,
                "type": ("user.signed_in", "user.signed_out", "file.downloaded")[i % 3],
                "actor": {"id": f"u{i % 7}", "email": f"user{i % 7}@{tenant}.example"},
                "tenant": tenant,
            }
        )
    return out


class FakeAuditEmulated(EmulatedApi):
    """The API under ``/fakeaudit/``; ``tenant`` is the one tenant it knows."""

    name = "fakeaudit"
    prefix = "/fakeaudit/"
    default_tokens = ("fake-audit-token",)
    position_param = "after"
    position_fault = "unknown_cursor"
    demo_per_day = 2_000

    def __init__(self, *, tenant: str = "t1", **common: Any) -> None:
        super().__init__(**common)
        self.tenant = tenant
        self._events: list[tuple[int, str, dict, float]] = []  # (ms, uuid, event, visible from)
        self._lock = threading.Lock()
        self.requests: list[dict[str, str]] = []  # the query of every authorized request

    @property
    def options(self) -> dict[str, str]:
        return {"tenant": self.tenant}

    def refuse(self, request: Request) -> Answer | None:
        if not any(request.authorization == f"Bearer {token}" for token in self.tokens):
            return self.error(401, "invalid token")  # the scheme too: a bare token is refused
        return None if request.path == "v1/events" else self.error(404, f"no route {request.path}")

    def page(self, request: Request) -> Answer:
        self.requests.append(dict(request.params))
        status, body = self.answer(request.params, request.now)
        return Answer(status, json.dumps(body).encode(), data=True)

    def answer(self, query: dict[str, str], now: float = float("inf")) -> tuple[int, dict]:
        if query.get("tenant") != self.tenant:
            return 404, {"error": f"no tenant {query.get('tenant')!r}"}
        try:
            since, until = int(query["since"]), int(query["until"])
            limit = int(query.get("limit", MAX_LIMIT))
        except (KeyError, ValueError):
            return 400, {"error": "since and until (epoch ms) are required; limit is an integer"}
        if not 1 <= limit <= MAX_LIMIT or since >= until:
            return 400, {"error": f"limit must be 1..{MAX_LIMIT} and since before until"}
        with self._lock:
            matching = [(ms, uuid, e) for ms, uuid, e, seen in self._events if since <= ms < until and seen <= now]
        after = query.get("after")
        if after is not None:
            at = next((i for i, (_, uuid, _) in enumerate(matching) if uuid == after), None)
            if at is None:
                return 400, {"error": f"unknown cursor {after!r}"}
            matching = matching[at + 1 :]
        page = [e for _, _, e in matching[:limit]]
        return 200, {"events": page, "next": page[-1]["uuid"] if len(matching) > limit else None}

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
        return Answer(status, json.dumps({"error": message}).encode(), headers or {})

    def position_rejected(self) -> Answer:
        return self.error(400, "unknown cursor")

    @staticmethod
    def encode(event: dict[str, Any]) -> bytes:
        return json.dumps(event).encode()  # as ``page`` writes it: Python's default separators

    def add(self, events: list[dict], visible_at: float | None = None, lag: float = 0.0) -> None:
        """Serve more events; each is visible from ``visible_at`` (default: its own time + ``lag``)."""
        with self._lock:
            self._events.extend(
                (event_ms(e), e["uuid"], e, event_ms(e) / 1000 + lag if visible_at is None else visible_at)
                for e in events
            )
            self._events.sort(key=lambda item: item[:2])

    def generate(self, org: Org, start: float, end: float, count: int, seed: int = 1) -> list[dict[str, Any]]:
        return make_events(int(start * 1000), int(end * 1000), count, tenant=self.tenant, seed=f"s{seed}")


API = FakeAuditEmulated


class FakeAuditApi:
    """The API alone on an emulator, as a context manager: ``base_url`` while it runs, ``add`` to
    serve more events, ``requests`` the queries it answered."""

    def __init__(self, token: str = "fake-audit-token", tenant: str = "t1") -> None:
        self.token, self.tenant = token, tenant
        self.api = FakeAuditEmulated(tokens=[token], tenant=tenant)
        self.emulator = Emulator(apis=[self.api])
        self.base_url = self.api.base_url
        self.requests = self.api.requests
        self.add = self.api.add

    def __enter__(self) -> FakeAuditApi:
        self.emulator.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()
