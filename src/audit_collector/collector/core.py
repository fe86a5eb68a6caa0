"""What both strategies share: settings, the time budget, the lease, and write-then-checkpoint.

The one rule that makes the archive exactly-once: an object is written (under a deterministic
name) *before* the checkpoint that moves past its events is saved. A crash between the two leaves
a checkpoint that leads the next run to the same name, which it overwrites.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ..archive import DEFAULT_MAX_OBJECT_BYTES, ArchiveWriter, ObjectBuffer, object_key
from ..errors import BudgetExhausted
from ..http_retry import Clock
from ..state import CheckpointStore, Lease, LeaseHeld
from ..transport import gc_paused
from .jobs import LIVE, Job, Range, backfill_id, covered, jobs_of, subtract, taken_by_others


@dataclass(frozen=True)
class Settings:
    """Tunables, with the defaults the Lambda uses."""

    settle_seconds: int = 120
    initial_lookback_days: float = 7
    http_timeout: float = 30
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    slack_page_limit: int = 9999
    asana_page_limit: int = 100
    write_reserve_seconds: float = 15.0  # kept back for the last object write and checkpoint
    lease_margin_seconds: float = 30.0  # a crashed run's lease outlives its deadline by this much
    max_window_restarts: int = 3  # invalid cursors in a row before the run gives up
    # Published limits: Slack ~50 calls/min for the whole org, Asana 1,500 calls/min per token.
    # Pace just under them: proactive spacing costs nothing, every 429 costs a round trip and a wait.
    slack_calls_per_minute: float | None = 48.0  # None: no pacing (tests that control time)
    asana_calls_per_minute: float | None = 1480.0
    # Asana counts calls per minute: 20 a minute under its limit, a run may start with 20 at once
    # and no minute ever holds more than 1,500. Slack's limit is shared by every app of the org:
    # no burst there.
    slack_pacing_burst: int = 1
    asana_pacing_burst: int = 20
    asana_backfill_slices: int = 8  # Asana backfills fetch this many time slices at once

    def calls_per_minute(self, provider: str) -> float | None:
        return self.slack_calls_per_minute if provider == "slack" else self.asana_calls_per_minute

    def pacing_burst(self, provider: str) -> int:
        return self.slack_pacing_burst if provider == "slack" else self.asana_pacing_burst


class Budget:
    """The invocation's time, on the monotonic clock. Knows whether one more request fits."""

    def __init__(self, clock: Clock, seconds: float, *, reserve_seconds: float, request_seconds: float) -> None:
        self.clock = clock
        self.deadline = clock.monotonic() + seconds
        self.reserve_seconds = reserve_seconds
        self.request_seconds = request_seconds

    @classmethod
    def for_run(cls, clock: Clock, seconds: float, settings: Settings) -> Budget:
        """A run's budget: ``seconds`` from now, keeping back what the settings say a request and the
        last write need."""
        return cls(
            clock, seconds, reserve_seconds=settings.write_reserve_seconds, request_seconds=settings.http_timeout
        )

    def remaining(self) -> float:
        return self.deadline - self.clock.monotonic()

    def allows(self, seconds: float = 0.0) -> bool:
        """True if ``seconds`` of waiting, then one request, then the final write all still fit."""
        return self.remaining() - self.reserve_seconds - self.request_seconds >= seconds


class BudgetedClock(Clock):
    """The clock the API clients get: it refuses a retry wait that would overrun the budget."""

    def __init__(self, clock: Clock, budget: Budget) -> None:
        self._clock = clock
        self.budget = budget

    def time(self) -> float:
        return self._clock.time()

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def sleep(self, seconds: float) -> None:
        if not self.budget.allows(seconds):
            raise BudgetExhausted(
                f"a retry wait of {seconds:.1f}s would overrun the time budget "
                f"({self.budget.remaining():.1f}s left); stopping at the last checkpoint"
            )
        self._clock.sleep(seconds)


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


