"""The collection loop against the emulator, with S3/DynamoDB (moto) and local adapters alike.

Every test ends the same way: the archive holds each expected event exactly once, in its own dt.
"""

from __future__ import annotations

import random
import re
import threading
from datetime import UTC, datetime

import boto3
import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from moto import mock_aws

from audit_collector import providers
from audit_collector.asana import EventKey, iso_ms
from audit_collector.collector import Settings
from audit_collector.emulator import Emulator, FaultPlan, position_faults
from audit_collector.errors import ApiBodyError
from audit_collector.providers.asana.source import _one_plain_day, _place
from audit_collector.storage.archive import decode_object
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.s3 import S3Archive
from audit_collector.storage.state import DynamoDBStore, FileStore

from ..support import (
    BUCKET,
    BUILTIN_PROVIDERS,
    TABLE,
    Crash,
    CrashingArchive,
    CrashingStore,
    FakeClock,
    SlowClock,
    StepCounter,
    add_history,
    archived,
    assert_exactly_once,
    create_aws_resources,
    event_time,
    live_watermark,
    run_once,
    written,
)

PROVIDERS = BUILTIN_PROVIDERS
# The two tests that build or rewrite events in each API's own shape by hand (midnight bursts, a
# lying page) name the APIs they know; every other test runs for each built-in provider.
SHAPED = ("slack", "asana")
# 2026-11-20 12:00:00 UTC: history spans two midnights within the 2-day lookback.
NOW = int(datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def clock():
    return FakeClock(start=float(NOW))


@pytest.fixture(params=["local", "aws"])
def adapters(request, tmp_path):
    """(store, archive): local file and folder, or DynamoDB and S3 in moto."""
    if request.param == "local":
        yield FileStore(tmp_path / "state.json"), LocalArchive(tmp_path / "archive")
        return
    with mock_aws():
        create_aws_resources()
        yield DynamoDBStore(TABLE), S3Archive(BUCKET)


@pytest.fixture
def local(tmp_path):
    return FileStore(tmp_path / "state.json"), LocalArchive(tmp_path / "archive")


@pytest.fixture
def emu(clock):
    with Emulator(clock=clock.time) as emulator:
        yield emulator


# ------------------------------------------------------------------ the happy paths


@pytest.mark.parametrize("provider", PROVIDERS)
def test_first_run_starts_at_the_lookback_and_stops_at_the_settle_horizon(provider, emu, org, clock, adapters):
    store, archive = adapters
    start = NOW - 2 * 86400
    events = add_history(emu, org, provider, start - 3600, NOW, 600)
    result = run_once(provider, emu, store=store, archive=archive, clock=clock)
    assert result.complete and result.status == "ok"
    expected = [e for e in events if start <= event_time(provider, e) < NOW - 120]
    assert 0 < len(expected) < len(events)  # some too old, some too young
    assert_exactly_once(archive, provider, expected)
    assert result.events_written == len(expected)
    assert {dt for dt, _ in archived(archive, provider)} == {"2026-11-18", "2026-11-19", "2026-11-20"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_incremental_runs_archive_new_and_late_events_once(provider, emu, org, clock, adapters):
    store, archive = adapters
    # History, then live events that reach the API 20 s after they happen (inside SETTLE_SECONDS).
    events = add_history(emu, org, provider, NOW - 86400, NOW - 600, 300)
    live = emu.api(provider).generate(org, NOW - 600, NOW + 900, 200, seed=9)
    emu.api(provider).add(live, lag=20)
    events += live
    for _ in range(4):  # four scheduled runs, 5 minutes apart
        result = run_once(provider, emu, store=store, archive=archive, clock=clock)
        assert result.complete and result.status == "ok"
        assert_exactly_once(archive, provider, [e for e in events if event_time(provider, e) < clock.time() - 120])
        clock.advance(300)


@pytest.mark.parametrize("provider", SHAPED)
def test_midnight_and_same_second_bursts_at_page_and_window_edges(provider, emu, org, clock, local):
    store, archive = local
    midnight = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())
    template = add_history(emu, org, provider, NOW - 7200, NOW - 3600, 1)[0]
    events = []
    for i, (second, burst) in enumerate(
        [(midnight - 1, 7), (midnight, 9), (midnight + 1, 3), (NOW - 121, 5), (NOW - 120, 4), (NOW - 119, 2)]
    ):
        for j in range(burst):
            event = dict(template)
            if provider == "slack":
                event.update(id=f"edge-{i}-{j}", date_create=second)
            else:
                event.update(gid=f"9{i:03d}{j:03d}", created_at=iso_ms(second * 1000))
            events.append(event)
    emu.api(provider).add(events)
    events.append(template)
    settings = Settings(
        settle_seconds=120, initial_lookback_days=2, page_limit=3 if provider == "slack" else 4, max_object_bytes=3000
    )
    assert run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings).complete
    horizon = NOW - 120  # Slack's latest is inclusive, Asana's end exclusive
    expected = [e for e in events if providers.get(provider).settled_by(e, horizon)]
    assert_exactly_once(archive, provider, expected)
    clock.advance(10)
    assert run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings).complete
    assert_exactly_once(archive, provider, [e for e in events if event_time(provider, e) < NOW - 110])


