"""``audit-collector demo``: the whole pipeline on a laptop, against the emulator, on loopback only.

A generated org (a few thousand users, days of events of every API the emulator serves, with
seeded faults on the wire) is collected into a local archive exactly as the Lambda would write S3, checked against what
the emulator served, then queried with DuckDB through the Athena table names.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from audit_collector import providers
from audit_collector.aws.invocation import parse_backfill
from audit_collector.collector import Budget, Settings
from audit_collector.collector.provider import Descriptor
from audit_collector.console import ProgressBar, print_result, print_verify, write_rows
from audit_collector.dates import iso
from audit_collector.emulator import EmulatedApi, Emulator, FaultPlan, make_org, position_faults
from audit_collector.errors import ConfigError
from audit_collector.evidence.signing import Ed25519Signer, generate_key
from audit_collector.http.clock import SystemClock
from audit_collector.storage.archive import decode_object
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.state import FileStore
from audit_collector.wiring import collect_provider

MARKER = ".audit-collector-demo"


def prepare_folder(folder: Path) -> None:
    """Start from an empty folder, but never delete one this demo did not create."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise ConfigError(f"{folder} exists and is not a demo archive; choose another --archive folder")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("created by `audit-collector demo`; safe to delete\n")


def demo(*, archive_dir: Path, days: float, users: int, seed: int, fault_rate: float) -> int:
    """Collect a generated org from the emulator (live, then a backfill), check it, query it."""
    prepare_folder(archive_dir)
    now = int(time.time())
    start = now - int(days * 86400)
    org = make_org(seed, users)
    faults = ("server_error", "html", "reset", "truncated", "rate_limit", *position_faults())
    plan = FaultPlan(seed, dict.fromkeys(faults, fault_rate), retry_after="1")
    archive, store = LocalArchive(archive_dir), FileStore(archive_dir / "state.json")
    signer, public_key = demo_signer(archive_dir)
    # Live collection starts a day back; the days before are a backfill. Not paced: the emulator has
    # no org-wide limit to share (the Lambda paces each API just under its limit).
    settings = Settings(settle_seconds=60, initial_lookback_days=min(1.0, days), http_timeout=10, paced=False)
    # Up to now: the backfill takes only what live collection does not own already. Live collection
    # looks back a day from its own start, a moment after ``now``: even a one-day demo backfills
    # those seconds, or the first events served would be collected by neither.
    backfill_spec = {"start": iso(start), "end": iso(now)}
    started = time.monotonic()
    with Emulator(faults=plan) as emu:
        demoed = [(d, emu.api(d.name)) for d in providers.all_descriptors() if d.emulator]
        served = {}
        for i, (descriptor, api) in enumerate(demoed):
            served[descriptor.name] = api.generate(org, start, now - 30, int(api.demo_per_day * days), seed=seed + i)
            api.add(served[descriptor.name], lag=api.demo_lag)
        counts = " and ".join(f"{len(served[d.name]):,} {d.title}" for d, _ in demoed)
        print(
            f"Emulator on {emu.base_url} (loopback only): {len(org.users)} users, {counts} events over "
            f"{days:g} days, faults injected at {fault_rate:.0%} per kind per request.\n"
        )
        print("1. Live collection, as the schedule runs it (the last day):")
        for descriptor, api in demoed:
            print_result(_run(descriptor, api, archive, store, settings, signer=signer))
        # Live collection covered its lookback (the last day, counted from when it started); what the
        # emulator served before that is a backfill, up to where live collection starts, to the unit
        # (an instant between the two would be collected by neither: verify reports it as a gap).
        origins = {d.name: store.read(d.name)["checkpoint"]["jobs"]["live"]["ranges"][0][0] for d, _ in demoed}
        before = [(d, api) for d, api in demoed if origins[d.name] / d.units_per_second > start]
        if before:
            print(
                f"\n2. Backfill of the days before ({backfill_spec['start']} .. {backfill_spec['end']}, "
                "less what live collection owns):"
            )
            for descriptor, api in before:
                origin = origins[descriptor.name] / descriptor.units_per_second
                spec = {**backfill_spec, "end": datetime.fromtimestamp(origin, UTC).isoformat().replace("+00:00", "Z")}
                request = parse_backfill(descriptor, spec, now=time.time())
                bar = ProgressBar(enabled=sys.stderr.isatty())
                try:
                    result = _run(descriptor, api, archive, store, settings, request, bar, signer=signer)
                finally:
                    bar.close()
                backfill = result.backfill or {}
                print(
                    f"{descriptor.name}: backfill {backfill.get('progress', 0):.0%} done in "
                    f"{backfill.get('slices', 1)} slice(s): {result.events_written:,} events in "
                    f"{result.objects_written} objects"
                )
        injected = ", ".join(f"{n} {name}" for name, n in sorted(plan.injected.items())) or "none"
        print(f"\nFaults the collector rode out: {injected}.")
    horizon = now - settings.settle_seconds
    ok = True
    for descriptor, _ in demoed:
        ok &= check(archive, descriptor, served[descriptor.name], horizon)
    print(f"\nArchive: {archive_dir}/  (same layout and bytes as s3://<bucket>/<provider>/dt=YYYY-MM-DD/…)")
    print(f"Pipeline took {time.monotonic() - started:.1f}s.\n")
    compact(archive_dir, store, [d for d, _ in demoed])
    ask(archive_dir, [d for d, _ in demoed])
    ok &= prove(archive, store, [d for d, _ in demoed], archive_dir, public_key)
    return 0 if ok else 1


