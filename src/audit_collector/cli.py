"""``audit-collector``: the same pipeline as the Lambda, from a laptop or a CI box.

Exit codes: 0 done, 1 failed, 2 bad usage, 3 stopped early with work left.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__, providers
from .archive import ArchiveWriter, LocalArchive, S3Archive, normalize_prefix
from .collector import BackfillRequest, Budget, RunResult, Settings
from .config import parse_sweep_after
from .console import CountBar, ProgressBar, print_result, print_status, print_verify, write_rows
from .descriptor import Descriptor
from .errors import AuditCollectorError, ConfigError
from .http_retry import SystemClock
from .signing import Checker, Ed25519Signer, KmsSigner, PublicKeyChecker, Signer, generate_key
from .state import CheckpointStore, DynamoDBStore, FileStore
from .wiring import collect_provider

if TYPE_CHECKING:
    from .ocsf.lake import LakeTarget

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


def open_signer(spec: str | None) -> Signer | None:
    """``kms:KEY_ID`` (a KMS key that signs) or an Ed25519 key file; None: heads are not signed."""
    if not spec:
        return None
    if spec.startswith("kms:"):
        return KmsSigner(spec.removeprefix("kms:"))
    return Ed25519Signer.from_file(spec)


def open_checker(public_key: str | None, kms_key: str | None) -> Checker | None:
    if public_key and kms_key:
        raise ConfigError("give --public-key or --kms-key, not both")
    if public_key:
        return PublicKeyChecker.from_file(public_key)
    if kms_key:
        return PublicKeyChecker.from_kms(kms_key)
    return None


def resolve_token(args: argparse.Namespace, descriptor: Descriptor) -> str:
    """From --secret-id (Secrets Manager), --token-env NAME, or the provider's ``{NAME}_TOKEN``."""
    if args.secret_id:
        from .tokens import load_token

        return load_token(args.secret_id)
    name = args.token_env or descriptor.token_env
    token = os.environ.get(name, "").strip()
    if not token:
        raise ConfigError(f"no {descriptor.name} token: set {name}, or pass --token-env NAME or --secret-id ID")
    return token


def token_present(descriptor: Descriptor) -> bool:
    return bool(os.environ.get(descriptor.token_env, "").strip())


def provider_options(args: argparse.Namespace, descriptor: Descriptor) -> dict[str, str]:
    """The provider's own options, from their flags (which default to their environment variables)."""
    options = {o.name: getattr(args, o.name, None) for o in descriptor.options}
    missing = [o for o in descriptor.options if o.required and not options.get(o.name)]
    if missing:
        raise ConfigError("; ".join(f"{o.flag} is required for {descriptor.name} (or set {o.env})" for o in missing))
    return {k: v for k, v in options.items() if v}


def collect_settings(args: argparse.Namespace, descriptor: Descriptor) -> Settings:
    if args.page_limit is not None and not 1 <= args.page_limit <= descriptor.largest_page:
        raise ConfigError(f"--page-limit for {descriptor.name} must be from 1 to {descriptor.largest_page}")
    if not 0.01 <= args.max_object_mb <= 1024:
        raise ConfigError("--max-object-mb must be from 0.01 to 1024")
    slices = getattr(args, "slices", None)
    if slices is not None and not 1 <= slices <= 64:
        raise ConfigError("--slices must be from 1 to 64")
    return Settings(
        settle_seconds=args.settle_seconds,
        initial_lookback_days=args.lookback_days,
        http_timeout=args.timeout,
        max_object_bytes=int(args.max_object_mb * 1024 * 1024),
        page_limit=args.page_limit,
        calls_per_minute=args.calls_per_minute or None,
        paced=args.calls_per_minute != 0,
        backfill_slices=slices,
        sweep_after_seconds=parse_sweep_after(args.sweep_after, "--sweep-after"),
        sweep_share=args.sweep_share,
    )


# --------------------------------------------------------------------------- commands


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
    from .invocation import parse_backfill

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
    from .query import run_query

    names, rows = run_query(args.archive, args.sql)
    write_rows(names, rows, args.format)
    return EXIT_OK


def cmd_compact(args: argparse.Namespace) -> int:
    if args.archive.startswith("s3://"):
        raise ConfigError("compact works on a local archive; in AWS the scheduled compaction function does it")
    from .compaction import compact_local

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
                from .ocsf.lake import export_local

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
    from .ocsf.lake import LakeTarget

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
    from .verify import Report, verify_archive

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
    from .demo import demo

    return demo(
        archive_dir=Path(args.archive), days=args.days, users=args.users, seed=args.seed, fault_rate=args.fault_rate
    )


# --------------------------------------------------------------------------- parsing


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--archive", default="./archive", help="a folder (default ./archive) or s3://bucket/prefix")
    p.add_argument("--state", help="a JSON file (default: state.json in the archive folder) or dynamodb://table")


