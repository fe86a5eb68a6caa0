"""The job loop: one provider's run under its lease, with no knowledge of which provider it is.

The one rule that makes the archive exactly-once: an object is written (under a deterministic
name) *before* the checkpoint that moves past its events is saved. A crash between the two leaves
a checkpoint that leads the next run to the same name, which it overwrites. Manifests follow the
same rule one step earlier: the checkpoint names a manifest before it is written (``commit.py``).

A run takes the provider's lease, finishes a commit a crashed run left half done, starts a new
backfill if asked, collects the live job, gives the late-event sweep its share (``sweep.py``),
then unfinished backfills with the time left, and signs the chain's new head. A job is collected
window after window: the source plans a window from the job's first gap, then collects it through
a ``WindowContext``, the only door to the archive and the checkpoint a source has.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from audit_collector.collector import commit
from audit_collector.collector.backfill import (
    BackfillRequest,
    backfill_jobs,
    compact,
    fraction_archived,
    plan_backfill,
    summarize_backfills,
)
from audit_collector.collector.gc import gc_paused
from audit_collector.collector.jobs import LIVE, Job, backfill_id, jobs_of, subtract, taken_by_others
from audit_collector.collector.result import Progress, ProgressCallback, RunResult
from audit_collector.collector.settings import Budget, Settings
from audit_collector.collector.source import Source, Window
from audit_collector.collector.sweep import sweep, sweep_due
from audit_collector.errors import ClockSkew, WriteRefused
from audit_collector.evidence import manifest
from audit_collector.evidence.signing import Signer
from audit_collector.http.clock import Clock
from audit_collector.storage.archive import EMPTY_GZIP, ArchiveWriter, ObjectBuffer, object_key
from audit_collector.storage.state import CheckpointStore, Lease, LeaseHeld

__all__ = ["Progress", "ProgressCallback", "Run", "RunResult", "WindowContext", "collect"]


def collect(
    source: Source,
    *,
    store: CheckpointStore,
    archive: ArchiveWriter,
    prefix: str,
    settings: Settings,
    clock: Clock,
    budget: Budget,
    owner: str | None = None,
    backfill: BackfillRequest | None = None,
    progress: ProgressCallback | None = None,
    signer: Signer | None = None,
) -> RunResult:
    """Run one provider under its lease: a half-done commit, a new backfill (if asked), the live
    job, the sweep's share, then unfinished backfills with the time left; then the chain's new
    head, signed (with ``signer``). Raises what the source raises (after releasing the lease)."""
    name = source.descriptor.name
    settings = settings.for_provider(source.descriptor)
    owner = owner or uuid.uuid4().hex
    now = clock.time()
    expires_at = now + budget.remaining() + settings.lease_margin_seconds
    try:
        lease = store.acquire(name, owner=owner, expires_at=expires_at, now=now)
    except LeaseHeld as held:
        return RunResult(name, status="lease_held", message=str(held))
    run = Run(source, store, archive, prefix, lease, settings, clock, budget, progress, signer)
    failed = True
    try:
        with gc_paused():
            commit.commit_pending(run)  # a crashed run's manifest, named before it was written
            if backfill is not None:
                run.result.backfill = run.start_backfill(backfill)
            complete = run.collect_jobs([LIVE], run.live_budget())
            if settings.sweep_after_seconds:  # beside live collection and backfills, never behind them
                report = sweep(run, run.sweep_budget())
                run.result.sweep = report.as_dict()
                complete = complete and report.complete
            pending = [job.id for job in jobs_of(run.document).values() if job.id != LIVE and not job.done]
            if pending:
                complete = run.collect_jobs(pending) and complete
        run.result.complete = complete
        failed = False
    finally:
        try:
            commit.sign_head(run)
        except Exception:
            if not failed:
                raise  # a run that cannot sign fails: the proof must not fall behind in silence
        finally:
            with contextlib.suppress(Exception):  # best effort: an unreleased lease expires by itself
                store.release(lease)
            run.finish_report()
    return run.result


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

    def live_budget(self) -> Budget:
        """The run's budget, less the sweep's share when a pass is due: live collection that is
        catching up must not crowd out the sweep."""
        if not self.settings.sweep_after_seconds or not sweep_due(self):
            return self.budget
        seconds = max(0.0, self.budget.remaining() - self.settings.sweep_seconds)
        return Budget(
            self.clock,
            seconds,
            reserve_seconds=self.budget.reserve_seconds,
            request_seconds=self.budget.request_seconds,
        )

    def sweep_budget(self) -> Budget:
        budget = self.budget
        seconds = min(budget.remaining(), self.settings.sweep_seconds + budget.reserve_seconds + budget.request_seconds)
        return Budget(
            self.clock, seconds, reserve_seconds=budget.reserve_seconds, request_seconds=budget.request_seconds
        )

    def start_backfill(self, request: BackfillRequest) -> dict[str, Any]:
        """Create the backfill's jobs (one atomic claim), or report the existing one."""
        jobs = plan_backfill(
            self.document,
            self.descriptor.name,
            request,
            slices=self.settings.backfill_slices or 1,
            now=self.clock.time(),
        )
        if jobs is None:
            return {"id": backfill_id(self.descriptor.name, request.start, request.end), "existing": True}
        self.save_jobs(*jobs)
        return {"id": jobs[0].id.split(".")[0], "existing": False}

    def collect_jobs(self, job_ids: list[str], budget: Budget | None = None) -> bool:
        """Collect these jobs until caught up or done (True) or out of budget (False); as many at
        once as the provider allows, each with its own source."""
        budget = budget or self.budget
        workers = min(len(job_ids), self.settings.backfill_slices or 1)
        if workers <= 1:
            return all(self._collect_job(self.source, job_id, budget) for job_id in job_ids)
        free = [self.source] + [self._fork() for _ in range(workers - 1)]  # one source per worker
        free_lock = threading.Lock()

        def work(job_id: str) -> bool:
            with free_lock:
                source = free.pop()
            try:
                return self._collect_job(source, job_id, budget)
            finally:
                with free_lock:
                    free.append(source)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{self.descriptor.name}-slice") as pool:
            futures = [pool.submit(work, job_id) for job_id in job_ids]
            outcomes = [f.exception() or f.result() for f in futures]
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            raise errors[0]
        return all(outcomes)

    def _fork(self) -> Source:
        source = self.source.fork()
        with self._lock:
            self._sources.append(source)
        return source

    def _collect_job(self, source: Source, job_id: str, budget: Budget) -> bool:
        while True:
            job = self.job(job_id)
            window = self._open_window(source, job)
            if window is None:
                return True
            if not source.collect(window, WindowContext(self, job, source, window, budget)):
                return False

    def _open_window(self, source: Source, job: Job) -> Window | None:
        """The job's saved window, or a new one planned from its first gap (None: caught up)."""
        if job.window is not None:
            return self.descriptor.window_type.from_dict(job.window)
        if job.id == LIVE and not job.ranges:  # the very first run: everything no backfill owns
            lookback = self.started_at - self.settings.initial_lookback_days * 86400
            origin = max(lookback, self.descriptor.first_event_at(self.started_at))
            job.ranges = subtract([[self.descriptor.to_units(origin), None]], taken_by_others(self.document, LIVE))
        gap = job.next_gap(job.watermark)
        if gap is None:
            return None
        return source.plan(job, gap[0], gap[1], self.horizon_for(source))

    def horizon_for(self, source: Source) -> int:
        """The settled present: the run's start less the settle lag, by the earlier of this host's
        clock and the API's (once a response has said what the API's is)."""
        skew = _clock_skew(source)
        if skew is None or skew <= 0:
            return self.horizon
        return min(self.horizon, self.descriptor.to_units(self.started_at - skew - self.settings.settle_seconds))

    def check_clock(self, source: Source) -> None:
        """Refuse to archive or checkpoint anything while this host's clock is further ahead of
        the API's than the settle lag: the window being collected was planned from it, and closing
        it would skip what reaches the API in between."""
        skew = _clock_skew(source)
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


