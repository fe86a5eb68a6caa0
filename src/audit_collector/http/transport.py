"""The one place ``requests`` is used: a pooled session, the retry loop, and token redaction.

Both API clients inherit from ``ApiTransport``. Third-party errors are translated here, once, into
the neutral ``OSError`` types of ``http_retry`` so retry handlers never see ``requests``.
"""

from __future__ import annotations

import http.client
import ssl
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from audit_collector.http.base import REDACTED, Attempts, TransportBase, describe_body, query_string, redact_headers
from audit_collector.http.clock import Clock, SystemClock
from audit_collector.http.messages import (
    ConnectTimeoutError,
    HttpRequest,
    HttpResponse,
    ReadTimeoutError,
    ServerDisconnectedError,
    TransportError,
    TruncatedBodyError,
)
from audit_collector.http.retry import RetryHandler, default_retry_handlers

__all__ = ["REDACTED", "ApiTransport", "describe_body", "redact_headers", "translate_transport_error"]


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every error wrapped inside it (args, causes, contexts, urllib3's ``reason``), outermost first."""
    seen: list[BaseException] = []
    stack: list[object] = [exc]
    while stack:
        item = stack.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        stack.extend(item.args)
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None)])
    return seen


def _builtin_oserror_in_chain(exc: BaseException) -> OSError | None:
    """The first plain ``OSError`` (a reset, a refusal) wrapped anywhere inside a requests error."""
    return next(
        (e for e in _chain(exc)[1:] if isinstance(e, OSError) and type(e).__module__ == "builtins"),
        None,
    )


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
    elif any(isinstance(e, http.client.RemoteDisconnected) for e in _chain(exc)):
        error = ServerDisconnectedError(f"server closed the connection without a response: {exc}")
    else:
        error = TransportError(str(exc))
    error.__cause__ = exc
    return error


class ApiTransport(TransportBase):
    """The requests session and the sync retry loop shared by every provider's client."""

    accept_encoding = requests.utils.DEFAULT_ACCEPT_ENCODING

    def _default_retry_handlers(self) -> list[RetryHandler]:
        return default_retry_handlers()

    def _default_clock(self) -> Clock:
        return SystemClock()

    def _adopt_session(self, session: requests.Session | None) -> requests.Session:
        if session is not None and self.ssl is not None:
            raise ValueError(
                "pass ssl= or session=, not both: a session of yours keeps its own TLS settings "
                "(mount an HTTPAdapter that uses your SSLContext on it, or set session.verify to a CA bundle)"
            )
        return session or _pooled_session(self.base_url, self.ssl)

    def close(self) -> None:
        self.session.close()

    def send(self, request: HttpRequest) -> HttpResponse:
        """Perform ``request`` until it succeeds or no retry handler wants another attempt.

        Returns any HTTP response, including non-2xx ones: the client decides what is an error.
        Raises the neutral ``OSError`` when the last attempt got no response at all.
        """
        attempts = Attempts(request, self.clock, self.stats)
        while True:
            response: HttpResponse | None = None
            error: OSError | None = None
            try:
                response = self._perform(request)
            except requests.RequestException as exc:
                error = translate_transport_error(exc)
                self._log_failed(request, error)
            question = attempts.question(response, error)
            handler = next((h for h in self.retry_handlers if h.can_retry(**question)), None)
            if handler is None:
                return attempts.outcome()
            attempts.state.wait(attempts.retry_with(handler))

    def _perform(self, request: HttpRequest) -> HttpResponse:
        if self.pacer is not None:
            self.pacer.wait(self.clock)
        self._log_sending(request)
        raw = self.session.send(
            _prepare(request),
            stream=True,
            timeout=(min(10.0, self.timeout), self.timeout),
            proxies={"http": self.proxy, "https": self.proxy} if self.proxy else self.session.proxies,
            verify=self.session.verify if self.ssl is None else self.ssl.verify_mode != ssl.CERT_NONE,
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
        self._log_received(request, response)
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
        prepared.url += ("&" if "?" in request.url else "?") + query_string(request.query_params)
    prepared.prepare_headers(request.headers)
    prepared.prepare_body(dict(request.body_params) if request.body_params else None, None)
    return prepared


def _pooled_session(base_url: str, ssl_context: ssl.SSLContext | None = None) -> requests.Session:
    """Keep-alive connections, reused across pages, with the environment's proxies (HTTPS_PROXY,
    NO_PROXY) read once here: requests would re-read them and ~/.netrc on every request, which
    costs more CPU than parsing a 100-event page (measured). ``ssl_context`` (the clients' ``ssl=``)
    decides which servers are trusted, in place of requests' CA bundle."""
    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    session.trust_env = False
    adapter = OriginAdapter(pool_connections=4, pool_maxsize=16, max_retries=0, ssl_context=ssl_context)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class OriginAdapter(HTTPAdapter):
    """requests' adapter, through the two methods it offers for subclassing, for clients that call
    one API origin many times a second: without a proxy, the connection pool and the request
    target are found from the URL's origin by a dict lookup, where requests parses the URL (and
    looks for a proxy) three times a request. With a proxy, requests' own behaviour.

    With an ``ssl_context``, every TLS connection (to the API, or to it through a proxy) uses that
    context, and no CA bundle is loaded into it: what it trusts is what the caller configured."""

    def __init__(self, *args: Any, ssl_context: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        self.ssl_context = ssl_context  # before super().__init__, which builds the pool manager
        super().__init__(*args, **kwargs)
        self._pools: dict[tuple[str, Any, Any], Any] = {}

    def init_poolmanager(self, *args: Any, **pool_kwargs: Any) -> None:
        if self.ssl_context is not None:
            pool_kwargs["ssl_context"] = self.ssl_context
        super().init_poolmanager(*args, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        if self.ssl_context is not None:
            proxy_kwargs["ssl_context"] = self.ssl_context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        if self.ssl_context is not None:  # requests would load its CA bundle into the caller's context
            conn.ca_certs = conn.ca_cert_dir = None

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        if proxies:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        key = (_origin(request.url or ""), verify, cert if not isinstance(cert, list) else tuple(cert))
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # a closed pool is asked for again
            if len(self._pools) >= 64:  # a client calls one origin; never grow without bound
                self._pools.clear()
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            self._pools[key] = pool
        return pool

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        if proxies:
            return super().request_url(request, proxies)
        url = request.url or ""
        target = url[len(_origin(url)) :].split("#", 1)[0]
        return target if target.startswith("/") else f"/{target}"

    def close(self) -> None:
        self._pools.clear()
        super().close()


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of an absolute URL."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0]}"
