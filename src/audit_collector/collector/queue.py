"""The sweep's queue: the late-event passes each closed stretch is owed, kept in the checkpoint.

Pure functions over the checkpoint's ``sweep_queue`` (a list of entries: ``job``, ``start``, ``end``,
``first``, ``closed``, ``ages``, and ``pass`` while one is under way), plus ``save_entry``, the one
write of it. The commit that closes a window calls ``enqueue``; ``sweep.py`` works the queue off.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audit_collector.collector.run import Run

QUEUE_LIMIT = 400  # entries per provider; each is about 150 bytes of the checkpoint
TURN_PAGES = 5  # pages a pass gets before the next due pass has its turn
FAILURES_LIMIT = 5  # turns in a row a pass fails before it is given up
OVERDUE_SECONDS = 3600  # a pass still not done this long after it was due is overdue


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


def any_due(queue: list[dict[str, Any]], now: float, unit: int) -> bool:
    """Whether any pass is due now (so live collection leaves the sweep its share)."""
    return any(due_age(e, now, unit) is not None for e in queue)


def due_age(entry: dict[str, Any], now: float, unit: int) -> float | None:
    """The pass to run now: the one under way, else the latest age that is due (None: none is)."""
    if "pass" in entry:
        return entry["pass"]["age"]
    due = [a for a in entry["ages"] if entry["end"] / unit + a <= now]
    return max(due) if due else None


def same(entry: dict[str, Any], other: dict[str, Any]) -> bool:
    return (entry["job"], entry["start"], entry["end"]) == (other["job"], other["start"], other["end"])


def without(queue: list[dict[str, Any]], entry: dict[str, Any], age: float) -> list[dict[str, Any]]:
    """The queue once ``entry``'s passes up to ``age`` are done (the entry gone with its last)."""
    out = []
    for other in queue:
        if not same(other, entry):
            out.append(other)
            continue
        ages = [a for a in other["ages"] if a > age]
        if ages:
            out.append({k: v for k, v in {**other, "ages": ages}.items() if k != "pass"})
    return out


def save_entry(
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
        queue = without(queue, entry, drop_ages_to)
    else:
        queue = [
            ({**e, "pass": state} if state is not None else {k: v for k, v in e.items() if k != "pass"})
            if same(e, entry)
            else e
            for e in queue
        ]
    fields: dict[str, Any] = {"sweep_queue": queue}
    if pending is not None:
        fields["pending"] = pending
    run.save_jobs(**fields)


def pass_id(entry: dict[str, Any], age: float) -> str:
    """A late-event pass's name: its stretch and its age (the stem of its parts and its manifest)."""
    return f"{entry['start']}-{entry['end']}-s{int(age)}"
