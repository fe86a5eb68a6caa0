"""The late-event sweep: re-read recently closed windows, and archive only what they missed.

An event that reaches the API later than ``SETTLE_SECONDS`` after its own time falls in a window
that has closed. After live collection, a run re-reads each closed window a fixed number of times
(``Settings.sweep_after_seconds``, e.g. half an hour and a day after the window ended), through the
provider's own ``collect`` with a ``SweepContext``: the source pages the window as it always does,
the context keeps only events whose id the window's manifest does not hold, and when the window is
read whole it writes them as one more part of that window per date (the next part index), then a
new revision of the window's manifest (a new link of the chain), then the checkpoint that moves the
chain's head and the sweep's marks, in one write.

Exactly once: the ids a window holds are read back from the objects its last *committed* manifest
lists (one the chain's head reaches); a crash before the checkpoint leaves that manifest as it
was, so the rerun finds the same events missing, writes the same part name and the same revision
name again: replacements. An event is never archived by both the window and the sweep.

Cost: each window is re-read once per entry of ``sweep_after_seconds``: at most that many times the
calls collection made for it. The sweep paces itself at ``sweep_share`` of the provider's calls per
minute (Slack's limit is shared by the whole org) and stops after ``sweep_seconds`` of a run; a
window left behind by more than ``SWEEP_GRACE_SECONDS`` is skipped and counted as missed.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import manifest as manifests
from ..archive import MANIFEST_FOLDER, ObjectBuffer, decode_object, object_key
from ..dates import utc_date
from ..errors import BudgetExhausted
from .jobs import Job
from .settings import Budget

if TYPE_CHECKING:
    from ..json_text import Line
    from .loop import _Run
    from .source import Window

log = logging.getLogger(__name__)

SWEEP_GRACE_SECONDS = 86400  # a pass more than a day overdue is skipped (counted as missed)
# How late a late event was, at least: from its own time to when its window's manifest was written.
LATENESS_BUCKETS = ((300, "under_5m"), (1800, "5m_30m"), (7200, "30m_2h"), (86400, "2h_24h"))


@dataclass
class SweepReport:
    windows: int = 0  # windows re-read
    calls: int = 0  # pages asked for
    late_events: int = 0
    missed: int = 0  # passes skipped: overdue by more than the grace
    lateness: Counter = field(default_factory=Counter)  # bucket -> events
    complete: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "calls": self.calls,
            "late_events": self.late_events,
            "missed": self.missed,
            "lateness": dict(self.lateness),
            "complete": self.complete,
        }


def lateness_bucket(seconds: float) -> str:
    for limit, name in LATENESS_BUCKETS:
        if seconds < limit:
            return name
    return "over_24h"


def sweep(run: _Run) -> SweepReport:
    """Re-read the windows due for a pass, oldest first, until done or out of this run's share."""
    settings, descriptor, report = run.settings, run.descriptor, SweepReport()
    ages = sorted(settings.sweep_after_seconds)
    if not ages:
        return report
    now = run.clock.time()
    budget = Budget(
        run.clock,
        min(run.budget.remaining(), settings.sweep_seconds + run.budget.reserve_seconds + run.budget.request_seconds),
        reserve_seconds=run.budget.reserve_seconds,
        request_seconds=run.budget.request_seconds,
    )
    marks: dict[str, int] = {str(k): v for k, v in (run.document.get("sweep") or {}).items()}
    unit = descriptor.units_per_second
    # Windows every pass is done with end at or before the lowest mark; none is due before it ended
    # ages[0] ago. Only manifests in between are read.
    done_until = min((marks.get(str(age)) for age in ages), default=None, key=lambda m: m or 0)
    windows = _committed_windows(
        run, now - ages[-1] - SWEEP_GRACE_SECONDS - 86400, done_until, descriptor.to_units(now - ages[0])
    )
    due: list[tuple[int, float, str]] = []  # (range_end, age, window id)
    for window_id, (_, document) in windows.items():
        end_seconds = document["range_end"] / unit
        for age in ages:
            mark = marks.get(str(age))
            if end_seconds + age > now or (mark is not None and document["range_end"] <= mark):
                continue
            if mark is None and end_seconds + age + SWEEP_GRACE_SECONDS < now:
                continue  # before the sweep was turned on
            due.append((document["range_end"], age, window_id))
    for range_end, age, window_id in sorted(due):
        key, document = windows[window_id]
        if manifests._seconds(document["written_at"]) >= range_end / unit + age:
            # Read whole after its events were this old already (a backfill): nothing this pass
            # would find that the last read did not.
            marks[str(age)] = max(marks.get(str(age), range_end), range_end)
            continue
        if range_end / unit + age + SWEEP_GRACE_SECONDS < now:
            report.missed += 1
            marks[str(age)] = max(marks.get(str(age), range_end), range_end)
            continue
        if not budget.allows():
            report.complete = False
            break
        after = {**marks, str(age): max(marks.get(str(age), range_end), range_end)}
        revised = _sweep_window(run, budget, report, key, document, age, after)
        if revised is None:
            report.complete = False
            break
        marks = after
        windows[window_id] = (windows[window_id][0], revised)
    if marks != (run.document.get("sweep") or {}):
        run.save_jobs(sweep=dict(marks))
    if report.windows:
        log.info(
            "late-event sweep: %d windows re-read in %d calls, %d late events %s, %d passes missed",
            report.windows,
            report.calls,
            report.late_events,
            json.dumps(dict(report.lateness), sort_keys=True),
            report.missed,
            extra={"provider": descriptor.name, "sweep": report.as_dict()},
        )
    return report


