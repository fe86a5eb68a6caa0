"""The async clients against the emulator over loopback: paging, typed bodies, errors, every retry
handler (Retry-After included), custom handlers, sessions, redaction. No test sleeps: waits go
through a fake ``AsyncClock``."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import socket
import subprocess
import sys

import aiohttp
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_collector import http_retry
from audit_collector.asana import AsanaApiError, AsanaAuditLogClient, AsanaBodyError, AsyncAsanaAuditLogClient
from audit_collector.emulator import Emulator, FaultPlan
from audit_collector.errors import ConfigError
from audit_collector.http.async_transport import AsyncApiTransport
from audit_collector.http.transport import ApiTransport
from audit_collector.http_retry import (
    AsyncClock,
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncRetryHandler,
    AsyncServerErrorRetryHandler,
    BackoffRetryIntervalCalculator,
    FixedValueRetryIntervalCalculator,
    HttpRequest,
    HttpResponse,
    Jitter,
    RandomJitter,
    RequestPacer,
    TruncatedBodyError,
    all_builtin_async_retry_handlers,
)
from audit_collector.slack import (
    AsyncAuditLogsClient,
    AuditLogsApiError,
    AuditLogsBodyError,
    AuditLogsClient,
    Entry,
    LogsResponse,
)

from ..emulator.test_emulator import T0, asana_event, entry
from ..support import FakeClock

TOKEN = "fake-async-slack-secret-value"


class FakeAsyncClock(AsyncClock):
    """Time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now, self.mono = 1_800_000_000.0, 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.mono += seconds


OPEN: list = []  # clients made by the helpers below; run() closes them


def slack(emu: Emulator, **kwargs) -> AsyncAuditLogsClient:
    kwargs.setdefault("clock", FakeAsyncClock())
    return opened(AsyncAuditLogsClient(token=emu.slack.token, base_url=emu.slack.base_url, **kwargs))


def asana(emu: Emulator, **kwargs) -> AsyncAsanaAuditLogClient:
    kwargs.setdefault("clock", FakeAsyncClock())
    return opened(AsyncAsanaAuditLogClient(token=emu.asana.token, base_url=emu.asana.base_url, **kwargs))


def opened(client):
    OPEN.append(client)
    return client


def run(awaitable):
    """asyncio.run, then close the sessions the clients opened on that loop (no 'Unclosed' warnings)."""

    async def main():
        try:
            return await awaitable
        finally:
            while OPEN:
                await OPEN.pop().close()

    return asyncio.run(main())


async def collect(aiter) -> list:
    return [page async for page in aiter]


FIXED = FixedValueRetryIntervalCalculator(0.25)


# ------------------------------------------------------------------ the issue's example, paging, typed bodies


def test_the_issue_example_runs_as_written(emulator, monkeypatch):
    emulator.slack.add([entry(i, T0 + i) for i in range(3)])
    monkeypatch.setenv("SLACK_ORG_ADMIN_USER_TOKEN", emulator.slack.token)

    async def main():
        async with AsyncAuditLogsClient(
            token=os.environ["SLACK_ORG_ADMIN_USER_TOKEN"], base_url=emulator.slack.base_url
        ) as client:
            api_response = await client.logs(action="user_login", limit=1)
            return api_response.typed_body

    typed = asyncio.run(main())
    assert isinstance(typed, LogsResponse) and len(typed.entries) == 1
    assert isinstance(typed.entries[0], Entry) and typed.entries[0].action == "user_login"


def test_iter_logs_pages_like_the_sync_client(emulator):
    emulator.slack.add([entry(i, T0 + i) for i in range(25)])
    pages = run(collect(slack(emulator).iter_logs(oldest=T0, latest=T0 + 99, limit=10)))
    sync = list(
        AuditLogsClient(token=emulator.slack.token, base_url=emulator.slack.base_url).iter_logs(
            oldest=T0, latest=T0 + 99, limit=10
        )
    )
    assert [len(p.typed_body.entries) for p in pages] == [10, 10, 5]
    assert [p.body["entries"] for p in pages] == [p.body["entries"] for p in sync]
    assert pages[-1].next_cursor is None


