"""The Lambda entry point: configuration, payloads, secrets, results, logs and metrics."""

from __future__ import annotations

import io
import json
import os
import socket
from datetime import UTC, datetime

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from audit_collector import providers
from audit_collector.aws import handler
from audit_collector.aws.config import Config
from audit_collector.aws.tokens import TokenError, parse_secret_value
from audit_collector.emulator import Emulator
from audit_collector.emulator.asana import asana_events
from audit_collector.emulator.slack import slack_events
from audit_collector.errors import ConfigError
from audit_collector.http_retry import SystemClock
from audit_collector.storage.s3 import S3Archive
from audit_collector.storage.state import DynamoDBStore

from ..docs_pages import undocumented_variables
from ..support import (
    BUCKET,
    BUILTIN_PROVIDERS,
    TABLE,
    FakeContext,
    add_history,
    assert_exactly_once,
    create_aws_resources,
)

SLACK_TOKEN = "fake-slack-handler-secret"
ASANA_TOKEN = "2/1200/handler-asana-secret"
WORKSPACE = "1200000000000001"


@pytest.fixture(autouse=True)
def fresh_parameter_cache():
    parameters.clear_caches()
    parameters.base.DEFAULT_PROVIDERS.clear()
    yield
    parameters.clear_caches()
    parameters.base.DEFAULT_PROVIDERS.clear()


@pytest.fixture
def logs():
    """What the function logs to CloudWatch (Powertools JSON lines), as one string."""
    buffer = io.StringIO()
    old = handler.logger.registered_handler.setStream(buffer)
    yield buffer
    handler.logger.registered_handler.setStream(old)


@pytest.fixture
def emu():
    with Emulator(slack={"tokens": [SLACK_TOKEN]}, asana={"tokens": [ASANA_TOKEN], "workspaces": [WORKSPACE]}) as e:
        yield e


@pytest.fixture
def env(monkeypatch, emu):
    values = {
        "STATE_TABLE_NAME": TABLE,
        "ARCHIVE_BUCKET_NAME": BUCKET,
        "SLACK_TOKEN_SECRET_ID": "audit/slack",
        "ASANA_TOKEN_SECRET_ID": "audit/asana",
        "ASANA_WORKSPACE_GID": WORKSPACE,
        "SLACK_API_BASE_URL": emu.slack.base_url,
        "ASANA_API_BASE_URL": emu.asana.base_url,
        "SETTLE_SECONDS": "60",
        "INITIAL_LOOKBACK_DAYS": "1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def aws(env):
    with mock_aws():
        create_aws_resources()
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name="audit/slack", SecretString=SLACK_TOKEN)
        secrets.create_secret(Name="audit/asana", SecretString=json.dumps({"token": ASANA_TOKEN}))
        yield secrets


def history(emu: Emulator, org) -> tuple[list[dict], list[dict]]:
    now = int(datetime.now(UTC).timestamp())
    slack = slack_events(org, now - 20 * 3600, now - 3600, 200, seed=21)
    asana = asana_events(org, (now - 20 * 3600) * 1000, (now - 3600) * 1000, 150, seed=22)
    emu.slack.add(slack)
    emu.asana.add(asana)
    return slack, asana


def test_a_scheduled_event_runs_every_enabled_provider(aws, emu, org, capfd, logs):
    slack, asana = history(emu, org)
    scheduled = json.loads((handler_events_dir() / "scheduled-event.json").read_text())
    out = handler.lambda_handler(scheduled, FakeContext())
    by_provider = {r["provider"]: r for r in out["results"]}
    assert set(by_provider) == {"slack", "asana"}
    assert by_provider["slack"]["events_written"] == 200 and by_provider["asana"]["events_written"] == 150
    assert all(r["complete"] and r["objects_written"] >= 1 and r["pages"] >= 1 for r in out["results"])
    assert set(by_provider["slack"]) >= {
        "provider",
        "events_written",
        "objects_written",
        "pages",
        "complete",
        "checkpoint",
    }
    assert_exactly_once(S3Archive(BUCKET), "slack", slack)
    assert_exactly_once(S3Archive(BUCKET), "asana", asana)
    metrics = capfd.readouterr().out
    assert '"EventsWritten"' in metrics and '"AuditCollector"' in metrics  # EMF metrics, per provider
    assert "archived 200 events" in logs.getvalue()
    assert SLACK_TOKEN not in metrics + logs.getvalue() and ASANA_TOKEN not in metrics + logs.getvalue()


