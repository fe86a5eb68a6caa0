"""An archive and a state store that cannot see each other: the archive records its state store on
first use, and a run with another one is refused before it takes a lease or writes anything."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from audit_collector import cli
from audit_collector.aws import handler
from audit_collector.emulator import Emulator
from audit_collector.emulator.slack import slack_events
from audit_collector.errors import StateStoreMismatch
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.s3 import S3Archive
from audit_collector.storage.state import DynamoDBStore, FileStore
from audit_collector.wiring import check_state_store

from ..support import BUCKET, TABLE, FakeContext, assert_exactly_once, create_aws_resources

NOW = int(datetime.now(UTC).timestamp())
MARKER = "_audit_collector/state-store.json"


@pytest.fixture
def emu(org):
    with Emulator() as e:
        e.slack.add(slack_events(org, NOW - 20 * 3600, NOW - 3600, 200, seed=41))
        yield e


def args(emu, command, archive, *extra):
    out = [command, "--provider", "slack", "--archive", str(archive), "--api-base-url", emu.slack.base_url]
    if command == "collect":
        out += ["--lookback-days", "1"]
    return out + list(extra)


def backfill_args(emu, archive, *extra):
    start = datetime.fromtimestamp(NOW - 3 * 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = datetime.fromtimestamp(NOW - 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    unpaced = ("--no-progress", "--calls-per-minute", "0")
    return args(emu, "backfill", archive, "--start", start, "--end", end, *unpaced, *extra)


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_first_use_writes_the_marker_and_the_same_store_runs_again(emu, tmp_path, monkeypatch):
    monkeypatch.setenv("SLACK_TOKEN", emu.slack.token)
    assert cli.main(args(emu, "collect", tmp_path / "a")) == 0
    marker = json.loads((tmp_path / "a" / MARKER).read_text())
    assert marker == {"state_store": f"file://{(tmp_path / 'a' / 'state.json').resolve()}"}
    assert cli.main(args(emu, "collect", tmp_path / "a", "--state", str(tmp_path / "a" / "state.json"))) == 0
    assert_exactly_once(LocalArchive(tmp_path / "a"), "slack", [json.loads(i.raw) for i in emu.slack.log.items])


def test_the_cli_refuses_another_state_store_with_exit_2_naming_both_and_writes_nothing(
    emu, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("SLACK_TOKEN", emu.slack.token)
    assert cli.main(args(emu, "collect", tmp_path / "a")) == 0
    before, calls = snapshot(tmp_path / "a"), emu.calls()
    capsys.readouterr()
    other = tmp_path / "local.json"
    assert cli.main(backfill_args(emu, tmp_path / "a", "--state", str(other))) == 2
    err = capsys.readouterr().err
    assert f"file://{(tmp_path / 'a' / 'state.json').resolve()}" in err and f"file://{other.resolve()}" in err
    assert snapshot(tmp_path / "a") == before  # no object, no checkpoint, no lease
    assert not other.exists() and emu.calls() == calls  # the other store untouched, no API call


def test_a_cli_backfill_with_a_local_state_cannot_write_into_the_stacks_bucket(emu, tmp_path, monkeypatch, capsys):
    """The issue's case: the Lambda collects into S3 with its DynamoDB table; a laptop backfill with
    ``--archive s3://<bucket> --state ./local.json`` is refused; ``--state dynamodb://<table>`` agrees."""
    monkeypatch.setenv("SLACK_TOKEN", emu.slack.token)
    with mock_aws():
        create_aws_resources()
        store, archive = DynamoDBStore(TABLE), S3Archive(BUCKET)
        check_state_store(archive, "", store)  # what the Lambda's first run does
        assert json.loads(archive.get(MARKER)) == {"state_store": f"dynamodb://{TABLE} (region us-east-1)"}
        assert cli.main(backfill_args(emu, f"s3://{BUCKET}", "--state", str(tmp_path / "local.json"))) == 2
        err = capsys.readouterr().err
        assert f"dynamodb://{TABLE}" in err and f"file://{(tmp_path / 'local.json').resolve()}" in err
        assert list(archive.keys()) == [MARKER] and not (tmp_path / "local.json").exists()
        assert cli.main(backfill_args(emu, f"s3://{BUCKET}", "--state", f"dynamodb://{TABLE}")) == 0
        assert len(list(archive.keys("slack/"))) >= 1


