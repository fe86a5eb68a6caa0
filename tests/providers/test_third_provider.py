"""A third provider, defined entirely in tests/, runs through every edge of the house unchanged:
the Lambda handler (moto), the CLI, the crash-at-every-step exactly-once guarantee, and discovery
by entry point in a fresh process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zlib
from collections import Counter
from datetime import UTC, datetime

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from audit_collector import cli, providers
from audit_collector.aws import handler
from audit_collector.collector import BackfillRequest, Budget, Settings
from audit_collector.collector.jobs import subtract
from audit_collector.emulator import Emulator, FaultPlan
from audit_collector.errors import ApiError, ConfigError
from audit_collector.storage.archive import ArchiveWriter
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.s3 import S3Archive
from audit_collector.storage.state import DynamoDBStore, FileStore
from audit_collector.wiring import collect_provider

from ..fake_audit_api import FakeAuditApi, make_events
from ..fake_provider import DESCRIPTOR, FakeAuditClient
from ..support import (
    BUCKET,
    ROOT,
    TABLE,
    Crash,
    CrashingArchive,
    CrashingStore,
    FakeClock,
    FakeContext,
    StepCounter,
    add_history,
    add_late,
    assert_exactly_once,
    create_aws_resources,
    event_dt,
    event_id,
    event_time,
    run_once,
)

TOKEN = "fake-audit-secret-token"
TENANT = "t1"
HOUR, DAY = 3600, 86400
# 2026-11-20 12:00:00 UTC: the crash test's fixed present (history spans two midnights).
NOW = int(datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def api(fakeaudit):
    with FakeAuditApi(token=TOKEN, tenant=TENANT) as server:
        yield server


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def history(api: FakeAuditApi, now: float) -> tuple[list[dict], list[dict]]:
    """Recent events (the live job's first run takes them) and older ones (for a backfill)."""
    now_ms = int(now * 1000)
    live = make_events(now_ms - 20 * HOUR * 1000, now_ms - HOUR * 1000, 120, seed="live")
    old = make_events(now_ms - 5 * DAY * 1000, now_ms - 2 * DAY * 1000, 90, seed="old")
    api.add(live + old)
    return live, old


def assert_archived_once(archive: ArchiveWriter, expected: list[dict]) -> set[str]:
    """Each expected event exactly once, nothing else, in its UTC date's partition, as the very
    text served. Returns the partitions."""
    lines: list[tuple[str, bytes]] = []
    for key in sorted(archive.keys("fakeaudit/")):
        dt = key.split("/dt=")[1].split("/")[0]
        lines.extend((dt, line) for line in zlib.decompress(archive.get(key), 31).split(b"\n")[:-1])
    got = Counter(json.loads(line)["uuid"] for _, line in lines)
    want = {e["uuid"]: e for e in expected}
    assert {u: n for u, n in got.items() if n > 1} == {}, "duplicated"
    assert set(got) == set(want), f"lost {sorted(set(want) - set(got))[:3]} extra {sorted(set(got) - set(want))[:3]}"
    for dt, line in lines:
        event = want[json.loads(line)["uuid"]]
        assert dt == DESCRIPTOR.event_date(event), (dt, event)
        assert line == json.dumps(event).encode()  # byte for byte as served
    return {dt for dt, _ in lines}


# ------------------------------------------------------------------ the Lambda handler (moto)


@pytest.fixture
def lambda_env(monkeypatch, api):
    for name in ("SLACK_TOKEN_SECRET_ID", "ASANA_TOKEN_SECRET_ID", "ASANA_WORKSPACE_GID"):
        monkeypatch.delenv(name, raising=False)
    values = {
        "STATE_TABLE_NAME": TABLE,
        "ARCHIVE_BUCKET_NAME": BUCKET,
        "FAKEAUDIT_TOKEN_SECRET_ID": "audit/fakeaudit",
        "FAKEAUDIT_API_BASE_URL": api.base_url,
        "FAKEAUDIT_TENANT": TENANT,
        "SETTLE_SECONDS": "60",
        "INITIAL_LOOKBACK_DAYS": "1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    parameters.clear_caches()
    yield values
    parameters.clear_caches()


def test_the_lambda_handler_collects_then_backfills_the_third_provider(api, lambda_env):
    now = time.time()
    live, old = history(api, now)
    with mock_aws():
        create_aws_resources()
        boto3.client("secretsmanager").create_secret(Name="audit/fakeaudit", SecretString=json.dumps({"token": TOKEN}))

        out = handler.lambda_handler({"provider": "fakeaudit"}, FakeContext())
        [result] = out["results"]
        assert result["provider"] == "fakeaudit" and result["complete"]
        assert result["events_written"] == len(live) and result["pages"] >= 2  # 120 events, 100 a page
        assert_archived_once(S3Archive(BUCKET), live)
        assert {r["tenant"] for r in api.requests} == {TENANT}  # the option reached the client

        payload = {"provider": "fakeaudit", "backfill": {"start": iso(now - 6 * DAY), "end": iso(now - 12 * HOUR)}}
        out = handler.lambda_handler(payload, FakeContext())
        [result] = out["results"]
        backfill = result["backfill"]
        assert result["complete"] and backfill["done"] and not backfill["existing"]
        assert backfill["slices"] == backfill["slices_done"] == DESCRIPTOR.backfill_concurrency == 2
        assert len(backfill["skipped"]) == 1  # what the live job already owns is not fetched twice
        assert result["events_written"] == len(old)
        dts = assert_archived_once(S3Archive(BUCKET), live + old)
        assert len(dts) >= 4  # old events span three midnights

        checkpoint = DynamoDBStore(TABLE).read("fakeaudit")["checkpoint"]
        assert list(checkpoint["jobs"]) == ["live"]  # the finished slices were folded into "archived"
        assert checkpoint["jobs"]["live"]["window"] is None  # every window closed
        start, end = (
            int(datetime.fromisoformat(backfill[k][:-1] + "+00:00").timestamp() * 1000) for k in ("start", "end")
        )
        owned = checkpoint["archived"] + checkpoint["jobs"]["live"]["ranges"]
        assert subtract([[start, end]], owned) == []  # the whole range stays owned: never fetched again


# ------------------------------------------------------------------ the CLI


def test_the_cli_collects_backfills_reports_and_queries(api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKEAUDIT_TOKEN", TOKEN)
    now = time.time()
    live, old = history(api, now)
    archive = str(tmp_path / "archive")
    common = ["--provider", "fakeaudit", "--archive", archive, "--api-base-url", api.base_url, "--tenant", TENANT]
    common += ["--lookback-days", "1", "--settle-seconds", "60", "--page-limit", "25"]

    assert cli.main(["collect", *common]) == 0
    out = capsys.readouterr().out
    assert f"fakeaudit: {len(live)} events" in out and "caught up" in out

    window = ["--start", iso(now - 6 * DAY), "--end", iso(now - 12 * HOUR), "--no-progress"]
    assert cli.main(["backfill", *common, *window]) == 0
    out = capsys.readouterr().out
    assert f"fakeaudit: {len(old)} events" in out and "100% done" in out

    assert cli.main(["status", "--archive", archive]) == 0
    out = capsys.readouterr().out
    assert "fakeaudit: archived up to" in out and "done, 2/2 slices" in out

    assert_archived_once(LocalArchive(archive), live + old)
    sql = (
        "SELECT count(*) AS n, count(DISTINCT uuid) AS ids, count(DISTINCT actor.email) AS actors FROM fakeaudit_events"
    )
    assert cli.main(["query", sql, "--archive", archive, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": len(live + old), "ids": len(live + old), "actors": 7}
    # the descriptor's own question runs over its own table
    assert cli.main(["query", DESCRIPTOR.questions[0][1], "--archive", archive, "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    downloads = sum(1 for e in live + old if e["type"] == "file.downloaded")
    assert rows and sum(r["n"] for r in rows) <= downloads and rows[0]["n"] >= rows[-1]["n"]


def test_the_cli_needs_the_tenant_and_a_good_token(api, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FAKEAUDIT_TENANT", raising=False)
    monkeypatch.setenv("FAKEAUDIT_TOKEN", "not-the-token")
    base = ["collect", "--provider", "fakeaudit", "--archive", str(tmp_path), "--api-base-url", api.base_url]
    assert cli.main(base) == 2
    assert "--tenant is required for fakeaudit (or set FAKEAUDIT_TENANT)" in capsys.readouterr().err
    assert cli.main([*base, "--tenant", TENANT]) == 1  # 401: not retried, a clear failure
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "invalid token" in err and "not-the-token" not in err
    assert not list(LocalArchive(tmp_path).keys("fakeaudit/"))


# ------------------------------------------------------------------ crashes at every step


@pytest.mark.parametrize("job", ["live", "backfill"])
@pytest.mark.parametrize("after_write", [True, False], ids=["crash-after-put", "crash-before-put"])
def test_a_crash_at_any_step_then_a_rerun_archives_everything_exactly_once(fakeaudit, job, after_write, tmp_path):
    clock = FakeClock(start=float(NOW))
    settings = Settings(initial_lookback_days=2, page_limit=15, max_object_bytes=4000, paced=False)
    now_ms = NOW * 1000
    if job == "live":
        # (after the lookback's origin even when the rerun that sets it starts 1000 s later)
        events = make_events(now_ms - (2 * DAY - 3600) * 1000, now_ms - 600_000, 150, seed="live")
        backfill = None
    else:  # two slices collected at once, each with its own forked source
        events = make_events(now_ms - 5 * DAY * 1000, now_ms - (2 * DAY + 600) * 1000, 150, seed="old")
        backfill = BackfillRequest(now_ms - 6 * DAY * 1000, now_ms - 2 * DAY * 1000)

    def run(store, archive, owner=None):
        return collect_provider(
            DESCRIPTOR,
            token=TOKEN,
            base_url=server.base_url,
            options={"tenant": TENANT},
            store=store,
            archive=archive,
            prefix="",
            settings=settings,
            clock=clock,
            budget=Budget.for_run(clock, 900, settings),
            owner=owner,
            backfill=backfill,
        )

    with FakeAuditApi(token=TOKEN, tenant=TENANT) as server:
        server.add(events)
        reference = StepCounter()
        ref_archive = LocalArchive(tmp_path / "ref")
        result = run(
            CrashingStore(FileStore(tmp_path / "ref.json"), reference), CrashingArchive(ref_archive, reference)
        )
        assert result.complete and result.events_written == len(events)
        assert len(assert_archived_once(ref_archive, events)) >= 3
        assert reference.count > 10
        for crash_at in range(1, reference.count + 1):
            steps = StepCounter(crash_at=crash_at)
            store = CrashingStore(FileStore(tmp_path / f"s{crash_at}.json"), steps)
            archive = CrashingArchive(LocalArchive(tmp_path / f"a{crash_at}"), steps, after_write=after_write)
            with pytest.raises(Crash):
                run(store, archive, owner="dead")
            clock.advance(1000)  # the dead run's lease has expired by the next schedule
            steps.crash_at = None
            assert run(store, archive).complete, crash_at
            clock.advance(-1000)
            assert_archived_once(archive.inner, events)


# ------------------------------------------------------------------ unknown providers at the edges


def test_the_demo_and_the_emulator_serve_it_from_its_emulator_module(fakeaudit, tmp_path, capsys):
    """Its descriptor names its emulator module: ``Emulator()`` mounts it beside the built-in APIs, the
    shared faults reach it in its own body shape, and the demo collects, checks and queries it."""
    with Emulator(faults=FaultPlan(retry_after="0")) as emu:
        assert set(emu.apis) == set(providers.names()) and emu.fakeaudit.options == {"tenant": "t1"}
        emu.faults.script("fakeaudit", "server_error", "unknown_cursor")
        client = FakeAuditClient(token=emu.fakeaudit.token, base_url=emu.fakeaudit.base_url)
        with pytest.raises(ApiError, match="HTTP 503"):
            client.events("t1", since=0, until=1, after=None, limit=10)
        assert client.events("t1", since=0, until=1, after=None, limit=10).next is None  # no position: no fault
        with pytest.raises(ApiError, match="unknown cursor"):
            client.events("t1", since=0, until=1, after="x", limit=10)
        assert [r["fault"] for r in emu.request_log] == ["server_error", None, "unknown_cursor"]

    assert cli.main(["demo", "--archive", str(tmp_path / "demo"), "--days", "1", "--users", "50"]) == 0
    out = capsys.readouterr().out
    assert out.count(": exactly once") == len(providers.names())
    assert re.search(r"^fakeaudit: 2,000 events archived.*: exactly once$", out, re.M), out
    assert "Who downloaded the most files?" in out
    assert "fakeaudit: " not in "".join(re.findall(r"^.*compacted into Parquet.*$", out, re.M))  # it has no _all view
    assert re.search(r"^slack: \d+ closed day\(s\) compacted into Parquet", out, re.M), out
    assert list((tmp_path / "demo" / "fakeaudit").rglob("*.jsonl.gz"))


def test_an_unknown_provider_is_a_clear_error_at_every_edge(api, lambda_env, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"provider must be one of .*fakeaudit.*, got 'nope'"):
        handler.lambda_handler({"provider": "nope"}, FakeContext())
    assert cli.main(["collect", "--provider", "nope", "--archive", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and "fakeaudit" in err
    assert api.requests == []


def test_without_registration_the_house_does_not_know_it(tmp_path, capsys):
    assert "fakeaudit" not in providers.names()
    assert cli.main(["collect", "--provider", "fakeaudit", "--archive", str(tmp_path)]) == 2
    assert "invalid choice: 'fakeaudit'" in capsys.readouterr().err


# ------------------------------------------------------------------ discovery by entry point


def test_an_entry_point_plugs_it_in_without_register(tmp_path):
    """A fresh process, with only a dist-info folder on its path: no register() call anywhere."""
    site = tmp_path / "site"
    dist = site / "fakeaudit_plugin-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeaudit-plugin\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text("[audit_collector.providers]\nfakeaudit = tests.fake_provider:DESCRIPTOR\n")
    archive = tmp_path / "archive"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "FAKEAUDIT_TOKEN": TOKEN,
        "FAKEAUDIT_TENANT": TENANT,  # the option's variable, read by the CLI flag's default
    }
    now = time.time()
    with FakeAuditApi(token=TOKEN, tenant=TENANT) as server:
        events = make_events(int((now - 3 * HOUR) * 1000), int((now - HOUR) * 1000), 30)
        server.add(events)
        argv = [sys.executable, "-m", "audit_collector"]
        collect = [*argv, "collect", "--provider", "fakeaudit", "--archive", str(archive)]
        collect += ["--api-base-url", server.base_url, "--lookback-days", "1", "--settle-seconds", "60"]
        done = subprocess.run(collect, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "fakeaudit: 30 events" in done.stdout
    status = subprocess.run(
        [*argv, "status", "--archive", str(archive)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0, status.stderr
    assert "fakeaudit: archived up to" in status.stdout and "slack:" in status.stdout
    assert_archived_once(LocalArchive(archive), events)
    assert "fakeaudit" not in providers.names()  # this process never saw it


def test_two_providers_that_share_a_flag_each_read_their_own_variable(fakeaudit, monkeypatch):
    """Providers may share a flag (``--tenant``) while each has its own variable; a flag given on
    the command line applies to every provider that has it, a variable only to its own."""
    import dataclasses

    from audit_collector.cli.options import provider_options
    from audit_collector.cli.parser import build_parser

    from ..fake_provider import TENANT

    twin = dataclasses.replace(
        fakeaudit, name="fakeaudit2", emulator="", options=(dataclasses.replace(TENANT, env="FAKEAUDIT2_TENANT"),)
    )
    providers.register(twin)
    try:
        monkeypatch.setenv("FAKEAUDIT_TENANT", "t-one")
        monkeypatch.setenv("FAKEAUDIT2_TENANT", "t-two")
        args = build_parser().parse_args(["collect", "--provider", "fakeaudit", "--archive", "a"])
        assert provider_options(args, fakeaudit) == {"tenant": "t-one"}
        assert provider_options(args, twin) == {"tenant": "t-two"}
        flag = ["--tenant", "t-flag"]
        args = build_parser().parse_args(["collect", "--provider", "fakeaudit2", *flag, "--archive", "a"])
        assert provider_options(args, fakeaudit) == provider_options(args, twin) == {"tenant": "t-flag"}
        monkeypatch.delenv("FAKEAUDIT2_TENANT")
        args = build_parser().parse_args(["collect", "--provider", "fakeaudit2", "--archive", "a"])
        with pytest.raises(ConfigError, match="--tenant is required for fakeaudit2 \\(or set FAKEAUDIT2_TENANT\\)"):
            provider_options(args, twin)
    finally:
        providers.unregister("fakeaudit2")


def test_the_shared_helpers_serve_collect_and_check_it_like_a_built_in(fakeaudit, org, tmp_path):
    """tests/support.py reads it through its descriptor and its emulated API: no helper names a provider."""
    clock = FakeClock(NOW)
    store, archive = FileStore(tmp_path / "s.json"), LocalArchive(tmp_path / "a")
    with Emulator(clock=clock.time) as emu:
        early = add_history(emu, org, "fakeaudit", NOW - 20 * HOUR, NOW - 10 * HOUR, 150, seed=3)
        late = add_late(emu, org, "fakeaudit", NOW - 10 * HOUR, NOW - 5 * HOUR, 60, lag=2 * HOUR, seed=4)
        first = late[0]
        assert event_id("fakeaudit", first) == first["uuid"] and event_dt("fakeaudit", first) == "2026-11-20"
        assert event_time("fakeaudit", first) == NOW - 10 * HOUR
        window = {"tenant": TENANT, "since": str((NOW - 10 * HOUR) * 1000), "until": str(NOW * 1000)}
        api = emu.api("fakeaudit")
        assert api.answer(window, now=NOW - 8 * HOUR - 1)[1]["events"] == []  # none has reached the API yet
        assert len(api.answer({**window, "limit": "100"}, now=NOW)[1]["events"]) == 60
        assert run_once("fakeaudit", emu, store=store, archive=archive, clock=clock).complete
    assert_exactly_once(archive, "fakeaudit", early + late)
