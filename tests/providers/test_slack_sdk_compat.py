"""What a slack_sdk user's code relies on, against servers on 127.0.0.1: a custom retry handler
written in slack_sdk's style retries a server that closes the connection without answering (sync and
async); ``ssl=`` takes an ``ssl.SSLContext`` (a local TLS server, a CA made here with trustme);
``auth=`` is refused with what to use instead; ``trust_env_in_session=`` means what it means there."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import ssl
import threading
import warnings
from http.client import RemoteDisconnected
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import pytest
import requests
import trustme

from audit_collector.emulator import Emulator, FaultPlan
from audit_collector.http_retry import (
    AsyncRetryHandler,
    FixedValueRetryIntervalCalculator,
    RetryHandler,
    ServerDisconnectedError,
    TransportError,
)
from audit_collector.slack import AsyncAuditLogsClient, AuditLogsClient

from ..http.test_async_clients import FakeAsyncClock
from ..support import FakeClock

# ------------------------------------------------------------------ a server that closes without answering


class SlackSdkStyleHandler(RetryHandler):
    """As slack_sdk's docs write a custom handler: retry what the stdlib calls a dropped connection."""

    def __init__(self) -> None:
        super().__init__(max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(0.1))
        self.seen: list[Exception | None] = []

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        self.seen.append(error)
        return error is not None and isinstance(error, (ConnectionResetError, RemoteDisconnected))


class SlackSdkStyleAsyncHandler(AsyncRetryHandler, SlackSdkStyleHandler):
    """slack_sdk's async example overrides the awaited question."""

    async def _can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        return self._can_retry(state=state, request=request, response=response, error=error)


@pytest.fixture
def disconnecting():
    """The emulator, closing the connection (a clean close, no reset) on the first request, unanswered."""
    with Emulator(faults=FaultPlan()) as emu:
        emu.faults.script("slack", "disconnect")
        yield emu


def assert_a_disconnect(error: BaseException | None) -> None:
    assert isinstance(error, ServerDisconnectedError)
    assert isinstance(error, ConnectionResetError) and isinstance(error, TransportError)
    assert error.errno is None  # as http.client.RemoteDisconnected's


def test_a_slack_sdk_style_handler_retries_a_server_disconnect(disconnecting):
    handler = SlackSdkStyleHandler()
    client = AuditLogsClient(
        token=disconnecting.slack.token,
        base_url=disconnecting.slack.base_url,
        retry_handlers=[handler],
        clock=FakeClock(),
    )
    assert client.logs().status_code == 200
    assert_a_disconnect(handler.seen[0])
    assert [r["fault"] for r in disconnecting.request_log] == ["disconnect", None]
    assert client.stats["retries"] == 1


def test_async_a_slack_sdk_style_handler_retries_a_server_disconnect(disconnecting):
    handler = SlackSdkStyleAsyncHandler()

    async def main():
        async with AsyncAuditLogsClient(
            token=disconnecting.slack.token,
            base_url=disconnecting.slack.base_url,
            retry_handlers=[handler],
            clock=FakeAsyncClock(),
        ) as client:
            return (await client.logs()).status_code, client.stats["retries"]

    assert asyncio.run(main()) == (200, 1)
    assert_a_disconnect(handler.seen[0])
    assert [r["fault"] for r in disconnecting.request_log] == ["disconnect", None]


def test_the_default_handlers_still_retry_a_disconnect_sync_and_async(disconnecting):
    args = {"token": disconnecting.slack.token, "base_url": disconnecting.slack.base_url}
    sync = AuditLogsClient(**args, clock=FakeClock())
    assert sync.logs().status_code == 200 and sync.stats["retries"] == 1
    disconnecting.faults.script("slack", "disconnect")

    async def main():
        async with AsyncAuditLogsClient(**args, clock=FakeAsyncClock()) as client:
            return (await client.logs()).status_code, client.stats["retries"]

    assert asyncio.run(main()) == (200, 1)
    assert [r["fault"] for r in disconnecting.request_log] == ["disconnect", None, "disconnect", None]


def test_unretried_a_disconnect_reaches_the_caller_as_one_sync_and_async(disconnecting):
    args = {"token": disconnecting.slack.token, "base_url": disconnecting.slack.base_url, "retry_handlers": []}
    with pytest.raises(ServerDisconnectedError) as sync_error:
        AuditLogsClient(**args).logs()
    assert_a_disconnect(sync_error.value)
    assert isinstance(sync_error.value.__cause__, requests.ConnectionError)  # the cause stays chained

    disconnecting.faults.script("slack", "disconnect")

    async def main():
        async with AsyncAuditLogsClient(**args) as client:
            await client.logs()

    with pytest.raises(ServerDisconnectedError) as async_error:
        asyncio.run(main())
    assert_a_disconnect(async_error.value)
    assert isinstance(async_error.value.__cause__, aiohttp.ServerDisconnectedError)


