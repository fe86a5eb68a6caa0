"""The preflight: one line per thing to fix, for each documented error body, against the emulator
and recorded bodies; the CLI's ``doctor``; the state table and the bucket. Nothing is written."""

from __future__ import annotations

import json
import time
from email.utils import formatdate

import boto3
import pytest
import responses
from moto import mock_aws

from audit_collector import providers
from audit_collector.checks.preflight import storage_checks
from audit_collector.cli import main
from audit_collector.emulator import Emulator
from audit_collector.http_retry import SystemClock
from audit_collector.providers.asana.preflight import STATUS_MESSAGES
from audit_collector.providers.slack.preflight import ERROR_MESSAGES
from audit_collector.storage.s3 import S3Archive
from audit_collector.storage.state import DynamoDBStore
from audit_collector.wiring import check_provider

from ..support import BUCKET, TABLE, create_aws_resources

SLACK = providers.get("slack")
ASANA = providers.get("asana")
WORKSPACE = "1200000000000001"
# The codes Slack documents for the Audit Logs API (and the Web API's scope error).
DOCUMENTED_SLACK_CODES = [
    "invalid_authentication",
    "missing_authentication",
    "feature_not_enabled",
    "invalid_cursor",
    "invalid_range",
    "invalid_action",
    "invalid_workspace",
    "method_not_allowed",
    "team_not_authorized",
    "user_not_authorized",
    "rate_limited",
    "bad_endpoint",
]
DOCUMENTED_ASANA_STATUSES = [400, 401, 402, 403, 404, 429, 500]


def slack_check(token: str, base_url: str) -> list:
    return check_provider(SLACK, token=token, clock=SystemClock(), base_url=base_url)


def asana_check(token: str, base_url: str, workspace: str = WORKSPACE) -> list:
    return check_provider(
        ASANA, token=token, clock=SystemClock(), base_url=base_url, options={"workspace_gid": workspace}
    )


def failed(checks) -> dict[str, str]:
    return {c.name: c.message for c in checks if not c.ok}


@pytest.fixture
def emu():
    with Emulator(
        slack={"tokens": ["xoxp-good"], "tokens_without_feature": ["xoxp-no-grid"]},
        asana={"tokens": ["2/1/good"], "workspaces": [WORKSPACE]},
    ) as e:
        yield e


def test_a_good_slack_and_asana_setup_passes_every_check_with_one_request_each(emu):
    slack = slack_check("xoxp-good", emu.slack.base_url)
    asana = asana_check("2/1/good", emu.asana.base_url)
    assert all(c.ok for c in slack + asana), [c.line() for c in slack + asana]
    assert {c.name for c in slack} == {"token type", "token", "rate limit", "clock"}
    assert {c.name for c in asana} == {"token", "rate limit", "clock"}
    assert [(r["api"], r["params"].get("limit")) for r in emu.request_log] == [("slack", "1"), ("asana", "1")]


@pytest.mark.parametrize(
    "token,kind",
    [("xoxb-1-2-3", "bot token"), ("xapp-1-A-1-x", "app-level token"), ("not-a-token", "not a Slack token")],
)
def test_a_slack_token_of_the_wrong_type_is_named(emu, token, kind):
    found = failed(slack_check(token, emu.slack.base_url))
    assert kind in found["token type"] and "xoxp-" in found["token type"]
    assert found["token"] == ERROR_MESSAGES["invalid_authentication"]  # and Slack refuses it too
    assert token not in " ".join(found.values())


def test_the_emulator_s_refusals_get_their_own_messages(emu):
    assert failed(slack_check("xoxp-no-grid", emu.slack.base_url))["token"] == ERROR_MESSAGES["feature_not_enabled"]
    assert failed(asana_check("2/1/bad", emu.asana.base_url))["token"].startswith(STATUS_MESSAGES[401])
    assert failed(asana_check("2/1/good", emu.asana.base_url, "999"))["token"].startswith(STATUS_MESSAGES[404])
    assert failed(asana_check("2/1/good", emu.asana.base_url, "12ab")) == {
        "workspace": "ASANA_WORKSPACE_GID must be digits, got '12ab'"
    }


@responses.activate
@pytest.mark.parametrize("code", DOCUMENTED_SLACK_CODES)
def test_each_documented_slack_error_body_has_its_own_message(code):
    headers = {"Retry-After": "30"} if code == "rate_limited" else {}
    status = 429 if code == "rate_limited" else 200  # Slack pins no status to a code: the body decides
    responses.get("http://127.0.0.1:9/audit/v1/logs", json={"ok": False, "error": code}, status=status, headers=headers)
    found = failed(slack_check("xoxp-fine", "http://127.0.0.1:9/audit/v1/"))
    name = "rate limit" if code == "rate_limited" else "token"
    assert found[name].startswith(ERROR_MESSAGES[code])
    if code == "rate_limited":
        assert "other apps" in found[name] and "Retry-After 30 s" in found[name]
    assert len(responses.calls) == 1  # no retries: the answer is the finding


