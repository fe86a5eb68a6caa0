"""A local HTTP/1.1 stand-in for the audit log APIs, on loopback only.

    with Emulator() as emu:
        emu.slack.add(events)
        client = AuditLogsClient(token=emu.slack.token, base_url=emu.slack.base_url)

The server is the same for every API: routing by path prefix, latency, seeded faults, rate limits,
the request log. Each API is its own module (``emulator/slack.py``, ``emulator/asana.py``), named by
its provider's descriptor (``Descriptor.emulator``) and mounted here from the registry. Never imported
by production code paths: the CLI's ``demo`` starts it, tests and benchmarks use it.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import math
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from audit_collector.emulator.api import Answer, EmulatedApi, Request
from audit_collector.emulator.faults import FAULTS, FaultPlan
from audit_collector.emulator.registry import api_classes

HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
NOT_FOUND = Answer(404, b'{"errors":[{"message":"Not found"}]}')
TRUNCATED = b'{"events":[{"id":"cut-short","time":1' + b" " * 200  # promised 4x as long, then cut


class Emulator:
    """Every registered API on one loopback port, started and stopped from Python (a context manager).

    Each API is reached by its name (``emu.slack``, ``emu.api("asana")``). Its settings come as a
    keyword named after it: ``Emulator(slack={"tokens": ["xoxp-a"], "calls_per_minute": 60})``; or pass
    ``apis=[...]`` to serve exactly those (a provider defined in the tests brings its own).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        apis: Iterable[EmulatedApi] | None = None,
        faults: FaultPlan | None = None,
        latency: float = 0.0,
        connect_latency: float = 0.0,
        rate_limit_burst: float | None = None,
        clock: Callable[[], float] = time.time,
        **settings: dict[str, Any],
    ) -> None:
        if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
            raise ValueError(f"the emulator binds to loopback only, not {host!r}")
        if apis is None:
            classes = api_classes()
            unknown = sorted(set(settings) - set(classes))
            if unknown:
                raise TypeError(f"the emulator serves no API named {unknown}; it serves {sorted(classes)}")
            apis = [
                cls(**{"rate_limit_burst": rate_limit_burst, **settings.get(name, {})}) for name, cls in classes.items()
            ]
        elif settings or rate_limit_burst is not None:
            raise TypeError(
                "settings by name and rate_limit_burst apply to the APIs the emulator builds; pass them to yours"
            )
        self.apis: dict[str, EmulatedApi] = check_apis(list(apis))
        self.faults = faults or FaultPlan()
        self.faults.mount({api.name: api.position_fault for api in self.apis.values()})
        self.latency = latency
        self.connect_latency = connect_latency
        self.clock = clock
        self.stats: Counter[tuple[str, int]] = Counter()
        self.request_log: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        for api in self.apis.values():
            api.mount(self.base_url)

    def __getattr__(self, name: str) -> EmulatedApi:
        apis = self.__dict__.get("apis", {})
        if name in apis:
            return apis[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r} (its APIs: {sorted(apis)})")

    def api(self, name: str) -> EmulatedApi:
        """One emulated API by its provider's name."""
        try:
            return self.apis[name]
        except KeyError:
            raise KeyError(f"the emulator serves no API named {name!r}; it serves {sorted(self.apis)}") from None

    # -- lifecycle

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

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
        """How many data requests (pages of events, and refusals) reached the emulator."""
        return sum(1 for r in self.request_log if r["data"] and (api is None or r["api"] == api))

    # -- one request

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        api = next((a for a in self.apis.values() if parts.path.startswith(a.prefix)), None)
        path = parts.path.removeprefix(api.prefix) if api is not None else ""
        if api is None or not api.routes(path):
            return self._send(handler, "none", NOT_FOUND, params)
        authorization = handler.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ").strip()
        request = Request(path, params, token, self.clock(), authorization)
        if self.latency:
            time.sleep(self.latency)
        answer = api.early(request)
        if answer is not None:
            return self._send(handler, api.name, answer, params)
        fault = self.faults.draw(
            api.name, has_position=bool(params.get(api.position_param)), position=api.position_fault
        )
        if fault is not None and self._inject(handler, api, fault, params):
            return
        request = replace(request, now=self.clock())  # after any delay: what the API sees as it answers
        answer = api.refuse(request) or self._rate_limited(api, request.now) or api.page(request)
        return self._send(handler, api.name, answer, params)

    def _rate_limited(self, api: EmulatedApi, now: float) -> Answer | None:
        wait = api.limiter.take(now) if api.limiter else 0.0
        return api.rate_limited(str(max(1, math.ceil(wait)))) if wait else None

    def _inject(self, handler: BaseHTTPRequestHandler, api: EmulatedApi, fault: str, params: dict) -> bool:
        """Carry out a fault. True when the request is answered (or dropped) by it."""
        if fault == "slow":
            time.sleep(self.faults.slow_seconds)
            return False
        answers = {
            "server_error": api.server_error,
            "html": lambda: Answer(502, HTML_PAGE, content_type="text/html"),
            "rate_limit": lambda: api.rate_limited(self.faults.retry_after, injected=True),
            api.position_fault: api.position_rejected,
        }
        if fault in answers:
            self._send(handler, api.name, answers[fault](), params, fault=fault)
        elif fault == "reset":
            self._log(api.name, 0, params, fault)
            _reset(handler)
        elif fault == "disconnect":
            self._log(api.name, 0, params, fault)
            handler.close_connection = True  # nothing written: the client reads end-of-stream, no status line
        elif fault == "truncated":
            self._log(api.name, 200, params, fault)
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(TRUNCATED) * 4))
            handler.end_headers()
            handler.wfile.write(TRUNCATED)
            handler.wfile.flush()
            _reset(handler)
        return True

    # -- answers

    def _send(self, handler, api: str, answer: Answer, params: dict, *, fault: str | None = None) -> None:
        self._log(api, answer.status, params, fault, data=answer.data or answer.status != 200)
        handler.send_response(answer.status)
        handler.send_header("Content-Type", answer.content_type)
        handler.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(answer.body)

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


def check_apis(apis: list[EmulatedApi]) -> dict[str, EmulatedApi]:
    """The APIs by name, once each, on prefixes that cannot take each other's requests."""
    by_name = {api.name: api for api in apis}
    if len(by_name) != len(apis):
        raise ValueError(f"two APIs share a name: {sorted(a.name for a in apis)}")
    for api in apis:
        if not (api.prefix.startswith("/") and api.prefix.endswith("/") and len(api.prefix) > 1):
            raise ValueError(f"{api.name}: a prefix starts and ends with '/' and is not '/' alone, not {api.prefix!r}")
        if api.position_fault in FAULTS:
            raise ValueError(f"{api.name}: its position fault {api.position_fault!r} is a fault every API has")
        clash = [other.name for other in apis if other is not api and other.prefix.startswith(api.prefix)]
        if clash:
            raise ValueError(f"{api.name}'s prefix {api.prefix!r} would take the requests of {clash}")
    faults = [api.position_fault for api in apis]
    if len(set(faults)) != len(faults):
        raise ValueError(f"two APIs share a position fault: {sorted(faults)}")
    return by_name


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
