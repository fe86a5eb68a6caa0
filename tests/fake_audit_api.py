"""A tiny audit API for the third provider's tests, on 127.0.0.1 only (a Zoom/Okta-like shape).

``GET /v1/events?tenant=T&since=<ms>&until=<ms>&after=<uuid>&limit=N`` with ``Authorization: Bearer
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
    step = (end_ms - start_ms) / count
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


class FakeAuditApi:
    """The server, as a context manager: ``base_url`` while it runs, ``add`` to serve more events."""

    def __init__(self, token: str = "fake-audit-token", tenant: str = "t1") -> None:
        self.token, self.tenant = token, tenant
        self._events: list[tuple[int, str, dict]] = []
        self._lock = threading.Lock()
        self.requests: list[dict[str, str]] = []  # the query of every authorized request
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def add(self, events: list[dict]) -> None:
        with self._lock:
            self._events.extend((event_ms(e), e["uuid"], e) for e in events)
            self._events.sort(key=lambda item: item[:2])

    def __enter__(self) -> FakeAuditApi:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def page(self, query: dict[str, str]) -> tuple[int, dict]:
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
            matching = [(ms, uuid, e) for ms, uuid, e in self._events if since <= ms < until]
        after = query.get("after")
        if after is not None:
            at = next((i for i, (_, uuid, _) in enumerate(matching) if uuid == after), None)
            if at is None:
                return 400, {"error": f"unknown cursor {after!r}"}
            matching = matching[at + 1 :]
        page = [e for _, _, e in matching[:limit]]
        return 200, {"events": page, "next": page[-1]["uuid"] if len(matching) > limit else None}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    status, body = 401, {"error": "invalid token"}
                elif url.path != "/v1/events":
                    status, body = 404, {"error": f"no route {url.path}"}
                else:
                    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                    api.requests.append(query)
                    status, body = api.page(query)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        return Handler
