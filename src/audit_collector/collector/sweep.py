"""The late-event sweep, as durable work: every closed stretch is re-read at fixed ages, whatever
else the provider's runs are doing.

An event that reaches the API later than ``SETTLE_SECONDS`` after its own time falls in a window
that has closed. So when a window closes, the commit that closes it also queues its passes
(``queue.enqueue``): one per entry of ``Settings.sweep_after_seconds`` (say half an hour and a day after
the window ended) that could still find something, i.e. whose time comes after the window was first
read (a backfill of old data queues none). Consecutive windows of one job closed within a few
minutes share one queue entry, so the queue stays small (``QUEUE_LIMIT``; past it the oldest
entries are given up, and counted).

A pass is a resumable unit of its own: it pages its stretch through the provider's own ``collect``
and ``plan``, as a job would, with a ``SweepContext`` that keeps only events whose id no object of
the stretch holds and writes them as parts named after the stretch and the pass
(``{start}-{end}-s{age}-p{part}``). Its progress (the provider's window, the parts written) is
saved in its queue entry after every part, so a budget stop or an expired cursor goes on from there,
in this run or the next. Due passes take turns of ``TURN_PAGES`` pages within ``sweep_share`` of
the provider's pace: one large stretch never holds the others up. When several of an entry's ages
are due at once (after an outage), one pass does for all of them.

A pass that found late events ends like a window: its parts (and an empty object over any part a
crashed attempt left under another date), its own manifest (a new link of the chain, ``sweep`` in
it says which pass), then the checkpoint. Exactly once: every name is fixed by the stretch, the
pass and the part index, the manifest is named in the checkpoint before it is written
(``commit.commit_pending``), and the ids a pass skips are read from the stretch's objects, less the
pass's own.

Never silence: a pass given up (the queue full, ``FAILURES_LIMIT`` failed turns in a row, a stretch
older than the API keeps events) counts in ``given_up``; a pass still waiting an hour after it was
due counts in ``overdue``. The handler publishes both, and the stack alarms on them.
"""

from __future__ import annotations

import copy
import logging
import sys
from typing import TYPE_CHECKING, Any

from audit_collector.collector.commit import commit_pending, tidy
from audit_collector.collector.jobs import Job
from audit_collector.collector.passes import SweepContext, Turn
from audit_collector.collector.queue import (
    FAILURES_LIMIT,
    OVERDUE_SECONDS,
    TURN_PAGES,
    due_age,
    pass_id,
    same,
    save_entry,
)
from audit_collector.collector.result import SweepReport
from audit_collector.collector.settings import Budget
from audit_collector.dates import utc_date
from audit_collector.errors import ApiError, BudgetExhausted
from audit_collector.storage.archive import decode_object
from audit_collector.storage.keys import manifest_key, name_bounds, object_window

if TYPE_CHECKING:
    from audit_collector.collector.run import Run

log = logging.getLogger(__name__)


def sweep(run: Run, budget: Budget) -> SweepReport:
    """Give every due pass turns until each is done or this run's share is spent."""
    descriptor, report = run.descriptor, SweepReport()
    unit, now = descriptor.units_per_second, run.clock.time()
    report.given_up += run.sweep_given_up
    queue = list(run.document.get("sweep_queue") or [])
    kept = _give_up_expired(run, queue, now, report)
    if kept != queue:
        run.save_jobs(sweep_queue=kept)
    archived: dict[tuple[str, int, int], set[Any]] = {}  # per entry, read once a run
    turns = [e for e in kept if due_age(e, now, unit) is not None]
    while turns and budget.allows():
        waiting = []
        for entry in turns:
            if not budget.allows():
                waiting.append(entry)
                continue
            if _turn(run, budget, entry, archived, report) == "more":
                waiting.append(entry)
        turns = waiting
    queue = list(run.document.get("sweep_queue") or [])
    for entry in queue:
        age = due_age(entry, now, unit)
        if age is not None:
            report.waiting += 1
            if entry["end"] / unit + age + OVERDUE_SECONDS < now:
                report.overdue += 1
    report.queued = len(queue)
    if report.passes or report.given_up or report.overdue:
        log.info(
            "late-event sweep: %d passes in %d calls, %d late events, %d waiting (%d overdue), %d given up",
            report.passes,
            report.calls,
            report.late_events,
            report.waiting,
            report.overdue,
            report.given_up,
            extra={"provider": descriptor.name, "sweep": report.as_dict()},
        )
    return report


def _give_up_expired(run: Run, queue: list[dict[str, Any]], now: float, report: SweepReport) -> list[dict[str, Any]]:
    """Entries whose stretch the API no longer keeps (Asana deletes events after 90 days)."""
    descriptor = run.descriptor
    keeps = descriptor.retention_days
    if not keeps:
        return queue
    oldest = descriptor.to_units(now - keeps * 86400)
    kept = []
    for entry in queue:
        if entry["start"] < oldest and "pass" not in entry:  # a pass under way ends (and commits) first
            report.given_up += len(entry["ages"])
            log.error(
                "late-event sweep: %s..%s is older than the API keeps events; %d passes given up",
                entry["start"],
                entry["end"],
                len(entry["ages"]),
                extra={"provider": descriptor.name},
            )
            continue
        kept.append(entry)
    return kept


