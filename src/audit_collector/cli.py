"""``audit-collector``: the same pipeline as the Lambda, from a laptop or a CI box.

Exit codes: 0 done, 1 failed, 2 bad usage, 3 stopped early with work left.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .archive import ArchiveWriter, LocalArchive, S3Archive, normalize_prefix
from .collector import BackfillRequest, Budget, RunResult, Settings, run_provider
from .collector.core import Progress, ProgressCallback, iso, summarize_backfills
from .collector.jobs import LIVE, jobs_of
from .config import ASANA_DEFAULT_BASE_URL, PROVIDERS, SLACK_DEFAULT_BASE_URL
from .errors import AuditCollectorError, ConfigError
from .http_retry import SystemClock
from .state import CheckpointStore, DynamoDBStore, FileStore

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


# --------------------------------------------------------------------------- where things go


def open_archive(spec: str) -> tuple[ArchiveWriter, str]:
    """``./dir`` or ``s3://bucket/prefix`` -> (writer, key prefix)."""
    if spec.startswith("s3://"):
        bucket, _, prefix = spec.removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigError(f"--archive {spec!r}: name a bucket, as s3://bucket/prefix")
        return S3Archive(bucket), normalize_prefix(prefix)
    if "://" in spec:
        raise ConfigError(f"--archive {spec!r}: use a folder or s3://bucket/prefix")
    return LocalArchive(spec), ""


def open_state(spec: str | None, archive_spec: str) -> CheckpointStore:
    """``dynamodb://table`` or a JSON file (default: state.json in the archive folder)."""
    if spec and spec.startswith("dynamodb://"):
        table = spec.removeprefix("dynamodb://").strip("/")
        if not table:
            raise ConfigError(f"--state {spec!r}: name a table, as dynamodb://table")
        return DynamoDBStore(table)
    if spec is None:
        if archive_spec.startswith("s3://"):
            raise ConfigError("with an s3:// archive, give --state dynamodb://table (or a local file)")
        return FileStore(Path(archive_spec) / "state.json")
    return FileStore(spec)


def resolve_token(args: argparse.Namespace) -> str:
    """From --secret-id (Secrets Manager), --token-env NAME, or SLACK_TOKEN / ASANA_TOKEN."""
    if args.secret_id:
        from .tokens import load_token

        return load_token(args.secret_id)
    name = args.token_env or f"{args.provider.upper()}_TOKEN"
    token = os.environ.get(name, "").strip()
    if not token:
        raise ConfigError(f"no {args.provider} token: set {name}, or pass --token-env NAME or --secret-id ID")
    return token


# --------------------------------------------------------------------------- commands


def collect_settings(args: argparse.Namespace) -> Settings:
    largest = 9999 if args.provider == "slack" else 100
    if args.page_limit is not None and not 1 <= args.page_limit <= largest:
        raise ConfigError(f"--page-limit for {args.provider} must be from 1 to {largest}")
    if not 0.01 <= args.max_object_mb <= 1024:
        raise ConfigError("--max-object-mb must be from 0.01 to 1024")
    if args.provider == "asana" and not args.workspace_gid:
        raise ConfigError("--workspace-gid is required for asana (or set ASANA_WORKSPACE_GID)")
    tuning = {f"{args.provider}_page_limit": args.page_limit} if args.page_limit else {}
    if args.calls_per_minute is not None:
        tuning[f"{args.provider}_calls_per_minute"] = args.calls_per_minute or None
    if getattr(args, "slices", None):
        tuning["asana_backfill_slices"] = args.slices
    return Settings(
        settle_seconds=args.settle_seconds,
        initial_lookback_days=args.lookback_days,
        http_timeout=args.timeout,
        max_object_bytes=int(args.max_object_mb * 1024 * 1024),
        **tuning,
    )


def cmd_collect(args: argparse.Namespace) -> int:
    archive, prefix = open_archive(args.archive)
    store = open_state(args.state, args.archive)
    settings = collect_settings(args)
    result = run_collection(
        args.provider,
        resolve_token(args),
        base_url=args.api_base_url,
        archive=archive,
        prefix=prefix,
        store=store,
        settings=settings,
        budget_seconds=args.budget_seconds,
        workspace_gid=args.workspace_gid,
    )
    print_result(result)
    if result.status == "lease_held":
        return EXIT_INCOMPLETE
    return EXIT_OK if result.complete else EXIT_INCOMPLETE


