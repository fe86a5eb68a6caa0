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
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from audit_collector.collector.backfill import BackfillRequest, plan_backfill
from audit_collector.collector.commit import commit_pending, sign_head
from audit_collector.collector.context import JobContext
from audit_collector.collector.gc import gc_paused
from audit_collector.collector.jobs import LIVE, Job, backfill_id, jobs_of, subtract, taken_by_others
from audit_collector.collector.provider import Source, Window
from audit_collector.collector.queue import any_due
from audit_collector.collector.result import ProgressCallback, RunResult
from audit_collector.collector.run import Run
from audit_collector.collector.settings import Budget, Settings
from audit_collector.collector.sweep import sweep
from audit_collector.evidence.signing import Signer
from audit_collector.http.clock import Clock
from audit_collector.storage.archive import ArchiveWriter
from audit_collector.storage.state import CheckpointStore, LeaseHeld

__all__ = ["collect"]


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
    settings = source.descriptor.fill(settings)
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
            commit_pending(run)  # a crashed run's manifest, named before it was written
            if backfill is not None:
                run.result.backfill = start_backfill(run, backfill)
            complete = collect_jobs(run, [LIVE], live_budget(run))
            if settings.sweep_after_seconds:  # beside live collection and backfills, never behind them
                report = sweep(run, sweep_budget(run))
                run.result.sweep = report.as_dict()
                complete = complete and report.complete
            pending = [job.id for job in jobs_of(run.document).values() if job.id != LIVE and not job.done]
            if pending:
                complete = collect_jobs(run, pending) and complete
        run.result.complete = complete
        failed = False
    finally:
        try:
            sign_head(run)
        except Exception:
            if not failed:
                raise  # a run that cannot sign fails: the proof must not fall behind in silence
        finally:
            with contextlib.suppress(Exception):  # best effort: an unreleased lease expires by itself
                store.release(lease)
            run.finish_report()
    return run.result


def live_budget(run: Run) -> Budget:
    """The run's budget, less the sweep's share when a pass is due: live collection that is
    catching up must not crowd out the sweep."""
    queue = run.document.get("sweep_queue") or []
    if not run.settings.sweep_after_seconds or not any_due(queue, run.clock.time(), run.descriptor.units_per_second):
        return run.budget
    seconds = max(0.0, run.budget.remaining() - run.settings.sweep_seconds)
    return Budget(
        run.clock,
        seconds,
        reserve_seconds=run.budget.reserve_seconds,
        request_seconds=run.budget.request_seconds,
    )


def sweep_budget(run: Run) -> Budget:
    budget = run.budget
    seconds = min(budget.remaining(), run.settings.sweep_seconds + budget.reserve_seconds + budget.request_seconds)
    return Budget(run.clock, seconds, reserve_seconds=budget.reserve_seconds, request_seconds=budget.request_seconds)


def start_backfill(run: Run, request: BackfillRequest) -> dict[str, Any]:
    """Create the backfill's jobs (one atomic claim), or report the existing one."""
    jobs = plan_backfill(
        run.document,
        run.descriptor.name,
        request,
        slices=run.settings.backfill_slices or 1,
        now=run.clock.time(),
    )
    if jobs is None:
        return {"id": backfill_id(run.descriptor.name, request.start, request.end), "existing": True}
    run.save_jobs(*jobs)
    return {"id": jobs[0].id.split(".")[0], "existing": False}


def collect_jobs(run: Run, job_ids: list[str], budget: Budget | None = None) -> bool:
    """Collect these jobs until caught up or done (True) or out of budget (False); as many at
    once as the provider allows, each with its own source."""
    budget = budget or run.budget
    workers = min(len(job_ids), run.settings.backfill_slices or 1)
    if workers <= 1:
        return all(_collect_job(run, run.source, job_id, budget) for job_id in job_ids)
    free = [run.source] + [run.fork_source() for _ in range(workers - 1)]  # one source per worker
    free_lock = threading.Lock()

    def work(job_id: str) -> bool:
        with free_lock:
            source = free.pop()
        try:
            return _collect_job(run, source, job_id, budget)
        finally:
            with free_lock:
                free.append(source)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{run.descriptor.name}-slice") as pool:
        futures = [pool.submit(work, job_id) for job_id in job_ids]
        outcomes = [f.exception() or f.result() for f in futures]
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        raise errors[0]
    return all(outcomes)


def _collect_job(run: Run, source: Source, job_id: str, budget: Budget) -> bool:
    while True:
        job = run.job(job_id)
        window = _open_window(run, source, job)
        if window is None:
            return True
        if not source.collect(window, JobContext(run, job, source, window, budget)):
            return False


def _open_window(run: Run, source: Source, job: Job) -> Window | None:
    """The job's saved window, or a new one planned from its first gap (None: caught up)."""
    if job.window is not None:
        return run.descriptor.window_type.from_dict(job.window)
    if job.id == LIVE and not job.ranges:  # the very first run: everything no backfill owns
        lookback = run.started_at - run.settings.initial_lookback_days * 86400
        origin = max(lookback, run.descriptor.first_event_at(run.started_at))
        job.ranges = subtract([[run.descriptor.to_units(origin), None]], taken_by_others(run.document, LIVE))
    gap = job.next_gap(job.watermark)
    if gap is None:
        return None
    return source.plan(job, gap[0], gap[1], run.horizon_for(source))