def test_every_documented_error_has_a_distinct_message():
    assert set(DOCUMENTED_SLACK_CODES) <= set(ERROR_MESSAGES)
    assert len(set(ERROR_MESSAGES.values())) == len(ERROR_MESSAGES)
    assert set(DOCUMENTED_ASANA_STATUSES) == set(STATUS_MESSAGES)
    assert len(set(STATUS_MESSAGES.values())) == len(STATUS_MESSAGES)


@responses.activate
@pytest.mark.parametrize("status", DOCUMENTED_ASANA_STATUSES)
def test_each_documented_asana_status_has_its_own_message(status):
    body = {"errors": [{"message": "Not Authorized" if status == 401 else f"said {status}", "help": "docs"}]}
    url = f"http://127.0.0.1:9/api/1.0/workspaces/{WORKSPACE}/audit_log_events"
    responses.get(url, json=body, status=status, headers={"Retry-After": "5"} if status == 429 else {})
    found = failed(asana_check("2/1/fine", "http://127.0.0.1:9/api/1.0/"))
    name = "rate limit" if status == 429 else "token"
    assert found[name].startswith(STATUS_MESSAGES[status]) and body["errors"][0]["message"] in found[name]
    assert len(responses.calls) == 1


@responses.activate
@pytest.mark.parametrize("skew", [-300, 300])
def test_a_host_clock_off_from_the_api_s_date_header_is_named(skew):
    date = formatdate(time.time() + skew, usegmt=True)
    responses.get(
        "http://127.0.0.1:9/audit/v1/logs",
        json={"ok": True, "entries": [], "response_metadata": {"next_cursor": ""}},
        headers={"Date": date},
    )
    found = failed(slack_check("xoxp-fine", "http://127.0.0.1:9/audit/v1/"))
    side = "behind" if skew > 0 else "ahead of"
    assert f"s {side} Slack's" in found["clock"] and "NTP" in found["clock"]


def test_doctor_prints_one_line_per_check_and_exits_1_when_something_needs_fixing(emu, monkeypatch, capsys):
    monkeypatch.setenv("SLACK_TOKEN", "xoxp-good")
    monkeypatch.delenv("ASANA_TOKEN", raising=False)
    assert main(["doctor", "--api-base-url", emu.slack.base_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("ok  slack ") for line in lines)
    monkeypatch.setenv("SLACK_TOKEN", "xoxb-bot")
    assert main(["doctor", "--provider", "slack", "--api-base-url", emu.slack.base_url]) == 1
    out = capsys.readouterr().out
    assert "FIX slack token type: the secret holds a bot token (xoxb-)" in out and "xoxb-bot" not in out
    monkeypatch.setenv("ASANA_TOKEN", "2/1/good")
    args = ["doctor", "--provider", "asana", "--api-base-url", emu.asana.base_url, "--workspace-gid", WORKSPACE]
    assert main(args) == 0


@pytest.fixture
def aws():
    with mock_aws():
        create_aws_resources()
        yield boto3.client("s3", region_name="us-east-1")


def test_storage_checks_say_whether_the_table_and_bucket_belong_together(aws):
    store, archive = DynamoDBStore(TABLE), S3Archive(BUCKET)
    before = storage_checks(store, archive, "", object_lock_mode="NONE", kms_key_arn="")
    assert all(c.ok for c in before), [c.line() for c in before]
    assert "no marker yet" in {c.name: c.message for c in before}["pairing"]
    assert aws.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0  # read, never claimed
    marker = {"state_store": "dynamodb://another-table (region us-east-1)"}
    aws.put_object(Bucket=BUCKET, Key="_audit_collector/state-store.json", Body=json.dumps(marker).encode())
    found = failed(storage_checks(store, archive, "", object_lock_mode="COMPLIANCE", kms_key_arn="arn:aws:kms:k"))
    assert "belongs to dynamodb://another-table" in found["pairing"] and "STATE_TABLE_NAME" in found["pairing"]
    assert "the stack asks for COMPLIANCE" in found["object lock"]
    assert "asks for KMS key arn:aws:kms:k" in found["encryption"]
    assert "state store" not in found


def test_a_check_payload_is_parsed_before_anything_runs():
    from audit_collector.aws.invocation import parse_invocation
    from audit_collector.errors import ConfigError

    enabled = ("slack", "asana")
    assert parse_invocation({"check": True}, enabled).providers == enabled
    assert parse_invocation({"check": True}, enabled).check
    one = parse_invocation({"provider": "asana", "check": True}, enabled)
    assert one.providers == ("asana",) and one.check
    assert not parse_invocation({"provider": "asana"}, enabled).check
    for bad, message in [
        ({"check": "yes"}, "true or false"),
        ({"check": True, "extra": 1}, "unknown field"),
        ({"provider": "slack", "check": True, "backfill": {"start": "x", "end": "y"}}, "writes nothing"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_invocation(bad, enabled)
