"""What the sync (requests) and async (aiohttp) transports share: settings, headers, token
redaction, request logging and metrics counts. No I/O library is imported here."""

from __future__ import annotations

import email.utils
import functools
import logging
import platform
import sys
from collections.abc import Mapping
from ssl import SSLContext
from typing import Any
from urllib.parse import urlencode

from audit_collector import __version__
from audit_collector.http.clock import RequestPacer, TimeSource
from audit_collector.http.messages import HttpRequest, HttpResponse
from audit_collector.http.retry import RetryHandler, RetryQuestion, RetryState

REDACTED = "Bearer [redacted]"


def query_string(params: Any) -> str:
    """A query string with ``:`` left as it is (RFC 3986 allows it in a query): the ISO times of
    Asana's ``start_at``/``end_at`` then need no percent-encoding, so urllib3 checks the URL in one
    pass instead of re-encoding it byte by byte on every request."""
    return urlencode(params, safe=":")


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy safe to log: the Authorization value never leaves this function."""
    return {k: (REDACTED if k.lower() == "authorization" else v) for k, v in headers.items()}


def describe_body(body: bytes, content_type: str | None) -> str:
    """A short, printable excerpt of a body for an error message."""
    text = body[:160].decode("utf-8", errors="replace").replace("\n", " ").strip()
    return f"{content_type or 'no content type'}, {len(body)} bytes: {text!r}"


def all_filters(filters: Mapping[str, Any], names: tuple[str, ...], where: str) -> dict[str, Any]:
    """Every filter ``names`` lists (None when not given); a name it does not list is a TypeError,
    as an unknown keyword argument is."""
    unknown = sorted(set(filters) - set(names))
    if unknown:
        raise TypeError(f"{where}() got unexpected keyword arguments: {', '.join(unknown)}")
    return {name: filters.get(name) for name in names}


class TransportBase:
    """Settings, headers, logging and counts shared by ``ApiTransport`` and ``AsyncApiTransport``."""

    accept_encoding = "gzip, deflate"
    default_base_url = ""  # each API's client names its own

    def __init__(
        self,
        token: str | None = None,
        timeout: float = 30,
        proxy: str | None = None,
        base_url: str | None = None,
        session: Any = None,
        default_headers: Mapping[str, str] | None = None,
        user_agent_prefix: str | None = None,
        user_agent_suffix: str | None = None,
        logger: logging.Logger | None = None,
        retry_handlers: list[RetryHandler] | None = None,
        clock: TimeSource | None = None,
        pacer: RequestPacer | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        """The one parameter list of all four clients. ``session`` is a ``requests.Session`` (sync)
        or an ``aiohttp.ClientSession`` (async); ``clock`` a ``Clock`` or an ``AsyncClock``;
        ``ssl`` an ``ssl.SSLContext`` deciding which servers are trusted (a corporate CA, say)."""
        base_url = base_url or self.default_base_url
        if not base_url:
            raise ValueError(f"{type(self).__name__} needs a base_url")
        if isinstance(proxy, SSLContext):  # slack_sdk's third positional parameter is ssl; ours is proxy
            raise TypeError(f"{type(self).__name__}'s third parameter is proxy: pass the SSLContext as ssl=")
        if ssl is not None and not isinstance(ssl, SSLContext):
            raise TypeError(
                f"ssl must be an ssl.SSLContext, got {type(ssl).__name__}; "
                "for a CA bundle file use ssl.create_default_context(cafile=path)"
            )
        self.ssl = ssl
        self.token = token
        self.pacer = pacer
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout
        self.proxy = proxy
        self.default_headers = dict(default_headers or {})
        self.user_agent = _user_agent(user_agent_prefix, user_agent_suffix)
        self.logger = logger or logging.getLogger(type(self).__module__)
        self.retry_handlers = retry_handlers if retry_handlers is not None else self._default_retry_handlers()
        self.clock = clock or self._default_clock()
        self.session = self._adopt_session(session)
        # Counted for metrics: the collector reports retries and 429s per run.
        self.stats = {"requests": 0, "retries": 0, "rate_limited": 0}
        # How far this host's clock is ahead of the API's (seconds, from the last response's Date
        # header; None before the first response). The collector refuses to plan past the API's now.
        self.clock_skew: float | None = None

    def _default_retry_handlers(self) -> list[RetryHandler]:
        raise NotImplementedError

    def _default_clock(self) -> TimeSource:
        raise NotImplementedError

    def _adopt_session(self, session: Any) -> Any:
        """The caller's session, or this transport's own (opened now or on first use)."""
        raise NotImplementedError

    def __repr__(self) -> str:  # never show the token, even in a debugger or a traceback
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {
            "User-Agent": self.user_agent,
            "Accept": "application/json",
            "Accept-Encoding": self.accept_encoding,  # JSON pages gzip to a fraction
        }
        headers.update(self.default_headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def _log_sending(self, request: HttpRequest) -> None:
        self.stats["requests"] += 1
        if self.logger.isEnabledFor(logging.DEBUG):
            query = f"?{query_string(request.query_params)}" if request.query_params else ""
            self.logger.debug(
                "Sending %s %s%s headers=%s", request.method, request.url, query, redact_headers(request.headers)
            )

    def _log_received(self, request: HttpRequest, response: HttpResponse) -> None:
        self.logger.debug("Received %s from %s (%d bytes)", response.status_code, request.url, len(response.body))
        served_at = _http_date(response.header("Date"))
        if served_at is not None:
            # The header has whole seconds, truncated: the API's clock may be up to a second later.
            self.clock_skew = self.clock.time() - (served_at + 1.0)

    def _log_failed(self, request: HttpRequest, error: OSError) -> None:
        self.logger.debug("%s %s failed: %r", request.method, request.url, error)


class Attempts:
    """One request's retry loop without its I/O, shared by the sync and async transports.

    The transports perform each attempt and each wait; what to ask the handlers, how long the chosen
    one waits, the counts for metrics and what the caller finally gets are decided here, once.
    """

    def __init__(self, request: HttpRequest, clock: TimeSource, stats: dict[str, int]) -> None:
        self.request = request
        self.stats = stats
        self.state = RetryState(clock=clock)
        self.response: HttpResponse | None = None
        self.error: OSError | None = None

    def question(self, response: HttpResponse | None, error: OSError | None) -> RetryQuestion:
        """Record an attempt's result; returns the keyword arguments each handler is asked with."""
        self.state.next_attempt_requested = False
        self.response, self.error = response, error
        return {"state": self.state, "request": self.request, "response": response, "error": error}

    def retry_with(self, handler: RetryHandler) -> float:
        """``handler`` said yes: count the retry and return the seconds to wait before the next attempt."""
        self.stats["retries"] += 1
        if self.response is not None and self.response.status_code == 429:
            self.stats["rate_limited"] += 1
        seconds = handler.plan_next_attempt(
            state=self.state, request=self.request, response=self.response, error=self.error
        )
        self.state.count_retry(handler)
        return seconds

    def outcome(self) -> HttpResponse:
        """No handler retries: the last response (any status), or the last transport error raised."""
        if self.response is not None and self.response.status_code == 429:
            self.stats["rate_limited"] += 1
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


def _user_agent(prefix: str | None, suffix: str | None) -> str:
    python = f"Python/{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    parts = [
        prefix,
        f"audit-collector/{__version__}",
        python,
        f"{platform.system()}/{platform.release()}",
        suffix,
    ]
    return " ".join(p for p in parts if p)


@functools.lru_cache(maxsize=4)
def _http_date(value: str | None) -> float | None:
    """An HTTP ``Date`` header as epoch seconds; None when absent or unreadable. Cached: the header
    changes once a second, and a backfill reads many pages a second."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
