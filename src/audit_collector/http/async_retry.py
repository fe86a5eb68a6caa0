"""Async retry handlers and the async clock, after the async handlers of the SDK this package follows.

Each async built-in is its sync twin's decision with an awaited wait: the class adds nothing but the
``AsyncRetryHandler`` mix-in, so which errors are retried and how long to wait stay in ``http_retry``.
A subclass may override the sync ``_can_retry`` only (as the SDK's sync example does) or the
async ``_can_retry_async`` (as its async one does). Import these from ``audit_collector.http.retry``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Unpack

from audit_collector.http.clock import TimeSource
from audit_collector.http.retry import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    RetryHandler,
    RetryQuestion,
    ServerErrorRetryHandler,
    builtin_set,
)


class AsyncClock(TimeSource):
    """Wall time, monotonic time and an awaited sleep: inject a fake one and no test waits."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SystemAsyncClock(AsyncClock):
    """The real clock, on the running event loop."""


class AsyncRetryHandler(RetryHandler):
    """A ``RetryHandler`` whose question and wait are awaited; the decision itself is shared."""

    async def can_retry_async(self, **question: Unpack[RetryQuestion]) -> bool:
        if self.spent(question["state"]):
            return False
        return await self._can_retry_async(**question)

    async def _can_retry_async(self, **question: Unpack[RetryQuestion]) -> bool:
        """Defaults to the sync ``_can_retry``: a handler written for the sync client works here too."""
        return self._can_retry(**question)

    async def prepare_for_next_attempt_async(self, **question: Unpack[RetryQuestion]) -> None:
        await question["state"].wait_async(self.plan_next_attempt(**question))


class AsyncConnectionErrorRetryHandler(AsyncRetryHandler, ConnectionErrorRetryHandler):
    """Resets, refused connections, timeouts and truncated bodies, awaited."""


class AsyncRateLimitErrorRetryHandler(AsyncRetryHandler, RateLimitErrorRetryHandler):
    """HTTP 429, waiting what ``Retry-After`` says (capped by ``max_wait_seconds``), awaited."""


class AsyncServerErrorRetryHandler(AsyncRetryHandler, ServerErrorRetryHandler):
    """500, 502, 503 and 504, awaited."""


async def ask_async(handler: RetryHandler, question: RetryQuestion) -> bool:
    """Ask any handler: an async one is awaited, a sync one (only deciding, never waiting) is called."""
    if isinstance(handler, AsyncRetryHandler):
        return await handler.can_retry_async(**question)
    return handler.can_retry(**question)


def async_default_retry_handlers() -> list[RetryHandler]:
    """What an async client uses when given none: one retry of a connection error (the SDK's default)."""
    return [AsyncConnectionErrorRetryHandler()]


def all_builtin_async_retry_handlers(**limits: Any) -> list[RetryHandler]:
    """Every built-in async handler: resets, 5xx and 429 all retried. ``limits``: max_retry_count (3)
    and max_rate_limit_wait_seconds (120), as for ``all_builtin_retry_handlers``."""
    kinds = (AsyncConnectionErrorRetryHandler, AsyncRateLimitErrorRetryHandler, AsyncServerErrorRetryHandler)
    return builtin_set(kinds, **limits)
