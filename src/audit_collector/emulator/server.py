"""A local HTTP/1.1 stand-in for both audit log APIs, on loopback only.

    with Emulator() as emu:
        emu.slack.add(events)
        client = AuditLogsClient(token=emu.slack_token, base_url=emu.slack_base_url)

Never imported by production code paths: the CLI's ``demo`` starts it, tests and benchmarks use it.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import json
import math
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from audit_collector.emulator.data import Org, asana_events, slack_events
from audit_collector.emulator.faults import FaultPlan, TokenBucket
from audit_collector.emulator.stores import AsanaLog, BadRequest, SlackLog

ASANA_PATH = re.compile(r"^/api/1\.0/workspaces/([^/]+)/audit_log_events$")
SLACK_STATIC = ("schemas", "actions")
HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
SLACK_STATUS = {
    "missing_authentication": 401,
    "invalid_authentication": 401,
    "feature_not_enabled": 403,
    "rate_limited": 429,
}


def _static(name: str) -> bytes:
    return (Path(__file__).with_name("static") / f"{name}.json").read_bytes()


@dataclass(frozen=True)
class EmulatedApi:
    """What a caller needs to collect one emulated API, and to fill it with generated events."""

    name: str
    base_url: str
    token: str
    options: dict[str, str]
    add: Callable[..., None]  # add(events, lag=seconds)
    generate: Callable[..., list[dict[str, Any]]]  # generate(org, start_s, end_s, count, seed=)
    demo_per_day: int
    demo_lag: float  # seconds before a new event is visible, in the demo


def _asana_seconds(org: Org, start: float, end: float, count: int, seed: int = 1) -> list[dict[str, Any]]:
    return asana_events(org, int(start * 1000), int(end * 1000), count, seed=seed)


class Emulator:
    """Both APIs on one loopback port, started and stopped from Python (a context manager)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        slack_tokens: Iterable[str] = ("xoxp-emulator",),
        slack_tokens_without_feature: Iterable[str] = (),
        asana_tokens: Iterable[str] = ("asana-emulator-token",),
        asana_workspaces: Iterable[str] = ("1200000000000001",),
        faults: FaultPlan | None = None,
        latency: float = 0.0,
        connect_latency: float = 0.0,
        slack_calls_per_minute: float | None = None,
        asana_calls_per_minute: float | None = None,
        rate_limit_burst: float | None = None,
        cursor_ttl: float | None = None,
        offset_ttl: float | None = None,
        slack_split_seconds: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
            raise ValueError(f"the emulator binds to loopback only, not {host!r}")
        self.slack = SlackLog(split_seconds=slack_split_seconds)  # False: a page never splits a second
        self.asana = AsanaLog()
        self.slack_tokens = set(slack_tokens)
        self.slack_tokens_without_feature = set(slack_tokens_without_feature)
        self.asana_tokens = set(asana_tokens)
        self.asana_workspaces = set(asana_workspaces)
        self.faults = faults or FaultPlan()
        self.latency = latency
        self.connect_latency = connect_latency
        self.limiters = {
            api: TokenBucket(rate, rate_limit_burst) if rate else None
            for api, rate in (("slack", slack_calls_per_minute), ("asana", asana_calls_per_minute))
        }
        self.cursor_ttl = cursor_ttl
        self.offset_ttl = offset_ttl
        self.clock = clock
        self.stats: Counter[tuple[str, int]] = Counter()
        self.request_log: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def slack_base_url(self) -> str:
        return f"{self.base_url}/audit/v1/"

    @property
    def asana_base_url(self) -> str:
        return f"{self.base_url}/api/1.0/"

    @property
    def slack_token(self) -> str:
        return sorted(self.slack_tokens)[0]

    @property
    def asana_token(self) -> str:
        return sorted(self.asana_tokens)[0]

    @property
    def workspace_gid(self) -> str:
        return sorted(self.asana_workspaces)[0]

    def api(self, name: str) -> EmulatedApi:
        """One emulated API, as a provider's descriptor names it (``Descriptor.emulator``)."""
        if name == "slack":
            return EmulatedApi(name, self.slack_base_url, self.slack_token, {}, self.slack.add, slack_events, 12_000, 0)
        if name == "asana":
            options = {"workspace_gid": self.workspace_gid}
            return EmulatedApi(
                name, self.asana_base_url, self.asana_token, options, self.asana.add, _asana_seconds, 4_000, 5
            )
        raise KeyError(f"the emulator serves no API named {name!r}")

    def start(self) -> Emulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def calls(self, api: str | None = None) -> int:
        """How many data requests (logs / audit_log_events) reached the emulator."""
        return sum(1 for r in self.request_log if r["data"] and (api is None or r["api"] == api))

    # -- one request

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        match = ASANA_PATH.match(parts.path)
        if parts.path.startswith("/audit/v1/"):
            api, endpoint = "slack", parts.path.removeprefix("/audit/v1/").strip("/")
        elif match:
            api, endpoint = "asana", "audit_log_events"
        else:
            return self._send(handler, "none", 404, b'{"errors":[{"message":"Not found"}]}', params)
        data = endpoint in ("logs", "audit_log_events")
        if self.latency:
            time.sleep(self.latency)
        if api == "slack" and endpoint in SLACK_STATIC:
            return self._send(handler, api, 200, _static(endpoint), params)
        if api == "slack" and endpoint != "logs":
            return self._slack_error(handler, "bad_endpoint", params, status=404)
        fault = self.faults.draw(api, has_position=bool(params.get("cursor") or params.get("offset")))
        if fault is not None and self._inject(handler, api, fault, params):
            return
        token = handler.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        now = self.clock()
        if api == "slack":
            if not token:
                return self._slack_error(handler, "missing_authentication", params)
            if token in self.slack_tokens_without_feature:
                return self._slack_error(handler, "feature_not_enabled", params)
            if token not in self.slack_tokens:
                return self._slack_error(handler, "invalid_authentication", params)
            if self._rate_limited(handler, api, now, params):
                return
            try:
                body = self.slack.page(params, now, self.cursor_ttl)
            except BadRequest as exc:
                return self._slack_error(handler, exc.code, params, status=exc.status)
            return self._send(handler, api, 200, body, params, data=data)
        if token not in self.asana_tokens:
            return self._asana_error(handler, 401, "Not Authorized", params)
        if match.group(1) not in self.asana_workspaces:
            return self._asana_error(handler, 404, "workspace: Not a recognized ID", params)
        if self._rate_limited(handler, api, now, params):
            return
        try:
            body = self.asana.page(params, now, self.offset_ttl)
        except BadRequest as exc:
            return self._asana_error(handler, exc.status, exc.code, params)
        return self._send(handler, api, 200, body, params, data=data)

    def _rate_limited(self, handler: BaseHTTPRequestHandler, api: str, now: float, params: dict) -> bool:
        limiter = self.limiters[api]
        wait = limiter.take(now) if limiter else 0.0
        if not wait:
            return False
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        if api == "slack":
            self._slack_error(handler, "rate_limited", params, headers=headers)
        else:
            message = "You've made too many requests and hit a rate limit. Please retry after the given time."
            self._asana_error(handler, 429, message, params, headers=headers)
        return True

    def _inject(self, handler: BaseHTTPRequestHandler, api: str, fault: str, params: dict) -> bool:
        """Carry out a fault. True when the request is answered (or dropped) by it."""
        if fault == "slow":
            time.sleep(self.faults.slow_seconds)
            return False
        if fault == "server_error":
            body = (
                b'{"ok":false,"error":"internal_error"}'
                if api == "slack"
                else (b'{"errors":[{"message":"Server Error","phrase":"6 sad squid snuggle softly"}]}')
            )
            self._send(handler, api, 503, body, params, fault=fault)
        elif fault == "html":
            self._send(handler, api, 502, HTML_PAGE, params, content_type="text/html", fault=fault)
        elif fault == "rate_limit":
            headers = {"Retry-After": self.faults.retry_after}
            if api == "slack":
                self._slack_error(handler, "rate_limited", params, headers=headers, fault=fault)
            else:
                self._asana_error(handler, 429, "You've made too many requests.", params, headers, fault=fault)
        elif fault == "invalid_cursor":
            self._slack_error(handler, "invalid_cursor", params, status=400, fault=fault)
        elif fault == "expired_offset":
            message = "offset: Your pagination token has expired or is invalid"
            self._asana_error(handler, 400, message, params, fault=fault)
        elif fault == "reset":
            self._log(api, 0, params, fault)
            _reset(handler)
        elif fault == "disconnect":
            self._log(api, 0, params, fault)
            handler.close_connection = True  # nothing written: the client reads end-of-stream, no status line
        elif fault == "truncated":
            self._log(api, 200, params, fault)
            body = b'{"ok":true,"entries":[{"id":"cut-short","date_create":1' + b" " * 200
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body) * 4))
            handler.end_headers()
            handler.wfile.write(body)
            handler.wfile.flush()
            _reset(handler)
        return True

    # -- answers

    def _slack_error(
        self,
        handler,
        code: str,
        params: dict,
        *,
        status: int | None = None,
        headers: dict | None = None,
        fault: str | None = None,
    ) -> None:
        body = json.dumps({"ok": False, "error": code}).encode()
        self._send(
            handler,
            "slack",
            status or SLACK_STATUS.get(code, 400),
            body,
            params,
            headers=headers,
            fault=fault,
        )

    def _asana_error(
        self,
        handler,
        status: int,
        message: str,
        params: dict,
        headers: dict | None = None,
        fault: str | None = None,
    ) -> None:
        body = json.dumps({"errors": [{"message": message, "help": "See https://developers.asana.com/docs/errors"}]})
        self._send(handler, "asana", status, body.encode(), params, headers=headers, fault=fault)

    def _send(
        self,
        handler,
        api: str,
        status: int,
        body: bytes,
        params: dict,
        *,
        headers: dict | None = None,
        content_type: str = "application/json; charset=utf-8",
        fault: str | None = None,
        data: bool = False,
    ) -> None:
        self._log(api, status, params, fault, data=data or status != 200)
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _log(self, api: str, status: int, params: dict, fault: str | None, *, data: bool = True) -> None:
        with self._lock:
            self.stats[(api, status)] += 1
            self.request_log.append(
                {
                    "api": api,
                    "status": status,
                    "params": dict(params),
                    "fault": fault,
                    "data": data and api != "none",
                    "at": time.time(),  # when it was answered (benchmarks chart calls over time)
                }
            )


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Close with RST, as a dropped connection looks to the client."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()


def _handler_for(emulator: Emulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
        server_version = "audit-emulator"
        disable_nagle_algorithm = True  # headers and body go out at once, as from a real API

        def setup(self) -> None:
            super().setup()
            if emulator.connect_latency:
                time.sleep(emulator.connect_latency)  # TCP and TLS set-up

        def do_GET(self) -> None:
            try:
                emulator.handle(self)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a read timeout): nothing to answer

        def finish(self) -> None:
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read request_log instead
            pass

        def date_time_string(self, timestamp: float | None = None) -> str:
            """The Date header from the emulator's own clock, as an API's clock that may differ
            from the caller's."""
            return email.utils.formatdate(emulator.clock() if timestamp is None else timestamp, usegmt=True)

    return Handler
