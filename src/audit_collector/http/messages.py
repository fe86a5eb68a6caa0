"""What a retry handler sees of a request: transport-neutral requests, responses and errors.

Errors are plain ``OSError`` subclasses, never ``requests`` or aiohttp types, so a handler works
whatever the transport; each transport translates its own errors into these at one boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class TransportError(ConnectionError):
    """The request did not get a complete HTTP response (an ``OSError``, so ``socket.error`` too)."""


class ConnectTimeoutError(TransportError, TimeoutError):
    """No connection within the connect timeout."""


class ReadTimeoutError(TransportError, TimeoutError):
    """Connected, but the server did not answer within the read timeout."""


class ServerDisconnectedError(TransportError, ConnectionResetError):
    """The server closed the connection without answering (no status line came back).

    Also a ``ConnectionResetError``, as the standard library's ``http.client.RemoteDisconnected`` is,
    so a handler written for slack_sdk (``isinstance(error, (ConnectionResetError, RemoteDisconnected))``)
    retries it. ``errno`` is None, as there: the peer closed, nothing reported an errno.
    """


class TruncatedBodyError(TransportError):
    """The connection closed before the whole body arrived (fewer bytes than Content-Length)."""


@dataclass(frozen=True)
class HttpRequest:
    """What was sent, without the transport's types. ``headers`` never holds the token in logs."""

    method: str
    url: str
    query_params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body_params: Mapping[str, object] | None = None


@dataclass(frozen=True)
class HttpResponse:
    """What came back. Header names are lower-cased so lookups need no care about case."""

    status_code: int
    headers: Mapping[str, str]
    body: bytes
    url: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())
