"""Jobs: the live collection and backfills, each owning disjoint time ranges of one provider.

Exactly-once across jobs is arithmetic: a new backfill takes its requested range *minus* every
range another job already owns (the live job owns ``[origin, ∞)`` from its first run on), so no
instant is ever collected by two jobs. All jobs of a provider live in one checkpoint document,
so a claim is one conditional write under the provider's lease. Finished backfills leave the jobs:
their ranges are merged into ``document["archived"]`` (still taken: never collected again), so the
document stays small however many backfills run.

Ranges are half-open ``[start, end)`` in the provider's unit (its descriptor's ``units_per_second``); ``end``
is None for the live job's open end.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

LIVE = "live"
Range = list  # [start, end | None]


def subtract(ranges: list[Range], taken: list[Range]) -> list[Range]:
    """``ranges`` without anything in ``taken`` (both lists of half-open ranges)."""
    out = [list(r) for r in ranges]
    for t_start, t_end in taken:
        next_out = []
        for start, end in out:
            if (t_end is not None and t_end <= start) or (end is not None and end <= t_start):
                next_out.append([start, end])
                continue
            if start < t_start:
                next_out.append([start, t_start])
            if t_end is not None and (end is None or t_end < end):
                next_out.append([t_end, end])
        out = next_out
    return sorted(out, key=lambda r: r[0])


def covered(ranges: list[Range]) -> int | None:
    """Total length of bounded ranges (None when one is open-ended)."""
    if any(end is None for _, end in ranges):
        return None
    return sum(end - start for start, end in ranges)


@dataclass
class Job:
    """One job's ranges and progress. ``watermark``: everything before it (in its ranges) is archived."""

    id: str
    ranges: list[Range] = field(default_factory=list)
    watermark: int | None = None
    window: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # backfills: request, clamps, skipped ranges
    # The open window's objects written so far (manifest records, by key): its manifest lists them
    # all when it closes, including those written by earlier runs.
    parts: list[dict[str, Any]] = field(default_factory=list)
    opened_at: float | None = None  # when the open window was first saved (epoch seconds)

    @classmethod
    def from_dict(cls, job_id: str, data: dict[str, Any]) -> Job:
        return cls(
            job_id,
            [list(r) for r in data.get("ranges", [])],
            data.get("watermark"),
            data.get("window"),
            dict(data.get("meta", {})),
            [dict(p) for p in data.get("parts", [])],
            data.get("opened_at"),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {"ranges": self.ranges, "watermark": self.watermark, "window": self.window, "meta": self.meta}
        if self.parts:
            out["parts"] = self.parts
        if self.opened_at is not None:
            out["opened_at"] = self.opened_at
        return out

    def still_owned(self) -> list[Range]:
        """What an unfinished job still owns: its ranges from its watermark on (open ends as None)."""
        if self.watermark is None:
            return [list(r) for r in self.ranges]
        return subtract(self.ranges, [[0, self.watermark]])

    def record_part(self, record: dict[str, Any]) -> None:
        """Remember an object of the open window (a rewrite of the same key replaces its record)."""
        self.parts = [p for p in self.parts if p["key"] != record["key"]] + [record]

    def next_gap(self, at: int | None) -> tuple[int, int | None] | None:
        """The first stretch still to collect at or after ``at``: (start, end), or None when done."""
        for start, end in self.ranges:
            if at is None or end is None or at < end:
                return (start if at is None else max(at, start)), end
        return None

    @property
    def done(self) -> bool:
        return self.window is None and self.next_gap(self.watermark) is None

    def progress(self, window_mark: int | None = None) -> float | None:
        """The fraction of a bounded job already archived. ``window_mark``: what the open window
        says it has archived up to (oldest-first windows know; newest-first ones do not)."""
        total = covered(self.ranges)
        if not total:
            return None if total is None else 1.0
        mark = self.watermark
        if window_mark is not None:
            mark = max(mark or window_mark, window_mark)
        if mark is None:
            return 0.0
        archived = covered(subtract(self.ranges, [[mark, None]])) or 0
        return archived / total


def backfill_id(provider: str, start: int, end: int) -> str:
    """The same range always names the same job, so a second invoke finds the first."""
    return "backfill-" + hashlib.sha256(f"{provider}:{start}:{end}".encode()).hexdigest()[:12]


def jobs_of(document: dict[str, Any]) -> dict[str, Job]:
    return {job_id: Job.from_dict(job_id, data) for job_id, data in document.get("jobs", {}).items()}


def merge(ranges: list[Range]) -> list[Range]:
    """Bounded half-open ranges, sorted, with overlapping and adjacent ones joined."""
    out: list[Range] = []
    for start, end in sorted(ranges, key=lambda r: r[0]):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        elif start < end:
            out.append([start, end])
    return out


def archived_ranges(document: dict[str, Any]) -> list[Range]:
    """What finished backfills archived: merged into few ranges, kept for ever (never collected again)."""
    return [list(r) for r in document.get("archived", [])]


def taken_by_others(document: dict[str, Any], job_id: str) -> list[Range]:
    """Every range another job owns, and every range a finished backfill archived."""
    owned = [r for other_id, job in jobs_of(document).items() if other_id != job_id for r in job.ranges]
    return owned + archived_ranges(document)
