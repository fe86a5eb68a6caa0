"""What the CLI and the demo print: run results, a progress bar, tables of rows, and status.

Both edges import this module; neither imports the other's.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from typing import Any

from audit_collector.collector import Progress, RunResult, summarize_backfills
from audit_collector.collector.jobs import LIVE, archived_ranges, jobs_of, merge
from audit_collector.collector.provider import Descriptor
from audit_collector.dates import iso


def print_result(result: RunResult) -> None:
    if result.status == "lease_held":
        print(f"{result.provider}: skipped: {result.message}")
        return
    behind = f", {result.behind_seconds:.0f}s behind real time" if result.behind_seconds is not None else ""
    state = "caught up" if result.complete else "stopped early, run again to continue"
    print(
        f"{result.provider}: {result.events_written} events in {result.objects_written} objects from "
        f"{result.pages} pages ({result.retries} retries, {result.rate_limited} rate-limited); {state}{behind}"
    )


class ProgressBar:
    """pages, events, events/s, slices done and ETA on one live line (tqdm), on stderr."""

    def __init__(self, *, enabled: bool) -> None:
        self._bar = None
        self._enabled = enabled

    def update(self, progress: Progress) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=1000,
                unit="‰",
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
            )
        if progress.backfill_fraction is not None:
            self._bar.n = int(progress.backfill_fraction * 1000)
        elapsed = self._bar.format_dict["elapsed"] or 1e-9
        self._bar.set_postfix_str(
            f"{progress.pages} pages, {progress.events:,} events, {progress.events / elapsed:,.0f} events/s, "
            f"{progress.slices_done}/{progress.slices} slices",
            refresh=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def write_rows(names: list[str], rows: list[tuple], fmt: str = "table", out: Any = None) -> None:
    out = out or sys.stdout
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(names)
        writer.writerows(rows)
    elif fmt == "json":
        for row in rows:
            out.write(json.dumps(dict(zip(names, row, strict=True)), default=str) + "\n")
    else:
        cells = [[str(v) if v is not None else "" for v in row] for row in rows]
        widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
        out.write("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip() + "\n")
        out.write("  ".join("-" * w for w in widths) + "\n")
        for row in cells:
            out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")


def print_status(descriptor: Descriptor, record: dict[str, Any], objects: int) -> None:
    """One provider's checkpoint as a person reads it: lag, archived ranges, backfills, the lease."""
    name, unit, now = descriptor.name, descriptor.units_per_second, time.time()
    document = record.get("checkpoint") or {}
    jobs = jobs_of(document)
    live = jobs.get(LIVE)
    if live is None or live.watermark is None:
        print(f"{name}: live collection has not archived anything yet, {objects} objects")
    else:
        seconds = live.watermark / unit
        print(
            f"{name}: archived up to {iso(seconds)} ({now - seconds:.0f}s behind real time), "
            f"{objects} objects" + (", a window in progress" if live.window else "")
        )
    if record.get("lease_owner"):
        print(f"  a run is working now (lease held by {record['lease_owner']} until {iso(record['lease_expires_at'])})")
    archived = archived_ranges(document)  # finished backfills, then every job's windows
    for job in jobs.values():
        for start, end in job.ranges if job.watermark is not None else []:
            stop = job.watermark if end is None else min(end, job.watermark)
            if start < stop:
                archived.append([start, stop])
    for start, end in merge(archived):
        print(f"  archived range: {iso(start / unit)} .. {iso(end / unit)}")
    for backfill in summarize_backfills(document, descriptor):
        state = "done" if backfill["done"] else f"{backfill['progress']:.0%} done"
        print(
            f"  backfill {backfill['id']}: {backfill['start']} .. {backfill['end']}, {state}, "
            f"{backfill['slices_done']}/{backfill['slices']} slices"
        )


class CountBar:
    """A plain counting bar (tqdm) on stderr, for ``verify``: objects checked of those listed."""

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled
        self._bars: list[Any] = []

    def start(self, label: str) -> Any:
        """A ``progress`` callback for one provider: given the total, returns a tick function."""

        def begin(total: int) -> Any:
            if not self._enabled:
                return lambda n: None
            from tqdm import tqdm

            bar = tqdm(total=total, unit="obj", desc=label, file=sys.stderr, dynamic_ncols=True, leave=False)
            self._bars.append(bar)
            return bar.update

        return begin

    def close(self) -> None:
        for bar in self._bars:
            bar.close()


def print_verify(report: Any, fmt: str = "table", out: Any = None) -> None:
    """A ``verify`` report: a line per provider, then one row per finding (or the JSON document)."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps(report.as_dict(), indent=2) + "\n")
        return
    mode = "stored checksums (quick)" if report.quick else "every object read back"
    for p in report.providers:
        span = f"{p.first} .. {p.watermark}" if p.first else "nothing archived with a manifest"
        verdict = "clean" if not p.failing else f"{len(p.failing)} finding(s)"
        signed = f"; signed up to manifest {p.signed_seq} ({p.unsigned} after it)" if p.signed_seq else ""
        out.write(
            f"{p.provider}: {verdict}; {p.manifests} manifests, {p.objects} objects, {p.events:,} events, "
            f"{p.bytes:,} bytes; {span}; {mode}{signed}\n"
        )
    findings = [f for p in report.providers for f in p.findings]
    if findings:
        rows = [(f.provider, f.kind, f.key or "", f.start or "", f.end or "", f.detail) for f in findings]
        write_rows(["provider", "finding", "key", "from", "to", "detail"], rows, "table", out)
    failing = [f for p in report.providers for f in p.failing]
    out.write("verify: clean\n" if report.clean else f"verify: {len(failing)} finding(s)\n")