def test_slack_windows_never_cross_midnight(emu, org, clock, local):
    store, archive = local
    add_history(emu, org, "slack", NOW - 2 * 86400, NOW, 400)
    run_once("slack", emu, store=store, archive=archive, clock=clock)
    for key in archive.keys("slack/"):
        oldest, latest = (int(x) for x in key.rsplit("/", 1)[1].split("-p")[0].split("-"))
        dt = key.split("dt=")[1][:10]
        assert datetime.fromtimestamp(oldest, UTC).strftime("%Y-%m-%d") == dt
        assert datetime.fromtimestamp(latest, UTC).strftime("%Y-%m-%d") == dt


@pytest.mark.parametrize("provider", PROVIDERS)
def test_objects_hold_several_pages_and_respect_the_size_bound(provider, emu, org, clock, local):
    store, archive = local
    add_history(emu, org, provider, NOW - 86400, NOW - 3600, 1000)
    settings = Settings(initial_lookback_days=2, page_limit=20, max_object_bytes=60_000)
    result = run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings)
    assert result.pages > 2 * result.objects_written  # several pages per object
    for key in archive.keys(provider):
        raw = sum(len(line) for line in decode_object(archive.get(key)))
        assert raw < 60_000 + 25_000  # bound plus at most one page


# ------------------------------------------------------------------ crashes at every step


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("after_write", [True, False], ids=["crash-after-put", "crash-before-put"])
def test_a_crash_at_any_step_then_a_rerun_archives_everything_exactly_once(provider, after_write, org, tmp_path):
    settings = Settings(initial_lookback_days=2, page_limit=15, max_object_bytes=8000)
    clock = FakeClock(start=float(NOW))
    with Emulator(clock=clock.time) as emu:
        # The first event lies after the rerun's lookback origin: a rerun 1000 s later that finds no
        # checkpoint (a crash before the first save) rightly starts its lookback 1000 s later too.
        events = add_history(emu, org, provider, NOW - 2 * 86400 + 1800, NOW - 600, 150)
        reference = StepCounter()
        run_once(
            provider,
            emu,
            store=CrashingStore(FileStore(tmp_path / "ref.json"), reference),
            archive=CrashingArchive(LocalArchive(tmp_path / "ref"), reference),
            clock=clock,
            settings=settings,
        )
        assert reference.count > 10
        for crash_at in range(1, reference.count + 1):
            steps = StepCounter(crash_at=crash_at)
            store = CrashingStore(FileStore(tmp_path / f"s{crash_at}.json"), steps)
            archive = CrashingArchive(LocalArchive(tmp_path / f"a{crash_at}"), steps, after_write=after_write)
            with pytest.raises(Crash):
                run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings, owner="dead")
            # The dead run's lease outlives its deadline (900 s + margin); the next schedule after that.
            clock.advance(1000)
            steps.crash_at = None
            result = run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings)
            assert result.complete, crash_at
            clock.advance(-1000)
            assert_exactly_once(archive.inner, provider, events)


