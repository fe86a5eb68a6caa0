"""The late-event sweep, as durable work: every closed stretch is re-read at fixed ages, whatever
else the provider's runs are doing.

An event that reaches the API later than ``SETTLE_SECONDS`` after its own time falls in a window
that has closed. So when a window closes, the commit that closes it also queues its passes
(``enqueue``): one per entry of ``Settings.sweep_after_seconds`` (say half an hour and a day after
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
(``Run.commit_pending``), and the ids a pass skips are read from the stretch's objects, less the
pass's own.

Never silence: a pass given up (the queue full, ``FAILURES_LIMIT`` failed turns in a row, a stretch
older than the API keeps events) counts in ``given_up``; a pass still waiting an hour after it was
due counts in ``overdue``. The handler publishes both, and the stack alarms on them.
"""

from __future__ import annotations

import copy
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from audit_collector.collector.commit import commit_manifest, commit_pending, pass_id, tidy
from audit_collector.collector.jobs import Job
from audit_collector.collector.settings import Budget
from audit_collector.dates import utc_date
from audit_collector.errors import ApiError, BudgetExhausted
from audit_collector.evidence import manifest as manifests
from audit_collector.storage.archive import (
    ObjectBuffer,
    decode_object,
    manifest_key,
    name_bounds,
    object_key,
    object_window,
)

if TYPE_CHECKING:
    from audit_collector.collector.loop import Run
    from audit_collector.collector.source import Window
    from audit_collector.json_text import Line

log = logging.getLogger(__name__)

QUEUE_LIMIT = 400  # entries per provider; each is about 150 bytes of the checkpoint
TURN_PAGES = 5  # pages a pass gets before the next due pass has its turn
FAILURES_LIMIT = 5  # turns in a row a pass fails before it is given up
OVERDUE_SECONDS = 3600  # a pass still not done this long after it was due is overdue
# How late a late event was, at least: from its own time to when its window closed.
LATENESS_BUCKETS = ((300, "under_5m"), (1800, "5m_30m"), (7200, "30m_2h"), (86400, "2h_24h"))


@dataclass
class SweepReport:
    passes: int = 0  # passes finished
    calls: int = 0  # pages asked for
    late_events: int = 0
    given_up: int = 0  # passes that will never run (LateEventsUnchecked)
    overdue: int = 0  # passes due for over an hour, still waiting (SweepOverdue)
    waiting: int = 0  # passes due and not finished when the run ended
    queued: int = 0  # queue entries after the run
    lateness: Counter = field(default_factory=Counter)  # bucket -> events

    @property
    def complete(self) -> bool:
        return self.waiting == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "passes": self.passes,
            "calls": self.calls,
            "late_events": self.late_events,
            "given_up": self.given_up,
            "overdue": self.overdue,
            "waiting": self.waiting,
            "queued": self.queued,
            "lateness": dict(self.lateness),
            "complete": self.complete,
        }


def lateness_bucket(seconds: float) -> str:
    for limit, name in LATENESS_BUCKETS:
        if seconds < limit:
            return name
    return "over_24h"


# --------------------------------------------------------------------------- the queue


def enqueue(
    queue: list[dict[str, Any]],
    *,
    job: str,
    start: int,
    end: int,
    unit: int,
    opened: float,
    closed: float,
    ages: tuple[float, ...],
) -> tuple[list[dict[str, Any]], int]:
    """The queue with the passes of a window that just closed (``[start, end)``, first read at
    ``opened``), and how many passes were given up to keep it within ``QUEUE_LIMIT``."""
    due = sorted(a for a in ages if end / unit + a > opened)
    if not due:
        return queue, 0
    # An event older than the latest age when the window was first read was missed only if it was
    # later than that age: past what the sweep looks for. So a backfill's long window is re-read
    # over its last stretch only, not from its start.
    start = max(start, int((opened - due[-1]) * unit))
    queue = list(queue)
    merge_seconds = min(ages) / 3
    for i in range(len(queue) - 1, -1, -1):
        last = queue[i]
        if last["job"] != job:
            continue
        if (
            last["end"] == start
            and "pass" not in last
            and last["ages"] == due
            and closed - last["first"] <= merge_seconds
        ):
            queue[i] = {**last, "end": end, "closed": closed}
            return queue, 0
        break
    queue.append({"job": job, "start": start, "end": end, "first": closed, "closed": closed, "ages": due})
    dropped = 0
    while len(queue) > QUEUE_LIMIT:  # never an entry whose pass is under way: its parts must be committed
        idle = [i for i in range(len(queue)) if "pass" not in queue[i]]
        if not idle:
            break
        oldest = min(idle, key=lambda i: queue[i]["end"] / unit + queue[i]["ages"][-1])
        dropped += len(queue.pop(oldest)["ages"])
    return queue, dropped


