"""One provider's run as state: its lease, checkpoint, counters, and the two halves of the rule
(``put``: the object first; ``save_jobs``: then the checkpoint). ``loop.py`` drives it; ``commit.py``,
``context.py`` and ``sweep.py`` write through it.
"""

from __future__ import annotations

import threading
from typing import Any

from audit_collector.collector.backfill import backfill_jobs, compact, fraction_archived, summarize_backfills
from audit_collector.collector.jobs import LIVE, Job, jobs_of
from audit_collector.collector.provider import Source
from audit_collector.collector.result import Progress, ProgressCallback, RunResult
from audit_collector.collector.settings import Budget, Settings
from audit_collector.errors import ClockSkew, WriteRefused
from audit_collector.evidence import manifest
from audit_collector.evidence.signing import Signer
from audit_collector.http.clock import Clock
from audit_collector.storage.archive import EMPTY_GZIP, ArchiveWriter, ObjectBuffer
from audit_collector.storage.state import CheckpointStore, Lease


class Run:
    """One provider's run: holds the lease, saves job checkpoints, counts. Thread-safe where
    concurrent backfill slices need it: saves are serialized, writes are not."""

    def __init__(
        self,
        source: Source,
        store: CheckpointStore,
        archive: ArchiveWriter,
        prefix: str,
        lease: Lease,
        settings: Settings,
        clock: Clock,
        budget: Budget,
        progress: ProgressCallback | None,
        signer: Signer | None = None,
    ) -> None:
        self.source, self.descriptor = source, source.descriptor
        self.signer = signer
        self.writes = 0  # objects written since the last signed head
        self.announced: set[str] = set()  # the windows and passes the last head this run signed names as under way
        self.last_head_ms = 0  # when this run's last head was signed: each next one is later, so keys never collide
        self.sweep_given_up = 0  # passes the queue had no room for, this run
        self.store, self.archive, self.prefix, self.lease = store, archive, prefix, lease
        self.settings, self.clock, self.budget, self.progress = settings, clock, budget, progress
        self.result = RunResult(self.descriptor.name)
        # Fixed once: a run collects up to where real time stood when it started, then stops.
        # (Planning against a moving "now" would chase the clock in ever thinner windows.)
        self.started_at = clock.time()
        self.horizon = self.descriptor.to_units(self.started_at - settings.settle_seconds)
        self._sources = [source]
        self._lock = threading.Lock()
        self.chain_lock = threading.RLock()  # one manifest chain per provider: windows close one at a time
        self.identify = manifest.identifier(
            self.descriptor.id_field, self.descriptor.time_field, self.descriptor.event_seconds
        )
        self._events_fetched = 0
        self._before = source.stats()

    @property
    def document(self) -> dict[str, Any]:
        return self.lease.checkpoint

    def job(self, job_id: str) -> Job:
        return jobs_of(self.document).get(job_id) or Job(job_id)

    def chain(self) -> dict[str, Any]:
        """The committed chain's head: ``head`` (SHA-256), ``count`` (its seq) and ``key``."""
        return dict(self.document.get("chain") or {})

    def fork_source(self) -> Source:
        """Another source for a job collected at the same time; its counters join the run's report."""
        source = self.source.fork()
        with self._lock:
            self._sources.append(source)
        return source

    def horizon_for(self, source: Source) -> int:
        """The settled present: the run's start less the settle lag, by the earlier of this host's
        clock and the API's (once a response has said what the API's is)."""
        skew = clock_skew(source)
        if skew is None or skew <= 0:
            return self.horizon
        return min(self.horizon, self.descriptor.to_units(self.started_at - skew - self.settings.settle_seconds))

    def check_clock(self, source: Source) -> None:
        """Refuse to archive or checkpoint anything while this host's clock is further ahead of
        the API's than the settle lag: the window being collected was planned from it, and closing
        it would skip what reaches the API in between."""
        skew = clock_skew(source)
        if skew is not None and skew > self.settings.settle_seconds:
            raise ClockSkew(
                f"{self.descriptor.name}: this host's clock is {skew:.0f}s ahead of the API's (its Date header), "
                f"more than the settle lag ({self.settings.settle_seconds}s): windows planned from it would close "
                "over a present that has not happened yet. Fix the host's time (NTP); nothing was written"
            )

    def save_jobs(self, *jobs: Job, **fields: Any) -> None:
        """Second half of the rule: the jobs' checkpoint (several at once: one atomic claim), and
        other top-level fields in the same write (a closing window's new chain head); a field set
        to None leaves the document."""
        with self._lock:
            document = dict(self.document)
            document["jobs"] = {**document.get("jobs", {}), **{job.id: job.to_dict() for job in jobs}}
            for name, value in fields.items():
                if value is None:
                    document.pop(name, None)
                else:
                    document[name] = value
            for legacy in ("sweep", "sweep_pending"):  # the sweep's marks before it had a queue
                document.pop(legacy, None)
            self.store.save(self.lease, compact(document))  # finished backfills: merged into "archived"

    def put(self, key: str, buffer: ObjectBuffer | None) -> bytes:
        """First half of the rule: the object, under its deterministic name (None: an empty one).
        Returns the bytes written."""
        body = buffer.finish() if buffer is not None else EMPTY_GZIP
        self.put_body(key, body)
        if buffer is not None:
            with self._lock:
                self.result.objects_written += 1
                self.result.events_written += buffer.events
        return body

    def put_body(self, key: str, body: bytes) -> None:
        """Fenced: renew the lease (refused once it expired or moved), then write only if the key
        is still what we saw before renewing. A run paused anywhere in between and overtaken by the
        next owner can no longer replace anything that owner wrote.

        Most keys are new, so the first try assumes the key is absent (``If-None-Match``): nothing
        to look at first. Only when something is there (an orphan of a crashed run, a part a
        restarted window empties) is its version read, the lease renewed again, and that version
        replaced (``If-Match``)."""
        self.renew()
        self.writes += 1
        try:
            self.archive.put(key, body, replaces=None)
            return
        except WriteRefused:
            seen = self.archive.version(key)
            if seen is None:  # there a moment ago, gone now: not ours to guess about
                raise
        self.renew()
        self.archive.put(key, body, replaces=seen)

    def renew(self) -> None:
        now = self.clock.time()
        with self._lock:
            self.store.renew(
                self.lease, expires_at=now + self.budget.remaining() + self.settings.lease_margin_seconds, now=now
            )

    def page_fetched(self, job_id: str, events: int) -> None:
        with self._lock:
            self.result.pages += 1
            self._events_fetched += events
            pages, fetched = self.result.pages, self._events_fetched
        if self.progress is None:
            return
        wanted = self.result.backfill["id"] if self.result.backfill else None
        jobs = backfill_jobs(self.document).get(wanted, []) if wanted else []
        fraction = fraction_archived(jobs, self.descriptor) if jobs else None
        self.progress(Progress(job_id, pages, fetched, fraction, sum(j.done for j in jobs), len(jobs)))

    def finish_report(self) -> None:
        """Counters, lag and backfill summaries, from the checkpoint as the run left it."""
        result, document = self.result, self.lease.checkpoint
        totals = {"retries": 0, "rate_limited": 0}
        for source in self._sources:
            stats = source.stats()
            for name in totals:
                totals[name] += stats[name]
        result.retries = totals["retries"] - self._before["retries"]
        result.rate_limited = totals["rate_limited"] - self._before["rate_limited"]
        result.checkpoint = document
        live = jobs_of(document).get(LIVE)
        if live is not None and live.watermark is not None:
            seconds = live.watermark / self.descriptor.units_per_second
            result.behind_seconds = max(0.0, self.clock.time() - seconds)
        summaries = summarize_backfills(document, self.descriptor)
        result.backfills = [b for b in summaries if not b["done"]]
        if result.backfill is not None:
            done = {b["id"]: b for b in summaries}
            result.backfill.update(done.get(result.backfill["id"], {}))


def clock_skew(source: Source) -> float | None:
    skew = getattr(source, "clock_skew", None)  # optional for a provider's source
    return skew() if callable(skew) else None