class Run:
    """One provider's run: holds the lease, writes objects, saves job checkpoints, counts.

    Thread-safe where Asana's backfill slices need it: saves are serialized, writes are not.
    """

    def __init__(
        self,
        *,
        provider: str,
        store: CheckpointStore,
        archive: ArchiveWriter,
        prefix: str,
        lease: Lease,
        settings: Settings,
        clock: Clock,
        budget: Budget,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.provider = provider
        self.store = store
        self.archive = archive
        self.prefix = prefix
        self.lease = lease
        self.settings = settings
        self.clock = clock
        self.budget = budget
        self.progress = progress
        self.result = RunResult(provider)
        # Fixed once: a run collects up to where real time stood when it started, then stops.
        # (Planning against a moving "now" would chase the clock in ever thinner windows.)
        self.started_at = clock.time()
        self._lock = threading.Lock()
        self._events_fetched = 0

    @property
    def document(self) -> dict[str, Any]:
        return self.lease.checkpoint

    def job(self, job_id: str) -> Job:
        return jobs_of(self.document).get(job_id) or Job(job_id)

    def next_gap(self, job: Job, source: Source) -> tuple[int, int | None] | None:
        """The job's first stretch still to collect, or None when it is caught up (or done). On its
        very first run the live job first takes everything from the source's live origin on that no
        backfill owns."""
        if job.id == LIVE and not job.ranges:
            job.ranges = subtract([[source.live_origin(self), None]], taken_by_others(self.document, LIVE))
        return job.next_gap(job.watermark)

    def save_job(self, *jobs: Job) -> None:
        """Second half of the rule: the job's checkpoint (several jobs at once: one atomic claim)."""
        with self._lock:
            document = dict(self.document)
            document["jobs"] = {**document.get("jobs", {}), **{job.id: job.to_dict() for job in jobs}}
            self.store.save(self.lease, document)

    def new_buffer(self) -> ObjectBuffer:
        return ObjectBuffer(self.settings.max_object_bytes)

    def key(self, dt: str, window_id: str, part: int) -> str:
        return object_key(self.prefix, self.provider, dt, f"{window_id}-p{part:05d}")

    def write(self, key: str, buffer: ObjectBuffer) -> None:
        """First half of the rule: the object, under its deterministic name."""
        self.archive.put(key, buffer.finish())
        with self._lock:
            self.result.objects_written += 1
            self.result.events_written += buffer.events

    def page_fetched(self, job_id: str, events: int) -> None:
        with self._lock:
            self.result.pages += 1
            self._events_fetched += events
            pages, fetched = self.result.pages, self._events_fetched
        if self.progress is None:
            return
        wanted = self.result.backfill["id"] if self.result.backfill else None
        jobs = [j for j in jobs_of(self.document).values() if wanted and j.id.split(".")[0] == wanted]
        total = sum(covered(j.ranges) or 0 for j in jobs)
        archived = sum((j.progress() or 0) * (covered(j.ranges) or 0) for j in jobs)
        fraction = (archived / total if total else 1.0) if jobs else None
        self.progress(Progress(job_id, pages, fetched, fraction, sum(j.done for j in jobs), len(jobs)))


class Source(Protocol):
    """An ordering strategy: Slack's forward windows, or Asana's oldest-first stream."""

    provider: str
    units_per_second: int  # the unit of its ranges: 1 (Slack seconds) or 1000 (Asana ms)

    def collect(self, run: Run, job_ids: list[str]) -> bool:
        """Collect these jobs until caught up or done (True) or out of budget (False)."""

    def live_origin(self, run: Run) -> int:
        """Where the live job starts on its very first run."""

    def stats(self) -> dict[str, int]:
        """The client's request, retry and 429 counters."""


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
    owner = owner or uuid.uuid4().hex
    now = clock.time()
    expires_at = now + budget.remaining() + settings.lease_margin_seconds
    try:
        lease = store.acquire(source.provider, owner=owner, expires_at=expires_at, now=now)
    except LeaseHeld as held:
        return RunResult(source.provider, status="lease_held", message=str(held))
    run = Run(
        provider=source.provider,
        store=store,
        archive=archive,
        prefix=prefix,
        lease=lease,
        settings=settings,
        clock=clock,
        budget=budget,
        progress=progress,
    )
    before = source.stats()
    try:
        with gc_paused():
            if backfill is not None:
                run.result.backfill = start_backfill(run, source, backfill)
            complete = source.collect(run, [LIVE])
            pending = [job.id for job in jobs_of(run.document).values() if job.id != LIVE and not job.done]
            if complete and pending:
                complete = source.collect(run, pending)
        run.result.complete = complete
    finally:
        store.release(lease)
        after = source.stats()
        run.result.retries = after["retries"] - before["retries"]
        run.result.rate_limited = after["rate_limited"] - before["rate_limited"]
        run.result.checkpoint = lease.checkpoint
        live = jobs_of(lease.checkpoint).get(LIVE)
        if live is not None and live.watermark is not None:
            run.result.behind_seconds = max(0.0, clock.time() - live.watermark / source.units_per_second)
        run.result.backfills = [b for b in summarize_backfills(lease.checkpoint, source) if not b["done"]]
        if run.result.backfill is not None:
            done = {b["id"]: b for b in summarize_backfills(lease.checkpoint, source)}
            run.result.backfill.update(done.get(run.result.backfill["id"], {}))
    return run.result


@dataclass(frozen=True)
class BackfillRequest:
    """A validated backfill range in the provider's unit, with what validation clamped."""

    start: int
    end: int
    notes: tuple[str, ...] = ()


def start_backfill(run: Run, source: Source, request: BackfillRequest) -> dict[str, Any]:
    """Create the backfill's jobs (claiming what no other job owns), or report the existing one."""
    bid = backfill_id(source.provider, request.start, request.end)
    jobs = jobs_of(run.document)
    if any(job_id == bid or job_id.startswith(bid + ".") for job_id in jobs):
        return {"id": bid, "existing": True}
    ranges = subtract([[request.start, request.end]], taken_by_others(run.document, bid))
    skipped = subtract([[request.start, request.end]], ranges)
    slices = source_slices(source, run.settings, ranges)
    meta = {
        "start": request.start,
        "end": request.end,
        "skipped": skipped,
        "notes": list(request.notes),
        "created_at": run.clock.time(),
    }
    new_jobs = [Job(bid if len(slices) == 1 else f"{bid}.{i}", ranges=r, meta=meta) for i, r in enumerate(slices)]
    run.save_job(*new_jobs)  # one conditional write: the claim is atomic
    return {"id": bid, "existing": False}


def source_slices(source: Source, settings: Settings, ranges: list[Range]) -> list[list[Range]]:
    """Asana backfills split into time slices fetched at once; Slack's org-wide limit needs one."""
    count = settings.asana_backfill_slices if source.provider == "asana" else 1
    total = covered(ranges) or 0
    if count <= 1 or total == 0:
        return [ranges]
    size = -(-total // count)
    slices: list[list[Range]] = [[]]
    room = size
    for start, end in ranges:
        while start < end:
            if room == 0:
                slices.append([])
                room = size
            take = min(room, end - start)
            slices[-1].append([start, start + take])
            start += take
            room -= take
    return slices


def summarize_backfills(document: dict[str, Any], source: Source) -> list[dict[str, Any]]:
    """One line per backfill: its range, progress and what it skipped, in ISO 8601."""
    groups: dict[str, list[Job]] = {}
    for job in jobs_of(document).values():
        if job.id != LIVE:
            groups.setdefault(job.id.split(".")[0], []).append(job)
    out = []
    unit = source.units_per_second
    for bid, jobs in sorted(groups.items(), key=lambda g: g[1][0].meta.get("created_at", 0)):
        meta = jobs[0].meta
        total = sum(covered(j.ranges) or 0 for j in jobs)
        archived = sum((j.progress() or 0) * (covered(j.ranges) or 0) for j in jobs)
        out.append(
            {
                "id": bid,
                "start": iso(meta["start"] / unit),
                "end": iso(meta["end"] / unit),
                "done": all(j.done for j in jobs),
                "progress": round(archived / total, 4) if total else 1.0,
                "slices": len(jobs),
                "slices_done": sum(j.done for j in jobs),
                "skipped": [[iso(s / unit), iso(e / unit)] for s, e in meta.get("skipped", [])],
                "notes": meta.get("notes", []),
            }
        )
    return out


def utc_date(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d")


def end_of_utc_day(epoch_seconds: int) -> int:
    """The last second of the UTC day holding ``epoch_seconds``."""
    return epoch_seconds - epoch_seconds % 86400 + 86399


def iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