class WindowContext:
    """What a source may do while it collects one window of one job: read the settings and the
    budget, fill buffers, write parts, and save the window's progress."""

    def __init__(self, run: Run, job: Job, source: Source, window: Window, budget: Budget | None = None) -> None:
        self._run = run
        self._source = source
        self.job = job
        self._window_id = window.id
        self._window_fields = _as_planned(window)
        # Where the window starts: the job's first gap, as it was planned (the watermark moves
        # only when a window closes, so a resumed window finds the same start).
        gap = job.next_gap(job.watermark)
        self._start = gap[0] if gap is not None else job.watermark
        self.settings = run.settings
        self.budget = budget or run.budget
        self.page_limit: int = run.settings.page_limit or run.descriptor.largest_page

    @property
    def saved(self) -> bool:
        """Whether the job's checkpoint already holds an open window."""
        return self.job.window is not None

    def new_buffer(self) -> ObjectBuffer:
        return ObjectBuffer(self.settings.max_object_bytes, identify=self._run.identify)

    def key(self, dt: str, window: Window, part: int) -> str:
        return object_key(self._run.prefix, self._run.descriptor.name, dt, f"{window.id}-p{part:05d}")

    def write(self, dt: str, window: Window, part: int, buffer: ObjectBuffer) -> None:
        """The part's object; the window must have been saved first (``save``)."""
        if self.job.window is None:
            raise RuntimeError("a window is saved before its first object is written")
        key = self.key(dt, window, part)
        self._run.check_clock(self._source)
        body = self._run.put(key, buffer)
        self.job.record_part(manifest.part_record(key, body, buffer.events, buffer.ids, buffer.first, buffer.last))

    def blank(self, dt: str, window: Window, part: int) -> None:
        """Overwrite a part a restarted window no longer fills with an empty object."""
        key = self.key(dt, window, part)
        body = self._run.put(key, None)
        self.job.record_part(manifest.part_record(key, body, 0, [], None, None))

    def save(self, window: Window) -> None:
        """The window's progress, so the next run resumes it where this one stopped."""
        self._run.check_clock(self._source)
        if self.job.window is None and self.job.opened_at is None:
            self.job.opened_at = self._run.clock.time()  # when the window was first read: what its passes wait for
        self.job.window = window.to_dict()
        self._run.save_jobs(self.job)

    def close(self, watermark: int) -> None:
        """The window is archived whole: its manifest, then the job moves past it."""
        self._run.check_clock(self._source)
        commit.close_window(self._run, self.job, self._window_id, self._start, watermark, self._window_fields)

    def page_fetched(self, events: int) -> None:
        self._run.page_fetched(self.job.id, events)


def _clock_skew(source: Source) -> float | None:
    skew = getattr(source, "clock_skew", None)  # optional for a provider's source
    return skew() if callable(skew) else None


def _as_planned(window: Window) -> dict[str, Any] | None:
    """The window as its source planned it (its progress fields back at their defaults): what a
    sweep asks the API again. None for a window that is not a dataclass."""
    if not dataclasses.is_dataclass(window):
        return None
    required = {
        f.name: getattr(window, f.name)
        for f in dataclasses.fields(window)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return type(window)(**required).to_dict()
