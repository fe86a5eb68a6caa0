"""Pluggable retry handlers, after a widely used chat SDK's design, on transport-neutral value objects.

A handler decides *whether* to retry (``_can_retry``) and *how long* to wait
(``prepare_for_next_attempt``). Handlers hold no per-request state: that lives in ``RetryState``,
created fresh for each request by the client's send loop. Every wait goes through the state's
clock, so tests never sleep and the collector can refuse a wait that would overrun its budget.

Errors handed to handlers are plain ``OSError`` instances (``ConnectionResetError`` with errno 104,
``ConnectionRefusedError``, or this module's ``ReadTimeoutError``, ``ConnectTimeoutError``,
``ServerDisconnectedError`` and ``TruncatedBodyError``), never ``requests`` or aiohttp types, so a
handler works whatever the transport.
"""

from __future__ import annotations

import email.utils
import random
from typing import Required, TypedDict, Unpack

from audit_collector.http.clock import SystemClock, TimeSource
from audit_collector.http.messages import HttpRequest, HttpResponse


class RetryQuestion(TypedDict, total=False):
    """What every handler is asked with (``handler.can_retry(**question)``)."""

    state: Required[RetryState]
    request: Required[HttpRequest]
    response: HttpResponse | None
    error: Exception | None


class RetryState:
    """Per-request retry bookkeeping, plus the clock every wait goes through."""

    def __init__(self, *, current_attempt: int = 0, clock: TimeSource | None = None) -> None:
        self.current_attempt = current_attempt
        self.next_attempt_requested = False
        self.clock = clock or SystemClock()
        self.waited_seconds = 0.0
        self._retries_by_handler: dict[int, int] = {}

    def retries_by(self, handler: RetryHandler) -> int:
        """Retries this request already had from ``handler``: each handler has its own limit, so a
        reset does not use up the retry a later 429 needs (that SDK shares one count)."""
        return self._retries_by_handler.get(id(handler), 0)

    def count_retry(self, handler: RetryHandler) -> None:
        """Called by the send loop once ``handler`` has prepared a retry."""
        self._retries_by_handler[id(handler)] = self.retries_by(handler) + 1

    def increment_current_attempt(self) -> int:
        self.current_attempt += 1
        return self.current_attempt

    def wait(self, seconds: float) -> None:
        """Sleep through the injected clock (which may refuse, raising ``BudgetExhausted``)."""
        if seconds > 0:
            self.clock.sleep(seconds)  # type: ignore[attr-defined]
            self.waited_seconds += seconds

    async def wait_async(self, seconds: float) -> None:
        """Sleep through the injected ``AsyncClock``: the same wait, awaited."""
        if seconds > 0:
            await self.clock.sleep(seconds)  # type: ignore[attr-defined]
            self.waited_seconds += seconds


# --------------------------------------------------------------------------- intervals


class Jitter:
    """Spreads retries of many clients apart."""

    def recalculate(self, value: float) -> float:
        return value


class RandomJitter(Jitter):
    """Adds up to one second, uniformly (the SDK's behaviour)."""

    def __init__(self, max_seconds: float = 1.0, rng: random.Random | None = None) -> None:
        self.max_seconds = max_seconds
        self._rng = rng or random.Random()

    def recalculate(self, value: float) -> float:
        return value + self._rng.random() * self.max_seconds


class RetryIntervalCalculator:
    """Seconds to wait before the attempt after ``current_attempt`` (0-based)."""

    def calculate_sleep_duration(self, current_attempt: int) -> float:
        raise NotImplementedError


class BackoffRetryIntervalCalculator(RetryIntervalCalculator):
    """``backoff_factor * 2**attempt`` plus jitter."""

    def __init__(self, backoff_factor: float = 0.5, jitter: Jitter | None = None) -> None:
        self.backoff_factor = backoff_factor
        self.jitter = jitter if jitter is not None else RandomJitter()

    def calculate_sleep_duration(self, current_attempt: int) -> float:
        return self.jitter.recalculate(self.backoff_factor * (2**current_attempt))


class FixedValueRetryIntervalCalculator(RetryIntervalCalculator):
    def __init__(self, fixed_interval: float = 0.5) -> None:
        self.fixed_interval = fixed_interval

    def calculate_sleep_duration(self, current_attempt: int) -> float:
        return self.fixed_interval


# --------------------------------------------------------------------------- handlers


