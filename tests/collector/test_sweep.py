"""The late-event sweep: events that reach the API later than the settle lag are archived exactly
once, as extra parts of their windows with the manifests revised (new links of the chain), across
crashes at every step; without the sweep they are lost (the control)."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime

import pytest
from moto import mock_aws

from audit_collector import providers
from audit_collector.collector import Settings
from audit_collector.collector.result import lateness_bucket
from audit_collector.emulator import Emulator
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.s3 import S3Archive
from audit_collector.storage.state import DynamoDBStore, FileStore
from audit_collector.verify.check import verify_archive

from ..support import (
    BUILTIN_PROVIDERS,
    TABLE,
    Crash,
    CrashingArchive,
    CrashingStore,
    FakeClock,
    StepCounter,
    add_history,
    add_late,
    archived,
    assert_exactly_once,
    create_aws_resources,
    event_id,
    event_time,
    run_once,
)

NOW = int(datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp())
SWEEP = Settings(
    settle_seconds=120,
    initial_lookback_days=1,
    page_limit=20,
    max_object_bytes=6000,
    sweep_after_seconds=(1800, 86400),
)


def clean(archive, store, provider):
    checkpoint = store.read(provider).get("checkpoint", {})
    report = verify_archive(archive, "", [providers.get(provider)], checkpoints={provider: checkpoint})
    return [f.as_dict() for p in report.providers for f in p.findings]


def schedule(provider, emu, store, archive, clock, settings, runs, step=600):
    results = []
    for _ in range(runs):
        results.append(run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings))
        assert results[-1].complete
        clock.advance(step)
    return results


@pytest.mark.parametrize("provider", BUILTIN_PROVIDERS)
def test_late_events_are_archived_once_by_the_sweep_and_lost_without_it(provider, org, tmp_path):
    lost = {}
    for sweep_on in (False, True):  # the same schedule without the sweep, then with it
        clock = FakeClock(start=float(NOW))
        settings = SWEEP if sweep_on else dataclasses.replace(SWEEP, sweep_after_seconds=())
        with Emulator(clock=clock.time) as emu:
            events = add_history(emu, org, provider, NOW - 20 * 3600, NOW + 4 * 3600, 300)
            # 15 minutes and 6 hours late: far past the 2-minute settle lag.
            events += add_late(emu, org, provider, NOW, NOW + 3600, 40, lag=900, seed=11)
            events += add_late(emu, org, provider, NOW + 3600, NOW + 7200, 20, lag=6 * 3600, seed=12)
            store, archive = FileStore(tmp_path / f"{sweep_on}.json"), LocalArchive(tmp_path / f"a{sweep_on}")
            results = schedule(provider, emu, store, archive, clock, settings, runs=56, step=1800)  # 28 hours
            settled = [e for e in events if event_time(provider, e) < NOW + 4 * 3600]
            if not sweep_on:
                got = {event_id(provider, e) for _, e in archived(archive, provider)}
                lost = {event_id(provider, e) for e in settled} - got
                assert len(lost) >= 20  # all those 6 hours late, and some of those 15 minutes late
                continue
            assert_exactly_once(archive, provider, settled)
            assert clean(archive, store, provider) == []
            sweeps = [r.sweep for r in results if r.sweep and r.sweep["late_events"]]
            assert sum(s["late_events"] for s in sweeps) == len(lost)
            lateness = {}
            for s in sweeps:
                for bucket, n in s["lateness"].items():
                    lateness[bucket] = lateness.get(bucket, 0) + n
            assert sum(lateness.values()) == len(lost) and "over_24h" not in lateness
            passes = [k for k in archive.keys(f"_manifests/{provider}/") if "-s" in k.rsplit("/", 1)[1]]
            assert passes  # the sweeps' own manifests: new links of the chain
            # Cost: the sweep asks at most twice the pages collection asked (two passes).
            sweep_calls = sum(r.sweep["calls"] for r in results if r.sweep)
            assert sweep_calls <= 2 * sum(r.pages for r in results)


def clone(tmp_path, name):
    """The base archive and state as another pair (the archive's state-store marker names the copy)."""
    shutil.copytree(tmp_path / "base", tmp_path / name)
    (tmp_path / name / "_audit_collector" / "state-store.json").unlink()
    shutil.copy(tmp_path / "base.json", tmp_path / f"{name}.json")
    return FileStore(tmp_path / f"{name}.json"), LocalArchive(tmp_path / name)


@pytest.mark.parametrize("provider", BUILTIN_PROVIDERS)
def test_the_sweep_is_exactly_once_across_a_crash_at_every_step(provider, org, tmp_path):
    clock = FakeClock(start=float(NOW))
    with Emulator(clock=clock.time) as emu:
        events = add_history(emu, org, provider, NOW - 6 * 3600, NOW + 3600, 80)
        events += add_late(emu, org, provider, NOW, NOW + 1200, 12, lag=900, seed=13)
        base_store, base = FileStore(tmp_path / "base.json"), LocalArchive(tmp_path / "base")
        schedule(provider, emu, base_store, base, clock, SWEEP, runs=4)  # up to NOW + 40 min
        # The next runs sweep the windows that missed the late events: count their steps.
        reference = StepCounter()
        clone(tmp_path, "ref")
        start = clock.now
        clock.advance(1800)
        result = run_once(
            provider,
            emu,
            store=CrashingStore(FileStore(tmp_path / "ref.json"), reference),  # the clone's
            archive=CrashingArchive(LocalArchive(tmp_path / "ref"), reference),
            clock=clock,
            settings=SWEEP,
        )
        assert result.sweep["late_events"] == 12, result.sweep
        settled = [e for e in events if event_time(provider, e) < clock.now - 120]
        assert_exactly_once(LocalArchive(tmp_path / "ref"), provider, settled)
        for crash_at in range(1, reference.count + 1):
            clock.now = start + 1800
            steps = StepCounter(crash_at=crash_at)
            inner_store, inner = clone(tmp_path, f"c{crash_at}")
            store, archive = CrashingStore(inner_store, steps), CrashingArchive(inner, steps)
            with pytest.raises(Crash):
                run_once(provider, emu, store=store, archive=archive, clock=clock, settings=SWEEP, owner="dead")
            clock.advance(1000)
            steps.crash_at = None
            assert run_once(provider, emu, store=store, archive=archive, clock=clock, settings=SWEEP).complete
            assert_exactly_once(inner, provider, [e for e in events if event_time(provider, e) < start + 1800 - 120])
            findings = clean(inner, inner_store, provider)
            assert findings == [], (crash_at, [(f["kind"], f["key"], f["detail"]) for f in findings])


def test_the_sweep_works_on_an_object_lock_bucket(org):
    clock = FakeClock(start=float(NOW))
    with mock_aws(), Emulator(clock=clock.time) as emu:
        import boto3

        create_aws_resources()
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(
            Bucket="locked",
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}},
            },
        )
        events = add_history(emu, org, "asana", NOW - 6 * 3600, NOW + 3600, 60)
        events += add_late(emu, org, "asana", NOW, NOW + 1200, 8, lag=900, seed=14)
        store, archive = DynamoDBStore(TABLE), S3Archive("locked")
        results = schedule("asana", emu, store, archive, clock, SWEEP, runs=8)
        assert sum(r.sweep["late_events"] for r in results if r.sweep) == 8
        assert_exactly_once(archive, "asana", [e for e in events if event_time("asana", e) < NOW + 3600])
        assert clean(archive, store, "asana") == []


