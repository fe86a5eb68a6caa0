"""The ``audit-collector`` command line: its parser and ``main``; each subcommand is in ``commands.py``
(``doctor`` in ``doctor.py``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from audit_collector import __version__, providers
from audit_collector.cli.commands import (
    cmd_backfill,
    cmd_collect,
    cmd_compact,
    cmd_demo,
    cmd_keygen,
    cmd_query,
    cmd_status,
    cmd_verify,
)
from audit_collector.cli.options import EXIT_FAILED, EXIT_INCOMPLETE, EXIT_USAGE
from audit_collector.errors import AuditCollectorError, ConfigError

if TYPE_CHECKING:
    pass


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
                    default=None,  # read per provider (options.option_value): two may share a flag
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

    from audit_collector.cli.doctor import add_parser as add_doctor

    add_doctor(sub)
    from audit_collector.aws.template import add_parser as add_template

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
