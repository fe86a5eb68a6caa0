"""Soak: everything failing at once, for a while; then every settled event exactly once.

Both providers, tens of thousands of events over several days plus live arrivals a few seconds
late; seeded faults on the wire (5xx, HTML pages, 429 + Retry-After, resets, read timeouts,
truncated bodies, invalid cursors, expired offsets, slow pages); S3 and DynamoDB failures injected
in botocore; runs that die right after an archive write or at random steps; overlapping runs.
(A real SIGKILLed subprocess is in tests/cli/test_cli.py.) Bounded to a couple of minutes.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import Counter
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from audit_collector.collector import Settings
from audit_collector.emulator import Emulator, FaultPlan, served_text
from audit_collector.emulator.asana import asana_events
from audit_collector.emulator.slack import slack_events
from audit_collector.storage.s3 import S3Archive
from audit_collector.storage.state import DynamoDBStore

from .support import (
    BUCKET,
    TABLE,
    Crash,
    CrashingArchive,
    CrashingStore,
    FakeClock,
    Gate,
    GatedArchive,
    GatedStore,
    StepCounter,
    archived,
    archived_text,
    create_aws_resources,
    event_dt,
    event_id,
    run_once,
)

NOW = int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp())
DAY = 86400
FAULTS = {
    "server_error": 0.03,
    "html": 0.02,
    "rate_limit": 0.03,
    "reset": 0.03,
    "truncated": 0.02,
    "slow": 0.01,
    "invalid_cursor": 0.03,
    "expired_offset": 0.03,
}


class AwsFaults:
    """Raises a 500 from S3 PutObject or DynamoDB UpdateItem now and then (botocore's before-call)."""

    def __init__(self, seed: int, rate: float) -> None:
        self.rng, self.rate, self.injected = random.Random(seed), rate, Counter()
        self.on = False

    def __call__(self, model, **kwargs):
        if self.on and self.rng.random() < self.rate:
            self.injected[model.name] += 1
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, model.name)


PAGE_LIMITS = {"slack": 400, "asana": 100}


@pytest.mark.slow
def test_soak_every_settled_event_exactly_once(org, capsys):
    rng = random.Random(2026)
    clock = FakeClock(start=float(NOW))
    settings = Settings(
        initial_lookback_days=3,
        settle_seconds=60,
        max_object_bytes=150_000,
        http_timeout=0.5,
        backfill_slices=4,
    )
    served = {"slack": [], "asana": []}
    runs, outcomes = 0, Counter()
    with mock_aws(), Emulator(clock=clock.time, faults=FaultPlan(7, FAULTS, slow_seconds=0.8, retry_after="2")) as emu:
        create_aws_resources()
        aws_faults = AwsFaults(8, 0.03)
        store, archive = DynamoDBStore(TABLE), S3Archive(BUCKET)
        for client in (archive.client, store.client):  # the very clients the runs use
            client.meta.events.register("before-call.*.*", aws_faults)
        history = (NOW - 3 * DAY + 300, NOW - 600)
        served["slack"] = slack_events(org, *history, 24_000, seed=11)
        served["asana"] = asana_events(org, history[0] * 1000, history[1] * 1000, 12_000, seed=12)
        emu.slack.add(served["slack"])
        emu.asana.add(served["asana"])
        aws_faults.on = True
        for step in range(30):  # ~2.5 hours of schedule; the next 5 minutes' events reach the API 1-20 s late
            now = int(clock.time())
            live_slack = slack_events(org, now, now + 300, 60, seed=100 + step)
            live_asana = asana_events(org, now * 1000, (now + 300) * 1000, 40, seed=200 + step)
            emu.slack.add(live_slack, lag=rng.uniform(1, 20))
            emu.asana.add(live_asana, lag=rng.uniform(1, 20))
            served["slack"] += live_slack
            served["asana"] += live_asana
            clock.advance(300)
            for provider in ("slack", "asana"):
                runs += 1
                tuned = dataclasses.replace(settings, page_limit=PAGE_LIMITS[provider])
                outcomes[chaos_run(provider, emu, store, archive, clock, tuned, rng)] += 1
        aws_faults.on = False
        emu.faults.rates = {}
        horizons = {}
        for provider in ("slack", "asana"):  # quiet runs until everything settled is archived
            for _ in range(20):
                tuned = dataclasses.replace(settings, page_limit=PAGE_LIMITS[provider])
                quiet = run_once(provider, emu, store=store, archive=archive, clock=clock, settings=tuned)
                if quiet.complete:
                    break
                if quiet.status == "lease_held":  # a failed run's lease: the next schedule comes after it
                    clock.advance(300)
            # What had settled when this provider's last run completed: the other provider's quiet runs
            # may move the clock on after it, past events no run of this one has been due to take yet.
            horizons[provider] = clock.time() - settings.settle_seconds
        report = {provider: verdict(archive, provider, served[provider], horizons[provider]) for provider in served}
    with capsys.disabled():
        print(
            f"\nsoak: {runs} chaotic runs {dict(outcomes)}; wire faults {dict(emu.faults.injected)}; "
            f"AWS faults {dict(aws_faults.injected)}"
        )
        for provider, counts in report.items():
            print(f"soak {provider}: {counts}")
    assert sum(emu.faults.injected.values()) > 50 and sum(aws_faults.injected.values()) > 5
    assert outcomes["crashed"] > 3 and outcomes["overlapped"] > 3 and outcomes["paused"] > 2
    for counts in report.values():
        assert counts["archived"] > 10_000
        assert counts["lost"] == counts["duplicated"] == counts["misplaced"] == counts["altered"] == 0, counts