def sweep_due(run: Run) -> bool:
    """Whether any pass is due now (so live collection leaves the sweep its share)."""
    now, unit = run.clock.time(), run.descriptor.units_per_second
    return any(_due_age(e, now, unit) is not None for e in run.document.get("sweep_queue") or [])


def _due_age(entry: dict[str, Any], now: float, unit: int) -> float | None:
    """The pass to run now: the one under way, else the latest age that is due (None: none is)."""
    if "pass" in entry:
        return entry["pass"]["age"]
    due = [a for a in entry["ages"] if entry["end"] / unit + a <= now]
    return max(due) if due else None


def _same(entry: dict[str, Any], other: dict[str, Any]) -> bool:
    return (entry["job"], entry["start"], entry["end"]) == (other["job"], other["start"], other["end"])


# --------------------------------------------------------------------------- the passes


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
    turns = [e for e in kept if _due_age(e, now, unit) is not None]
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
        age = _due_age(entry, now, unit)
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


def _turn(
    run: Run, budget: Budget, entry: dict[str, Any], archived: dict[tuple[str, int, int], set[Any]], report: SweepReport
) -> str:
    """One turn of one pass: "done", or "more" (its turn is over, or the budget stopped it)."""
    unit = run.descriptor.units_per_second
    entry = next((e for e in run.document.get("sweep_queue") or [] if _same(e, entry)), None)
    if entry is None:
        return "done"
    age = _due_age(entry, run.clock.time(), unit)
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
    turn = _Turn(budget, TURN_PAGES)
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
                _save_entry(run, entry, {**state, "job": job.to_dict()})
                _finish(run, entry, state, job, age, report)
            else:
                _save_entry(run, entry, None, drop_ages_to=age)
            return "done"
        log.warning("late-event sweep: pass %s failed (%s); it goes on next turn", name, exc)
        _save_entry(run, entry, {**state, "job": job.to_dict()})
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
        _save_entry(run, entry, None, drop_ages_to=age)
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
        _save_entry(run, entry, {**state, "job": job.to_dict()}, pending=pending)
        commit_pending(run)


def commit(run: Run, pending: dict[str, Any]) -> None:
    """Write a finished pass's manifest (named in ``pending``) and the checkpoint that commits it."""
    job_id, start, end = pending["entry"]
    queue = list(run.document.get("sweep_queue") or [])
    entry = next(e for e in queue if (e["job"], e["start"], e["end"]) == (job_id, start, end))
    state = entry["pass"]
    job = Job.from_dict(pass_id(entry, pending["age"]), state["job"])
    document = manifests.build(
        provider=run.descriptor.name,
        job=job_id,
        window=pass_id(entry, pending["age"]),
        start=start,
        end=end,
        unit=run.descriptor.units_per_second,
        parts=sorted(job.parts, key=lambda p: p["key"]),
        chain=run.chain(),
        written_at=run.clock.time(),
        sweep={"after_seconds": pending["age"], "ages": [a for a in entry["ages"] if a <= pending["age"]]},
    )
    commit_manifest(run, pending, document, sweep_queue=_without(queue, entry, pending["age"]))


def _without(queue: list[dict[str, Any]], entry: dict[str, Any], age: float) -> list[dict[str, Any]]:
    """The queue once ``entry``'s passes up to ``age`` are done (the entry gone with its last)."""
    out = []
    for other in queue:
        if not _same(other, entry):
            out.append(other)
            continue
        ages = [a for a in other["ages"] if a > age]
        if ages:
            out.append({k: v for k, v in {**other, "ages": ages}.items() if k != "pass"})
    return out


def _save_entry(
    run: Run,
    entry: dict[str, Any],
    state: dict[str, Any] | None,
    *,
    drop_ages_to: float | None = None,
    pending: dict[str, Any] | None = None,
) -> None:
    """The entry's pass state (None: no pass under way), or the entry without its done passes."""
    state = copy.deepcopy(state)
    queue = list(run.document.get("sweep_queue") or [])
    if drop_ages_to is not None:
        queue = _without(queue, entry, drop_ages_to)
    else:
        queue = [
            ({**e, "pass": state} if state is not None else {k: v for k, v in e.items() if k != "pass"})
            if _same(e, entry)
            else e
            for e in queue
        ]
    fields: dict[str, Any] = {"sweep_queue": queue}
    if pending is not None:
        fields["pending"] = pending
    run.save_jobs(**fields)


class _Turn(Budget):
    """The run's sweep budget, for at most ``pages`` pages (then the next pass's turn)."""

    def __init__(self, budget: Budget, pages: int) -> None:
        super().__init__(
            budget.clock, 0, reserve_seconds=budget.reserve_seconds, request_seconds=budget.request_seconds
        )
        self._budget, self.pages, self.used, self.exhausted = budget, pages, 0, False
        self.deadline = budget.deadline

    def allows(self, seconds: float = 0.0) -> bool:
        return not self.exhausted and self.used < self.pages and self._budget.allows(seconds)