# ------------------------------------------------------------------ rejected positions, budgets, leases


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rejected_cursor_or_offset_mid_window(provider, emu, org, clock, adapters):
    store, archive = adapters
    events = add_history(emu, org, provider, NOW - 86400, NOW - 3600, 400)
    fault = emu.api(provider).position_fault  # Slack's invalid_cursor, Asana's expired_offset
    emu.faults.script(provider, fault)
    settings = Settings(initial_lookback_days=2, page_limit=25, max_object_bytes=20_000)
    result = run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings)
    assert result.complete and emu.faults.injected[fault] == 1
    assert_exactly_once(archive, provider, events)


def test_an_expired_slack_cursor_resumes_by_time_and_keeps_what_was_written(emu, org, local):
    """A window whose cursor expired goes on from its saved position (the oldest second archived,
    with the ids archived at it), not from its first page: the parts already written stay as they
    are, and the next parts hold the rest, each event once."""
    store, archive = local
    clock = SlowClock(start=float(NOW))
    emu.clock = clock.time
    events = add_history(emu, org, "slack", NOW - 86400 + 600, NOW - 3600, 300)
    small = Settings(
        initial_lookback_days=1, page_limit=10, max_object_bytes=3000, write_reserve_seconds=5, http_timeout=5
    )
    first = run_once("slack", emu, store=store, archive=archive, clock=clock, settings=small, budget_seconds=60)
    assert not first.complete and first.objects_written >= 3
    written = {key: archive.get(key) for key in archive.keys("slack/")}
    emu.faults.script("slack", "invalid_cursor")
    big = Settings(initial_lookback_days=1, page_limit=10, max_object_bytes=10**8)
    assert run_once("slack", emu, store=store, archive=archive, clock=clock, settings=big).complete
    assert emu.faults.injected["invalid_cursor"] == 1
    assert all(archive.get(key) == body for key, body in written.items())  # nothing rewritten
    assert_exactly_once(archive, "slack", events)


