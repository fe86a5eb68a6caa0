"""Backfills: claiming a range no other job owns, splitting it into slices, and reporting on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from audit_collector.collector.jobs import (
    LIVE,
    Job,
    Range,
    archived_ranges,
    backfill_id,
    covered,
    jobs_of,
    merge,
    subtract,
    taken_by_others,
)
from audit_collector.dates import iso

if TYPE_CHECKING:
    from audit_collector.collector.provider import Descriptor


@dataclass(frozen=True)
class BackfillRequest:
    """A validated backfill range in the provider's unit, with what validation clamped."""

    start: int
    end: int
    notes: tuple[str, ...] = ()


def plan_backfill(
    document: dict[str, Any], provider: str, request: BackfillRequest, *, slices: int, now: float
) -> list[Job] | None:
    """The new backfill's jobs, each claiming part of what no other job owns; None when the same
    range was asked for before (its jobs already exist)."""
    bid = backfill_id(provider, request.start, request.end)
    if any(job_id == bid or job_id.startswith(bid + ".") for job_id in jobs_of(document)):
        return None
    if any(done["id"] == bid for done in document.get("finished", [])):
        return None
    ranges = subtract([[request.start, request.end]], taken_by_others(document, bid))
    skipped = subtract([[request.start, request.end]], ranges)
    parts = split_slices(ranges, slices)
    meta = {
        "start": request.start,
        "end": request.end,
        "skipped": skipped,
        "notes": list(request.notes),
        "created_at": now,
    }
    return [Job(bid if len(parts) == 1 else f"{bid}.{i}", ranges=r, meta=meta) for i, r in enumerate(parts)]


def split_slices(ranges: list[Range], count: int) -> list[list[Range]]:
    """``ranges`` cut into at most ``count`` slices of equal length, to be fetched at once."""
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


def window_mark(job: Job, descriptor: Descriptor) -> int | None:
    """What the job's open window has archived up to, if its kind of window knows."""
    return descriptor.window_type.from_dict(job.window).archived_until() if job.window else None


def fraction_archived(jobs: list[Job], descriptor: Descriptor) -> float:
    total = sum(covered(j.ranges) or 0 for j in jobs)
    archived = sum((j.progress(window_mark(j, descriptor)) or 0) * (covered(j.ranges) or 0) for j in jobs)
    return archived / total if total else 1.0


def backfill_jobs(document: dict[str, Any]) -> dict[str, list[Job]]:
    """Every backfill's jobs (its slices), by backfill id."""
    groups: dict[str, list[Job]] = {}
    for job in jobs_of(document).values():
        if job.id != LIVE:
            groups.setdefault(job.id.split(".")[0], []).append(job)
    return groups


# Finished backfills the checkpoint still names (for status and "existing"); their ranges stay in
# document["archived"] whatever this says.
FINISHED_KEPT = 20
SKIPPED_KEPT = 20  # skipped ranges a finished backfill's summary keeps (the rest are counted)


def compact(document: dict[str, Any]) -> dict[str, Any]:
    """The document with every finished backfill (all its slices done) out of ``jobs``: its ranges
    merged into ``archived``, its summary at the end of ``finished`` (the last ``FINISHED_KEPT``).
    Bounded whatever the number of backfills, and nothing archived can be claimed again. Reads
    checkpoints written before this (finished jobs in ``jobs``) and rewrites them."""
    finished = {bid: jobs for bid, jobs in backfill_jobs(document).items() if all(j.done for j in jobs)}
    if not finished:
        return document
    out = dict(document)
    out["jobs"] = {
        job_id: data for job_id, data in document.get("jobs", {}).items() if job_id.split(".")[0] not in finished
    }
    done_ranges = [r for jobs in finished.values() for job in jobs for r in job.ranges]
    out["archived"] = merge(archived_ranges(document) + done_ranges)
    records = list(document.get("finished", []))
    for bid, jobs in sorted(finished.items(), key=lambda g: g[1][0].meta.get("created_at", 0)):
        meta = jobs[0].meta
        skipped = meta.get("skipped", [])
        records.append(
            {
                "id": bid,
                "start": meta.get("start"),
                "end": meta.get("end"),
                "created_at": meta.get("created_at", 0),
                "slices": len(jobs),
                "skipped": skipped[:SKIPPED_KEPT],
                "skipped_more": max(0, len(skipped) - SKIPPED_KEPT),
                "notes": meta.get("notes", []),
            }
        )
    out["finished"] = records[-FINISHED_KEPT:]
    return out


def summarize_backfills(document: dict[str, Any], descriptor: Descriptor) -> list[dict[str, Any]]:
    """One line per backfill: its range, progress and what it skipped, in ISO 8601. Finished ones:
    the most recent ``FINISHED_KEPT``."""
    unit = descriptor.units_per_second
    out = [
        {
            "id": done["id"],
            "start": iso(done["start"] / unit),
            "end": iso(done["end"] / unit),
            "done": True,
            "progress": 1.0,
            "slices": done["slices"],
            "slices_done": done["slices"],
            "skipped": [[iso(s / unit), iso(e / unit)] for s, e in done.get("skipped", [])],
            "notes": done.get("notes", []),
        }
        for done in document.get("finished", [])
    ]
    groups = backfill_jobs(document)
    for bid, jobs in sorted(groups.items(), key=lambda g: g[1][0].meta.get("created_at", 0)):
        meta = jobs[0].meta
        out.append(
            {
                "id": bid,
                "start": iso(meta["start"] / unit),
                "end": iso(meta["end"] / unit),
                "done": all(j.done for j in jobs),
                "progress": round(fraction_archived(jobs, descriptor), 4),
                "slices": len(jobs),
                "slices_done": sum(j.done for j in jobs),
                "skipped": [[iso(s / unit), iso(e / unit)] for s, e in meta.get("skipped", [])],
                "notes": meta.get("notes", []),
            }
        )
    return out