@pytest.fixture
def lambda_env(monkeypatch, emu):
    for name, value in {
        "STATE_TABLE_NAME": TABLE,
        "ARCHIVE_BUCKET_NAME": BUCKET,
        "SLACK_TOKEN_SECRET_ID": "audit/slack",
        "SLACK_API_BASE_URL": emu.slack.base_url,
        "SETTLE_SECONDS": "60",
        "INITIAL_LOOKBACK_DAYS": "1",
    }.items():
        monkeypatch.setenv(name, value)


def test_the_lambda_refuses_an_archive_a_cli_state_file_owns(emu, tmp_path, monkeypatch, lambda_env):
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    parameters.base.DEFAULT_PROVIDERS.clear()
    monkeypatch.setenv("SLACK_TOKEN", emu.slack.token)
    with mock_aws():
        create_aws_resources()
        boto3.client("secretsmanager").create_secret(Name="audit/slack", SecretString=emu.slack.token)
        local = tmp_path / "local.json"
        assert cli.main(args(emu, "collect", f"s3://{BUCKET}", "--state", str(local))) == 0
        keys = sorted(S3Archive(BUCKET).keys())
        with pytest.raises(handler.CollectionFailed) as info:
            handler.lambda_handler({"provider": "slack"}, FakeContext())
        assert f"dynamodb://{TABLE}" in str(info.value) and f"file://{local.resolve()}" in str(info.value)
        assert sorted(S3Archive(BUCKET).keys()) == keys
        assert DynamoDBStore(TABLE).read("slack") == {}  # no lease was taken
    parameters.clear_caches()


def test_the_lambda_and_the_cli_with_the_same_table_agree(emu, monkeypatch, lambda_env):
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    parameters.base.DEFAULT_PROVIDERS.clear()
    monkeypatch.setenv("SLACK_TOKEN", emu.slack.token)
    with mock_aws():
        create_aws_resources()
        boto3.client("secretsmanager").create_secret(Name="audit/slack", SecretString=emu.slack.token)
        assert handler.lambda_handler({"provider": "slack"}, FakeContext())["results"][0]["complete"]
        assert cli.main(backfill_args(emu, f"s3://{BUCKET}", "--state", f"dynamodb://{TABLE}")) == 0
        assert_exactly_once(S3Archive(BUCKET), "slack", [json.loads(i.raw) for i in emu.slack.log.items])
    parameters.clear_caches()


def test_a_marker_that_is_not_one_is_refused_and_only_known_markers_can_be_written(tmp_path):
    archive = LocalArchive(tmp_path)
    (tmp_path / "_audit_collector").mkdir()
    (tmp_path / MARKER).write_text("not json")
    with pytest.raises(StateStoreMismatch, match="not a state-store marker"):
        check_state_store(archive, "", FileStore(tmp_path / "s.json"))
    from audit_collector.errors import ArchiveError

    for key in ("_audit_collector/other.json", "slack/state-store.json", "x/../_audit_collector/state-store.json"):
        with pytest.raises(ArchiveError):
            archive.claim_marker(key, b"{}")
    with pytest.raises(ArchiveError):
        archive.put(MARKER, b"{}")  # put stays for archive objects only


def test_the_marker_is_written_once_with_a_boto3_older_than_conditional_writes(monkeypatch):
    """A Lambda runtime's boto3 may not know ``IfNoneMatch``: read, then write, still once."""
    from botocore.exceptions import ParamValidationError

    with mock_aws():
        create_aws_resources()
        archive = S3Archive(BUCKET)
        put = archive.client.put_object

        def old_put(**kwargs):
            if "IfNoneMatch" in kwargs:
                raise ParamValidationError(report="Unknown parameter in input: IfNoneMatch")
            return put(**kwargs)

        monkeypatch.setattr(archive.client, "put_object", old_put)
        first = check_state_store(archive, "p/", DynamoDBStore(TABLE))
        assert check_state_store(archive, "p/", DynamoDBStore(TABLE)) == first
        with pytest.raises(StateStoreMismatch):
            check_state_store(archive, "p/", FileStore("other.json"))
        assert list(archive.keys()) == ["p/" + MARKER]