def _saved_pass(run: Run, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The pass's progress as its queue entry holds it now."""
    saved = next((e for e in run.document.get("sweep_queue") or [] if same(e, entry)), {})
    return copy.deepcopy(saved.get("pass"))


def _turn(
    run: Run, budget: Budget, entry: dict[str, Any], archived: dict[tuple[str, int, int], set[Any]], report: SweepReport
) -> str:
    """One turn of one pass: "done", or "more" (its turn is over, or the budget stopped it)."""
    unit = run.descriptor.units_per_second
    entry = next((e for e in run.document.get("sweep_queue") or [] if same(e, entry)), None)
    if entry is None:
        return "done"
    age = due_age(entry, run.clock.time(), unit)
    assert age is not None
    name = pass_id(entry, age)
    state = copy.deepcopy(entry.get("pass")) or {
        "age": age,
        "job": {"ranges": [[entry["start"], entry["end"]]]},
        "failures": 0,
    }
    job = Job.from_dict(name, state["job"])
    ident = (entry["job"], entry["start"], entry["end"])
    if ident not in archived:
        archived[ident] = _archived_ids(run, entry["start"], entry["end"], name)
    turn = Turn(budget, TURN_PAGES)
    before = _saved_pass(run, entry)
    try:
        while True:
            if job.window is not None:
                window = run.descriptor.window_type.from_dict(job.window)
            else:
                gap = job.next_gap(job.watermark)
                window = None if gap is None else run.source.plan(job, gap[0], gap[1], entry["end"])
            if window is None:
                _finish(run, entry, state, job, age, report)
                return "done"
            ctx = SweepContext(run, entry, state, job, turn, archived[ident], report)
            try:
                closed = run.source.collect(window, ctx)
            except BudgetExhausted:
                closed = False
            finally:
                report.calls += ctx.calls
            if not closed:
                if turn.pages == TURN_PAGES and turn.used >= turn.pages and _saved_pass(run, entry) == before:
                    # A whole turn of pages, and the source saved no place (it saves its window before a
                    # write, and these pages held nothing new): the next turn would start the stretch
                    # again, forever. This pass gets the rest of the run's share instead.
                    log.warning(
                        "late-event sweep: pass %s kept no place after %d pages; it reads on past its turn",
                        name,
                        turn.used,
                        extra={"provider": run.descriptor.name},
                    )
                    turn = Turn(budget, sys.maxsize)
                    continue
                return "more"
    except (ApiError, ConnectionError) as exc:
        state["failures"] = state.get("failures", 0) + 1
        if state["failures"] >= FAILURES_LIMIT:
            report.given_up += 1
            log.error(
                "late-event sweep: pass %s failed %d turns in a row; given up (%s)",
                name,
                state["failures"],
                exc,
                extra={"provider": run.descriptor.name},
            )
            if job.parts:  # what it found so far is archived: commit it, so no part is left outside the chain
                save_entry(run, entry, {**state, "job": job.to_dict()})
                _finish(run, entry, state, job, age, report)
            else:
                save_entry(run, entry, None, drop_ages_to=age)
            return "done"
        log.warning("late-event sweep: pass %s failed (%s); it goes on next turn", name, exc)
        save_entry(run, entry, {**state, "job": job.to_dict()})
        return "done"  # no more turns this run


def _archived_ids(run: Run, start: int, end: int, own: str) -> set[Any]:
    """Ids in every object under the stretch's dates whose window may overlap it, but the pass's own
    parts (a crashed attempt's, which the pass writes again)."""
    unit, ids = run.descriptor.units_per_second, set()
    day, last = start / unit, (end - 1) / unit
    while utc_date(day) <= utc_date(last):
        for key in run.archive.keys(f"{run.prefix}{run.descriptor.name}/dt={utc_date(day)}/"):
            window = object_window(key)
            bounds = name_bounds(window)
            if window == own or (bounds is not None and (bounds[0] >= end or bounds[1] < start)):
                continue
            try:
                ids.update(map(run.descriptor.event_id, decode_object(run.archive.get(key))))
            except (ValueError, OSError, KeyError) as exc:
                log.warning("late-event sweep: %s is not gzip JSON Lines (%s); verify reports it", key, exc)
        day += 86400
    return ids


def _finish(run: Run, entry: dict[str, Any], state: dict[str, Any], job: Job, age: float, report: SweepReport) -> None:
    """The pass is read whole: with late events, its manifest and the checkpoint (one commit);
    without, only the checkpoint."""
    report.passes += 1
    name = pass_id(entry, age)
    tidy(run, name, entry["start"], entry["end"], job)
    if not job.parts:
        save_entry(run, entry, None, drop_ages_to=age)
        return
    unit = run.descriptor.units_per_second
    with run.chain_lock:
        pending = {
            "kind": "sweep",
            "key": manifest_key(run.prefix, run.descriptor.name, utc_date(entry["start"] / unit), name),
            "seq": run.chain().get("count", 0) + 1,
            "entry": [entry["job"], entry["start"], entry["end"]],
            "age": age,
        }
        save_entry(run, entry, {**state, "job": job.to_dict()}, pending=pending)
        commit_pending(run)