@pytest.fixture
def every_builtin(aws, emu, org, monkeypatch):
    """Every built-in provider enabled, with some history: Slack's and Asana's by the fixtures
    above, any other by its descriptor's variables, a plain-text secret and its emulated API."""
    history(emu, org)
    now = int(datetime.now(UTC).timestamp())
    for name in BUILTIN_PROVIDERS:
        descriptor, api = providers.get(name), emu.api(name)
        if descriptor.secret_env in os.environ:
            continue
        aws.create_secret(Name=f"audit/{name}", SecretString=api.token)
        monkeypatch.setenv(descriptor.secret_env, f"audit/{name}")
        monkeypatch.setenv(descriptor.base_url_env, api.base_url)
        for option in descriptor.options:
            if option.name in api.options:
                monkeypatch.setenv(option.env, api.options[option.name])
        add_history(emu, org, name, now - 20 * 3600, now - 3600, 100, seed=23)


@pytest.mark.parametrize("provider", BUILTIN_PROVIDERS)
def test_a_provider_payload_runs_that_provider_only(every_builtin, emu, provider):
    out = handler.lambda_handler({"provider": provider}, FakeContext())
    assert [r["provider"] for r in out["results"]] == [provider]
    others = [name for name in BUILTIN_PROVIDERS if name != provider]
    assert others and {name: emu.calls(name) for name in others} == dict.fromkeys(others, 0)


def test_a_warm_invocation_creates_no_aws_client(aws, emu, org, monkeypatch):
    import boto3

    history(emu, org)
    created = []
    real_client = boto3.client
    monkeypatch.setattr(boto3, "client", lambda *a, **k: created.append(a[0] if a else k) or real_client(*a, **k))
    handler.lambda_handler({"provider": "slack"}, FakeContext())
    assert {"s3", "dynamodb"} <= set(created)  # the cold invocation made them
    created.clear()
    out = handler.lambda_handler({"provider": "asana"}, FakeContext())
    assert out["results"][0]["events_written"] == 150 and created == []


def handler_events_dir():
    from ..support import ROOT

    return ROOT / "events"


