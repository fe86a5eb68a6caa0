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
from .collector import Budget, BudgetedClock, RunResult, Settings, collect, make_source
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


def cmd_collect(args: argparse.Namespace) -> int:
    archive, prefix = open_archive(args.archive)
    store = open_state(args.state, args.archive)
    if args.provider == "asana" and not args.workspace_gid:
        raise ConfigError("--workspace-gid is required for asana (or set ASANA_WORKSPACE_GID)")
    largest = 9999 if args.provider == "slack" else 100
    if args.page_limit is not None and not 1 <= args.page_limit <= largest:
        raise ConfigError(f"--page-limit for {args.provider} must be from 1 to {largest}")
    if not 0.01 <= args.max_object_mb <= 1024:
        raise ConfigError("--max-object-mb must be from 0.01 to 1024")
    page_limit = {f"{args.provider}_page_limit": args.page_limit} if args.page_limit else {}
    settings = Settings(
        settle_seconds=args.settle_seconds,
        initial_lookback_days=args.lookback_days,
        http_timeout=args.timeout,
        max_object_bytes=int(args.max_object_mb * 1024 * 1024),
        **page_limit,
    )
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
) -> RunResult:
    """One run, wired as the Lambda wires it, with whatever adapters the caller chose."""
    clock = SystemClock()
    budget = Budget(
        clock, budget_seconds, reserve_seconds=settings.write_reserve_seconds, request_seconds=settings.http_timeout
    )
    default_url = SLACK_DEFAULT_BASE_URL if provider == "slack" else ASANA_DEFAULT_BASE_URL
    source = make_source(
        provider,
        token=token,
        base_url=base_url or default_url,
        workspace_gid=workspace_gid,
        timeout=settings.http_timeout,
        clock=BudgetedClock(clock, budget),
        user_agent_suffix="(cli)",
    )
    return collect(source, store=store, archive=archive, prefix=prefix, settings=settings, clock=clock, budget=budget)


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
        checkpoint = record.get("checkpoint") or {}
        watermark = checkpoint.get("watermark")
        if watermark is None:
            print(f"{provider}: never collected")
            continue
        seconds = watermark if provider == "slack" else watermark / 1000
        objects = sum(1 for _ in archive.keys(f"{prefix}{provider}/"))
        window = checkpoint.get("window")
        print(
            f"{provider}: archived up to {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(seconds))} "
            f"({now - seconds:.0f}s behind real time), {objects} objects"
            + (", a window in progress" if window else "")
            + (f", lease held by {record['lease_owner']}" if record.get("lease_owner") else "")
        )
    return EXIT_OK


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

    collect_p = sub.add_parser("collect", help="one run, as the Lambda would do it")
    collect_p.add_argument("--provider", required=True, choices=PROVIDERS)
    where(collect_p)
    collect_p.add_argument(
        "--token-env", help="environment variable holding the token (default SLACK_TOKEN / ASANA_TOKEN)"
    )
    collect_p.add_argument("--secret-id", help="read the token from this Secrets Manager secret instead")
    collect_p.add_argument("--api-base-url", help="another API host (GovSlack, the emulator)")
    collect_p.add_argument("--workspace-gid", default=os.environ.get("ASANA_WORKSPACE_GID"))
    collect_p.add_argument("--settle-seconds", type=int, default=120)
    collect_p.add_argument("--lookback-days", type=float, default=7)
    collect_p.add_argument("--timeout", type=float, default=30)
    collect_p.add_argument("--budget-seconds", type=float, default=3600, help="stop (exit 3) after this long")
    collect_p.add_argument("--page-limit", type=int, help="events per request (default: the API's maximum)")
    collect_p.add_argument("--max-object-mb", type=float, default=64, help="uncompressed JSON per archive object")
    collect_p.set_defaults(func=cmd_collect)

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
