"""The rules of compaction both runners follow: each closed day of a provider's raw archive, rewritten
once as one sorted Parquet file.

The raw gzip JSON Lines objects stay the source of truth and are never changed. A day is compacted
into a fresh run folder, then *published* by one atomic step that names that run and the set of raw
objects it was built from:

    {prefix}_compacted/{provider}/dt=YYYY-MM-DD/run=<id>/part-0.parquet     (the data)
    {prefix}_compacted/{provider}/dt=YYYY-MM-DD/_CURRENT.json               (locally: the publication)

In AWS the publication is the Glue partition of ``T_compacted`` whose location is the run folder
(``compaction/athena.py``), with the same ``source`` digest in its parameters. Readers only ever read a
published run, so a crash before publication leaves an unread folder (removed by the next
compaction of that day) and a rerun finds the day's digest unchanged and does nothing. When a raw
object is added to a compacted day (a late-event sweep, a backfill), the digest changes and the day
is compacted again into a new run, published the same way.

Which days are read from the compacted side: every day up to the *watermark*, the last day such
that every raw day up to it is compacted (``watermark``). ``sql.create_view`` builds the
view that splits there, so each day is read from one side only.

A day is *closed* when no job can still write to it: every job (the live one, each backfill) whose
ranges touch the day has its watermark past the part of the day it owns (``day_closed``). The live
job's watermark already trails real time by the settle lag; ``grace_seconds`` waits longer still.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from audit_collector.collector.jobs import LIVE, jobs_of, subtract
from audit_collector.collector.provider import Descriptor

COMPACTED = "_compacted"  # no provider can be called this: provider names start with a letter
CURRENT = "_CURRENT.json"
DATA_FILE = "part-0.parquet"
_FAR = 10**18


def compacted_prefix(prefix: str, descriptor: Descriptor) -> str:
    return f"{prefix}{COMPACTED}/{descriptor.name}/"


def new_run_id(now: float | None = None) -> str:
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def source_digest(objects: Iterable[tuple[str, str]]) -> str:
    """One value for a day's raw objects: (name, ETag or content hash) pairs, in any order."""
    text = "".join(f"{name}\t{tag}\n" for name, tag in sorted(objects))
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- closed days


def day_bounds(day: str) -> tuple[float, float]:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()
    return start, start + 86400


def day_closed(descriptor: Descriptor, checkpoint: Mapping[str, Any], day: str, grace_seconds: float = 0) -> bool:
    """True when no job of the provider can still write an event dated ``day``."""
    jobs = jobs_of(dict(checkpoint))
    live = jobs.get(LIVE)
    if live is None or live.watermark is None:
        return False  # nothing has been collected live yet: the end of the archive is unknown
    start, end = day_bounds(day)
    lo, hi = descriptor.to_units(start), descriptor.to_units(end + grace_seconds)
    for job in jobs.values():
        owned = subtract(job.ranges, [[-_FAR, lo], [hi, None]])
        if not owned:
            continue
        if job.watermark is None or subtract(owned, [[-_FAR, job.watermark]]):
            return False  # part of the day this job owns is not archived yet
    return True


# --------------------------------------------------------------------------- the watermark


def watermark(raw_days: Iterable[str], compacted_days: Iterable[str]) -> str | None:
    """The last day such that every raw day up to it is compacted (None: none is)."""
    done = set(compacted_days)
    mark = None
    for day in sorted(set(raw_days)):
        if day not in done:
            break
        mark = day
    return mark