BAD_PAYLOADS = [
    (None, "JSON object"),
    ([], "JSON object"),
    ("slack", "JSON object"),
    ({}, "names no provider"),
    ({"provider": "teams"}, "one of slack, asana"),
    ({"provider": "SLACK"}, "one of slack, asana"),
    ({"provider": None}, "one of slack, asana"),
    ({"provider": "slack", "extra": 1}, "unknown field"),
    ({"detail-type": "Scheduled Event", "source": "aws.events", "surprise": True}, "names no provider"),
    ({"source": "aws.events"}, "names no provider"),
    ({"provider": "slack", "backfill": None}, "backfill must be"),
    ({"provider": "slack", "backfill": "last week"}, "backfill must be"),
    ({"provider": "slack", "backfill": {"start": "2026-10-01T00:00:00Z"}}, "backfill must be"),
    ({"provider": "slack", "backfill": {"start": "2026-10-01", "end": "nope"}}, "UTC"),
    ({"provider": "slack", "backfill": {"start": "noon", "end": "nope"}}, "not an ISO 8601"),
    ({"provider": "slack", "backfill": {"start": "2026-10-02T00:00:00Z", "end": "2026-10-01T00:00:00Z"}}, "before"),
    ({"provider": "slack", "backfill": {"start": "2026-10-01T00:00:00+05:00", "end": "2026-10-02T00:00:00Z"}}, "UTC"),
    ({"provider": "slack", "backfill": {"start": "2026-10-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}}, "future"),
    ({"provider": "slack", "backfill": {"start": "2010-01-01T00:00:00Z", "end": "2011-01-01T00:00:00Z"}}, "2018-03-01"),
    ({"provider": "asana", "backfill": {"start": "2022-01-01T00:00:00Z", "end": "2022-02-01T00:00:00Z"}}, "90 days"),
    ({"backfill": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z"}}, "names no provider"),
]


@pytest.mark.parametrize("payload,message", BAD_PAYLOADS)
def test_bad_payloads_are_rejected_before_any_aws_or_api_call(env, emu, monkeypatch, payload, message):
    def no_aws(*args, **kwargs):
        raise AssertionError("AWS was called for a bad payload")

    monkeypatch.setattr(boto3, "client", no_aws)
    monkeypatch.setattr(boto3.session.Session, "client", no_aws)
    with pytest.raises(ConfigError, match=message):
        handler.lambda_handler(payload, FakeContext())
    assert emu.request_log == []


def test_a_disabled_provider_is_rejected_with_what_to_set(env, monkeypatch):
    monkeypatch.delenv("ASANA_TOKEN_SECRET_ID")
    monkeypatch.delenv("ASANA_WORKSPACE_GID")
    with pytest.raises(ConfigError, match="ASANA_TOKEN_SECRET_ID and ASANA_WORKSPACE_GID"):
        handler.lambda_handler({"provider": "asana"}, FakeContext())


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("STATE_TABLE_NAME", "", "STATE_TABLE_NAME"),
        ("ARCHIVE_BUCKET_NAME", " ", "ARCHIVE_BUCKET_NAME"),
        ("SETTLE_SECONDS", "soon", "SETTLE_SECONDS"),
        ("SETTLE_SECONDS", "-5", "SETTLE_SECONDS"),
        ("INITIAL_LOOKBACK_DAYS", "0", "INITIAL_LOOKBACK_DAYS"),
        ("HTTP_TIMEOUT_SECONDS", "1e9", "HTTP_TIMEOUT_SECONDS"),
        ("SLACK_API_BASE_URL", "ftp://x", "SLACK_API_BASE_URL"),
        ("ASANA_WORKSPACE_GID", "", "both"),
        ("SLACK_CALLS_PER_MINUTE", "60", "SLACK_CALLS_PER_MINUTE must be from 1 to 48"),  # over Slack's limit
        ("ASANA_CALLS_PER_MINUTE", "fast", "ASANA_CALLS_PER_MINUTE"),
        ("ASANA_CALLS_PER_MINUTE", "0", "ASANA_CALLS_PER_MINUTE"),
    ],
)
def test_bad_configuration_names_the_variable(env, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        handler.lambda_handler({"provider": "slack"}, FakeContext())


class SleepRecorder(SystemClock):
    """Real time, except that sleeps are recorded and skipped (a virtual monotonic clock moves)."""

    def __init__(self, sleeps: list[float]) -> None:
        self.sleeps, self.skipped = sleeps, 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self.skipped

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.skipped += seconds


def test_a_lower_pace_is_honoured(aws, emu, org, monkeypatch):
    """An org whose Slack limit is shared with other apps paces this collector lower."""
    history(emu, org)
    monkeypatch.setenv("SLACK_CALLS_PER_MINUTE", "12")
    assert Config.from_env(os.environ).settings("slack").calls_per_minute == 12
    sleeps = []
    monkeypatch.setattr(handler, "SystemClock", lambda: SleepRecorder(sleeps))
    handler.lambda_handler({"provider": "slack"}, FakeContext())
    assert sleeps and min(sleeps) > 4  # ~5 s between calls, not 1.25 s


def test_no_provider_enabled(monkeypatch):
    monkeypatch.setenv("STATE_TABLE_NAME", "t")
    monkeypatch.setenv("ARCHIVE_BUCKET_NAME", "b")
    for name in ("SLACK_TOKEN_SECRET_ID", "ASANA_TOKEN_SECRET_ID", "ASANA_WORKSPACE_GID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="no provider is enabled"):
        handler.lambda_handler({"provider": "slack"}, FakeContext())


def test_prefix_is_normalized():
    base = {"STATE_TABLE_NAME": "t", "ARCHIVE_BUCKET_NAME": "b", "SLACK_TOKEN_SECRET_ID": "s"}
    assert Config.from_env({**base, "ARCHIVE_PREFIX": "/audit/"}).archive_prefix == "audit/"
    assert Config.from_env(base).archive_prefix == ""


@pytest.mark.parametrize(
    "value,token",
    [
        (SLACK_TOKEN, SLACK_TOKEN),
        (f"  {SLACK_TOKEN}\n", SLACK_TOKEN),
        (json.dumps({"token": SLACK_TOKEN}), SLACK_TOKEN),
        (SLACK_TOKEN.encode(), SLACK_TOKEN),
    ],
)
def test_secret_formats(value, token):
    assert parse_secret_value(value, "s") == token


@pytest.mark.parametrize(
    "value,message",
    [
        ("", "empty"),
        ("{not json", "does not parse"),
        (json.dumps({"access_token": SLACK_TOKEN}), "without a string"),
        ("xoxp-a b", "whitespace"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_bad_secrets_say_what_is_wrong_without_the_value(value, message):
    with pytest.raises(TokenError, match=message) as info:
        parse_secret_value(value, "audit/slack")
    assert SLACK_TOKEN not in str(info.value)


def test_a_missing_secret_fails_the_run_with_what_to_check(aws, emu):
    aws.delete_secret(SecretId="audit/slack", ForceDeleteWithoutRecovery=True)
    with pytest.raises(handler.CollectionFailed, match="could not read secret 'audit/slack'"):
        handler.lambda_handler({"provider": "slack"}, FakeContext())
    assert emu.request_log == []


def test_a_revoked_token_fails_loudly_and_leaves_the_checkpoint_alone(aws, emu, org, logs):
    history(emu, org)
    aws.put_secret_value(SecretId="audit/slack", SecretString="fake-revoked-token-value")
    with pytest.raises(handler.CollectionFailed, match="invalid_authentication") as info:
        handler.lambda_handler({"provider": "slack"}, FakeContext())
    assert "auditlogs:read" in str(info.value)
    assert DynamoDBStore(TABLE).read("slack").get("checkpoint", {}) == {}
    logged = logs.getvalue()
    assert "fake-revoked-token-value" not in logged + str(info.value)
    assert "invalid_authentication" in logged  # the failure is logged, as JSON, with the provider
    assert any(json.loads(line).get("provider") == "slack" for line in logged.splitlines() if line.startswith("{"))


def test_one_failing_provider_does_not_stop_the_other(aws, emu, org):
    slack, _ = history(emu, org)
    aws.put_secret_value(SecretId="audit/asana", SecretString="revoked")
    with pytest.raises(handler.CollectionFailed, match="asana"):
        handler.lambda_handler({"detail-type": "Scheduled Event", "source": "aws.events"}, FakeContext())
    assert_exactly_once(S3Archive(BUCKET), "slack", slack)


def test_a_rotated_secret_is_read_again_after_the_cache_expires(aws):
    from audit_collector.aws.tokens import SECRET_MAX_AGE_SECONDS, load_token

    assert load_token("audit/slack") == SLACK_TOKEN
    aws.put_secret_value(SecretId="audit/slack", SecretString="xoxp-rotated")
    assert load_token("audit/slack") == SLACK_TOKEN  # cached: warm invocations do not call Secrets Manager
    parameters.clear_caches()  # what the cache entry expiring after SECRET_MAX_AGE_SECONDS does
    assert load_token("audit/slack") == "xoxp-rotated"
    assert 60 <= SECRET_MAX_AGE_SECONDS <= 600  # "within minutes"


def test_an_overlapping_run_reports_the_lease_and_succeeds(aws, emu, org):
    history(emu, org)
    DynamoDBStore(TABLE).acquire("slack", owner="other-run", expires_at=4e9, now=1.0)
    out = handler.lambda_handler({"provider": "slack"}, FakeContext())
    assert out["results"][0]["status"] == "lease_held" and "other-run" in out["results"][0]["message"]
    assert out["results"][0]["events_written"] == 0


def test_a_short_deadline_returns_incomplete_with_a_checkpoint(aws, emu, org):
    history(emu, org)
    out = handler.lambda_handler({"provider": "slack"}, FakeContext(remaining_ms=20_000))
    assert out["results"][0]["complete"] is False  # 20 s is less than one request plus the write reserve
    assert out["results"][0]["events_written"] == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_aws_endpoint_url_is_honoured_not_overridden(env, emu, org, monkeypatch):
    """boto3's own AWS_ENDPOINT_URL reaches a moto_server on loopback: nothing in our code overrides it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        create_aws_resources()
        boto3.client("secretsmanager").create_secret(Name="audit/slack", SecretString=SLACK_TOKEN)
        slack, _ = history(emu, org)
        out = handler.lambda_handler({"provider": "slack"}, FakeContext())
        assert out["results"][0]["events_written"] == 200
        assert_exactly_once(S3Archive(BUCKET), "slack", slack)
    finally:
        server.stop()


def test_every_variable_read_is_documented_in_the_docs():
    # deploy.md's Configuration table has the shared ones; the generated Providers reference each provider's.
    assert undocumented_variables() == []


def test_a_backfill_invoke_archives_the_range_and_reports_it(aws, emu, org):
    now = int(datetime.now(UTC).timestamp())
    older = slack_events(org, now - 5 * 86400, now - 2 * 86400, 300, seed=71)
    emu.slack.add(older)
    payload = json.loads((handler_events_dir() / "slack-backfill.json").read_text())
    start = datetime.fromtimestamp(now - 5 * 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = datetime.fromtimestamp(now - 2 * 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    payload["backfill"] = {"start": start, "end": end}
    out = handler.lambda_handler(payload, FakeContext())
    backfill = out["results"][0]["backfill"]
    assert backfill["done"] and backfill["progress"] == 1.0 and not backfill["existing"]
    assert backfill["start"] == start and backfill["end"] == end
    assert_exactly_once(S3Archive(BUCKET), "slack", older)
    again = handler.lambda_handler(payload, FakeContext())["results"][0]["backfill"]
    assert again["existing"] and again["done"]
    assert_exactly_once(S3Archive(BUCKET), "slack", older)