class RetryHandler:
    """Subclass and implement ``_can_retry`` only; the attempt limit and the wait are handled here."""

    def __init__(
        self,
        max_retry_count: int = 1,
        interval_calculator: RetryIntervalCalculator | None = None,
    ) -> None:
        self.max_retry_count = max_retry_count
        self.interval_calculator = interval_calculator or BackoffRetryIntervalCalculator()

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if self.spent(state):
            return False
        return self._can_retry(state=state, request=request, response=response, error=error)

    def spent(self, state: RetryState) -> bool:
        """This handler already gave this request all the retries it may."""
        return state.retries_by(self) >= self.max_retry_count

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        raise NotImplementedError

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.wait(self.plan_next_attempt(state=state, request=request, response=response, error=error))

    def plan_next_attempt(self, **question: Unpack[RetryQuestion]) -> float:
        """Book the next attempt and return the seconds to wait first: the sync and async handlers
        share this decision and differ only in how they wait."""
        state = question["state"]
        state.next_attempt_requested = True
        seconds = self._wait_seconds(state=state, response=question.get("response"))
        state.increment_current_attempt()
        return seconds

    def _wait_seconds(self, *, state: RetryState, response: HttpResponse | None) -> float:
        return self.interval_calculator.calculate_sleep_duration(state.current_attempt)


class ConnectionErrorRetryHandler(RetryHandler):
    """Resets, refused connections, connect and read timeouts, truncated bodies: any ``OSError``."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        return isinstance(error, OSError)


class ServerErrorRetryHandler(RetryHandler):
    """500, 502, 503 and 504: the server (or a proxy in front of it) failed, not the request."""

    retryable_statuses = frozenset({500, 502, 503, 504})

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        return response is not None and response.status_code in self.retryable_statuses


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent/bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


class RateLimitErrorRetryHandler(RetryHandler):
    """HTTP 429: waits what ``Retry-After`` says (seconds or an HTTP date) plus jitter.

    A ``Retry-After`` longer than ``max_wait_seconds`` is not waited out: the 429 reaches the caller,
    which can checkpoint and stop rather than idle away a Lambda's budget.
    """

    def __init__(
        self,
        max_retry_count: int = 1,
        interval_calculator: RetryIntervalCalculator | None = None,
        *,
        max_wait_seconds: float = 120.0,
        jitter: Jitter | None = None,
    ) -> None:
        super().__init__(max_retry_count, interval_calculator)
        self.max_wait_seconds = max_wait_seconds
        self.jitter = jitter if jitter is not None else RandomJitter(max_seconds=0.5)

    def _wait_seconds(self, *, state: RetryState, response: HttpResponse | None) -> float:
        header = response.header("Retry-After") if response is not None else None
        retry_after = parse_retry_after(header, now=state.clock.time())
        if retry_after is None:
            return self.interval_calculator.calculate_sleep_duration(state.current_attempt)
        return self.jitter.recalculate(retry_after)

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        if response is None or response.status_code != 429:
            return False
        retry_after = parse_retry_after(response.header("Retry-After"), now=state.clock.time())
        return retry_after is None or retry_after <= self.max_wait_seconds


def default_retry_handlers() -> list[RetryHandler]:
    """What a client uses when given none: one retry of a connection error (the SDK's default)."""
    return [ConnectionErrorRetryHandler()]


def all_builtin_retry_handlers(
    *,
    max_retry_count: int = 3,
    max_rate_limit_wait_seconds: float = 120.0,
) -> list[RetryHandler]:
    """Every built-in handler, as the collector uses them: resets, 5xx and 429 all retried."""
    kinds = (ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, ServerErrorRetryHandler)
    return builtin_set(kinds, max_retry_count=max_retry_count, max_rate_limit_wait_seconds=max_rate_limit_wait_seconds)


def builtin_set(
    kinds: tuple[type[RetryHandler], type[RateLimitErrorRetryHandler], type[RetryHandler]],
    *,
    max_retry_count: int = 3,
    max_rate_limit_wait_seconds: float = 120.0,
) -> list[RetryHandler]:
    """One handler of each kind (connection, rate limit, server), sharing one retry limit."""
    connection, rate_limit, server = kinds
    return [
        connection(max_retry_count=max_retry_count),
        rate_limit(max_retry_count=max_retry_count, max_wait_seconds=max_rate_limit_wait_seconds),
        server(max_retry_count=max_retry_count),
    ]