def test_lateness_buckets():
    assert [lateness_bucket(s) for s in (10, 600, 3600, 10000, 100000)] == [
        "under_5m",
        "5m_30m",
        "30m_2h",
        "2h_24h",
        "over_24h",
    ]


def test_sweep_settings_from_the_environment_and_the_cli():
    from audit_collector.aws.config import Config, parse_sweep_after
    from audit_collector.errors import ConfigError

    assert parse_sweep_after("1800,86400", "X") == (1800.0, 86400.0)
    assert parse_sweep_after("0", "X") == () and parse_sweep_after(None, "X") == ()
    for bad in ("soon", "10", "1,2,3,4,5", str(8 * 86400)):
        with pytest.raises(ConfigError, match="X"):
            parse_sweep_after(bad, "X")
    env = {"STATE_TABLE_NAME": "t", "ARCHIVE_BUCKET_NAME": "b", "SLACK_TOKEN_SECRET_ID": "s"}
    settings = Config.from_env(env).settings("slack")
    assert settings.sweep_after_seconds == (1800.0, 86400.0) and settings.sweep_share == 0.25  # on by default
    off = Config.from_env({**env, "SWEEP_AFTER_SECONDS": "0", "SWEEP_SHARE": "0.1"}).settings("slack")
    assert off.sweep_after_seconds == () and off.sweep_share == 0.1
    with pytest.raises(ConfigError, match="SWEEP_SHARE"):
        Config.from_env({**env, "SWEEP_SHARE": "2"})


def test_windows_read_long_after_they_ended_are_not_read_again_by_the_early_pass(org, tmp_path):
    """A backfill closes windows hours after their events: the half-hour pass has nothing to find."""
    from audit_collector.collector import BackfillRequest

    clock = FakeClock(start=float(NOW))
    with Emulator(clock=clock.time) as emu:
        add_history(emu, org, "slack", NOW - 20 * 3600, NOW, 200)
        store, archive = FileStore(tmp_path / "s.json"), LocalArchive(tmp_path / "a")
        settings = dataclasses.replace(SWEEP, initial_lookback_days=1 / 24)
        request = BackfillRequest(NOW - 20 * 3600, NOW - 3600)
        assert run_once("slack", emu, store=store, archive=archive, clock=clock, settings=settings, backfill=request)
        clock.advance(3600)
        result = run_once("slack", emu, store=store, archive=archive, clock=clock, settings=settings)
        backfilled = [
            k for k in archive.keys("_manifests/slack/") if int(k.rsplit("/", 1)[1].split("-")[0]) < NOW - 3600
        ]
        assert backfilled and result.sweep["passes"] <= 2  # only the live windows, not the backfill's
        assert result.sweep["calls"] <= 2


def test_a_pass_whose_source_keeps_no_place_between_turns_still_ends(fakeaudit, org, tmp_path, monkeypatch):
    """A source that saves its window only before a write (as the contract asks) keeps no place when
    a pass's pages hold nothing new. Turns of a few pages then restart the stretch every time: the
    sweep gives such a pass the run's whole budget instead of spinning, and the late events land."""
    from audit_collector.collector import sweep as sweep_module

    turns = []
    real_turn = sweep_module._turn

    def counted(*args, **kwargs):
        turns.append(1)
        assert len(turns) < 500, "the sweep spins on a pass that makes no progress"
        return real_turn(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "_turn", counted)
    test_late_events_are_archived_once_by_the_sweep_and_lost_without_it("fakeaudit", org, tmp_path)
    assert turns
