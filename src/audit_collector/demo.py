"""``audit-collector demo``: the whole pipeline on a laptop, against the emulator, on loopback only.

A generated org (a few thousand users, days of Slack and Asana events, with seeded faults on the
wire) is collected into a local archive exactly as the Lambda would write S3, checked against what
the emulator served, then queried with DuckDB through the Athena table names.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from .archive import LocalArchive, decode_object
from .collector import Settings
from .config import PROVIDERS
from .emulator import Emulator, FaultPlan, asana_events, make_org, slack_events
from .errors import ConfigError
from .state import FileStore

MARKER = ".audit-collector-demo"
SLACK_PER_DAY, ASANA_PER_DAY = 12_000, 4_000

QUESTIONS = [
    (
        "Who failed to log in to Slack most, and from where?",
        """SELECT actor.user.email AS user_email, context.ip_address AS ip, count(*) AS failures
           FROM slack_audit_logs WHERE action = 'user_login_failed'
           GROUP BY 1, 2 ORDER BY failures DESC, user_email LIMIT 5""",
    ),
    (
        "Who was made a Slack admin or owner, and by whom?",
        """SELECT from_unixtime(date_create) AS at, actor.user.email AS granted_by,
                  json_extract_scalar(entity, '$.user.email') AS granted_to, action
           FROM slack_audit_logs WHERE action IN ('role_change_to_admin', 'role_change_to_owner')
           ORDER BY date_create DESC LIMIT 5""",
    ),
    (
        "Who downloaded or exported the most from Asana?",
        """SELECT actor.email AS user_email, count(*) AS downloads_and_exports
           FROM asana_audit_log_events
           WHERE event_type IN ('attachment_downloaded', 'workspace_export_started', 'project_export_completed')
           GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5""",
    ),
]


def prepare_folder(folder: Path) -> None:
    """Start from an empty folder, but never delete one this demo did not create."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise ConfigError(f"{folder} exists and is not a demo archive; choose another --archive folder")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("created by `audit-collector demo`; safe to delete\n")


def run_demo(*, archive_dir: Path, days: float, users: int, seed: int, fault_rate: float) -> int:
    from .cli import ProgressBar, print_result, run_collection, write_rows
    from .invocation import parse_backfill
    from .query import run_query

    prepare_folder(archive_dir)
    now = int(time.time())
    start = now - int(days * 86400)
    org = make_org(seed, users)
    served = {
        "slack": slack_events(org, start, now - 30, int(SLACK_PER_DAY * days), seed=seed),
        "asana": asana_events(org, start * 1000, (now - 30) * 1000, int(ASANA_PER_DAY * days), seed=seed + 1),
    }
    faults = ("server_error", "html", "reset", "truncated", "rate_limit", "invalid_cursor", "expired_offset")
    plan = FaultPlan(seed, dict.fromkeys(faults, fault_rate), retry_after="1")
    archive, store = LocalArchive(archive_dir), FileStore(archive_dir / "state.json")
    # Live collection starts a day back; the days before are a backfill. Slack is not paced here:
    # the emulator has no org-wide limit to share (the Lambda paces at 48 calls a minute).
    settings = Settings(
        settle_seconds=60, initial_lookback_days=min(1.0, days), http_timeout=10, slack_calls_per_minute=None
    )
    backfill_spec = {"start": iso(start), "end": iso(now - 86400)}
    started = time.monotonic()
    with Emulator(faults=plan) as emu:
        emu.slack.add(served["slack"])
        emu.asana.add(served["asana"], lag=5)
        print(
            f"Emulator on {emu.base_url} (loopback only): {len(org.users)} users, "
            f"{len(served['slack']):,} Slack and {len(served['asana']):,} Asana events over {days:g} days, "
            f"faults injected at {fault_rate:.0%} per kind per request.\n"
        )
        print("1. Live collection, as the schedule runs it (the last day):")
        for provider in PROVIDERS:
            result = run_collection(
                provider,
                tokens(emu)[provider],
                base_url=urls(emu)[provider],
                archive=archive,
                prefix="",
                store=store,
                settings=settings,
                budget_seconds=600,
                workspace_gid=emu.workspace_gid,
            )
            print_result(result)
        if days > 1:  # live collection covered the last day; the days before are a backfill
            print(f"\n2. Backfill of the days before ({backfill_spec['start']} .. {backfill_spec['end']}):")
            for provider in PROVIDERS:
                request = parse_backfill(provider, backfill_spec, now=time.time())
                bar = ProgressBar(enabled=sys.stderr.isatty())
                try:
                    result = run_collection(
                        provider,
                        tokens(emu)[provider],
                        base_url=urls(emu)[provider],
                        archive=archive,
                        prefix="",
                        store=store,
                        settings=settings,
                        budget_seconds=600,
                        workspace_gid=emu.workspace_gid,
                        backfill=request,
                        progress=bar.update,
                    )
                finally:
                    bar.close()
                backfill = result.backfill or {}
                print(
                    f"{provider}: backfill {backfill.get('progress', 0):.0%} done in {backfill.get('slices', 1)} "
                    f"slice(s): {result.events_written:,} events in {result.objects_written} objects"
                )
        injected = ", ".join(f"{n} {name}" for name, n in sorted(plan.injected.items())) or "none"
        print(f"\nFaults the collector rode out: {injected}.")
    horizon = now - settings.settle_seconds
    ok = True
    for provider in PROVIDERS:
        ok &= check(archive, provider, served[provider], horizon)
    print(f"\nArchive: {archive_dir}/  (same layout and bytes as s3://<bucket>/<provider>/dt=YYYY-MM-DD/…)")
    print(f"Pipeline took {time.monotonic() - started:.1f}s.\n")
    for question, sql in QUESTIONS:
        print(f"-- {question}")
        names, rows = run_query(archive_dir, sql)
        write_rows(names, rows)
        print()
    print(
        "Ask your own: audit-collector query --archive",
        archive_dir,
        '"SELECT action, count(*) FROM slack_audit_logs GROUP BY 1 ORDER BY 2 DESC LIMIT 10"',
    )
    return 0 if ok else 1


def tokens(emu: Emulator) -> dict[str, str]:
    return {"slack": emu.slack_token, "asana": emu.asana_token}


def urls(emu: Emulator) -> dict[str, str]:
    return {"slack": emu.slack_base_url, "asana": emu.asana_base_url}


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def check(archive: LocalArchive, provider: str, served: list[dict], horizon: int) -> bool:
    """Compare the archive with what the emulator served: every event once, in its own dt."""
    key = "id" if provider == "slack" else "gid"
    due = {e[key] for e in served if (e["date_create"] if provider == "slack" else _seconds(e["created_at"])) < horizon}
    counts: Counter[str] = Counter()
    misplaced = 0
    for object_key in archive.keys(f"{provider}/"):
        dt = object_key.split("dt=")[1][:10]
        for event in decode_object(archive.get(object_key)):
            counts[event[key]] += 1
            day = (
                time.strftime("%Y-%m-%d", time.gmtime(event["date_create"]))
                if provider == "slack"
                else event["created_at"][:10]
            )
            misplaced += day != dt
    lost = len(due - set(counts))
    unknown = len(set(counts) - {e[key] for e in served})
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    verdict = "exactly once" if not (lost or duplicated or misplaced or unknown) else "MISMATCH"
    print(
        f"{provider}: {sum(counts.values()):,} events archived, including all {len(due):,} that had settled "
        f"when the demo began; {lost} lost, {duplicated} duplicated, {unknown} unknown, "
        f"{misplaced} in the wrong dt: {verdict}"
    )
    return verdict == "exactly once"


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
