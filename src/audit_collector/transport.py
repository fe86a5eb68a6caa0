"""The one place ``requests`` is used: a pooled session, the retry loop, and token redaction.

Both API clients inherit from ``ApiTransport``. Third-party errors are translated here, once, into
the neutral ``OSError`` types of ``http_retry`` so retry handlers never see ``requests``.
"""

from __future__ import annotations

import logging
import platform
import sys
from collections.abc import Mapping
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .http_retry import (
    Clock,
    ConnectTimeoutError,
    HttpRequest,
    HttpResponse,
    ReadTimeoutError,
    RequestPacer,
    RetryHandler,
    RetryState,
    SystemClock,
    TransportError,
    TruncatedBodyError,
    default_retry_handlers,
)

REDACTED = "Bearer [redacted]"


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy safe to log: the Authorization value never leaves this function."""
    return {k: (REDACTED if k.lower() == "authorization" else v) for k, v in headers.items()}


def describe_body(body: bytes, content_type: str | None) -> str:
    """A short, printable excerpt of a body for an error message."""
    text = body[:160].decode("utf-8", errors="replace").replace("\n", " ").strip()
    return f"{content_type or 'no content type'}, {len(body)} bytes: {text!r}"


def _builtin_oserror_in_chain(exc: BaseException) -> OSError | None:
    """The first plain ``OSError`` (a reset, a refusal) wrapped anywhere inside a requests error."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and type(item).__module__ == "builtins" and item is not exc:
            return item
        stack.extend(item.args)
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None)])
    return None


def translate_transport_error(exc: requests.RequestException) -> OSError:
    """Map a requests failure to the neutral error a retry handler sees. The cause stays chained."""
    if isinstance(exc, requests.ConnectTimeout):
        error: OSError = ConnectTimeoutError(f"connect timeout: {exc}")
    elif isinstance(exc, requests.ReadTimeout):
        error = ReadTimeoutError(f"read timeout: {exc}")
    elif isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        # The headers came, the body did not all come. Keep the errno of a reset, if that was why.
        cause = _builtin_oserror_in_chain(exc)
        error = TruncatedBodyError(cause.errno if cause else None, f"response body cut short: {exc}")
    elif (builtin := _builtin_oserror_in_chain(exc)) is not None:
        error = builtin
    else:
        error = TransportError(str(exc))
    error.__cause__ = exc
    return error


class ApiTransport:
    """Session, headers, timeouts and the retry loop shared by every provider's client."""

    def __init__(
        self,
        *,
        token: str | None,
        base_url: str,
        timeout: float = 30,
        proxy: str | None = None,
        session: requests.Session | None = None,
        default_headers: Mapping[str, str] | None = None,
        user_agent_prefix: str | None = None,
        user_agent_suffix: str | None = None,
        logger: logging.Logger | None = None,
        retry_handlers: list[RetryHandler] | None = None,
        clock: Clock | None = None,
        pacer: RequestPacer | None = None,
    ) -> None:
        self.token = token
        self.pacer = pacer
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout
        self.proxy = proxy
        self.default_headers = dict(default_headers or {})
        self.user_agent = _user_agent(user_agent_prefix, user_agent_suffix)
        self.logger = logger or logging.getLogger(type(self).__module__)
        self.retry_handlers = retry_handlers if retry_handlers is not None else default_retry_handlers()
        self.clock = clock or SystemClock()
        self.session = session or _pooled_session(self.base_url)
        # Counted for metrics: the collector reports retries and 429s per run.
        self.stats = {"requests": 0, "retries": 0, "rate_limited": 0}

    def __repr__(self) -> str:  # never show the token, even in a debugger or a traceback
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {
            "User-Agent": self.user_agent,
            "Accept": "application/json",
            "Accept-Encoding": requests.utils.DEFAULT_ACCEPT_ENCODING,  # JSON pages gzip to a fraction
        }
        headers.update(self.default_headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def send(self, request: HttpRequest) -> HttpResponse:
        """Perform ``request`` until it succeeds or no retry handler wants another attempt.

        Returns any HTTP response, including non-2xx ones: the client decides what is an error.
        Raises the neutral ``OSError`` when the last attempt got no response at all.
        """
        state = RetryState(clock=self.clock)
        while True:
            state.next_attempt_requested = False
            response: HttpResponse | None = None
            error: OSError | None = None
            try:
                response = self._perform(request)
            except requests.RequestException as exc:
                error = translate_transport_error(exc)
                self.logger.debug("%s %s failed: %r", request.method, request.url, error)
            for handler in self.retry_handlers:
                if handler.can_retry(state=state, request=request, response=response, error=error):
                    self.stats["retries"] += 1
                    if response is not None and response.status_code == 429:
                        self.stats["rate_limited"] += 1
                    handler.prepare_for_next_attempt(state=state, request=request, response=response, error=error)
                    state.count_retry(handler)
                    break
            if state.next_attempt_requested:
                continue
            if response is not None and response.status_code == 429:
                self.stats["rate_limited"] += 1
            if error is not None:
                raise error
            assert response is not None
            return response

    def _perform(self, request: HttpRequest) -> HttpResponse:
        if self.pacer is not None:
            self.pacer.wait(self.clock)
        self.stats["requests"] += 1
        if self.logger.isEnabledFor(logging.DEBUG):
            query = f"?{urlencode(request.query_params)}" if request.query_params else ""
            self.logger.debug(
                "Sending %s %s%s headers=%s",
                request.method,
                request.url,
                query,
                redact_headers(request.headers),
            )
        raw = self.session.send(
            _prepare(request),
            stream=True,
            timeout=(min(10.0, self.timeout), self.timeout),
            proxies={"http": self.proxy, "https": self.proxy} if self.proxy else self.session.proxies,
            verify=self.session.verify,
            cert=self.session.cert,
        )
        with raw:
            # Read the whole body here, so a truncated one is a transport error; in 1 MiB reads, as
            # requests' own 10 KiB ones cost ~800 system calls per 9,999-event page.
            body = b"".join(raw.iter_content(1 << 20))
        response = HttpResponse(
            status_code=raw.status_code,
            headers=dict(raw.headers.lower_items()),
            body=body,
            url=raw.url,
        )
        self.logger.debug("Received %s from %s (%d bytes)", response.status_code, request.url, len(response.body))
        return response


def _prepare(request: HttpRequest) -> requests.PreparedRequest:
    """requests' own PreparedRequest, built directly. ``Session.request`` would merge settings,
    cookies and hooks and parse the URL again on every call: bench_cost's figure for 100-event pages went from
    26.9 to 22.1 s per million events without it. The URL needs no more work: the clients quote
    paths and queries, and urllib3 still encodes anything left."""
    prepared = requests.PreparedRequest()
    prepared.method = request.method.upper()
    prepared.url = request.url
    if request.query_params:
        prepared.url += ("&" if "?" in request.url else "?") + urlencode(request.query_params)
    prepared.prepare_headers(request.headers)
    prepared.prepare_body(dict(request.body_params) if request.body_params else None, None)
    return prepared


def _pooled_session(base_url: str) -> requests.Session:
    """Keep-alive connections, reused across pages, with the environment's proxies (HTTPS_PROXY,
    NO_PROXY) read once here: requests would re-read them and ~/.netrc on every request, which
    costs more CPU than parsing a 100-event page (measured)."""
    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


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