def demo_signer(archive_dir: Path) -> tuple[Ed25519Signer, Path]:
    """The demo's signing key, beside the archive folder (never in it: an auditor is given the
    bucket and the public key, not the private one). Made on first use, reused after."""
    key = archive_dir.parent / f"{archive_dir.name}-signing-key.pem"
    if not key.exists():
        generate_key(key)
    return Ed25519Signer.from_file(key), Path(f"{key}.pub")


def compact(archive_dir: Path, store: FileStore, descriptors: list[Descriptor]) -> None:
    """Closed days into Parquet, as the scheduled compaction does with Athena (``audit-collector compact``)."""
    from audit_collector.compaction.local import compact_local
    from audit_collector.compaction.sql import all_view, compacted

    for descriptor in filter(compacted, descriptors):  # a provider without compacted_columns has no _all view
        report = compact_local(archive_dir, descriptor, store.read(descriptor.name).get("checkpoint", {}))
        print(
            f"{descriptor.name}: {len(report.compacted)} closed day(s) compacted into Parquet "
            f"({sum(d.events for d in report.compacted):,} events from {sum(d.objects for d in report.compacted)} "
            f"objects); {all_view(descriptor)} reads them, and the open days raw"
        )
    print()


def prove(
    archive: LocalArchive, store: FileStore, descriptors: list[Descriptor], archive_dir: Path, public_key: Path
) -> bool:
    """What an auditor runs: every object against its window's manifest, the chain, the gaps; once
    with the state store, once from the archive and the public key alone."""
    from audit_collector.evidence.signing import PublicKeyChecker
    from audit_collector.verify.check import verify_archive

    print(f"\nProving the archive (audit-collector verify --archive {archive_dir}):")
    checkpoints = {d.name: store.read(d.name).get("checkpoint", {}) for d in descriptors}
    report = verify_archive(archive, "", descriptors, checkpoints=checkpoints)
    print_verify(report)
    print(f"\nFrom the archive and the public key alone (verify --public-key {public_key}, no state):")
    alone = verify_archive(archive, "", descriptors, checker=PublicKeyChecker.from_file(public_key))
    print_verify(alone)
    return report.clean and alone.clean


def ask(archive_dir: Path, descriptors: list[Descriptor]) -> None:
    """Each provider's investigation questions, answered from the local archive."""
    from audit_collector.query import run_query

    for descriptor in descriptors:
        for question, sql in descriptor.questions:
            print(f"-- {question}")
            names, rows = run_query(archive_dir, sql)
            write_rows(names, rows)
            print()
    print(
        "Ask your own: audit-collector query --archive",
        archive_dir,
        f'"SELECT dt, count(*) FROM {descriptors[0].table} GROUP BY dt ORDER BY dt"',
    )


def _run(descriptor: Descriptor, api: EmulatedApi, archive, store, settings, backfill=None, bar=None, signer=None):
    clock = SystemClock()
    return collect_provider(
        descriptor,
        token=api.token,
        base_url=api.base_url,
        options=api.options,
        store=store,
        archive=archive,
        prefix="",
        settings=settings,
        clock=clock,
        budget=Budget.for_run(clock, 600, settings),
        backfill=backfill,
        progress=bar.update if bar else None,
        user_agent_suffix="(demo)",
        signer=signer,
    )


def check(archive: LocalArchive, descriptor: Descriptor, served: list[dict], horizon: int) -> bool:
    """Compare the archive with what the emulator served: every event once, in its own dt."""
    due = {descriptor.event_id(e) for e in served if descriptor.event_seconds(e) < horizon}
    counts: Counter[str] = Counter()
    misplaced = 0
    for object_key in archive.keys(f"{descriptor.name}/"):
        dt = object_key.split("dt=")[1][:10]
        for event in decode_object(archive.get(object_key)):
            counts[descriptor.event_id(event)] += 1
            misplaced += descriptor.event_date(event) != dt
    lost = len(due - set(counts))
    unknown = len(set(counts) - {descriptor.event_id(e) for e in served})
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    verdict = "exactly once" if not (lost or duplicated or misplaced or unknown) else "MISMATCH"
    print(
        f"{descriptor.name}: {sum(counts.values()):,} events archived, including all {len(due):,} that had settled "
        f"when the demo began; {lost} lost, {duplicated} duplicated, {unknown} unknown, "
        f"{misplaced} in the wrong dt: {verdict}"
    )
    return verdict == "exactly once"