@pytest.mark.parametrize("seed", range(6))
def test_a_slack_window_larger_than_a_run_finishes_when_every_cursor_expires_between_runs(seed, org, tmp_path):
    """Each run fetches a few pages of one large window, then stops on its budget; its cursor has
    always expired by the next run. Every window must still finish, each event once."""
    rng = random.Random(seed)
    store, archive = FileStore(tmp_path / "s.json"), LocalArchive(tmp_path / "a")
    clock = SlowClock(start=float(NOW), step=rng.choice([1.0, 1.5, 2.0]))
    settings = Settings(
        initial_lookback_days=0.5,
        page_limit=rng.choice([5, 7, 10]),
        max_object_bytes=rng.choice([2000, 5000, 10**8]),
        write_reserve_seconds=5,
        http_timeout=5,
    )
    with Emulator(clock=clock.time) as emu:
        burst = NOW - 4 * 3600 + rng.randrange(3600)  # a bulk operation: many events in a few seconds
        events = add_history(emu, org, "slack", NOW - 12 * 3600 + 600, NOW - 3600, 400, seed=seed)
        events += add_history(emu, org, "slack", burst, burst + rng.randint(1, 3), 60, seed=seed + 100)
        for runs in range(1, 300):  # noqa: B007 - the count is the point
            window = (store.read("slack").get("checkpoint", {}).get("jobs", {}).get("live") or {}).get("window")
            if window and window.get("cursor"):
                emu.faults.script("slack", "invalid_cursor")  # the cursor has expired since the last run
            budget = rng.choice([22, 26, 30])
            if run_once(
                "slack", emu, store=store, archive=archive, clock=clock, settings=settings, budget_seconds=budget
            ).complete:
                break
        assert runs < 299, "a window never finished"
    assert emu.faults.injected["invalid_cursor"] >= 1
    assert_exactly_once(archive, "slack", [e for e in events if e["date_create"] <= clock.time() - 120])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_run_cut_short_by_its_budget_resumes_exactly_once(provider, emu, org, local):
    store, archive = local
    clock = SlowClock(start=float(NOW))
    emu.clock = clock.time
    events = add_history(emu, org, provider, NOW - 2 * 86400 + 600, NOW - 600, 400)
    settings = Settings(
        initial_lookback_days=2,
        page_limit=10,
        max_object_bytes=5000,
        write_reserve_seconds=5,
        http_timeout=5,
    )
    runs = 0
    while True:
        runs += 1
        result = run_once(
            provider, emu, store=store, archive=archive, clock=clock, settings=settings, budget_seconds=30
        )
        if result.complete:
            break
        assert runs < 200
    assert runs >= 3
    assert_exactly_once(archive, provider, events)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_retry_wait_past_the_budget_stops_cleanly(provider, emu, org, clock, local):
    store, archive = local
    events = add_history(emu, org, provider, NOW - 86400, NOW - 3600, 200)
    emu.faults.retry_after = "100"  # more than this run has left
    calls = {"n": 0}
    original = emu.faults.draw

    def draw(api, *, has_position, position):
        calls["n"] += 1
        return "rate_limit" if calls["n"] == 3 else original(api, has_position=has_position, position=position)

    emu.faults.draw = draw
    settings = Settings(initial_lookback_days=2, page_limit=20, max_object_bytes=6000)
    first = run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings, budget_seconds=100)
    assert not first.complete and first.objects_written >= 1
    assert clock.sleeps == []  # refused the wait rather than sleeping past the deadline
    second = run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings)
    assert second.complete
    assert_exactly_once(archive, provider, events)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_retry_after_beyond_the_cap_stops_cleanly_instead_of_failing(provider, emu, org, clock, local):
    store, archive = local
    events = add_history(emu, org, provider, NOW - 86400, NOW - 3600, 200)
    emu.faults.retry_after = "3600"
    emu.faults.script(provider, "rate_limit")
    first = run_once(provider, emu, store=store, archive=archive, clock=clock)
    assert not first.complete and first.rate_limited == 1 and first.events_written == 0
    assert run_once(provider, emu, store=store, archive=archive, clock=clock).complete
    assert_exactly_once(archive, provider, events)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_two_concurrent_runs_one_works_the_other_says_so(provider, org, local):
    store, archive = local
    clock = FakeClock(start=float(NOW))
    gate, release = threading.Event(), threading.Event()
    with Emulator(clock=clock.time) as emu:
        events = add_history(emu, org, provider, NOW - 86400, NOW - 3600, 300)
        original = emu.handle

        def slow_handle(handler):  # the first run pauses on its first request until the second has run
            gate.set()
            release.wait(10)
            return original(handler)

        emu.handle = slow_handle
        results = {}
        first = threading.Thread(
            target=lambda: results.setdefault(
                "first", run_once(provider, emu, store=store, archive=archive, clock=clock, owner="first")
            )
        )
        first.start()
        assert gate.wait(10)
        results["second"] = run_once(provider, emu, store=store, archive=archive, clock=clock, owner="second")
        release.set()
        emu.handle = original
        first.join(30)
    assert results["second"].status == "lease_held" and "first" in results["second"].message
    assert results["second"].events_written == 0
    assert results["first"].complete
    assert_exactly_once(archive, provider, events)


