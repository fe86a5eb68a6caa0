"""The job loop: one provider's run under its lease, with no knowledge of which provider it is.

The one rule that makes the archive exactly-once: an object is written (under a deterministic
name) *before* the checkpoint that moves past its events is saved. A crash between the two leaves
a checkpoint that leads the next run to the same name, which it overwrites.

A run takes the provider's lease, starts a new backfill if asked, collects the live job, then
unfinished backfills with the time left. A job is collected window after window: the source plans
a window from the job's first gap, then collects it through a ``WindowContext``, the only door to
the archive and the checkpoint a source has.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .. import manifest
from ..archive import EMPTY_GZIP, ArchiveWriter, ObjectBuffer, manifest_key, object_key
from ..dates import utc_date
from ..errors import ClockSkew, WriteRefused
from ..http_retry import Clock
from ..state import CheckpointStore, Lease, LeaseHeld
from .backfill import (
    BackfillRequest,
    backfill_jobs,
    compact,
    fraction_archived,
    plan_backfill,
    summarize_backfills,
)
from .gc import gc_paused
from .jobs import LIVE, Job, backfill_id, jobs_of, subtract, taken_by_others
from .settings import Budget, Settings
from .source import Source, Window
from .sweep import sweep


@dataclass
class RunResult:
    """What one run did, as the handler returns it (``as_dict``) and the metrics report it."""

    provider: str
    events_written: int = 0
    objects_written: int = 0
    pages: int = 0
    complete: bool = False
    checkpoint: dict[str, Any] | None = None
    status: str = "ok"  # ok | lease_held
    message: str = ""
    behind_seconds: float | None = None
    retries: int = 0
    rate_limited: int = 0
    backfill: dict[str, Any] | None = None  # the backfill this invocation asked for
    backfills: list[dict[str, Any]] = field(default_factory=list)  # every unfinished one, after the run
    sweep: dict[str, Any] | None = None  # the late-event sweep's report (when it is on)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "provider": self.provider,
            "events_written": self.events_written,
            "objects_written": self.objects_written,
            "pages": self.pages,
            "complete": self.complete,
            "checkpoint": self.checkpoint,
        }
        if self.status != "ok":
            out["status"] = self.status
            out["message"] = self.message
        if self.behind_seconds is not None:
            out["behind_seconds"] = round(self.behind_seconds, 1)
        if self.backfill is not None:
            out["backfill"] = self.backfill
        if self.backfills:
            out["backfills"] = self.backfills
        if self.sweep is not None:
            out["sweep"] = self.sweep
        return out


@dataclass(frozen=True)
class Progress:
    """After each page: counts for this run, and how far the backfill (if any) has come."""

    job_id: str
    pages: int
    events: int  # fetched by this run so far
    backfill_fraction: float | None  # archived share of the backfill's range (None without one)
    slices_done: int
    slices: int


ProgressCallback = Callable[[Progress], None]


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
) -> RunResult:
    """Run one provider under its lease: a new backfill (if asked), the live job, then unfinished
    backfills with the time left. Raises what the source raises (after releasing the lease)."""
    name = source.descriptor.name
    settings = settings.for_provider(source.descriptor)
    owner = owner or uuid.uuid4().hex
    now = clock.time()
    expires_at = now + budget.remaining() + settings.lease_margin_seconds
    try:
        lease = store.acquire(name, owner=owner, expires_at=expires_at, now=now)
    except LeaseHeld as held:
        return RunResult(name, status="lease_held", message=str(held))
    run = _Run(source, store, archive, prefix, lease, settings, clock, budget, progress)
    try:
        with gc_paused():
            if backfill is not None:
                run.result.backfill = run.start_backfill(backfill)
            complete = run.collect_jobs([LIVE])
            pending = [job.id for job in jobs_of(run.document).values() if job.id != LIVE and not job.done]
            if complete and pending:
                complete = run.collect_jobs(pending)
            if complete and settings.sweep_after_seconds:  # late events, once collection is done
                run.result.sweep = sweep(run).as_dict()
        run.result.complete = complete
    finally:
        with contextlib.suppress(Exception):  # best effort: an unreleased lease expires by itself
            store.release(lease)
        run.finish_report()
    return run.result


class _Run:
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
    ) -> None:
        self.source, self.descriptor = source, source.descriptor
        self.store, self.archive, self.prefix, self.lease = store, archive, prefix, lease
        self.settings, self.clock, self.budget, self.progress = settings, clock, budget, progress
        self.result = RunResult(self.descriptor.name)
        # Fixed once: a run collects up to where real time stood when it started, then stops.
        # (Planning against a moving "now" would chase the clock in ever thinner windows.)
        self.started_at = clock.time()
        self.horizon = self.descriptor.to_units(self.started_at - settings.settle_seconds)
        self._sources = [source]
        self._lock = threading.Lock()
        self._chain_lock = threading.Lock()  # one manifest chain per provider: windows close one at a time
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

    def collect_jobs(self, job_ids: list[str]) -> bool:
        """Collect these jobs until caught up or done (True) or out of budget (False); as many at
        once as the provider allows, each with its own source."""
        workers = min(len(job_ids), self.settings.backfill_slices or 1)
        if workers <= 1:
            return all(self._collect_job(self.source, job_id) for job_id in job_ids)
        free = [self.source] + [self._fork() for _ in range(workers - 1)]  # one source per worker
        free_lock = threading.Lock()

        def work(job_id: str) -> bool:
            with free_lock:
                source = free.pop()
            try:
                return self._collect_job(source, job_id)
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

    def _collect_job(self, source: Source, job_id: str) -> bool:
        while True:
            job = self.job(job_id)
            window = self._open_window(source, job)
            if window is None:
                return True
            if not source.collect(window, WindowContext(self, job, source, window)):
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
        other top-level fields in the same write (a closing window's new chain head)."""
        with self._lock:
            document = dict(self.document)
            document["jobs"] = {**document.get("jobs", {}), **{job.id: job.to_dict() for job in jobs}}
            document.update(fields)
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

    def close_window(
        self, job: Job, window_id: str, start: int, watermark: int, window_fields: dict[str, Any] | None = None
    ) -> None:
        """The window's manifest (after its objects), then the checkpoint that closes it and moves
        the chain's head (one write). Serialized: concurrent slices extend one chain."""
        with self._chain_lock:
            chain = dict(self.document.get("chain") or {})
            unit = self.descriptor.units_per_second
            dt = utc_date(start / unit)
            key = manifest_key(self.prefix, self.descriptor.name, dt, window_id)
            document = manifest.build(
                provider=self.descriptor.name,
                job=job.id,
                window=window_id,
                start=start,
                end=watermark,
                unit=unit,
                parts=sorted(job.parts, key=lambda p: p["key"]),
                chain=chain,
                written_at=self.clock.time(),
                window_fields=window_fields,
            )
            body = manifest.encode(document)
            self.put_body(key, body)
            job.watermark, job.window, job.parts = watermark, None, []
            head = {"head": manifest.sha256_of(body), "count": document["seq"], "key": key}
            self.save_jobs(job, chain=head)

    def put_body(self, key: str, body: bytes) -> None:
        """Fenced: renew the lease (refused once it expired or moved), then write only if the key
        is still what we saw before renewing. A run paused anywhere in between and overtaken by the
        next owner can no longer replace anything that owner wrote.

        Most keys are new, so the first try assumes the key is absent (``If-None-Match``): nothing
        to look at first. Only when something is there (an orphan of a crashed run, a part a
        restarted window empties) is its version read, the lease renewed again, and that version
        replaced (``If-Match``)."""
        self._renew()
        try:
            self.archive.put(key, body, replaces=None)
            return
        except WriteRefused:
            seen = self.archive.version(key)
            if seen is None:  # there a moment ago, gone now: not ours to guess about
                raise
        self._renew()
        self.archive.put(key, body, replaces=seen)

    def _renew(self) -> None:
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

    def __init__(self, run: _Run, job: Job, source: Source, window: Window) -> None:
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
        self.budget = run.budget
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
        self.job.window = window.to_dict()
        self._run.save_jobs(self.job)

    def close(self, watermark: int) -> None:
        """The window is archived whole: its manifest, then the job moves past it."""
        self._run.check_clock(self._source)
        self._run.close_window(self.job, self._window_id, self._start, watermark, self._window_fields)

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
