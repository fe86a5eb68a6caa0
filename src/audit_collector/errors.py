"""One root for every error this package raises, so callers can catch ours and only ours.

Retry safety is stated per class: the collector retries nothing itself beyond the HTTP retry
handlers; an error that reaches it either ends the run (after a checkpoint) or is handled by name.
"""

from __future__ import annotations


class AuditCollectorError(Exception):
    """Base of every error raised by audit_collector."""


class ConfigError(AuditCollectorError, ValueError):
    """Bad configuration or bad input (invoke payload, CLI argument, environment). Never retry."""


class StateStoreMismatch(ConfigError):
    """The archive belongs to another state store: a run here could not see that store's claims and
    would archive events twice. Never retry; point the run at the archive's own state store."""


class ApiError(AuditCollectorError):
    """The API answered with an error after the retry handlers gave up.

    Carries the response so callers can look at the status, headers and body.
    """

    def __init__(self, message: str, *, response: object | None = None) -> None:
        super().__init__(message)
        self.response = response


class ApiBodyError(ApiError):
    """The API answered with a body we cannot read as its documented JSON (an HTML page, truncated
    or non-UTF-8 JSON, wrong types). Not retried by default: it usually means a proxy or an outage."""


class BudgetExhausted(AuditCollectorError):
    """A wait or a request would run past the invocation's time budget. Safe: stop and checkpoint."""


class LeaseLost(AuditCollectorError):
    """Another run holds (or took over) this provider's lease; our conditional write was refused.

    Safe: everything we wrote is named deterministically, the other run rewrites the same objects.
    """


class ArchiveError(AuditCollectorError):
    """Writing an archive object failed. The checkpoint did not move, so a rerun rewrites it."""


class WriteRefused(LeaseLost):
    """An archive object changed since this run looked at it: another run wrote it after this one
    lost its lease. Safe: nothing was written; the other run's object stands."""


class ClockSkew(AuditCollectorError):
    """This host's clock is ahead of the API's by more than the settle lag: windows planned from it
    would close over a "now" that has not happened yet, and skip what arrives in between. Nothing
    was written. Fix the host's time (NTP); never retried."""
