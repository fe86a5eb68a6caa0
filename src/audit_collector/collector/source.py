"""The strategy port: what a provider supplies so the collector can run it without knowing it.

A provider's ``Source`` plans the next window of a job and collects one window; the collector owns
everything around that (jobs, lease, budget, write-then-checkpoint). Windows are the provider's own
typed dataclasses; the checkpoint keeps them as ``to_dict()`` and reads them back with
``from_dict``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from audit_collector.collector.jobs import Job
    from audit_collector.collector.loop import WindowContext
    from audit_collector.collector.provider import Descriptor


class Window(Protocol):
    """A stretch of one job that is collected as a unit and closes with one checkpoint."""

    @property
    def id(self) -> str:
        """Deterministic: the stem of the window's object names."""

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's form (JSON)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        """Read back what ``to_dict`` gave."""

    def archived_until(self) -> int | None:
        """Everything of the window before this instant is archived (None: unknown until it closes)."""


class Source(Protocol):
    """One provider's ordering strategy, over one API client."""

    descriptor: Descriptor

    def plan(self, job: Job, start: int, end: int | None, horizon: int) -> Window | None:
        """The window to collect next from ``start`` (up to ``end``, never past ``horizon``, the
        settled present), or None when nothing is due yet."""

    def collect(self, window: Window, ctx: WindowContext) -> bool:
        """Collect ``window``: True when it closed, False when the budget stopped it (the
        checkpoint then says where the next run picks up)."""

    def fork(self) -> Source:
        """Another source for a job collected at the same time (its own client, the same pacer)."""

    def stats(self) -> dict[str, int]:
        """The client's ``requests``, ``retries`` and ``rate_limited`` counters."""

    def clock_skew(self) -> float | None:
        """How many seconds this host's clock is ahead of the API's, from the last response's
        ``Date`` (None before the first). Optional: a source without it is not checked."""
