"""Retry handlers: limits, intervals, Retry-After, and the send loop's use of them."""

from __future__ import annotations

import email.utils
import gc
import random
import socket
import weakref

import pytest
import requests
import responses

from audit_collector.collector.gc import gc_paused
from audit_collector.http.transport import translate_transport_error
from audit_collector.http_retry import (
    BackoffRetryIntervalCalculator,
    ConnectionErrorRetryHandler,
    ConnectTimeoutError,
    FixedValueRetryIntervalCalculator,
    HttpRequest,
    HttpResponse,
    Jitter,
    RandomJitter,
    RateLimitErrorRetryHandler,
    ReadTimeoutError,
    RetryHandler,
    RetryState,
    ServerErrorRetryHandler,
    TruncatedBodyError,
    all_builtin_retry_handlers,
    default_retry_handlers,
)
from audit_collector.slack import AuditLogsApiError, AuditLogsClient

BASE = "https://slack.test/audit/v1/"
REQUEST = HttpRequest(method="GET", url=BASE + "logs")


def response(status: int, headers: dict | None = None) -> HttpResponse:
    return HttpResponse(status_code=status, headers={k.lower(): v for k, v in (headers or {}).items()}, body=b"")


class NoJitter(Jitter):
    pass


def test_backoff_doubles_per_attempt_and_adds_jitter():
    calc = BackoffRetryIntervalCalculator(backoff_factor=0.5, jitter=NoJitter())
    assert [calc.calculate_sleep_duration(n) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    jittered = BackoffRetryIntervalCalculator(backoff_factor=0.5, jitter=RandomJitter(rng=random.Random(1)))
    values = [jittered.calculate_sleep_duration(2) for _ in range(20)]
    assert all(2.0 <= v < 3.0 for v in values) and len(set(values)) > 1


def test_fixed_interval():
    assert FixedValueRetryIntervalCalculator(fixed_interval=0.25).calculate_sleep_duration(9) == 0.25


def test_handler_stops_at_max_retry_count(clock):
    handler = ServerErrorRetryHandler(max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(1))
    state = RetryState(clock=clock)
    retries = 0
    while handler.can_retry(state=state, request=REQUEST, response=response(503)):
        handler.prepare_for_next_attempt(state=state, request=REQUEST, response=response(503))
        state.count_retry(handler)  # what the send loop does
        retries += 1
    assert retries == 2 and state.current_attempt == 2
    assert clock.sleeps == [1, 1]


@pytest.mark.parametrize(
    "status,retried",
    [
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (501, False),
        (400, False),
        (429, False),
        (200, False),
    ],
)
def test_server_error_statuses(clock, status, retried):
    handler = ServerErrorRetryHandler()
    assert handler.can_retry(state=RetryState(clock=clock), request=REQUEST, response=response(status)) is retried


@pytest.mark.parametrize(
    "error,retried",
    [
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (ConnectionRefusedError(111, "refused"), True),
        (ReadTimeoutError("read timeout"), True),
        (ConnectTimeoutError("connect timeout"), True),
        (TruncatedBodyError("cut"), True),
        (ValueError("not transport"), False),
        (None, False),
    ],
)
def test_connection_error_handler_covers_transport_failures(clock, error, retried):
    assert (
        ConnectionErrorRetryHandler().can_retry(state=RetryState(clock=clock), request=REQUEST, error=error) is retried
    )


def test_retry_after_seconds_is_honoured(clock):
    handler = RateLimitErrorRetryHandler(jitter=NoJitter())
    state = RetryState(clock=clock)
    rate_limited = response(429, {"Retry-After": "7"})
    assert handler.can_retry(state=state, request=REQUEST, response=rate_limited)
    handler.prepare_for_next_attempt(state=state, request=REQUEST, response=rate_limited)
    assert clock.sleeps == [7.0]


def test_retry_after_as_http_date_is_honoured(clock):
    handler = RateLimitErrorRetryHandler(jitter=NoJitter())
    state = RetryState(clock=clock)
    when = email.utils.formatdate(clock.time() + 12, usegmt=True)
    rate_limited = response(429, {"Retry-After": when})
    assert handler.can_retry(state=state, request=REQUEST, response=rate_limited)
    handler.prepare_for_next_attempt(state=state, request=REQUEST, response=rate_limited)
    assert clock.sleeps == [pytest.approx(12.0, abs=1.0)]


def test_retry_after_beyond_the_cap_is_not_waited_out(clock):
    handler = RateLimitErrorRetryHandler(max_wait_seconds=30)
    assert not handler.can_retry(
        state=RetryState(clock=clock), request=REQUEST, response=response(429, {"Retry-After": "3600"})
    )


def test_rate_limit_without_retry_after_backs_off(clock):
    handler = RateLimitErrorRetryHandler(interval_calculator=FixedValueRetryIntervalCalculator(2.5), jitter=NoJitter())
    state = RetryState(clock=clock)
    handler.prepare_for_next_attempt(state=state, request=REQUEST, response=response(429))
    assert clock.sleeps == [2.5]


def test_defaults():
    assert [type(h) for h in default_retry_handlers()] == [ConnectionErrorRetryHandler]
    assert {type(h) for h in all_builtin_retry_handlers()} == {
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    }


def test_translation_keeps_a_reset_as_errno_104():
    from urllib3.exceptions import ProtocolError

    reset = ConnectionResetError(104, "Connection reset by peer")
    exc = requests.ConnectionError(ProtocolError("Connection aborted.", reset))
    translated = translate_transport_error(exc)
    assert translated is reset and isinstance(translated, socket.error) and translated.errno == 104
    assert isinstance(translate_transport_error(requests.ReadTimeout("x")), ReadTimeoutError)
    assert isinstance(translate_transport_error(requests.ConnectTimeout("x")), ConnectTimeoutError)
    assert isinstance(translate_transport_error(requests.exceptions.ChunkedEncodingError("x")), TruncatedBodyError)


# ------------------------------------------------------------------ the send loop, through a client


@responses.activate
def test_client_retries_429_then_succeeds(clock):
    responses.get(BASE + "logs", status=429, headers={"Retry-After": "3"}, json={"ok": False, "error": "rate_limited"})
    responses.get(BASE + "logs", json={"entries": []})
    client = AuditLogsClient(
        token="xoxp-x",
        base_url=BASE,
        clock=clock,
        retry_handlers=[RateLimitErrorRetryHandler(jitter=NoJitter())],
    )
    assert client.logs().status_code == 200
    assert clock.sleeps == [3.0]
    assert client.stats == {"requests": 2, "retries": 1, "rate_limited": 1}


@responses.activate
def test_client_retries_server_errors_then_raises_when_spent(clock):
    for _ in range(3):
        responses.get(BASE + "logs", status=503, json={"ok": False, "error": "service_unavailable"})
    client = AuditLogsClient(
        token="xoxp-x",
        base_url=BASE,
        clock=clock,
        retry_handlers=[ServerErrorRetryHandler(max_retry_count=2)],
    )
    with pytest.raises(AuditLogsApiError) as info:
        client.logs()
    assert info.value.response.status_code == 503
    assert len(responses.calls) == 3 and len(clock.sleeps) == 2


@responses.activate
def test_connection_error_is_retried_by_default_once(clock):
    from urllib3.exceptions import ProtocolError

    reset = requests.ConnectionError(ProtocolError("aborted", ConnectionResetError(104, "reset")))
    responses.get(BASE + "logs", body=reset)
    responses.get(BASE + "logs", json={"entries": []})
    client = AuditLogsClient(token="xoxp-x", base_url=BASE, clock=clock)
    assert client.logs().body == {"entries": []}
    assert len(responses.calls) == 2


@responses.activate
def test_the_readme_custom_handler_runs_unchanged(clock):
    """The issue's example, verbatim but for the import path."""
    from urllib3.exceptions import ProtocolError

    class MyRetryHandler(RetryHandler):
        def _can_retry(self, *, state, request, response=None, error=None) -> bool:
            return error is not None and isinstance(error, socket.error) and error.errno == 104

    client = AuditLogsClient(
        token="xoxp-x",
        retry_handlers=[
            MyRetryHandler(
                max_retry_count=1,
                interval_calculator=BackoffRetryIntervalCalculator(backoff_factor=0.5, jitter=RandomJitter()),
            )
        ],
    )
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    client.clock = clock
    responses.get(
        DEFAULT := "https://api.slack.com/audit/v1/logs",
        body=requests.ConnectionError(ProtocolError("aborted", ConnectionResetError(104, "reset"))),
    )
    responses.get(DEFAULT, status=429, headers={"Retry-After": "1"}, json={"ok": False, "error": "rate_limited"})
    responses.get(DEFAULT, json={"entries": [{"id": "a", "date_create": 1}]})
    assert client.logs().body["entries"][0]["id"] == "a"
    assert len(clock.sleeps) == 2 and 0.5 <= clock.sleeps[0] < 1.5 and 1.0 <= clock.sleeps[1] < 1.6


@responses.activate
def test_refused_wait_stops_the_loop(clock):
    """A clock may refuse a wait (the collector's budget): the refusal propagates, no more requests."""

    class Refusing(type(clock)):
        def sleep(self, seconds):
            raise TimeoutError(f"refused a wait of {seconds}s")

    responses.get(BASE + "logs", status=503, json={"ok": False})
    client = AuditLogsClient(
        token="xoxp-x",
        base_url=BASE,
        clock=Refusing(),
        retry_handlers=[ServerErrorRetryHandler(max_retry_count=5)],
    )
    with pytest.raises(TimeoutError, match="refused a wait"):
        client.logs()
    assert len(responses.calls) == 1


def test_the_gc_pause_nests_and_frees_the_cycles_a_run_left():
    class Node:
        pass

    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            node = Node()
            node.me = node  # a cycle: only the cyclic GC can free it
            alive = weakref.ref(node)
            del node
        assert not gc.isenabled()  # the outer pause still holds
        assert alive() is not None
    assert gc.isenabled() and alive() is None
