"""The one place ``aiohttp`` is used: a pooled ``ClientSession``, the awaited retry loop.

Everything but the I/O is shared with the sync transport: headers, redaction and counts
(``transport_base``), the retry decision (``Attempts`` and the handlers' ``plan_next_attempt``),
and the clients' query building and response parsing. Needs ``pip install 'audit-collector[async]'``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp

from audit_collector.http.async_retry import AsyncClock, SystemAsyncClock, ask_async, async_default_retry_handlers
from audit_collector.http.base import Attempts, TransportBase
from audit_collector.http.messages import (
    ConnectTimeoutError,
    HttpRequest,
    HttpResponse,
    ReadTimeoutError,
    ServerDisconnectedError,
    TransportError,
    TruncatedBodyError,
)
from audit_collector.http.retry import RetryHandler

F = TypeVar("F", bound=Callable[..., Any])


def mirrors(sync_method: Callable[..., Any]) -> Callable[[F], F]:
    """Give an async method the signature and docstring of its sync counterpart: one parameter list,
    declared once, shown by ``help()`` and IDEs for both clients."""

    def decorate(method: F) -> F:
        method.__signature__ = inspect.signature(sync_method)  # type: ignore[attr-defined]
        method.__doc__ = sync_method.__doc__
        return method

    return decorate


def translate_aiohttp_error(exc: BaseException) -> OSError:
    """Map an aiohttp failure to the neutral error a retry handler sees. The cause stays chained."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        error: OSError = ConnectTimeoutError(f"connect timeout: {exc}")
    elif isinstance(exc, TimeoutError):  # aiohttp's read timeouts are ones too
        error = ReadTimeoutError(f"read timeout: {exc}")
    elif isinstance(exc, aiohttp.ClientPayloadError):
        cause = next((e for e in _chain(exc) if type(e).__module__ == "builtins" and isinstance(e, OSError)), None)
        error = TruncatedBodyError(cause.errno if cause else None, f"response body cut short: {exc}")
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        error = ServerDisconnectedError(f"server closed the connection without a response: {exc}")
    elif isinstance(exc, aiohttp.ClientConnectorError) and type(exc.os_error).__module__ == "builtins":
        error = exc.os_error
    elif isinstance(exc, OSError) and exc.errno is not None:  # ClientOSError: keep its errno (104, …)
        builtin = next((e for e in _chain(exc) if type(e).__module__ == "builtins"), None)
        error = builtin if isinstance(builtin, OSError) else ConnectionResetError(exc.errno, str(exc))
    else:
        error = TransportError(str(exc) or type(exc).__name__)
    error.__cause__ = exc
    return error


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    item: BaseException | None = exc
    while item is not None and item not in seen:
        seen.append(item)
        item = item.__cause__ or item.__context__
    return [*seen, *(a for a in exc.args if isinstance(a, BaseException))]


def environ_proxy(url: str) -> str | None:
    """The proxy HTTPS_PROXY/HTTP_PROXY name for ``url``, unless NO_PROXY exempts its host."""
    from requests.utils import get_environ_proxies, urlparse

    return get_environ_proxies(url).get(urlparse(url).scheme)


AUTH_REFUSED = (
    "auth= is not supported: the token is sent as an 'Authorization: Bearer' header, which aiohttp "
    "will not combine with auth= (slack_sdk's client fails on every request with both). For a proxy "
    "that asks for credentials, put them in its URL: proxy='http://user:password@host:port'; for "
    "another Authorization scheme, pass token=None and default_headers={'Authorization': ...}"
)


def _plus_keywords(signature: inspect.Signature, **defaults: Any) -> inspect.Signature:
    """``signature`` with keyword-only parameters added at its end."""
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=d) for name, d in defaults.items()]
    return signature.replace(parameters=[*signature.parameters.values(), *added])


