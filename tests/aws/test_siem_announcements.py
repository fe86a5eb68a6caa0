"""New data objects announced to SIEMs, as deployed: the collector stack with NewObjectEvents on,
two siem-consumer.yaml stacks, the collector function run under its role; each queue gets exactly one
message per new data object, naming its key, and none for anything else the bucket holds. The
consumer's managed policy is enough to read its queue and the announced objects, and no broader.

moto delivers S3's EventBridge events to the rule's targets without the rule's InputTransformer, so
the s3-notification format is checked by applying the template's transformer to moto's event here
(EventBridge's rules: a placeholder standing alone is a JSON value, inside a string it is text).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import boto3
import pytest
from moto import mock_aws

from audit_collector.emulator import Emulator
from audit_collector.emulator.asana import asana_events
from audit_collector.emulator.slack import slack_events

from ..iam_ledger import recording
from ..stack import REGION, Deployment, deploy, plain_template, role_credentials
from ..support import FakeClock, assert_exactly_once

SLACK_TOKEN = "xoxp-siem"
ASANA_TOKEN = "2/1200/siem-token"
WORKSPACE = "1200000000000001"
PARAMETERS = {
    "SlackTokenSecret": "audit/slack",
    "AsanaTokenSecret": "audit/asana",
    "AsanaWorkspaceGid": WORKSPACE,
    "NewObjectEvents": "Enabled",
}
CONSUMERS = ("splunk", "elastic")


def drain(sqs, url: str) -> list[dict]:
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return out
        for message in got:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def transformed(transformer: dict, event: dict) -> dict:
    """EventBridge's InputTransformer, for the ``$.a.b`` paths the template uses."""
    values = {}
    for name, path in transformer["InputPathsMap"].items():
        value = event
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        values[name] = value
    out, inside = [], False
    # Inside a JSON string a placeholder is its text; standing alone, its value as JSON.
    for piece in re.split(r"(<\w+>|\\.|\")", transformer["InputTemplate"]):
        if piece == '"':
            inside = not inside
            out.append(piece)
        elif re.fullmatch(r"<\w+>", piece):
            value = values[piece[1:-1]]
            out.append(json.dumps(str(value))[1:-1] if inside else json.dumps(value))
        else:
            out.append(piece)
    return json.loads("".join(out))