# ------------------------------------------------------------------ a local server, over TLS or not


class LocalSlack:
    """/audit/v1/logs on 127.0.0.1, answering an empty page; records each request's headers."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.headers.append(dict(self.headers))
                body = json.dumps({"ok": True, "entries": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}/audit/v1/"

    def __enter__(self) -> LocalSlack:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_slack(ca):
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    with LocalSlack(tls=server_context) as server:
        yield server


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A context that trusts the test's CA and nothing else (not even the system's CAs)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    return context


def test_ssl_context_decides_which_server_is_trusted(tls_slack, ca):
    context = trusting(ca)
    client = AuditLogsClient(token="xoxp-t", base_url=tls_slack.base_url, ssl=context, retry_handlers=[])
    assert client.logs().status_code == 200
    assert context.cert_store_stats()["x509_ca"] == 1  # requests' CA bundle was not loaded into it
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):  # without it: requests' own CA bundle
        AuditLogsClient(token="xoxp-t", base_url=tls_slack.base_url, retry_handlers=[]).logs()


def test_an_unverifying_ssl_context_is_honoured_too(tls_slack):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    client = AuditLogsClient(token="xoxp-t", base_url=tls_slack.base_url, ssl=context, retry_handlers=[])
    with pytest.warns(Warning):  # urllib3 says the request is unverified
        assert client.logs().status_code == 200


def test_async_ssl_context_decides_which_server_is_trusted(tls_slack, ca):
    async def logs(**kwargs) -> int:
        async with AsyncAuditLogsClient(token="xoxp-t", base_url=tls_slack.base_url, retry_handlers=[], **kwargs) as c:
            return (await c.logs()).status_code

    async def with_own_session() -> int:
        async with aiohttp.ClientSession() as session:
            return await logs(ssl=trusting(ca), session=session)

    assert asyncio.run(logs(ssl=trusting(ca))) == 200
    assert asyncio.run(with_own_session()) == 200
    with pytest.raises(OSError, match="certificate verify failed"):
        asyncio.run(logs())


def test_ssl_errors_say_what_to_do():
    with pytest.raises(TypeError, match=r"ssl.create_default_context\(cafile="):
        AuditLogsClient(token="t", ssl="/etc/ssl/corp-ca.pem")
    with pytest.raises(TypeError, match="pass the SSLContext as ssl="):
        AuditLogsClient("t", 30, ssl.create_default_context())  # slack_sdk's positional order
    with pytest.raises(ValueError, match="ssl= or session=, not both"):
        AuditLogsClient(token="t", ssl=ssl.create_default_context(), session=requests.Session())


# ------------------------------------------------------------------ auth= and trust_env_in_session=


def test_auth_is_refused_with_what_to_use_instead():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # aiohttp 3.14 deprecates BasicAuth itself
        auth = aiohttp.BasicAuth("user", "password")
    with pytest.raises(TypeError, match=r"proxy='http://user:password@host:port'.*default_headers"):
        AsyncAuditLogsClient(token="t", auth=auth)


def test_trust_env_in_session_reads_netrc_as_in_slack_sdk(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login gateway password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))

    async def call(server: LocalSlack, **kwargs) -> None:
        async with AsyncAuditLogsClient(base_url=server.base_url, **kwargs) as client:
            await client.schemas()

    with LocalSlack() as server:
        asyncio.run(call(server))  # the default, as slack_sdk's: the environment's netrc is not read
        asyncio.run(call(server, trust_env_in_session=True))
    basic = "Basic " + base64.b64encode(b"gateway:s3cret").decode()
    assert [h.get("Authorization") for h in server.headers] == [None, basic]


def test_trust_env_in_session_with_a_session_of_yours_says_where_it_belongs():
    async def main():
        async with aiohttp.ClientSession() as session:
            AsyncAuditLogsClient(token="t", session=session, trust_env_in_session=True)

    with pytest.raises(ValueError, match=r"ClientSession\(trust_env=True\)"):
        asyncio.run(main())


def test_the_async_client_shows_every_parameter_it_takes():
    sync = inspect.signature(AuditLogsClient).parameters
    both = inspect.signature(AsyncAuditLogsClient).parameters
    assert list(both) == [*sync, "auth", "trust_env_in_session"]
    assert "ssl" in sync
