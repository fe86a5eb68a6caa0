"""Where a laptop run reads and writes: an archive (a folder or s3://), a state store (a file or
dynamodb://), a signing key, a token, and the settings the flags give; plus the exit codes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from audit_collector.aws.config import parse_sweep_after
from audit_collector.collector import Settings
from audit_collector.collector.provider import Descriptor, Option
from audit_collector.errors import ConfigError
from audit_collector.evidence.signing import Checker, Ed25519Signer, KmsSigner, PublicKeyChecker, Signer
from audit_collector.storage.archive import ArchiveWriter
from audit_collector.storage.keys import normalize_prefix
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.s3 import S3Archive
from audit_collector.storage.state import CheckpointStore, DynamoDBStore, FileStore

if TYPE_CHECKING:
    pass


EXIT_OK = 0


EXIT_FAILED = 1


EXIT_USAGE = 2


EXIT_INCOMPLETE = 3


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
        from audit_collector.aws.tokens import load_token

        return load_token(args.secret_id)
    name = args.token_env or descriptor.token_env
    token = os.environ.get(name, "").strip()
    if not token:
        raise ConfigError(f"no {descriptor.name} token: set {name}, or pass --token-env NAME or --secret-id ID")
    return token


def token_present(descriptor: Descriptor) -> bool:
    return bool(os.environ.get(descriptor.token_env, "").strip())


def option_value(args: argparse.Namespace, option: Option) -> str | None:
    """An option from its flag, else from this provider's own variable: providers may share a flag
    (``--tenant``) while each reads its own variable (``OKTA_TENANT``, ``ZOOM_TENANT``)."""
    return getattr(args, option.name, None) or os.environ.get(option.env)


def provider_options(args: argparse.Namespace, descriptor: Descriptor) -> dict[str, str]:
    """The provider's own options, each from its flag or else its own environment variable."""
    options = {o.name: option_value(args, o) for o in descriptor.options}
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