@pytest.fixture(scope="module")
def announced(org):
    now = float(int(time.time()))
    clock = FakeClock(start=now)
    with pytest.MonkeyPatch.context() as monkeypatch, mock_aws():
        from audit_collector.aws import handler

        monkeypatch.setattr(handler, "SystemClock", lambda: clock)
        with Emulator(
            slack={"tokens": [SLACK_TOKEN]},
            asana={"tokens": [ASANA_TOKEN], "workspaces": [WORKSPACE]},
            clock=clock.time,
        ) as emu:
            secrets = boto3.client("secretsmanager", region_name=REGION)
            secrets.create_secret(Name="audit/slack", SecretString=SLACK_TOKEN)
            secrets.create_secret(Name="audit/asana", SecretString=ASANA_TOKEN)
            stack = deploy(PARAMETERS)
            bucket = stack.name("ArchiveBucket")
            consumers = {
                name: deploy(
                    {"ConsumerName": name, "ArchiveBucketName": bucket, "ArchivePrefix": ""},
                    template=plain_template("siem-consumer.yaml"),
                    name=f"audit-siem-{name}",
                )
                for name in CONSUMERS
            }
            i = int(now)
            served = {
                "slack": slack_events(org, i - 2 * 86400, i - 600, 150, seed=81),
                "asana": asana_events(org, (i - 2 * 86400) * 1000, (i - 600) * 1000, 90, seed=82),
            }
            emu.slack.add(served["slack"])
            emu.asana.add(served["asana"])
            deployment = Deployment(stack, emu, clock)
            for payload in stack.functions["CollectorFunction"].payloads:
                deployment.invoke("CollectorFunction", payload)
            s3 = boto3.client("s3", region_name=REGION)
            for provider, events in served.items():
                assert_exactly_once(s3_archive(s3, bucket), provider, events)
            keys = [k["Key"] for k in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
            sqs = boto3.client("sqs", region_name=REGION)
            messages = {name: drain(sqs, c.name("Queue")) for name, c in consumers.items()}
            # What else sits in the bucket beside the data: none of it is announced.
            others = [
                "_manifests/slack/dt=2026-12-01/1-2.json",
                "_chain/slack/head.json",
                "_meta/slack/actions-2026-12-01.json",
                "_audit_collector/state-store.json.bak",
                "_compacted/slack/dt=2026-12-01/run=1/part-0.parquet",
            ]
            for key in others:
                s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
            after = {name: drain(sqs, c.name("Queue")) for name, c in consumers.items()}
            reader = reader_run(consumers["splunk"], bucket)
            yield {
                "stack": stack,
                "consumers": consumers,
                "keys": keys,
                "messages": messages,
                "after": after,
                "reader": reader,
            }


def s3_archive(s3, bucket):
    from audit_collector.storage.s3 import S3Archive

    return S3Archive(bucket, client=s3)


def reader_run(consumer, bucket: str):
    """A SIEM's principal with only the consumer policy: receive, read the object, delete."""
    iam = boto3.client("iam", region_name=REGION)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "*"}]}
    iam.create_role(RoleName="siem-reader", AssumeRolePolicyDocument=json.dumps(trust))
    iam.attach_role_policy(RoleName="siem-reader", PolicyArn=consumer.name("ConsumerPolicy"))
    consumer.roles["SiemReader"] = consumer.policies["ConsumerPolicy"]
    consumer.resolver.attributes["SiemReader"] = {"Arn": "arn:aws:iam::123456789012:role/siem-reader"}
    credentials = role_credentials(consumer, "SiemReader")
    session = boto3.Session(
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials["AWS_SESSION_TOKEN"],
        region_name=REGION,
    )
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=bucket, Key="slack/dt=2026-12-01/9-10-p00000.jsonl.gz", Body=b"x")
    s3.put_object(Bucket=bucket, Key="asana/dt=2026-12-01/9-10-p00000.jsonl.gz", Body=b"y")
    with recording({"siem-reader": consumer.policies["ConsumerPolicy"]}) as ledger:
        sqs = session.client("sqs")
        url = sqs.get_queue_url(QueueName=consumer.resolver.attributes["Queue"]["QueueName"])["QueueUrl"]
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        bodies = []
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            event = json.loads(message["Body"])
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=60)
            bodies.append(session.client("s3").get_object(Bucket=bucket, Key=event["detail"]["object"]["key"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        with pytest.raises(Exception, match="AccessDenied"):  # nothing beyond the data prefixes
            session.client("s3").get_object(Bucket=bucket, Key="_manifests/slack/dt=2026-12-01/1-2.json")
    return ledger, bodies


def test_each_new_data_object_is_announced_once_to_every_consumer(announced):
    data = sorted(k for k in announced["keys"] if k.endswith(".jsonl.gz"))
    assert data and any(k.startswith("slack/") for k in data) and any(k.startswith("asana/") for k in data)
    for name, messages in announced["messages"].items():
        named = Counter(m["detail"]["object"]["key"] for m in messages)
        assert sorted(named) == data, name
        assert set(named.values()) == {1}, name
        assert all(m["source"] == "aws.s3" and m["detail-type"] == "Object Created" and m["id"] for m in messages)


def test_manifests_markers_chain_meta_and_compacted_files_are_not_announced(announced):
    assert any(k.startswith("_manifests/") for k in announced["keys"])  # the run wrote manifests...
    assert any(k.startswith("_audit_collector/") for k in announced["keys"])  # ...and its marker
    for name, messages in announced["messages"].items():
        assert not [m for m in messages if not m["detail"]["object"]["key"].endswith(".jsonl.gz")], name
    assert announced["after"] == {name: [] for name in CONSUMERS}


def test_the_s3_notification_format_is_what_sqs_based_s3_inputs_read(announced):
    """Splunk's SQS-based S3 input, Elastic's aws-s3 input, SecOps' SQS feed and Cribl's S3 source
    read {"Records": [{"s3": {"bucket": {"name"}, "object": {"key"}}}]}."""
    consumer = announced["consumers"]["splunk"]
    ((_, rule),) = consumer.of_type("AWS::Events::Rule")
    target = rule["Targets"][0]
    event = announced["messages"]["splunk"][0]
    record = transformed(target["InputTransformer"], event)["Records"][0]
    assert record["eventSource"] == "aws:s3" and record["eventName"].startswith("ObjectCreated:")
    assert record["s3"]["bucket"]["name"] == announced["stack"].name("ArchiveBucket")
    assert record["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{record['s3']['bucket']['name']}"
    assert record["s3"]["object"]["key"] == event["detail"]["object"]["key"]
    assert record["s3"]["object"]["size"] == event["detail"]["object"]["size"]
    assert target["DeadLetterConfig"]["Arn"] == consumer.arn("DeadLetterQueue")


def test_each_queue_is_encrypted_has_a_dead_letter_queue_and_takes_only_its_rule(announced):
    sqs = boto3.client("sqs", region_name=REGION)
    for consumer in announced["consumers"].values():
        queue, dlq = consumer.name("Queue"), consumer.name("DeadLetterQueue")
        attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        assert attributes["SqsManagedSseEnabled"] == "true"
        assert json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"] == consumer.arn("DeadLetterQueue")
        for url in (queue, dlq):
            policy = json.loads(
                sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"]
            )
            (statement,) = policy["Statement"]
            assert statement["Principal"] == {"Service": "events.amazonaws.com"}
            assert statement["Action"] == "sqs:SendMessage"
            assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": consumer.arn("NewDataObjectsRule")}}


def test_the_consumer_policy_reads_its_queue_and_the_data_and_nothing_else(announced):
    ledger, bodies = announced["reader"]
    assert [b["Body"].read() for b in bodies] and not [c for c in ledger.denied() if "_manifests" not in str(c)]
    used = ledger.used("siem-reader")
    statements = ledger.roles["siem-reader"]
    every = {
        (i, a, r)
        for i, s in enumerate(statements)
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    }
    assert every - used == set()


def test_announcements_are_off_unless_asked_for():
    from ..stack import Resolver, translate

    template = translate({k: v for k, v in PARAMETERS.items() if k != "NewObjectEvents"})
    resolver = Resolver(template, {k: v for k, v in PARAMETERS.items() if k != "NewObjectEvents"})
    props = resolver.resolve(template["Resources"]["ArchiveBucket"]["Properties"])
    assert "NotificationConfiguration" not in props
    assert not resolver.condition("AnnounceNewObjects")


def consumer_rule(**parameters) -> dict:
    from ..stack import Resolver

    template = plain_template("siem-consumer.yaml")
    values = {"ConsumerName": "x", "ArchiveBucketName": "archive-bucket", **parameters}
    return Resolver(template, values).resolve(template["Resources"]["NewDataObjectsRule"]["Properties"])


def test_one_provider_per_consumer_and_a_forwarder_target_are_parameters():
    assert consumer_rule(ArchivePrefix="audit/")["EventPattern"]["detail"]["object"]["key"] == [
        {"prefix": "audit/slack/"},
        {"prefix": "audit/asana/"},
    ]
    assert consumer_rule(Provider="asana")["EventPattern"]["detail"]["object"]["key"] == [{"prefix": "asana/"}]
    assert [t["Id"] for t in consumer_rule()["Targets"]] == ["queue"]
    arn = "arn:aws:lambda:us-east-1:123456789012:function:datadog-forwarder"
    targets = consumer_rule(ForwarderArn=arn)["Targets"]
    assert [t["Id"] for t in targets] == ["queue", "forwarder"] and targets[1]["Arn"] == arn
    assert targets[1]["InputTransformer"] == targets[0]["InputTransformer"]  # the same S3 notification
    assert "InputTransformer" not in consumer_rule(MessageFormat="eventbridge")["Targets"][0]