def test_a_crashed_runs_lease_blocks_only_until_its_deadline(emu, org, clock, local):
    store, archive = local
    events = add_history(emu, org, "slack", NOW - 86400, NOW - 3600, 100)
    store.acquire("slack", owner="crashed", expires_at=clock.time() + 300 + 30, now=clock.time())
    assert run_once("slack", emu, store=store, archive=archive, clock=clock).status == "lease_held"
    clock.advance(331)
    assert run_once("slack", emu, store=store, archive=archive, clock=clock).complete
    assert_exactly_once(archive, "slack", events)


# ------------------------------------------------------------------ errors leave the checkpoint alone


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_token_fails_and_leaves_the_checkpoint_untouched(provider, emu, org, clock, local):
    store, archive = local
    add_history(emu, org, provider, NOW - 86400, NOW - 3600, 50)
    with pytest.raises(Exception) as info:
        run_once(provider, emu, store=store, archive=archive, clock=clock, token="xoxp-revoked")
    assert "invalid_authentication" in str(info.value) or "HTTP 401" in str(info.value)
    assert "xoxp-revoked" not in str(info.value)
    assert store.read(provider).get("checkpoint", {}) == {}
    assert "lease_owner" not in store.read(provider)  # released for the next run
    assert written(archive) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_persistent_server_errors_fail_after_retries_and_resume_later(provider, emu, org, clock, local):
    store, archive = local
    events = add_history(emu, org, provider, NOW - 86400, NOW - 3600, 300)
    settings = Settings(initial_lookback_days=2, page_limit=20, max_object_bytes=6000)
    calls = {"n": 0}
    original = emu.faults.draw

    def draw(api, *, has_position, position):
        calls["n"] += 1
        retried = 4 <= calls["n"] <= 9  # 1 + 5 retries
        return "server_error" if retried else original(api, has_position=has_position, position=position)

    emu.faults.draw = draw
    with pytest.raises(Exception, match=r"503|internal_error|trouble"):
        run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings)
    assert run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings).complete
    assert_exactly_once(archive, provider, events)


@pytest.mark.parametrize("provider", SHAPED)
def test_an_event_outside_the_window_is_refused_not_misfiled(provider, emu, org, clock, local):
    store, archive = local
    events = add_history(emu, org, provider, NOW - 86400, NOW - 3600, 20)
    original = emu.slack.log.page if provider == "slack" else emu.asana.log.page

    def lying_page(params, now, ttl):
        body = original(params, now, ttl)
        if provider == "slack":
            return body.replace(b'"date_create":', b'"date_create":1', 1)
        return body.replace(b'"created_at":"2026', b'"created_at":"2027', 1)

    if provider == "slack":
        emu.slack.log.page = lying_page
    else:
        emu.asana.log.page = lying_page
    with pytest.raises(ApiBodyError, match="outside the window"):
        run_once(provider, emu, store=store, archive=archive, clock=clock)
    assert list(archive.keys(f"{provider}/")) == []  # manifests of empty windows before it may exist
    watermark = (live_watermark(store, provider) or 0) / providers.get(provider).units_per_second
    assert watermark <= min(event_time(provider, e) for e in events)  # never moved past the refused event


def test_a_slack_cursor_that_fails_every_time_still_finishes_the_window_exactly_once(emu, org, clock, local):
    """Every request that carries a cursor is refused: each page fetched is kept and the window goes
    on by time, one page a restart, instead of restarting from its first page for ever."""
    store, archive = local
    events = add_history(emu, org, "slack", NOW - 86400, NOW - 3600, 300)
    emu.faults.script("slack", *["invalid_cursor"] * 1000)
    settings = Settings(initial_lookback_days=2, page_limit=20, max_object_bytes=10**9)
    assert run_once("slack", emu, store=store, archive=archive, clock=clock, settings=settings).complete
    assert emu.faults.injected["invalid_cursor"] >= 10
    assert_exactly_once(archive, "slack", events)


