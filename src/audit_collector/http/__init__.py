"""The wire: one send loop with pluggable retry handlers, for any API, sync or async.

``base`` (what both transports share), ``transport`` (requests) and ``async_transport`` (aiohttp);
``retry`` and ``async_retry`` (the handlers), ``clock`` (clocks and the pacer), ``messages``
(transport-neutral requests, responses and errors). Knows no API; the public import path for the
handlers is ``audit_collector.http_retry``.
"""