def test_asana_iteration_stops_on_the_first_empty_page(emulator):
    base = T0 * 1000
    emulator.asana.add([asana_event(i, base + i * 1000) for i in range(250)])
    client = asana(emulator)
    pages = run(collect(client.iter_audit_log_events(emulator.asana.workspace_gid, limit=100)))
    assert [len(p.events) for p in pages] == [100, 100, 50]
    assert client.stats["requests"] == 4  # the fourth, empty page ends it although it has a next_page
    gids = [e["gid"] for p in pages for e in p.data]
    assert len(set(gids)) == 250


def test_schemas_and_actions_need_no_token(emulator):
    async def main():
        async with AsyncAuditLogsClient(base_url=emulator.slack.base_url) as client:
            return await client.schemas(), await client.actions()

    schemas, actions = asyncio.run(main())
    assert schemas.typed_body.schemas and actions.typed_body.actions


@pytest.mark.parametrize(
    ("sync", "async_"),
    [
        (AuditLogsClient.logs, AsyncAuditLogsClient.logs),
        (AuditLogsClient.iter_logs, AsyncAuditLogsClient.iter_logs),
        (AuditLogsClient.schemas, AsyncAuditLogsClient.schemas),
        (AuditLogsClient.api_call, AsyncAuditLogsClient.api_call),
        (AsanaAuditLogClient.get_audit_log_events, AsyncAsanaAuditLogClient.get_audit_log_events),
        (AsanaAuditLogClient.iter_audit_log_events, AsyncAsanaAuditLogClient.iter_audit_log_events),
    ],
)
def test_async_methods_take_the_sync_parameters(sync, async_):
    assert inspect.signature(async_) == inspect.signature(sync)
    assert inspect.iscoroutinefunction(async_) or inspect.isasyncgenfunction(async_)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limit": 0}, ConfigError),
        ({"oldest": 10, "latest": 5}, ConfigError),
        ({"action": [f"a{i}" for i in range(31)]}, ConfigError),
        ({"cursor": ""}, ConfigError),
        ({"colour": "red"}, TypeError),
    ],
)
def test_bad_arguments_fail_before_any_request(emulator, kwargs, error):
    with pytest.raises(error):
        run(slack(emulator).logs(**kwargs))
    with pytest.raises(error):
        run(collect(slack(emulator).iter_logs(**kwargs)))
    with pytest.raises(ConfigError, match="actor_type"):
        run(asana(emulator).get_audit_log_events(emulator.asana.workspace_gid, actor_type="robot"))
    assert emulator.calls() == 0


# ------------------------------------------------------------------ errors: the sync clients' classes and messages


def test_invalid_tokens_raise_what_the_sync_clients_raise(emulator):
    with pytest.raises(AuditLogsApiError) as sync_slack:
        AuditLogsClient(token="xoxp-wrong", base_url=emulator.slack.base_url).logs()
    with pytest.raises(AuditLogsApiError) as async_slack:
        run(opened(AsyncAuditLogsClient(token="xoxp-wrong", base_url=emulator.slack.base_url)).logs())
    assert str(async_slack.value) == str(sync_slack.value) and async_slack.value.error == "invalid_authentication"

    gid = emulator.asana.workspace_gid
    with pytest.raises(AsanaApiError) as sync_asana:
        AsanaAuditLogClient(token="wrong", base_url=emulator.asana.base_url).get_audit_log_events(gid)
    with pytest.raises(AsanaApiError) as async_asana:
        run(opened(AsyncAsanaAuditLogClient(token="wrong", base_url=emulator.asana.base_url)).get_audit_log_events(gid))
    assert str(async_asana.value) == str(sync_asana.value) and async_asana.value.status_code == 401