class SweepContext:
    """What a source collects a stretch through when a pass re-reads it: the calls a
    ``WindowContext`` offers; only events no object of the stretch holds are kept, written as the
    pass's parts, and the pass's progress is saved in its queue entry."""

    def __init__(
        self,
        run: Run,
        entry: dict[str, Any],
        state: dict[str, Any],
        job: Job,
        turn: _Turn,
        archived: set[Any],
        report: SweepReport,
    ) -> None:
        self._run, self._entry, self._state, self.job, self._report = run, entry, state, job, report
        self._name = pass_id(entry, state["age"])
        self.settings = run.settings
        self.budget = turn
        self.page_limit: int = run.settings.page_limit or run.descriptor.largest_page
        self.archived = archived
        self.calls = 0
        self._last_call = run.clock.monotonic()
        descriptor = run.descriptor
        self._identify = manifests.identifier(
            descriptor.id_field, descriptor.time_field, descriptor.event_seconds, every_time=True
        )

    @property
    def saved(self) -> bool:
        return self.job.window is not None

    def new_buffer(self) -> ObjectBuffer:
        return _Late(self.settings.max_object_bytes, self._identify, self.archived)

    def key(self, dt: str, window: Window, part: int) -> str:
        base = self._state.get("base", 0)
        return object_key(self._run.prefix, self._run.descriptor.name, dt, f"{self._name}-p{base + part:05d}")

    def write(self, dt: str, window: Window, part: int, buffer: ObjectBuffer) -> None:
        if self.job.window is None:
            raise RuntimeError("a window is saved before its first object is written")
        assert isinstance(buffer, _Late)
        key = self.key(dt, window, part)
        body = self._run.put(key, buffer)
        self.job.record_part(manifests.part_record(key, body, buffer.events, buffer.ids, buffer.first, buffer.last))
        settle = self.settings.settle_seconds
        for _, _, when in buffer.kept:  # at least: it had not arrived when its stretch began to close
            if when is not None:
                self._report.lateness[lateness_bucket(max(self._entry["first"] - when, settle))] += 1
        self._report.late_events += buffer.events

    def blank(self, dt: str, window: Window, part: int) -> None:
        key = self.key(dt, window, part)
        body = self._run.put(key, None)
        self.job.record_part(manifests.part_record(key, body, 0, [], None, None))

    def save(self, window: Window) -> None:
        self.job.window = window.to_dict()
        self._persist()

    def close(self, watermark: int) -> None:
        """One planned window of the stretch is read whole; the next (if any) numbers its parts on."""
        self.job.watermark, self.job.window = watermark, None
        used = [_part_index(p["key"]) for p in self.job.parts]
        self._state["base"] = 1 + max(used, default=self._state.get("base", 0) - 1)
        self._persist()

    def _persist(self) -> None:
        self._state.update(job=self.job.to_dict(), failures=0)  # progress: the failures in a row end
        _save_entry(self._run, self._entry, self._state)

    def page_fetched(self, events: int) -> None:
        """Count the call; keep the sweep's pace at its share of the provider's."""
        self.calls += 1
        self.budget.used += 1
        settings, clock = self.settings, self._run.clock
        if not settings.paced or not settings.calls_per_minute:
            return
        interval = 60.0 / (settings.calls_per_minute * settings.sweep_share)
        wait = self._last_call + interval - clock.monotonic()
        if wait > 0:
            if not self.budget.allows(wait):
                self.budget.exhausted = True  # the source sees it at its next budget check, and saves
                return
            clock.sleep(wait)
        self._last_call = clock.monotonic()


def _part_index(key: str) -> int:
    found = re.search(r"-p(\d+)\.jsonl\.gz$", key)
    return int(found.group(1)) if found else -1


class _Late(ObjectBuffer):
    """A buffer that keeps only events not archived yet (with their ids and times)."""

    def __init__(self, max_bytes: int, identify: Any, archived: set[Any]) -> None:
        super().__init__(max_bytes, identify=identify)
        self._ident = identify
        self._archived = archived
        self.kept: list[tuple[Any, Line, float | None]] = []

    def extend(self, lines: Any, keys: Any = None) -> None:
        if not lines:
            return
        ids, times = self._ident.of_keys(keys) if keys is not None else self._ident(lines)
        keep = [(i, line, t) for i, line, t in zip(ids, lines, times, strict=True) if i not in self._archived]
        if keep:
            self.kept.extend(keep)
            super().extend([line for _, line, _ in keep], None)