def chaos_run(provider, emu, store, archive, clock, settings, rng) -> str:
    """One scheduled run with something going wrong, chosen by the seed."""
    roll = rng.random()
    try:
        if roll < 0.3:  # the process dies: right after an archive write, or at any step
            steps = StepCounter(crash_at=rng.randint(1, 3))
            dying_store = CrashingStore(store, steps)
            dying_archive = CrashingArchive(archive, steps, after_write=rng.random() < 0.7)
            try:
                run_once(
                    provider,
                    emu,
                    store=dying_store,
                    archive=dying_archive,
                    clock=clock,
                    settings=settings,
                    owner=f"doomed-{rng.random()}",
                    budget_seconds=200,
                )
            except Crash:
                clock.advance(200 + settings.lease_margin_seconds + 1)  # its lease expires
                return "crashed"
            return "survived"
        if roll < 0.45:  # a run paused at a random step (a VM pause, a stopped process) past its lease
            return paused_run(provider, emu, store, archive, clock, settings, rng)
        if roll < 0.58:  # two runs at once: EventBridge fired twice
            results = []
            threads = [
                threading.Thread(
                    target=lambda: results.append(
                        safe(run_once, provider, emu, store=store, archive=archive, clock=clock, settings=settings)
                    )
                )
                for _ in range(2)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return "overlapped"
        run_once(
            provider,
            emu,
            store=store,
            archive=archive,
            clock=clock,
            settings=settings,
            budget_seconds=rng.choice([60, 300, 900]),
        )
        return "ran"
    except Exception:
        return "failed"  # an injected fault outlasted the retries: the next run resumes


def paused_run(provider, emu, store, archive, clock, settings, rng) -> str:
    """The in-process SIGSTOP: a run held at its k-th write step while its lease runs out and the
    next scheduled run takes over; then let go. It must refuse to write anything more."""
    gate = Gate(at=rng.randint(1, 4))
    outcome = []
    thread = threading.Thread(
        target=lambda: outcome.append(
            safe(
                run_once,
                provider,
                emu,
                store=GatedStore(store, gate),
                archive=GatedArchive(archive, gate),
                clock=clock,
                settings=settings,
                owner=f"paused-{rng.random()}",
                budget_seconds=200,
            )
        )
    )
    thread.start()
    while thread.is_alive() and not gate.reached.wait(0.01):
        pass
    if not gate.reached.is_set():  # it ended before reaching that step
        return "ran"
    clock.advance(200 + settings.lease_margin_seconds + 1)
    safe(run_once, provider, emu, store=store, archive=archive, clock=clock, settings=settings)
    gate.go.set()
    thread.join(30)
    return "paused"


def safe(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        return exc


def verdict(archive, provider, served, horizon) -> dict:
    got = archived(archive, provider)
    text = archived_text(archive, provider)
    counts = Counter(event_id(provider, e) for _, e in got)
    by_id = {event_id(provider, e): e for e in served}
    due = {i for i, e in by_id.items() if when(provider, e) < horizon}
    return {
        "archived": len(counts),
        "due": len(due),
        "lost": len(due - set(counts)),
        "duplicated": sum(n - 1 for n in counts.values() if n > 1),
        "misplaced": sum(dt != event_dt(provider, e) for dt, e in got),
        "altered": sum(  # byte for byte: the text the emulator served
            1
            for i, lines in text.items()
            for line in lines
            if i not in by_id or line != served_text(provider, by_id[i])
        ),
    }


def when(provider, event):
    if provider == "slack":
        return event["date_create"]
    return datetime.fromisoformat(event["created_at"].replace("Z", "+00:00")).timestamp()