def test_a_non_json_body_is_a_clear_error(emulator):
    emulator.faults.script("slack", "html")
    emulator.faults.script("asana", "html")
    with pytest.raises(AuditLogsBodyError, match="text/html"):
        run(slack(emulator, retry_handlers=[]).logs())
    with pytest.raises(AsanaBodyError, match="text/html"):
        run(asana(emulator, retry_handlers=[]).get_audit_log_events(emulator.asana.workspace_gid))


def test_transport_faults_surface_as_the_neutral_errors(emulator):
    emulator.faults.script("slack", "reset", "truncated")
    with pytest.raises(ConnectionResetError) as reset:
        run(slack(emulator, retry_handlers=[]).logs())
    assert reset.value.errno == 104
    with pytest.raises(TruncatedBodyError):
        run(slack(emulator, retry_handlers=[]).logs())


# ------------------------------------------------------------------ retry handlers


@pytest.mark.parametrize(
    ("fault", "handler"),
    [
        ("reset", AsyncConnectionErrorRetryHandler(max_retry_count=2, interval_calculator=FIXED)),
        ("truncated", AsyncConnectionErrorRetryHandler(max_retry_count=2, interval_calculator=FIXED)),
        ("server_error", AsyncServerErrorRetryHandler(max_retry_count=2, interval_calculator=FIXED)),
        ("html", AsyncServerErrorRetryHandler(max_retry_count=2, interval_calculator=FIXED)),
    ],
)
@pytest.mark.parametrize("api", ["slack", "asana"])
def test_each_builtin_async_handler_retries_its_fault(fault, handler, api):
    with Emulator() as emu:
        emu.slack.add([entry(i, T0 + i) for i in range(5)])
        emu.asana.add([asana_event(i, T0 * 1000 + i) for i in range(5)])
        emu.faults.script(api, fault, fault)
        clock = FakeAsyncClock()
        if api == "slack":
            page = run(slack(emu, retry_handlers=[handler], clock=clock).logs(oldest=T0))
        else:
            page = run(asana(emu, retry_handlers=[handler], clock=clock).get_audit_log_events(emu.asana.workspace_gid))
        assert len(page.events) == 5 and emu.faults.injected[fault] == 2
        assert clock.sleeps == [0.25, 0.25]


@pytest.mark.parametrize("api", ["slack", "asana"])
def test_rate_limit_handler_waits_what_retry_after_says(api):
    with Emulator(faults=FaultPlan(retry_after="7")) as emu:
        emu.slack.add([entry(1, T0)])
        emu.asana.add([asana_event(1, T0 * 1000)])
        emu.faults.script(api, "rate_limit")
        clock = FakeAsyncClock()
        handlers = [AsyncRateLimitErrorRetryHandler(max_retry_count=1, jitter=Jitter())]
        if api == "slack":
            client = slack(emu, retry_handlers=handlers, clock=clock)
            page = run(opened(client).logs(oldest=T0))
        else:
            client = asana(emu, retry_handlers=handlers, clock=clock)
            page = run(opened(client).get_audit_log_events(emu.asana.workspace_gid))
        assert len(page.events) == 1 and clock.sleeps == [7.0]
        assert client.stats == {"requests": 2, "retries": 1, "rate_limited": 1}


def test_a_retry_after_beyond_the_cap_reaches_the_caller():
    with Emulator(faults=FaultPlan(retry_after="3600")) as emu:
        emu.faults.script("slack", "rate_limit")
        clock = FakeAsyncClock()
        handlers = all_builtin_async_retry_handlers(max_rate_limit_wait_seconds=120)
        with pytest.raises(AuditLogsApiError) as info:
            run(slack(emu, retry_handlers=handlers, clock=clock).logs())
        assert info.value.error == "rate_limited" and clock.sleeps == []