def _committed_windows(
    run: _Run, since: float, done_until: int | None, due_before: int
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each recent window's last committed manifest (key, document), by window id, listed day by
    day. Committed: every manifest but the one a crashed sweep may have left (``sweep_pending`` in
    the checkpoint, named before its part was written): the rerun writes it again under the same name.
    Where a window id reads as ``start-end`` integers (as the built-in providers name windows), windows
    no pass can be due for are not read."""
    pending = run.document.get("sweep_pending")
    folder = f"{run.prefix}{MANIFEST_FOLDER}/{run.descriptor.name}/"
    day, today = max(since, 0), run.clock.time()
    latest: dict[str, tuple[int, str]] = {}  # window id -> (revision, key)
    while utc_date(day) <= utc_date(today):
        for key in run.archive.keys(f"{folder}dt={utc_date(day)}/"):
            name = key.rsplit("/", 1)[1]
            if not name.endswith(".json") or key == pending:
                continue
            window_id, _, revision = name.removesuffix(".json").partition(".r")
            number = int(revision) if revision.isdigit() else 0
            if window_id not in latest or latest[window_id][0] < number:
                latest[window_id] = (number, key)
        day += 86400
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for window_id, (_, key) in latest.items():
        bounds = _bounds(window_id)
        if bounds is not None and (bounds[1] >= due_before or (done_until is not None and bounds[1] < done_until)):
            continue  # not due for any pass yet, or every pass is done with it
        try:
            document = json.loads(run.archive.get(key))
            int(document["revision"]), str(document["window_id"])  # a manifest has both
        except (ValueError, KeyError, TypeError):
            log.warning("late-event sweep: %s is not a readable manifest; skipped (verify reports it)", key)
            continue
        if document.get("window"):
            out[window_id] = (key, document)
    return out


def _bounds(window_id: str) -> tuple[int, int] | None:
    start, _, end = window_id.partition("-")
    return (int(start), int(end)) if start.isdigit() and end.isdigit() else None


def _sweep_window(
    run: _Run,
    budget: Budget,
    report: SweepReport,
    key: str,
    document: dict[str, Any],
    age: float,
    marks: dict[str, int],
) -> dict[str, Any] | None:
    """One pass over one window: its manifest as it is after (the same when nothing was late), or
    None when the budget stopped the re-read (nothing written). With late events: their parts, the
    manifest's next revision, then the checkpoint with the chain's head and ``marks`` (one write)."""
    archived: set[Any] = set()
    for entry in document["objects"]:
        for event in decode_object(run.archive.get(entry["key"])):
            archived.add(run.descriptor.event_id(event))
    window = run.descriptor.window_type.from_dict(document["window"])
    ctx = SweepContext(run, budget, Job(document["job"]), archived)
    try:
        closed = run.source.collect(window, ctx)
    except BudgetExhausted:
        closed = False
    report.calls += ctx.calls
    if not closed:
        return None
    report.windows += 1
    if not ctx.found:
        return document
    written_at = manifests._seconds(document["written_at"])
    parts = []
    next_part = 1 + max((_part_index(o["key"]) for o in document["objects"]), default=-1)
    by_day: dict[str, list[tuple[Line, float | None]]] = {}
    for dt, line, when in ctx.found.values():
        by_day.setdefault(dt, []).append((line, when))
        if when is not None:
            report.lateness[lateness_bucket(written_at - when)] += 1
        report.late_events += 1
    revision_key = key.rsplit("/", 1)[0] + f"/{document['window_id']}.r{document['revision'] + 1}.json"
    run.save_jobs(sweep_pending=revision_key)  # what a crash from here on may leave uncommitted
    for dt, events in sorted(by_day.items()):
        buffer = ObjectBuffer(run.settings.max_object_bytes, identify=run.identify)
        buffer.extend([line for line, _ in events])
        part_key = object_key(run.prefix, run.descriptor.name, dt, f"{document['window_id']}-p{next_part:05d}")
        body = run.put(part_key, buffer)
        parts.append(manifests.part_record(part_key, body, buffer.events, buffer.ids, buffer.first, buffer.last))
        next_part += 1
    with run._chain_lock:
        chain = dict(run.document.get("chain") or {})
        revised = manifests.revise(
            document,
            parts,
            chain=chain,
            written_at=run.clock.time(),
            sweep={"after_seconds": age, "added": sum(p["events"] for p in parts)},
        )
        body = manifests.encode(revised)
        run.put_body(revision_key, body)
        head = {"head": manifests.sha256_of(body), "count": revised["seq"], "key": revision_key}
        run.save_jobs(chain=head, sweep=dict(marks), sweep_pending=None)
    return revised


def _part_index(key: str) -> int:
    found = re.search(r"-p(\d+)\.jsonl\.gz$", key)
    return int(found.group(1)) if found else -1


class SweepContext:
    """What a source collects a window through when the sweep re-reads it: the same calls as a
    ``WindowContext``; only events the window does not hold are kept, and nothing is written or
    saved until the window has been read whole (``close``)."""

    def __init__(self, run: _Run, budget: Budget, job: Job, archived: set[Any]) -> None:
        self._run = run
        self.job = job
        self.settings = run.settings
        self.budget = budget
        self.page_limit: int = run.settings.page_limit or run.descriptor.largest_page
        self.archived = archived
        self.found: dict[Any, tuple[str, Line, float | None]] = {}  # id -> (dt, line, time)
        self.calls = 0
        self.closed = False
        self._last_call = run.clock.monotonic()
        descriptor = run.descriptor
        self._identify = manifests.identifier(
            descriptor.id_field, descriptor.time_field, descriptor.event_seconds, every_time=True
        )

    @property
    def saved(self) -> bool:
        return True  # nothing of a sweep is saved before the window is whole

    def new_buffer(self) -> ObjectBuffer:
        return _Late(self.settings.max_object_bytes, self._identify, self.archived)

    def key(self, dt: str, window: Window, part: int) -> str:
        return object_key(self._run.prefix, self._run.descriptor.name, dt, f"{window.id}-p{part:05d}")

    def write(self, dt: str, window: Window, part: int, buffer: ObjectBuffer) -> None:
        assert isinstance(buffer, _Late)
        for event_id, line, when in buffer.kept:
            self.found.setdefault(event_id, (dt, line, when))

    def blank(self, dt: str, window: Window, part: int) -> None:
        pass

    def save(self, window: Window) -> None:
        pass

    def close(self, watermark: int) -> None:
        self.closed = True

    def page_fetched(self, events: int) -> None:
        """Count the call, and keep the sweep's pace at its share of the provider's."""
        self.calls += 1
        settings, clock = self.settings, self._run.clock
        if not settings.paced or not settings.calls_per_minute:
            return
        interval = 60.0 / (settings.calls_per_minute * settings.sweep_share)
        wait = self._last_call + interval - clock.monotonic()
        if wait > 0:
            if not self.budget.allows(wait):
                raise BudgetExhausted("the sweep's share of this run is used up")
            clock.sleep(wait)
        self._last_call = clock.monotonic()


class _Late(ObjectBuffer):
    """A buffer that keeps only events not archived yet (with their ids and times)."""

    def __init__(self, max_bytes: int, identify: Any, archived: set[Any]) -> None:
        super().__init__(max_bytes)
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
            super().extend([line for _, line, _ in keep])