def _collection(p: argparse.ArgumentParser) -> None:
    descriptors = providers.all_descriptors()
    p.add_argument("--provider", required=True, choices=[d.name for d in descriptors])
    _where(p)
    tokens = ", ".join(d.token_env for d in descriptors)
    p.add_argument("--token-env", help=f"environment variable holding the token (default: {tokens})")
    p.add_argument("--secret-id", help="read the token from this Secrets Manager secret instead")
    p.add_argument("--api-base-url", help="another API host (a government cloud, the emulator)")
    seen = set()
    for descriptor in descriptors:
        for option in descriptor.options:
            if option.flag not in seen:
                seen.add(option.flag)
                p.add_argument(
                    option.flag,
                    dest=option.name,
                    default=os.environ.get(option.env),
                    help=f"{descriptor.name}: {option.help} (default ${option.env})",
                )
    p.add_argument(
        "--signing-key",
        default=os.environ.get("AUDIT_COLLECTOR_SIGNING_KEY"),
        help="sign the chain's heads with this Ed25519 key file, or kms:KEY_ID (default $AUDIT_COLLECTOR_SIGNING_KEY)",
    )
    p.add_argument("--settle-seconds", type=int, default=120)
    p.add_argument(
        "--sweep-after",
        default="1800,86400",
        help="re-read each closed window this many seconds after it ended, for late events (0: no sweep)",
    )
    p.add_argument("--sweep-share", type=float, default=0.25, help="the sweep's share of the API's pace (default 0.25)")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audit-collector", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"audit-collector {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    collect_p = sub.add_parser("collect", help="one run, as the Lambda would do it")
    _collection(collect_p)
    collect_p.set_defaults(func=cmd_collect)

    backfill_p = sub.add_parser("backfill", help="archive a past range (skipping what is archived already)")
    _collection(backfill_p)
    backfill_p.add_argument("--start", required=True, help="ISO 8601 UTC, inclusive (2026-10-01T00:00:00Z)")
    backfill_p.add_argument("--end", required=True, help="ISO 8601 UTC, exclusive")
    concurrency = ", ".join(f"{d.name} {d.backfill_concurrency}" for d in providers.all_descriptors())
    backfill_p.add_argument("--slices", type=int, help=f"time slices fetched at once (default: {concurrency})")
    backfill_p.add_argument("--no-progress", action="store_true", help="no progress bar")
    backfill_p.set_defaults(func=cmd_backfill)

    status_p = sub.add_parser("status", help="checkpoints, lag and archive size per provider")
    _where(status_p)
    status_p.set_defaults(func=cmd_status)

    query_p = sub.add_parser("query", help="SQL over a local archive with DuckDB (Athena's table names)")
    query_p.add_argument("sql")
    query_p.add_argument("--archive", default="./archive")
    query_p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query_p.set_defaults(func=cmd_query)

    compact_p = sub.add_parser("compact", help="rewrite closed days of a local archive as Parquet (as Athena does)")
    _where(compact_p)
    compact_p.add_argument("--provider", choices=[d.name for d in providers.all_descriptors()])
    compact_p.add_argument("--grace-seconds", type=float, default=0, help="wait this long after a day closes")
    compact_p.add_argument(
        "--security-lake", metavar="DIR", help="also write OCSF Parquet as Security Lake custom sources under DIR/ext/"
    )
    compact_p.add_argument("--security-lake-region", help="the region= partition (the lake's region)")
    compact_p.add_argument("--security-lake-account", help="the accountId= partition (12 digits)")
    compact_p.add_argument(
        "--security-lake-source", default="auditcol", help="custom source names: PREFIX-<short class name>"
    )
    compact_p.set_defaults(func=cmd_compact)

    verify_p = sub.add_parser(
        "verify", help="prove the archive against its manifests: gaps, missing, altered, extra, duplicates, chain"
    )
    verify_p.add_argument("--archive", default="./archive", help="a folder (default ./archive) or s3://bucket/prefix")
    verify_p.add_argument(
        "--state",
        help="the state store (a JSON file, default state.json in the archive folder if there; or dynamodb://table): "
        "its watermark ends the gap check, its open windows are not extra, its chain head is checked",
    )
    verify_p.add_argument("--provider", choices=[d.name for d in providers.all_descriptors()])
    verify_p.add_argument("--from", dest="start", help="check windows from this date or instant (UTC)")
    verify_p.add_argument("--to", dest="end", help="... up to this one (exclusive)")
    verify_p.add_argument("--format", choices=("table", "json"), default="table")
    verify_p.add_argument(
        "--quick", action="store_true", help="compare S3's stored checksums (GetObjectAttributes); no downloads"
    )
    verify_p.add_argument(
        "--public-key",
        help="the chain's heads must be signed with this key (PEM or DER file): proof from the bucket alone",
    )
    verify_p.add_argument("--kms-key", help="... or with this KMS key (its public key is fetched, then used offline)")
    verify_p.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify_p.set_defaults(func=cmd_verify)

    keygen_p = sub.add_parser("keygen", help="a new Ed25519 signing key (PATH) and its public key (PATH.pub)")
    keygen_p.add_argument("path")
    keygen_p.set_defaults(func=cmd_keygen)

    from .doctor import add_parser as add_doctor

    add_doctor(sub, {o.env: os.environ.get(o.env) for d in providers.all_descriptors() for o in d.options})
    from .aws.template import add_parser as add_template

    add_template(sub)

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


if __name__ == "__main__":
    raise SystemExit(main())