def test_a_custom_handler_overriding_only_the_sync_can_retry_works(emulator):
    """The Slack SDK's sync example, made async by its base class alone."""

    class MyRetryHandler(AsyncRetryHandler):
        def _can_retry(self, *, state, request, response=None, error=None) -> bool:
            return error is not None and isinstance(error, socket.error) and error.errno == 104

    emulator.slack.add([entry(1, T0)])
    emulator.faults.script("slack", "reset", "rate_limit")
    clock = FakeAsyncClock()
    handlers = [
        MyRetryHandler(
            max_retry_count=1,
            interval_calculator=BackoffRetryIntervalCalculator(backoff_factor=0.5, jitter=RandomJitter()),
        ),
        AsyncRateLimitErrorRetryHandler(max_retry_count=1),
    ]
    page = run(slack(emulator, retry_handlers=handlers, clock=clock).logs(oldest=T0))
    assert len(page.events) == 1
    assert len(clock.sleeps) == 2 and 0.5 <= clock.sleeps[0] < 1.5 and 1.0 <= clock.sleeps[1] < 1.6


def test_a_custom_handler_may_decide_asynchronously(emulator):
    asked = []

    class AskFirst(AsyncRetryHandler):
        async def _can_retry_async(self, *, state, request, response=None, error=None) -> bool:
            await asyncio.sleep(0)  # e.g. consult a shared limiter
            asked.append(response.status_code if response else error)
            return response is not None and response.status_code == 503

    emulator.slack.add([entry(1, T0)])
    emulator.faults.script("slack", "server_error")
    page = run(slack(emulator, retry_handlers=[AskFirst(interval_calculator=FIXED)]).logs(oldest=T0))
    assert len(page.events) == 1 and asked[0] in (500, 503)


def test_sync_handlers_decide_but_the_async_clock_waits(emulator):
    emulator.slack.add([entry(1, T0)])
    emulator.faults.script("slack", "html")
    clock = FakeAsyncClock()
    handlers = [http_retry.ServerErrorRetryHandler(interval_calculator=FIXED)]
    assert len(run(slack(emulator, retry_handlers=handlers, clock=clock).logs(oldest=T0)).events) == 1
    assert clock.sleeps == [0.25]


def test_the_pacer_spaces_requests_through_the_async_clock(emulator):
    clock = FakeAsyncClock()
    client = slack(emulator, clock=clock, pacer=RequestPacer(60))

    async def twice():
        async with client:
            await client.schemas()
            await client.schemas()

    asyncio.run(twice())
    assert clock.sleeps == [1.0]


# ------------------------------------------------------------------ sessions and redaction


def test_the_clients_own_session_is_reused_then_closed(emulator):
    emulator.slack.add([entry(i, T0 + i) for i in range(30)])

    async def main():
        async with slack(emulator) as client:
            await client.logs(oldest=T0, limit=10)
            session = client.session
            pages = await collect(client.iter_logs(oldest=T0, limit=10))
            assert client.session is session and not session.closed
        return pages, session, client

    pages, session, client = asyncio.run(main())
    assert len(pages) == 3 and session.closed and client.session is None


def test_a_callers_session_is_used_and_left_open(emulator):
    async def main():
        async with aiohttp.ClientSession() as session:
            async with slack(emulator, session=session) as client:
                await client.schemas()
                assert client.session is session
            assert not session.closed  # the client did not open it, so it does not close it
            return session

    assert asyncio.run(main()).closed


def test_token_never_appears_in_logs_repr_or_errors(emulator, caplog):
    logger = logging.getLogger("test.async")
    emulator.faults.script("slack", "reset")
    with caplog.at_level(logging.DEBUG):
        client = AsyncAuditLogsClient(token=TOKEN, base_url=emulator.slack.base_url, logger=logger, retry_handlers=[])
        opened(client)
        with pytest.raises(ConnectionResetError) as reset:
            run(client.logs(oldest=1))
        with pytest.raises(AuditLogsApiError) as info:
            run(opened(client).logs(oldest=1))
    text = caplog.text + repr(client) + str(info.value) + json.dumps(info.value.response.body)
    text += str(reset.value) + repr(reset.value) + repr(reset.value.__cause__)
    assert "Sending GET" in caplog.text and "[redacted]" in caplog.text
    assert TOKEN not in text and "secret-value" not in text


