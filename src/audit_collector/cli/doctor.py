"""``audit-collector doctor``: the preflight from a laptop (``preflight.py`` has the checks).

Per provider named (default: each whose token variable is set), one line per check; with
``--archive s3://…`` and ``--state dynamodb://…``, the table and the bucket too. Writes nothing.
Exit 0 when every check passed, 1 when something needs fixing.
"""

from __future__ import annotations

import argparse

from audit_collector import providers


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``doctor`` subcommand; a provider option's variable is read when it is used (``option_value``)."""
    p = sub.add_parser("doctor", help="check tokens, scopes, plans, clock, table and bucket; writes nothing")
    names = [d.name for d in providers.all_descriptors()]
    p.add_argument(
        "--provider", action="append", choices=names, help="check this one (repeat; default: each with a token)"
    )
    p.add_argument("--api-base-url", help="another API host (with one --provider)")
    p.add_argument("--secret-id", help="read the token from this Secrets Manager secret (with one --provider)")
    p.add_argument("--token-env", help="environment variable holding the token (with one --provider)")
    p.add_argument("--archive", help="s3://bucket/prefix: check the bucket (with --state)")
    p.add_argument("--state", help="dynamodb://table: check the table (with --archive)")
    p.add_argument(
        "--object-lock-mode", choices=("NONE", "GOVERNANCE", "COMPLIANCE"), help="what the bucket should use"
    )
    p.add_argument("--kms-key-arn", help="the KMS key the bucket should use ('' for SSE-S3)")
    p.add_argument("--timeout", type=float, default=30)
    for descriptor in providers.all_descriptors():
        for option in descriptor.options:
            if not any(option.flag in a.option_strings for a in p._actions):
                p.add_argument(option.flag, dest=option.name, default=None)
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from audit_collector.checks.preflight import Check, storage_checks
    from audit_collector.cli.options import (
        EXIT_FAILED,
        EXIT_OK,
        open_archive,
        open_state,
        option_value,
        resolve_token,
        token_present,
    )
    from audit_collector.errors import AuditCollectorError, ConfigError
    from audit_collector.http.clock import SystemClock
    from audit_collector.wiring import check_provider

    names = args.provider or [d.name for d in providers.all_descriptors() if token_present(d)]
    if not names and not args.archive:
        raise ConfigError("nothing to check: set a provider's token variable, or pass --provider / --archive")
    if len(names) > 1 and (args.api_base_url or args.secret_id or args.token_env):
        raise ConfigError("--api-base-url, --secret-id and --token-env go with one --provider")
    checks: list[Check] = []
    for name in names:
        descriptor = providers.get(name)
        try:
            token = resolve_token(args, descriptor)
        except AuditCollectorError as exc:
            checks.append(Check(name, "token", False, str(exc)))
            continue
        options = {o.name: option_value(args, o) for o in descriptor.options}
        checks += check_provider(
            descriptor,
            token=token,
            clock=SystemClock(),
            timeout=args.timeout,
            base_url=args.api_base_url,
            options={k: v for k, v in options.items() if v},
        )
    if args.archive:
        archive, prefix = open_archive(args.archive)
        checks += storage_checks(
            open_state(args.state, args.archive),
            archive,
            prefix,
            object_lock_mode=args.object_lock_mode,
            kms_key_arn=args.kms_key_arn,
        )
    for check in checks:
        print(check.line())
    return EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED
