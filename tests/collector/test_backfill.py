"""Backfills: validation, overlap with live collection and other backfills, resumption, throughput."""

from __future__ import annotations

import bisect
import itertools
import time
from datetime import UTC, datetime

import pytest

from audit_collector import providers
from audit_collector.aws.invocation import parse_backfill, parse_invocation
from audit_collector.collector import BackfillRequest, Settings
from audit_collector.collector.jobs import Job, subtract
from audit_collector.emulator import Emulator
from audit_collector.emulator.asana import asana_events
from audit_collector.errors import ConfigError
from audit_collector.http_retry import RequestPacer
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.state import FileStore

from ..support import BUILTIN_PROVIDERS, FakeClock, SlowClock, add_history, assert_exactly_once, event_time, run_once

NOW = int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp())
DAY = 86400


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def request(provider: str, start: float, end: float) -> BackfillRequest:
    return parse_backfill(providers.get(provider), {"start": iso(start), "end": iso(end)}, now=NOW)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "spec,message",
    [
        ("2026-10-01", "must be"),
        ({"start": "2026-10-01T00:00:00Z"}, "must be"),
        ({"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z", "x": 1}, "must be"),
        ({"start": "yesterday", "end": "2026-10-02T00:00:00Z"}, "not an ISO 8601"),
        ({"start": 1759276800, "end": "2026-10-02T00:00:00Z"}, "ISO 8601 string"),
        ({"start": "2026-10-01T00:00:00", "end": "2026-10-02T00:00:00Z"}, "UTC"),
        ({"start": "2026-10-01T00:00:00+02:00", "end": "2026-10-02T00:00:00Z"}, "UTC"),
        ({"start": "2026-10-02T00:00:00Z", "end": "2026-10-01T00:00:00Z"}, "before backfill.end"),
        ({"start": "2026-10-01T00:00:00Z", "end": "2026-10-01T00:00:00Z"}, "before backfill.end"),
        ({"start": "2026-11-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}, "in the future"),
        ({"start": "2016-01-01T00:00:00Z", "end": "2017-01-01T00:00:00Z"}, "2018-03-01"),
        ({"start": "2026-13-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}, "not an ISO 8601"),
    ],
)
def test_bad_slack_ranges_are_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_backfill(providers.get("slack"), spec, now=NOW)


def test_slack_start_before_the_api_existed_is_clamped_and_said():
    got = parse_backfill(
        providers.get("slack"), {"start": "2017-06-01T00:00:00Z", "end": "2018-04-01T00:00:00Z"}, now=NOW
    )
    assert got.start == int(datetime(2018, 3, 1, tzinfo=UTC).timestamp())
    assert "clamped" in got.notes[0] and "2018-03-01" in got.notes[0]


def test_asana_start_older_than_90_days_is_clamped_and_a_range_entirely_older_refused():
    got = parse_backfill(providers.get("asana"), {"start": iso(NOW - 120 * DAY), "end": iso(NOW - DAY)}, now=NOW)
    assert got.start == (NOW - 90 * DAY) * 1000 and "90 days" in got.notes[0]
    with pytest.raises(ConfigError, match="90 days"):
        parse_backfill(providers.get("asana"), {"start": iso(NOW - 200 * DAY), "end": iso(NOW - 100 * DAY)}, now=NOW)


def test_units_are_the_providers_and_fractions_round_outwards():
    got = parse_backfill(
        providers.get("slack"), {"start": "2026-10-01T00:00:00.5Z", "end": "2026-10-01T00:00:09.5Z"}, now=NOW
    )
    assert got.end - got.start == 10
    got = parse_backfill(
        providers.get("asana"), {"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T00:00:01Z"}, now=NOW
    )
    assert got.end - got.start == 1000


def test_a_backfill_payload_is_parsed_with_its_provider():
    invocation = parse_invocation(
        {"provider": "asana", "backfill": {"start": iso(NOW - 3 * DAY), "end": iso(NOW - DAY)}}, ("asana",), now=NOW
    )
    assert invocation.providers == ("asana",) and invocation.backfill.end - invocation.backfill.start == 2 * DAY * 1000


# ------------------------------------------------------------------ range arithmetic


def test_subtract():
    assert subtract([[0, 100]], [[10, 20], [50, None]]) == [[0, 10], [20, 50]]
    assert subtract([[0, None]], [[10, 20]]) == [[0, 10], [20, None]]
    assert subtract([[0, 10]], [[0, 10]]) == []
    assert subtract([[5, 10]], [[0, 3], [12, 20]]) == [[5, 10]]


def test_job_gaps_skip_holes():
    job = Job("x", ranges=[[0, 10], [20, 30]])
    assert job.next_gap(None) == (0, 10) and job.next_gap(10) == (20, 30) and job.next_gap(30) is None
    job.watermark = 25
    assert job.progress() == pytest.approx(15 / 20)


# ------------------------------------------------------------------ with the emulator


@pytest.fixture
def clock():
    return FakeClock(start=float(NOW))


@pytest.fixture
def local(tmp_path):
    return FileStore(tmp_path / "state.json"), LocalArchive(tmp_path / "archive")


SETTINGS = Settings(initial_lookback_days=2, page_limit=25, max_object_bytes=30_000)


@pytest.mark.parametrize("provider", BUILTIN_PROVIDERS)
def test_backfills_overlapping_live_and_each_other_archive_nothing_twice(provider, org, clock, local):
    store, archive = local
    with Emulator(clock=clock.time) as emu:
        events = add_history(emu, org, provider, NOW - 10 * DAY, NOW - 600, 1500)
        first = run_once(provider, emu, store=store, archive=archive, clock=clock, settings=SETTINGS)  # live: 2 days
        assert first.complete
        # Overlaps the live range by a day, and a second backfill overlaps the first.
        a = run_once(
            provider,
            emu,
            store=store,
            archive=archive,
            clock=clock,
            settings=SETTINGS,
            backfill=request(provider, NOW - 6 * DAY, NOW - DAY),
        )
        assert a.backfill["done"] and a.backfill["skipped"] == [[iso(NOW - 2 * DAY), iso(NOW - DAY)]]
        b = run_once(
            provider,
            emu,
            store=store,
            archive=archive,
            clock=clock,
            settings=SETTINGS,
            backfill=request(provider, NOW - 9 * DAY, NOW - 5 * DAY),
        )
        assert b.backfill["done"] and b.backfill["skipped"] == [[iso(NOW - 6 * DAY), iso(NOW - 5 * DAY)]]
    assert_exactly_once(archive, provider, [e for e in events if event_time(provider, e) >= NOW - 9 * DAY])


@pytest.mark.parametrize("provider", BUILTIN_PROVIDERS)
def test_a_backfill_before_the_first_live_run_makes_live_go_around_it(provider, org, clock, local):
    store, archive = local
    with Emulator(clock=clock.time) as emu:
        events = add_history(emu, org, provider, NOW - 3 * DAY, NOW - 600, 600)
        run_once(
            provider,
            emu,
            store=store,
            archive=archive,
            clock=clock,
            settings=SETTINGS,
            backfill=request(provider, NOW - 36 * 3600, NOW - 30 * 3600),
        )
        clock.advance(600)
        assert run_once(provider, emu, store=store, archive=archive, clock=clock, settings=SETTINGS).complete
    # Live's origin was set by the first run (NOW - 2 days), around the backfill claimed just before.
    assert_exactly_once(archive, provider, [e for e in events if event_time(provider, e) >= NOW - 2 * DAY])


@pytest.mark.parametrize("provider", BUILTIN_PROVIDERS)
def test_a_backfill_resumes_over_several_invocations_and_scheduled_runs_finish_it(provider, org, local):
    store, archive = local

    clock = SlowClock(start=float(NOW), step=1.5)
    settings = Settings(
        initial_lookback_days=1,
        page_limit=20,
        max_object_bytes=8000,
        write_reserve_seconds=5,
        http_timeout=5,
        backfill_slices=3,
    )
    with Emulator(clock=clock.time) as emu:
        events = add_history(emu, org, provider, NOW - 6 * DAY, NOW - DAY - 600, 800)
        wanted = request(provider, NOW - 6 * DAY, NOW - DAY)
        first = run_once(
            provider,
            emu,
            store=store,
            archive=archive,
            clock=clock,
            settings=settings,
            budget_seconds=60,
            backfill=wanted,
        )
        assert not first.complete and not first.backfill["done"] and 0 < first.backfill["progress"] < 1
        again = run_once(
            provider,
            emu,
            store=store,
            archive=archive,
            clock=clock,
            settings=settings,
            budget_seconds=60,
            backfill=wanted,
        )
        assert again.backfill["existing"] and again.backfill["progress"] > first.backfill["progress"]
        runs = 0
        while True:  # the schedule: no backfill in the payload, yet the backfill goes on
            runs += 1
            result = run_once(
                provider, emu, store=store, archive=archive, clock=clock, settings=settings, budget_seconds=60
            )
            if result.complete:
                break
            assert result.backfills and runs < 100
        assert result.backfills == []
    assert_exactly_once(archive, provider, events)


def test_concurrent_asana_slices_under_the_emulators_rate_limit(org, tmp_path):
    """8 slices at once, paced under a 1,200 calls/min limit: everything once, almost no 429s."""
    store, archive = FileStore(tmp_path / "s.json"), LocalArchive(tmp_path / "a")
    now = time.time()
    settings = Settings(
        initial_lookback_days=0.01,
        page_limit=20,
        calls_per_minute=1100,
        pacing_burst=2,  # the emulator below lets 2 through at once
        max_object_bytes=50_000,
        backfill_slices=8,
    )
    with Emulator(asana={"calls_per_minute": 1200}, rate_limit_burst=2, latency=0.03) as emu:
        events = asana_events(org, int((now - 5 * DAY) * 1000), int((now - DAY) * 1000), 2400, seed=61)
        emu.asana.add(events)
        wanted = parse_backfill(providers.get("asana"), {"start": iso(now - 5 * DAY), "end": iso(now - DAY)}, now=now)
        started = time.monotonic()
        result = run_once(
            "asana",
            emu,
            store=store,
            archive=archive,
            clock=FakeClockReal(),
            settings=settings,
            backfill=wanted,
            pace=True,
        )
        elapsed = time.monotonic() - started
        calls, throttled = emu.calls("asana"), emu.stats[("asana", 429)]
    assert result.backfill["done"] and result.backfill["slices"] == 8
    assert_exactly_once(archive, "asana", events)
    assert throttled <= max(1, calls // 100)  # at most 1 % answered 429
    assert calls / elapsed > 10  # several slices in flight: far more than one stream's 1/latency


class FakeClockReal(FakeClock):
    """Real time, for throughput tests against a real rate limiter."""

    def time(self):
        return time.time()

    def monotonic(self):
        return time.monotonic()

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        time.sleep(seconds)


def test_the_pacer_spaces_requests_and_allows_a_burst(clock):
    pacer = RequestPacer(60, burst=2)
    for _ in range(5):
        pacer.wait(clock)
    assert clock.sleeps == [1.0, 1.0, 1.0]  # two free, then one a second


def test_the_pacer_is_shared_by_threads():
    import threading

    pacer = RequestPacer(600)  # one every 0.1 s
    real = FakeClockReal()
    stamps = []
    lock = threading.Lock()

    def worker():
        for _ in range(3):
            pacer.wait(real)
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) == 12 and min(gaps) > 0.07  # never two at once, whatever the threads do


@pytest.mark.parametrize(("provider", "published"), [("slack", 50), ("asana", 1500)])
def test_no_minute_of_default_pacing_exceeds_the_published_limit(provider, published, clock):
    """Whatever the burst, the busiest 60 seconds of a paced run stay within the API's limit."""
    descriptor = providers.get(provider)
    assert descriptor.rate_limit_per_minute == published
    pacer = RequestPacer(descriptor.calls_per_minute, burst=descriptor.pacing_burst)
    starts = []
    for _ in range(3 * published):
        pacer.wait(clock)
        starts.append(clock.monotonic())
    busiest = max(bisect.bisect_left(starts, t + 60) - i for i, t in enumerate(starts))
    assert published * 0.95 <= busiest <= published