class AsyncApiTransport(TransportBase):
    """One keep-alive ``aiohttp.ClientSession`` (the caller's, or one opened on first use and closed
    by ``close()`` or ``async with``) and the awaited retry loop."""

    def __init__(self, *args: Any, auth: Any = None, trust_env_in_session: bool = False, **kwargs: Any) -> None:
        """``TransportBase``'s parameters, and two of slack_sdk's async client:
        ``trust_env_in_session=True`` opens the session with aiohttp's ``trust_env`` (proxies from
        the environment, as always, and credentials from ~/.netrc); ``auth=`` is refused (AUTH_REFUSED)."""
        if auth is not None:
            raise TypeError(AUTH_REFUSED)
        self.trust_env_in_session = bool(trust_env_in_session)
        super().__init__(*args, **kwargs)
        if self.trust_env_in_session and not self._owns_session:
            raise ValueError(
                "trust_env_in_session applies to the session this client opens: "
                "open yours with aiohttp.ClientSession(trust_env=True) instead"
            )

    # help() and IDEs show TransportBase's parameters, then the two above.
    __init__.__signature__ = _plus_keywords(  # type: ignore[attr-defined]
        inspect.signature(TransportBase.__init__), auth=None, trust_env_in_session=False
    )

    def _default_retry_handlers(self) -> list[RetryHandler]:
        return async_default_retry_handlers()

    def _default_clock(self) -> AsyncClock:
        return SystemAsyncClock()

    def _adopt_session(self, session: aiohttp.ClientSession | None) -> aiohttp.ClientSession | None:
        self._owns_session = session is None
        self._loop: asyncio.AbstractEventLoop | None = None
        return session

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client opened it; a caller's session stays open."""
        if self._owns_session and self.session is not None:
            await self.session.close()
            self.session = None

    def _session(self) -> aiohttp.ClientSession:
        """Opened on first use, inside the running loop: aiohttp binds a session to its loop, so a
        session of ours left on a finished loop (an earlier ``asyncio.run``) is replaced."""
        loop = asyncio.get_running_loop()
        if self.session is None or (self._owns_session and (self.session.closed or self._loop is not loop)):
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=16, keepalive_timeout=30),
                # Proxies are read once (below); ~/.netrc, in a thread on every request, only if asked.
                trust_env=self.trust_env_in_session,
            )
            # Our retry handlers are the only retries: aiohttp's silent one would skip the pacer and the counts.
            if hasattr(self.session, "_retry_connection"):  # aiohttp >= 3.10; older ones do not retry
                self.session._retry_connection = False
            self._owns_session, self._loop = True, loop
            if self.proxy is None:
                self.proxy = environ_proxy(self.base_url)
        return self.session

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Perform ``request`` until it succeeds or no retry handler wants another attempt.

        Returns any HTTP response (the client decides what is an error); raises the neutral
        ``OSError`` when the last attempt got no response at all.
        """
        attempts = Attempts(request, self.clock, self.stats)
        while True:
            response: HttpResponse | None = None
            error: OSError | None = None
            if self.pacer is not None:  # outside the try: a clock refusing the wait is no transport error
                await attempts.state.wait_async(self.pacer.reserve(self.clock))
            try:
                response = await self._perform(request)
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = translate_aiohttp_error(exc)
                self._log_failed(request, error)
            question = attempts.question(response, error)
            handler = None
            for candidate in self.retry_handlers:
                if await ask_async(candidate, question):
                    handler = candidate
                    break
            if handler is None:
                return attempts.outcome()
            await attempts.state.wait_async(attempts.retry_with(handler))

    async def _perform(self, request: HttpRequest) -> HttpResponse:
        self._log_sending(request)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, self.timeout), sock_read=self.timeout)
        async with self._session().request(
            request.method,
            request.url,
            params=dict(request.query_params) or None,
            headers=dict(request.headers),
            data=dict(request.body_params) if request.body_params else None,
            proxy=self.proxy,
            timeout=timeout,
            ssl=self.ssl if self.ssl is not None else True,
        ) as raw:
            body = await raw.read()
            response = HttpResponse(
                status_code=raw.status,
                headers={k.lower(): v for k, v in raw.headers.items()},
                body=body,
                url=str(raw.url),
            )
        self._log_received(request, response)
        return response
