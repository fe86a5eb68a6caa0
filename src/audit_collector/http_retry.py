"""The retry handlers' public import path, as the SDK's users know it (``slack_sdk.http_retry``).

The code lives in ``audit_collector.http``: ``retry`` (handlers, intervals, jitter, state), ``async_retry``
(the async twins), ``clock`` (clocks and the request pacer) and ``messages`` (neutral requests,
responses and errors). This module only re-exports them, so either path works.
"""

from audit_collector.http.async_retry import (
    AsyncClock,
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncRetryHandler,
    AsyncServerErrorRetryHandler,
    SystemAsyncClock,
    all_builtin_async_retry_handlers,
    async_default_retry_handlers,
)
from audit_collector.http.clock import Clock, RequestPacer, SystemClock, TimeSource
from audit_collector.http.messages import (
    ConnectTimeoutError,
    HttpRequest,
    HttpResponse,
    ReadTimeoutError,
    ServerDisconnectedError,
    TransportError,
    TruncatedBodyError,
)
from audit_collector.http.retry import (
    BackoffRetryIntervalCalculator,
    ConnectionErrorRetryHandler,
    FixedValueRetryIntervalCalculator,
    Jitter,
    RandomJitter,
    RateLimitErrorRetryHandler,
    RetryHandler,
    RetryIntervalCalculator,
    RetryQuestion,
    RetryState,
    ServerErrorRetryHandler,
    all_builtin_retry_handlers,
    default_retry_handlers,
    parse_retry_after,
)

__all__ = [
    "AsyncClock",
    "AsyncConnectionErrorRetryHandler",
    "AsyncRateLimitErrorRetryHandler",
    "AsyncRetryHandler",
    "AsyncServerErrorRetryHandler",
    "BackoffRetryIntervalCalculator",
    "Clock",
    "ConnectTimeoutError",
    "ConnectionErrorRetryHandler",
    "FixedValueRetryIntervalCalculator",
    "HttpRequest",
    "HttpResponse",
    "Jitter",
    "RandomJitter",
    "RateLimitErrorRetryHandler",
    "ReadTimeoutError",
    "RequestPacer",
    "RetryHandler",
    "RetryIntervalCalculator",
    "RetryQuestion",
    "RetryState",
    "ServerDisconnectedError",
    "ServerErrorRetryHandler",
    "SystemAsyncClock",
    "SystemClock",
    "TimeSource",
    "TransportError",
    "TruncatedBodyError",
    "all_builtin_async_retry_handlers",
    "all_builtin_retry_handlers",
    "async_default_retry_handlers",
    "default_retry_handlers",
    "parse_retry_after",
]
