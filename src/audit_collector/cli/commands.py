"""The subcommands of ``audit-collector``: the same pipeline as the Lambda, from a laptop or a CI box."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from audit_collector import providers
from audit_collector.cli.options import (
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_OK,
    collect_settings,
    open_archive,
    open_checker,
    open_signer,
    open_state,
    provider_options,
    resolve_token,
)
from audit_collector.collector import BackfillRequest, Budget, RunResult
from audit_collector.console import CountBar, ProgressBar, print_result, print_status, print_verify, write_rows
from audit_collector.errors import ConfigError
from audit_collector.evidence.signing import generate_key
from audit_collector.http.clock import SystemClock
from audit_collector.wiring import collect_provider

if TYPE_CHECKING:
    from audit_collector.ocsf.lake import LakeTarget


def run_once(
    args: argparse.Namespace, backfill: BackfillRequest | None = None, bar: ProgressBar | None = None
) -> RunResult:
    """One run, wired as the Lambda wires it, with the adapters the flags chose."""
    descriptor = providers.get(args.provider)
    archive, prefix = open_archive(args.archive)
    store = open_state(args.state, args.archive)
    settings = collect_settings(args, descriptor)
    options = provider_options(args, descriptor)
    token = resolve_token(args, descriptor)
    signer = open_signer(args.signing_key)
    clock = SystemClock()
    return collect_provider(
        descriptor,
        token=token,
        base_url=args.api_base_url,
        options=options,
        store=store,
        archive=archive,
        prefix=prefix,
        settings=settings,
        clock=clock,
        budget=Budget.for_run(clock, args.budget_seconds, settings),
        backfill=backfill,
        progress=bar.update if bar else None,
        user_agent_suffix="(cli)",
        signer=signer,
    )


def cmd_collect(args: argparse.Namespace) -> int:
    result = run_once(args)
    print_result(result)
    return EXIT_OK if result.status == "ok" and result.complete else EXIT_INCOMPLETE


def cmd_backfill(args: argparse.Namespace) -> int:
    from audit_collector.aws.invocation import parse_backfill

    descriptor = providers.get(args.provider)
    request = parse_backfill(descriptor, {"start": args.start, "end": args.end}, now=time.time())
    for note in request.notes:
        print(f"note: {note}", file=sys.stderr)
    bar = ProgressBar(enabled=not args.no_progress)
    started = time.monotonic()
    try:
        result = run_once(args, request, bar)
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
    return EXIT_OK if result.status == "ok" and backfill.get("done") else EXIT_INCOMPLETE


def cmd_status(args: argparse.Namespace) -> int:
    store = open_state(args.state, args.archive)
    archive, prefix = open_archive(args.archive)
    for descriptor in providers.all_descriptors():
        objects = sum(1 for _ in archive.keys(f"{prefix}{descriptor.name}/"))
        print_status(descriptor, store.read(descriptor.name), objects)
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    if args.archive.startswith("s3://"):
        raise ConfigError("query reads a local archive; for S3 use Athena (the same table and column names)")
    from audit_collector.query import run_query

    names, rows = run_query(args.archive, args.sql)
    write_rows(names, rows, args.format)
    return EXIT_OK


def cmd_compact(args: argparse.Namespace) -> int:
    if args.archive.startswith("s3://"):
        raise ConfigError("compact works on a local archive; in AWS the scheduled compaction function does it")
    from audit_collector.compaction.local import compact_local

    lake = _lake_target(args)  # checked before anything is written
    store = open_state(args.state, args.archive)
    for descriptor in providers.all_descriptors():
        if args.provider in (None, descriptor.name):
            checkpoint = store.read(descriptor.name).get("checkpoint", {})
            report = compact_local(args.archive, descriptor, checkpoint, grace_seconds=args.grace_seconds)
            print(
                f"{descriptor.name}: {len(report.compacted)} day(s) compacted "
                f"({sum(d.events for d in report.compacted):,} events), {len(report.up_to_date)} up to date, "
                f"{len(report.open_days)} still open; compacted up to {report.watermark or 'no day yet'}"
            )
            if lake is not None:  # Security Lake's custom sources (ocsf/lake.py), by the same closed days
                from audit_collector.ocsf.lake import export_local

                written = export_local(args.archive, descriptor, checkpoint, lake, grace_seconds=args.grace_seconds)
                print(
                    f"{descriptor.name}: OCSF for Security Lake: {len(written.written)} day(s) written "
                    f"({sum(written.written.values()):,} events, {written.files} files), "
                    f"{len(written.up_to_date)} up to date, {written.without_class} event(s) of no OCSF class"
                )
    return EXIT_OK


def _lake_target(args: argparse.Namespace) -> LakeTarget | None:
    if args.security_lake is None:
        return None
    if not (args.security_lake_region and args.security_lake_account):
        raise ConfigError("--security-lake needs --security-lake-region and --security-lake-account")
    from audit_collector.ocsf.lake import LakeTarget

    return LakeTarget(
        Path(args.security_lake), args.security_lake_region, args.security_lake_account, args.security_lake_source
    )


def parse_instant(text: str, flag: str) -> float:
    """``2026-11-01`` (midnight UTC) or ISO 8601 with a zone (``2026-11-01T06:00:00Z``)."""
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: give a date (2026-11-01) or an ISO 8601 UTC time") from None
    if when.tzinfo is None:
        if len(text) > 10:
            raise ConfigError(f"{flag} {text!r}: say the time zone (…Z)")
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def cmd_verify(args: argparse.Namespace) -> int:
    from audit_collector.verify.check import verify_archive
    from audit_collector.verify.report import Report

    archive, prefix = open_archive(args.archive)
    if not args.archive.startswith("s3://") and not Path(args.archive).is_dir():
        raise ConfigError(f"--archive {args.archive!r}: no such folder")
    start = parse_instant(args.start, "--from") if args.start else None
    end = parse_instant(args.end, "--to") if args.end else None
    if start is not None and end is not None and end <= start:
        raise ConfigError("--to must be after --from")
    descriptors = [d for d in providers.all_descriptors() if args.provider in (None, d.name)]
    checker = open_checker(args.public_key, args.kms_key)
    checkpoints = None
    if args.state or not args.archive.startswith("s3://"):
        store = open_state(args.state, args.archive)
        if args.state or Path(args.archive, "state.json").exists():
            checkpoints = {d.name: store.read(d.name).get("checkpoint", {}) for d in descriptors}
    bar = CountBar(enabled=not args.no_progress and args.format == "table")
    reports = []
    try:
        for descriptor in descriptors:  # one bar per provider
            one = verify_archive(
                archive,
                prefix,
                [descriptor],
                checkpoints=checkpoints,
                start=start,
                end=end,
                quick=args.quick,
                progress=bar.start(descriptor.name),
                checker=checker,
            )
            reports.extend(one.providers)
    finally:
        bar.close()
    report = Report(reports, args.quick)
    print_verify(report, args.format)
    return EXIT_OK if report.clean else EXIT_FAILED


def cmd_keygen(args: argparse.Namespace) -> int:
    public = generate_key(args.path)
    print(f"signing key: {args.path} (keep it to the collector: --signing-key {args.path})")
    print(f"public key:  {public} (give it to auditors: verify --public-key {public})")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from audit_collector.demo import demo

    return demo(
        archive_dir=Path(args.archive), days=args.days, users=args.users, seed=args.seed, fault_rate=args.fault_rate
    )