def test_archive_layout_and_prefix(emu, org, clock):
    with mock_aws():
        create_aws_resources()
        events = add_history(emu, org, "asana", NOW - 86400, NOW - 3600, 50)
        run_once("asana", emu, store=DynamoDBStore(TABLE), archive=S3Archive(BUCKET), clock=clock, prefix="audit/")
        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
        assert "audit/_audit_collector/state-store.json" in keys  # which state store owns the archive
        keys.remove("audit/_audit_collector/state-store.json")
        manifests = [k for k in keys if k.startswith("audit/_manifests/asana/dt=2026-11-") and k.endswith(".json")]
        assert manifests  # one per closed window, beside the data
        keys = [k for k in keys if k not in manifests]
        assert all(k.startswith("audit/asana/dt=2026-11-") and k.endswith(".jsonl.gz") for k in keys)
        assert_exactly_once(S3Archive(BUCKET), "asana", events, prefix="audit/")
        item = boto3.client("dynamodb").get_item(TableName=TABLE, Key={"pk": {"S": "asana"}, "sk": {"S": "state"}})
        assert int(item["Item"]["version"]["N"]) >= 1 and "lease_owner" not in item["Item"]


def test_faults_everywhere_still_exactly_once(org, local):
    """Seeded random faults on every request: 5xx, HTML pages, 429s, resets, truncation, bad positions."""
    store, archive = local
    clock = FakeClock(start=float(NOW))
    rates = {
        "server_error": 0.05,
        "html": 0.03,
        "rate_limit": 0.05,
        "reset": 0.05,
        "truncated": 0.05,
        **dict.fromkeys(position_faults(), 0.05),  # each API's refused position
    }
    with Emulator(clock=clock.time, faults=FaultPlan(11, rates, retry_after="1")) as emu:
        served = {
            provider: add_history(emu, org, provider, NOW - 2 * 86400 + 600, NOW - 600, 800, seed=seed)
            for seed, provider in enumerate(PROVIDERS, start=3)
        }
        settings = Settings(initial_lookback_days=2, page_limit=30, max_object_bytes=20_000)
        for provider in PROVIDERS:
            for _ in range(10):
                try:
                    if run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings).complete:
                        break
                except Exception:
                    continue
        assert sum(emu.faults.injected.values()) > 20
    for provider, events in served.items():
        assert_exactly_once(archive, provider, events)


# A page's created_at values: Asana's format, other spellings of an instant, and junk.
DAY_MS = 86_400_000
CREATED_AT = st.one_of(
    st.integers(NOW * 1000 - 2 * DAY_MS, NOW * 1000).map(iso_ms),
    st.integers(NOW * 1000 - 2 * DAY_MS, NOW * 1000).map(lambda ms: iso_ms(ms).replace("Z", "+00:00")),
    st.sampled_from(["2026-11-19T25:00:00.000Z", "2026-11-19T10:00:00Z", "", "yesterday", None, 1795000000]),
)
KEYS = st.lists(
    st.builds(EventKey, gid=st.sampled_from(["1", "2", "3", "", None, 7]), created_at=CREATED_AT), min_size=1
)


@examples(max_examples=300, deadline=None)
@given(keys=KEYS, window=st.sampled_from([(0, NOW * 1000 + DAY_MS), (NOW * 1000 - DAY_MS, NOW * 1000 - 3_600_000)]))
def test_the_one_date_shortcut_agrees_with_placing_each_event(keys, window):
    """A page taken whole must be one every event of which ``_place`` accepts, all on that date."""
    start, end = window
    try:
        dates = {_place(key, start, end)[1] for key in keys}
    except ApiBodyError:
        dates = None
    shortcut = _one_plain_day(keys, start, end)
    if shortcut is not None:
        assert dates == {shortcut}
    in_asanas_format = all(
        isinstance(k.created_at, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", k.created_at)
        for k in keys
    )
    if dates is not None and len(dates) == 1 and in_asanas_format:
        assert shortcut == next(iter(dates))  # and it takes every such page