def run_collection(
    provider: str,
    token: str,
    *,
    base_url: str | None,
    archive: ArchiveWriter,
    prefix: str,
    store: CheckpointStore,
    settings: Settings,
    budget_seconds: float,
    workspace_gid: str | None = None,
    backfill: BackfillRequest | None = None,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """One run, wired as the Lambda wires it, with whatever adapters the caller chose."""
    clock = SystemClock()
    budget = Budget.for_run(clock, budget_seconds, settings)
    default_url = SLACK_DEFAULT_BASE_URL if provider == "slack" else ASANA_DEFAULT_BASE_URL
    return run_provider(
        provider,
        token=token,
        base_url=base_url or default_url,
        workspace_gid=workspace_gid,
        store=store,
        archive=archive,
        prefix=prefix,
        settings=settings,
        clock=clock,
        budget=budget,
        backfill=backfill,
        progress=progress,
        user_agent_suffix="(cli)",
    )


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


def cmd_status(args: argparse.Namespace) -> int:
    store = open_state(args.state, args.archive)
    archive, prefix = open_archive(args.archive)
    now = time.time()
    for provider in PROVIDERS:
        record = store.read(provider)
        document = record.get("checkpoint") or {}
        jobs = jobs_of(document)
        live = jobs.get(LIVE)
        unit = 1 if provider == "slack" else 1000
        objects = sum(1 for _ in archive.keys(f"{prefix}{provider}/"))
        if live is None or live.watermark is None:
            print(f"{provider}: live collection has not archived anything yet, {objects} objects")
        else:
            seconds = live.watermark / unit
            print(
                f"{provider}: archived up to {iso(seconds)} ({now - seconds:.0f}s behind real time), "
                f"{objects} objects" + (", a window in progress" if live.window else "")
            )
        if record.get("lease_owner"):
            print(
                f"  a run is working now (lease held by {record['lease_owner']} until "
                f"{iso(record['lease_expires_at'])})"
            )
        archived = []  # finished windows of every job, merged
        for job in jobs.values():
            for start, end in job.ranges if job.watermark is not None else []:
                stop = job.watermark if end is None else min(end, job.watermark)
                if start < stop:
                    archived.append([start, stop])
        for start, end in merge(archived):
            print(f"  archived range: {iso(start / unit)} .. {iso(end / unit)}")
        for backfill in summarize_backfills(document, _Unit(provider, unit)):
            state = "done" if backfill["done"] else f"{backfill['progress']:.0%} done"
            print(
                f"  backfill {backfill['id']}: {backfill['start']} .. {backfill['end']}, {state}, "
                f"{backfill['slices_done']}/{backfill['slices']} slices"
            )
    return EXIT_OK


class _Unit:
    """Just what summarize_backfills needs from a source."""

    def __init__(self, provider: str, units_per_second: int) -> None:
        self.provider, self.units_per_second = provider, units_per_second


def merge(ranges: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        elif start < end:
            out.append([start, end])
    return out


def cmd_backfill(args: argparse.Namespace) -> int:
    from .invocation import parse_backfill

    request = parse_backfill(args.provider, {"start": args.start, "end": args.end}, now=time.time())
    for note in request.notes:
        print(f"note: {note}", file=sys.stderr)
    archive, prefix = open_archive(args.archive)
    store = open_state(args.state, args.archive)
    settings = collect_settings(args)
    token = resolve_token(args)
    bar = ProgressBar(enabled=not args.no_progress)
    started = time.monotonic()
    try:
        result = run_collection(
            args.provider,
            token,
            base_url=args.api_base_url,
            archive=archive,
            prefix=prefix,
            store=store,
            settings=settings,
            budget_seconds=args.budget_seconds,
            workspace_gid=args.workspace_gid,
            backfill=request,
            progress=bar.update,
        )
    finally:
        bar.close()
    print_result(result)
    backfill = result.backfill or {}
    if backfill.get("existing"):
        print(f"backfill {backfill['id']} already exists; this run continued it")
    for start, end in backfill.get("skipped", []):
        print(f"skipped {start} .. {end}: already archived by another job")
    elapsed = time.monotonic() - started
    print(
        f"backfill {backfill.get('id')}: {backfill.get('progress', 0):.0%} done, "
        f"{result.events_written:,} events in {elapsed:.1f}s ({result.events_written / max(elapsed, 1e-9):,.0f}/s)"
    )
    if result.status == "lease_held":
        return EXIT_INCOMPLETE
    return EXIT_OK if backfill.get("done") else EXIT_INCOMPLETE


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


def cmd_query(args: argparse.Namespace) -> int:
    if args.archive.startswith("s3://"):
        raise ConfigError("query reads a local archive; for S3 use Athena (the same table and column names)")
    from .query import run_query

    names, rows = run_query(args.archive, args.sql)
    write_rows(names, rows, args.format)
    return EXIT_OK


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


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        archive_dir=Path(args.archive), days=args.days, users=args.users, seed=args.seed, fault_rate=args.fault_rate
    )


# --------------------------------------------------------------------------- parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audit-collector", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"audit-collector {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def where(p: argparse.ArgumentParser) -> None:
        p.add_argument("--archive", default="./archive", help="a folder (default ./archive) or s3://bucket/prefix")
        p.add_argument("--state", help="a JSON file (default: state.json in the archive folder) or dynamodb://table")

    def collection(p: argparse.ArgumentParser) -> None:
        p.add_argument("--provider", required=True, choices=PROVIDERS)
        where(p)
        p.add_argument("--token-env", help="environment variable holding the token (default SLACK_TOKEN / ASANA_TOKEN)")
        p.add_argument("--secret-id", help="read the token from this Secrets Manager secret instead")
        p.add_argument("--api-base-url", help="another API host (GovSlack, the emulator)")
        p.add_argument("--workspace-gid", default=os.environ.get("ASANA_WORKSPACE_GID"))
        p.add_argument("--settle-seconds", type=int, default=120)
        p.add_argument("--lookback-days", type=float, default=7, help="where live collection starts on its first run")
        p.add_argument("--timeout", type=float, default=30)
        p.add_argument("--budget-seconds", type=float, default=3600, help="stop (exit 3) after this long")
        p.add_argument("--page-limit", type=int, help="events per request (default: the API's maximum)")
        p.add_argument("--max-object-mb", type=float, default=64, help="uncompressed JSON per archive object")
        p.add_argument(
            "--calls-per-minute",
            type=float,
            help="pace requests to this rate (default: just under the API's limit; 0 disables)",
        )

    collect_p = sub.add_parser("collect", help="one run, as the Lambda would do it")
    collection(collect_p)
    collect_p.set_defaults(func=cmd_collect)

    backfill_p = sub.add_parser("backfill", help="archive a past range (skipping what is archived already)")
    collection(backfill_p)
    backfill_p.add_argument("--start", required=True, help="ISO 8601 UTC, inclusive (2026-10-01T00:00:00Z)")
    backfill_p.add_argument("--end", required=True, help="ISO 8601 UTC, exclusive")
    backfill_p.add_argument("--slices", type=int, help="Asana: time slices fetched at once (default 8)")
    backfill_p.add_argument("--no-progress", action="store_true", help="no progress bar")
    backfill_p.set_defaults(func=cmd_backfill)

    status_p = sub.add_parser("status", help="checkpoints, lag and archive size per provider")
    where(status_p)
    status_p.set_defaults(func=cmd_status)

    query_p = sub.add_parser("query", help="SQL over a local archive with DuckDB (Athena's table names)")
    query_p.add_argument("sql")
    query_p.add_argument("--archive", default="./archive")
    query_p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query_p.set_defaults(func=cmd_query)

    demo_p = sub.add_parser("demo", help="emulator -> collector -> local archive -> DuckDB, on loopback only")
    demo_p.add_argument("--archive", default="./demo-archive")
    demo_p.add_argument("--days", type=float, default=3)
    demo_p.add_argument("--users", type=int, default=3000)
    demo_p.add_argument("--seed", type=int, default=1)
    demo_p.add_argument("--fault-rate", type=float, default=0.01, help="chance of each injected fault per request")
    demo_p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 for bad usage, 0 for --help
        return int(exc.code or 0)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"audit-collector: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (AuditCollectorError, OSError) as exc:
        print(f"audit-collector: {args.command} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("audit-collector: interrupted; the next run continues from the last checkpoint", file=sys.stderr)
        return EXIT_INCOMPLETE