def test_the_sync_modules_import_without_aiohttp():
    code = (
        "import sys; sys.modules['aiohttp'] = None\n"
        "import audit_collector.slack, audit_collector.asana, audit_collector.http.retry, audit_collector.aws.handler\n"
        "from audit_collector.http_retry import AsyncRetryHandler\n"
        "try:\n    from audit_collector.slack import AsyncAuditLogsClient\nexcept ImportError:\n    print('lazy')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "lazy"


# ------------------------------------------------------------------ one retry decision for both loops (property)

OUTCOMES = st.one_of(
    st.just(("reset", None)),
    st.tuples(st.sampled_from([200, 400, 500, 502, 503, 504]), st.none()),
    st.tuples(st.just(429), st.one_of(st.none(), st.integers(0, 300).map(str))),
)


def _response(status: int, retry_after: str | None) -> HttpResponse:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return HttpResponse(status_code=status, headers=headers, body=b"{}")


class ScriptedSync(ApiTransport):
    def __init__(self, script, **kwargs) -> None:
        super().__init__(base_url="http://127.0.0.1/", **kwargs)
        self.script = list(script)

    def _perform(self, request):
        status, retry_after = self.script.pop(0)
        if status == "reset":
            raise requests.ConnectionError(ConnectionResetError(104, "reset"))
        return _response(status, retry_after)


class ScriptedAsync(AsyncApiTransport):
    def __init__(self, script, **kwargs) -> None:
        super().__init__(base_url="http://127.0.0.1/", **kwargs)
        self.script = list(script)

    async def _perform(self, request):
        status, retry_after = self.script.pop(0)
        if status == "reset":
            raise aiohttp.ClientOSError(104, "reset")
        return _response(status, retry_after)


def _handlers(kinds, count: int) -> list:
    backoff = BackoffRetryIntervalCalculator(0.5, jitter=Jitter())
    connection, rate_limit, server = kinds
    return [connection(count, backoff), rate_limit(count, backoff, jitter=Jitter()), server(count, backoff)]


def _outcome(send):
    try:
        return send().status_code
    except OSError as error:
        return (type(error).__name__, error.errno)


@settings(max_examples=60, deadline=None)
@given(script=st.lists(OUTCOMES, min_size=4, max_size=4), count=st.integers(0, 3))
def test_sync_and_async_loops_make_the_same_retry_decisions(script, count):
    script = script + [(200, None)] * 12  # enough answers for every retry any handler may ask for
    request = HttpRequest("GET", "http://127.0.0.1/logs")
    sync_clock, async_clock = FakeClock(), FakeAsyncClock()
    sync_clock.now = async_clock.now
    kinds = (
        http_retry.ConnectionErrorRetryHandler,
        http_retry.RateLimitErrorRetryHandler,
        http_retry.ServerErrorRetryHandler,
    )
    sync = ScriptedSync(script, retry_handlers=_handlers(kinds, count), clock=sync_clock)
    async_kinds = (AsyncConnectionErrorRetryHandler, AsyncRateLimitErrorRetryHandler, AsyncServerErrorRetryHandler)
    async_ = ScriptedAsync(script, retry_handlers=_handlers(async_kinds, count), clock=async_clock)
    got_sync = _outcome(lambda: sync.send(request))
    got_async = _outcome(lambda: asyncio.run(async_.send(request)))
    assert got_async == got_sync
    assert async_clock.sleeps == sync_clock.sleeps and async_.stats == sync.stats
    assert len(async_.script) == len(sync.script)
    assert sync.stats["retries"] <= 3 * count
